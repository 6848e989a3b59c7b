"""Run the emulator from a shell: ``python -m kling_async.testing --port 8765``.

The first line of stdout is the API base URL (flushed at once) so that a parent process can read
it; the second is the CDN base URL; then, for a person, the key it accepts and a command line to
paste into another terminal. Runs until interrupted (Ctrl-C or SIGTERM). A port that is taken
is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._config import Faults, Timeline
from ._http import LOCAL_HOSTS
from .server import FakeKlingServer

__all__ = ["DEFAULT_API_KEY", "main", "parse_args", "serve"]

DEFAULT_API_KEY = "test-key"
"""The key the emulator accepts unless told another with ``--api-key``."""


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0: any free port), got {port}")
    return port


def _number(low: float, high: float = math.inf, *, whole: bool = False) -> Callable[[str], Any]:
    """An argparse type: a number in [low, high] (a typo is an error line, not a traceback)."""

    def parse(text: str) -> float | int:
        value: float | int = int(text) if whole else float(text)
        if not (math.isfinite(value) and low <= value <= high):
            bound = f"from {low:g} to {high:g}" if math.isfinite(high) else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = "whole number" if whole else "number"  # argparse's "invalid <name> value"
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m kling_async.testing", description="Run a local Kling API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", choices=sorted(LOCAL_HOSTS))
    parser.add_argument("--port", type=_port, default=8765, help="API port (0: any free port)")
    parser.add_argument("--cdn-port", type=_port, default=0, help="CDN port (0: any free port)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--access-key", default=None, help="accept JWTs issued for this key")
    parser.add_argument("--secret-key", default=None, help="HS256 secret for --access-key")
    parser.add_argument("--queue-seconds", type=_number(0), default=2.0)
    parser.add_argument("--processing-seconds", type=_number(0), default=8.0)
    parser.add_argument("--fail-rate", type=_number(0, 1), default=0.0)
    parser.add_argument(
        "--max-active", type=_number(1, whole=True), default=None, help="task slots (429/1303)"
    )
    parser.add_argument("--rate", type=_number(1e-9), default=None, help="requests/s (429/1302)")
    parser.add_argument(
        "--fault-rate", type=_number(0, 1), default=0.0, help="random fault probability"
    )
    parser.add_argument(
        "--create-answer-delay",
        type=_number(0),
        default=0.0,
        help="seconds each create's answer is held after the task is recorded",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gateway-errors", action="store_true", help="CometAPI auth errors")
    parser.add_argument("--wrap-queries", action="store_true", help="gateway-wrapped queries")
    parser.add_argument(
        "--restamp-answers",
        action="store_true",
        help="updated_at of each query answer is the time of the answer (no two alike)",
    )
    parser.add_argument(
        "--dialect",
        choices=("kling", "new-api"),
        default="kling",
        help="answer as Kling does, or as the new-api gateway's Kling relay",
    )
    parser.add_argument(
        "--gateway-poll-interval",
        type=float,
        default=1.0,
        help="new-api dialect: seconds between the gateway's polls of its upstream",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run the emulator described by *args* until SIGINT or SIGTERM."""
    server = FakeKlingServer(
        api_key=args.api_key,
        access_key=args.access_key,
        secret_key=args.secret_key,
        host=args.host,
        port=args.port,
        cdn_port=args.cdn_port,
        timeline=Timeline(
            queue_seconds=args.queue_seconds,
            processing_seconds=args.processing_seconds,
            fail_rate=args.fail_rate,
            seed=args.seed,
        ),
        faults=Faults(
            rate=args.fault_rate, seed=args.seed, create_answer_delay=args.create_answer_delay
        ),
        max_active_tasks=args.max_active,
        rate_limit=args.rate,
        gateway_errors=args.gateway_errors,
        wrap_queries=args.wrap_queries,
        restamp_answers=args.restamp_answers,
        seed=args.seed,
        dialect=args.dialect,
        gateway_poll_interval=args.gateway_poll_interval,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers; Ctrl-C then surfaces as KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with server:
        sys.stdout.write(f"{server.url}\n{server.cdn_url}\n")
        sys.stdout.flush()
        sys.stdout.write(usage_lines(server.url, args.api_key))
        sys.stdout.flush()
        await stop.wait()


def usage_lines(url: str, api_key: str) -> str:
    """What a person needs to use the emulator from another terminal.

    Only the default key is shown: a key the user chose may be a real one they reuse, and
    secrets are never printed.
    """
    key = api_key if api_key == DEFAULT_API_KEY else "KEY"
    told = f"api key: {key}" if key == api_key else "api key: the --api-key you gave"
    return (
        f"{told}\n"
        "in another terminal:\n"
        f"  kling-async --provider emulator --base-url {url} --api-key {key} "
        'generate "a red fox in the snow" -o out/\n'
        "Ctrl-C stops the emulator.\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
    except OSError as exc:
        # Typically the port is taken (a second emulator): one line, not a traceback.
        reason = exc.strerror or str(exc)
        sys.stderr.write(
            f"error: cannot listen on {args.host}:{args.port}: {reason} "
            "(another emulator running? --port 0 picks a free port)\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
