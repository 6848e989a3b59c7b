"""Run the emulator from a shell: ``python -m kling_async.testing --port 8765``.

The first line of stdout is the API base URL (flushed at once) so that a parent process can read
it; the second is the CDN base URL. Runs until interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from ._config import Faults, Timeline
from ._http import LOCAL_HOSTS
from .server import FakeKlingServer

__all__ = ["main", "parse_args", "serve"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m kling_async.testing", description="Run a local Kling API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", choices=sorted(LOCAL_HOSTS))
    parser.add_argument("--port", type=int, default=8765, help="API port (0: any free port)")
    parser.add_argument("--cdn-port", type=int, default=0, help="CDN port (0: any free port)")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--access-key", default=None, help="accept JWTs issued for this key")
    parser.add_argument("--secret-key", default=None, help="HS256 secret for --access-key")
    parser.add_argument("--queue-seconds", type=float, default=2.0)
    parser.add_argument("--processing-seconds", type=float, default=8.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--max-active", type=int, default=None, help="task slots (429/1303)")
    parser.add_argument("--rate", type=float, default=None, help="requests/s (429/1302)")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="random fault probability")
    parser.add_argument(
        "--create-answer-delay",
        type=float,
        default=0.0,
        help="seconds each create's answer is held after the task is recorded",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gateway-errors", action="store_true", help="CometAPI auth errors")
    parser.add_argument("--wrap-queries", action="store_true", help="gateway-wrapped queries")
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
        seed=args.seed,
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
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
