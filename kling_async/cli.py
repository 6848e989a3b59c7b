"""The ``kling-async`` command: generate one video, run resumable batches, check tasks, demo.

Connection options (``--api-key``, ``--access-key``/``--secret-key``, ``--base-url``,
``--provider``) may be given before or after the sub-command. Keys fall back to
``$COMETAPI_KEY`` (or ``$KLING_ACCESS_KEY`` and ``$KLING_SECRET_KEY``) and are never printed.

Exit codes: 0 success; 1 a task failed, is uncertain or unfinished, or the server refused; 2 bad
usage or input (nothing was submitted); 130 interrupted (a batch resumes when run again).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
from rich.console import Console

from .batch import Batch, BatchResult
from .client import ENV_BASE_URL, KlingClient
from .errors import (
    ConfigurationError,
    KlingError,
    NotFoundError,
    TaskFailedError,
    WaitTimeoutError,
)
from .journal import InMemoryJournal, SqliteJournal
from .kinds import KINDS
from .limiter import RateLimit
from .models import CameraConfig, CameraControl, MultiPrompt, TextToVideo
from .progress import batch_display, summary_table, task_display
from .providers import COMETAPI, KLING, Provider, local_emulator
from .retry import RetryPolicy
from .scheduler import PollPolicy
from .validation import RequestLimits

__all__ = ["InputError", "cli", "load_items", "main"]

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

_JOURNAL_NAME = ".kling-journal.sqlite3"
_REQUEST_FIELDS = frozenset(field.name for field in attrs.fields(TextToVideo))
_BOOL_FIELDS = frozenset({"watermark", "multi_shot"})
_FLOAT_FIELDS = frozenset({"cfg_scale"})
_JSON_FIELDS = frozenset({"camera_control", "multi_prompt"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# The emulator is local: poll and retry on its compressed time scale, not the real API's.
_EMULATOR_POLL = PollPolicy(first_delay=0.1, min_interval=0.1, max_interval=1.0)
_EMULATOR_RETRY = RetryPolicy(base=0.1, cap=1.0)


# -- input files ------------------------------------------------------------------------------


class InputError(Exception):
    """An input file has bad lines; nothing may be submitted.

    Attributes:
        problems: one ``file:line: reason`` text per bad line.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _request_from(fields: Mapping[str, Any]) -> TextToVideo:
    """Build a :class:`TextToVideo` from a JSON-like object (``key`` already removed)."""
    unknown = sorted(set(fields) - _REQUEST_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    kwargs = dict(fields)
    camera = kwargs.get("camera_control")
    if isinstance(camera, Mapping):
        config = camera.get("config")
        extra = sorted(set(camera) - {"type", "config"})
        if extra:
            raise ValueError(f"camera_control: unknown field(s): {', '.join(extra)}")
        camera_type: Any = camera.get("type")  # CameraControl checks it
        kwargs["camera_control"] = CameraControl(
            type=camera_type,
            config=CameraConfig(**config) if isinstance(config, Mapping) else config,
        )
    shots = kwargs.get("multi_prompt")
    if isinstance(shots, list):
        kwargs["multi_prompt"] = [
            MultiPrompt(**shot) if isinstance(shot, Mapping) else shot for shot in shots
        ]
    return TextToVideo(**kwargs)


def _csv_value(name: str, text: str) -> Any:
    if name in _BOOL_FIELDS:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{name}: expected true or false, got {text!r}")
    if name in _FLOAT_FIELDS:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name}: expected a number, got {text!r}") from None
    if name in _JSON_FIELDS:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{name}: not valid JSON ({exc})") from None
    return text


def _rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """``(line number, object or error text)`` per non-empty input line."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield number, f"not valid JSON ({exc})"
                continue
            if not isinstance(value, dict):
                yield number, f"expected a JSON object, got {type(value).__name__}"
                continue
            yield number, value
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            return
        for row in reader:
            number = reader.line_num
            if None in row:
                yield number, "more cells than header columns"
                continue
            values: dict[str, Any] = {}
            try:
                for name, cell in row.items():
                    if cell is None or cell == "":
                        continue
                    values[name] = cell if name == "key" else _csv_value(name, cell)
            except ValueError as exc:
                yield number, str(exc)
                continue
            if values:
                yield number, values
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield number, {"prompt": line.strip()}


def load_items(path: Path, limits: RequestLimits) -> list[tuple[str, TextToVideo]]:
    """Read and validate a whole prompts file: ``.txt``, ``.jsonl`` or ``.csv``.

    * ``.txt``: one prompt per non-empty line.
    * ``.jsonl``: one object per line with any :class:`TextToVideo` field (``camera_control``
      nested) and an optional ``key``.
    * ``.csv``: a header row of field names (``key`` optional); nested fields as JSON text.

    An item's key is its ``key`` or ``line-NNNN`` from its line number, so it stays the same
    when the file is read again.

    Args:
        path: the file.
        limits: the provider's request limits, checked for every line.

    Returns:
        ``(key, request)`` per item, in file order.

    Raises:
        InputError: listing ``file:line: reason`` for every bad line (or an empty file).
        OSError: the file cannot be read.
        UnicodeDecodeError: the file is not UTF-8 text.
    """
    text = path.read_text(encoding="utf-8-sig")
    items: list[tuple[str, TextToVideo]] = []
    problems: list[str] = []
    keys: dict[str, int] = {}
    for number, row in _rows(path, text):
        where = f"{path}:{number}"
        if isinstance(row, str):
            problems.append(f"{where}: {row}")
            continue
        fields = dict(row)
        key = fields.pop("key", None)
        if key is None:
            key = f"line-{number:04d}"
        elif not isinstance(key, str) or not key.strip():
            problems.append(f"{where}: key must be a non-empty string")
            continue
        if key in keys:
            problems.append(f"{where}: duplicate key {key!r} (first on line {keys[key]})")
            continue
        keys[key] = number
        try:
            request = _request_from(fields)
            limits.check(request)
        except (TypeError, ValueError, KlingError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        items.append((key, request))
    if not items and not problems:
        problems.append(f"{path}: no prompts found")
    if problems:
        raise InputError(problems)
    return items


# -- connection options -----------------------------------------------------------------------


@attrs.frozen
class _Connection:
    api_key: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    base_url: str | None = None
    provider: str | None = None

    def merged(self, other: _Connection) -> _Connection:
        """These options, with *other*'s (given after the sub-command) taking precedence."""
        return _Connection(
            **{
                field.name: getattr(other, field.name) or getattr(self, field.name)
                for field in attrs.fields(_Connection)
            }
        )

    def resolve(self) -> tuple[Provider, str | None]:
        """The provider, and the base URL to hand to the client (``None``: the provider's)."""
        name = self.provider or "cometapi"
        if name == "emulator":
            base = self.base_url or os.environ.get(ENV_BASE_URL)
            if not base:
                raise click.UsageError(
                    f"--provider emulator needs --base-url (or ${ENV_BASE_URL}): the URL the "
                    "emulator printed"
                )
            if not base.startswith(("http://", "https://")):
                raise click.UsageError(f"--base-url must start with http:// or https://: {base}")
            return local_emulator(base), None
        return (KLING if name == "kling" else COMETAPI), self.base_url

    def client(self, *, max_active: int | None = None, rate: float | None = None) -> KlingClient:
        """A client for these options; bad or missing credentials are usage errors."""
        provider, base_url = self.resolve()
        options: dict[str, Any] = {}
        if rate is not None:
            options["rate"] = RateLimit(rate, burst=max(1, int(rate)))
        if provider.name == "emulator":
            options.update(poll=_EMULATOR_POLL, retry=_EMULATOR_RETRY)
        try:
            return KlingClient(
                api_key=self.api_key,
                access_key=self.access_key,
                secret_key=self.secret_key,
                provider=provider,
                base_url=base_url,
                max_active_tasks=max_active,
                **options,
            )
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from None


def _connection_options(function: _F) -> _F:
    options = [
        click.option("--api-key", help="CometAPI or Kling API key (default: $COMETAPI_KEY)."),
        click.option("--access-key", help="Kling access key (default: $KLING_ACCESS_KEY)."),
        click.option("--secret-key", help="Kling secret key (default: $KLING_SECRET_KEY)."),
        click.option("--base-url", help=f"Another API host (default: ${ENV_BASE_URL})."),
        click.option(
            "--provider",
            type=click.Choice(["cometapi", "kling", "emulator"]),
            help="Which API: cometapi (default), kling, or emulator (needs --base-url).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _connection(ctx: click.Context, **given: Any) -> _Connection:
    outer = ctx.find_object(_Connection) or _Connection()
    return outer.merged(_Connection(**given))


def _console() -> Console:
    stream = sys.stdout
    if getattr(stream, "isatty", lambda: False)():
        return Console(file=stream)
    # Piped or captured: plain text, no ANSI codes, and wide enough that ids are not cut.
    return Console(file=stream, force_terminal=False, no_color=True, width=200)


def _resume_hint() -> str:
    return "interrupted; run the same command again to resume"


def _run(
    coroutine: Coroutine[Any, Any, _T], *, on_interrupt: Callable[[], str] = _resume_hint
) -> _T:
    """Run *coroutine*, turning library errors into clear messages and exit codes.

    *on_interrupt* says what Ctrl-C leaves behind; the default suits the journaled commands.
    """
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        click.echo(on_interrupt(), err=True)
        raise SystemExit(130) from None
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    except KlingError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


# -- commands ---------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_connection_options
@click.option("-v", "--verbose", is_flag=True, help="Log retries, slot and rate-limit decisions.")
@click.pass_context
def cli(ctx: click.Context, /, verbose: bool, **given: Any) -> None:
    """Generate videos with Kling: one at a time, in resumable batches, or against an emulator."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        # The progress display already reports rate limits, retries and failures; library
        # warnings would only tear through it.
        logging.getLogger("kling_async").setLevel(logging.ERROR)
    ctx.obj = _Connection(**given)


@cli.command()
@click.argument("prompt")
@click.option("--model", "model_name", help="Model name, e.g. kling-v2-6.")
@click.option("--mode", type=click.Choice(["std", "pro"]), help="Quality mode.")
@click.option("--duration", default="5", show_default=True, help="Seconds.")
@click.option("--aspect-ratio", help="e.g. 16:9, 9:16, 1:1.")
@click.option("--negative-prompt", help="What to avoid.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="A file (out.mp4) or a folder.",
)
@click.option("--timeout", type=float, default=1800.0, show_default=True, help="Seconds to wait.")
@_connection_options
@click.pass_context
def generate(
    ctx: click.Context,
    /,
    prompt: str,
    model_name: str | None,
    mode: str | None,
    duration: str,
    aspect_ratio: str | None,
    negative_prompt: str | None,
    output: Path,
    timeout: float,
    **given: Any,
) -> None:
    """Generate one video from PROMPT and download it."""
    connection = _connection(ctx, **given)
    provider, _ = connection.resolve()
    try:
        request = TextToVideo(
            prompt=prompt,
            model_name=model_name,
            mode=mode,  # type: ignore[arg-type]  # click.Choice restricts it
            duration=duration,
            aspect_ratio=aspect_ratio,
            negative_prompt=negative_prompt,
        )
        provider.limits.check(request)
    except (ValueError, KlingError) as exc:
        raise click.UsageError(str(exc)) from None
    console = _console()
    submitted: list[str] = []

    def interrupted() -> str:
        # generate keeps no journal: running it again would pay for a second task.
        if submitted:
            task_id = submitted[0]
            return (
                f"interrupted; task {task_id} keeps running on the server: check it with "
                f"kling-async status {task_id} (running generate again pays for a new task)"
            )
        return (
            "interrupted while submitting; a task may have been created "
            "(running generate again pays for a new one)"
        )

    code = _run(
        _generate(connection, request, output, timeout, console, submitted),
        on_interrupt=interrupted,
    )
    ctx.exit(code)


async def _generate(
    connection: _Connection,
    request: TextToVideo,
    output: Path,
    timeout: float,
    console: Console,
    submitted: list[str],
) -> int:
    async with connection.client() as client:
        display = task_display(console, "generating")
        client.events.add(display.event)
        with display:
            task = await client.submit(request)
            submitted.append(task.id)
            try:
                done = await client.wait(task, timeout=timeout)
            except TaskFailedError as exc:
                display.note(f"task {task.id} failed: {exc.task.status_msg or 'no reason given'}")
                return 1
            except WaitTimeoutError:
                display.note(
                    f"task {task.id} is still running; check it with: kling-async status {task.id}"
                )
                return 1
            display.note("downloading")
            path = await client.download(done, output)
    console.print(f"saved {path}", highlight=False)
    return 0


@cli.command()
@click.argument(
    "prompts",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
)
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the videos (<key>.mp4).",
)
@click.option("--max-active", type=click.IntRange(min=1), help="Tasks running at once.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Requests per second.")
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Progress journal (default: OUT/{_JOURNAL_NAME}).",
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Overall seconds.")
@_connection_options
@click.pass_context
def batch(
    ctx: click.Context,
    /,
    prompts: Path,
    out_dir: Path,
    max_active: int | None,
    rate: float | None,
    journal_path: Path | None,
    timeout: float | None,
    **given: Any,
) -> None:
    """Generate a video per line of PROMPTS (.txt, .jsonl or .csv) into OUT; resumable.

    The whole file is checked first; any bad line is reported as file:line and nothing is
    submitted. Run the same command again after a crash or Ctrl-C to continue: tasks already
    created are polled, never paid for twice.
    """
    connection = _connection(ctx, **given)
    provider, _ = connection.resolve()
    try:
        items = load_items(prompts, provider.limits)
    except InputError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"{len(exc.problems)} problem(s); nothing was submitted", err=True)
        ctx.exit(2)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"cannot read {prompts}: {exc}") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.UsageError(f"cannot create {out_dir}: {exc}") from None
    journal = journal_path or out_dir / _JOURNAL_NAME
    client = connection.client(max_active=max_active, rate=rate)
    console = _console()
    concurrency = max(16, max_active or 0)
    result = _run(_batch(client, items, out_dir, journal, timeout, concurrency, console))
    _print_summary(console, result, out_dir)
    ctx.exit(0 if result.ok else 1)


async def _batch(
    client: KlingClient,
    items: list[tuple[str, TextToVideo]],
    out_dir: Path,
    journal_path: Path,
    timeout: float | None,
    concurrency: int,
    console: Console,
    *,
    title: str = "batch",
) -> BatchResult:
    async with client, await SqliteJournal.open(journal_path) as journal:
        display = batch_display(console, len(items), title=title)
        client.events.add(display.event)
        with display:
            runner = Batch(
                client,
                journal,
                out_dir,
                timeout=timeout,
                concurrency=concurrency,
                on_entry=display.entry,
            )
            return await runner.run(items)


def _print_summary(console: Console, result: BatchResult, out_dir: Path) -> None:
    console.print(summary_table(result.entries))
    console.print(
        f"{result.succeeded} succeeded, {result.failed} failed, {result.uncertain} uncertain, "
        f"{result.incomplete} unfinished; files in {out_dir}",
        highlight=False,
    )
    if result.uncertain or result.incomplete:
        console.print(
            "run the same command again to continue (uncertain creates are looked up first)",
            highlight=False,
        )


@cli.command()
@click.argument("task_id")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default="text2video", show_default=True)
@_connection_options
@click.pass_context
def status(ctx: click.Context, /, task_id: str, kind: str, **given: Any) -> None:
    """Show a task's status, message and video URLs."""
    connection = _connection(ctx, **given)
    client = connection.client()
    console = _console()
    ctx.exit(_run(_status(client, task_id, kind, console)))


async def _status(client: KlingClient, task_id: str, kind: str, console: Console) -> int:
    async with client:
        try:
            task = await client.get_task(task_id, kind)
        except NotFoundError as exc:
            click.echo(f"error: no such task: {exc}", err=True)
            return 1
    lines = [
        f"task:     {task.id}",
        f"kind:     {task.kind.name}",
        f"status:   {task.raw_status or task.status.value}",
    ]
    if task.status_msg:
        lines.append(f"message:  {task.status_msg}")
    if task.external_task_id:
        lines.append(f"external: {task.external_task_id}")
    if task.created_at:
        lines.append(f"created:  {task.created_at.isoformat()}")
    if task.updated_at:
        lines.append(f"updated:  {task.updated_at.isoformat()}")
    for video in task.videos:
        seconds = f" ({video.duration:g}s)" if video.duration else ""
        lines.append(f"video:    {video.url}{seconds}")
        if video.watermark_url:
            lines.append(f"  watermarked: {video.watermark_url}")
    for line in lines:
        console.print(line, highlight=False, markup=False)
    return 0


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.option("--port", type=int, default=8765, show_default=True, help="API port (0: any).")
@click.argument("emulator_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def emulator(ctx: click.Context, port: int, emulator_args: tuple[str, ...]) -> None:
    """Run the local Kling API emulator (options as python -m kling_async.testing --help).

    The first line printed is the API URL; use it with --provider emulator --base-url URL.
    """
    from .testing.__main__ import main as emulator_main

    args = ["--port", str(port), *emulator_args]
    connection = ctx.find_object(_Connection)
    if connection is not None and connection.api_key and "--api-key" not in emulator_args:
        args += ["--api-key", connection.api_key]
    ctx.exit(emulator_main(args))


_DEMO_PROMPTS = (
    "A red fox trotting through fresh snow at dawn",
    "Waves rolling onto a black sand beach, aerial view",
    "A paper boat drifting down a rainy city gutter",
    "Time-lapse of clouds over a mountain lake",
    "A cat watching goldfish in a bowl, close-up",
    "Neon signs reflecting in puddles at night",
    "A hot air balloon rising over vineyards",
    "Steam curling from a cup of coffee by a window",
    "A hummingbird hovering at a red flower, slow motion",
    "Autumn leaves swirling in a courtyard",
    "A lighthouse beam sweeping across a stormy sea",
    "Children flying kites on a windy hill",
    "A train crossing a stone viaduct in the fog",
    "Fireflies in a forest clearing at dusk",
    "A chef tossing vegetables in a flaming wok",
    "Snow falling on a quiet village street",
    "A sailboat gliding past icebergs",
    "Lanterns floating on a river at night",
    "A dog shaking off water after a swim",
    "Sunflowers turning towards the morning sun",
)
_DEMO_FAIL = "A forbidden scene (FAIL: the emulator rejects prompts containing FAIL)"


def _demo_items(count: int) -> list[tuple[str, TextToVideo]]:
    items: list[tuple[str, TextToVideo]] = []
    for index in range(count):
        prompt = _DEMO_PROMPTS[index % len(_DEMO_PROMPTS)]
        if index == count // 2:
            prompt = _DEMO_FAIL
        items.append((f"demo-{index + 1:02d}", TextToVideo(prompt=prompt, duration="5")))
    return items


@cli.command()
@click.option("--count", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
)
@click.pass_context
def demo(ctx: click.Context, count: int, out_dir: Path) -> None:
    """Run a batch against an in-process emulator with realistic timings and faults.

    Nothing leaves this machine: the emulator listens on 127.0.0.1 only.
    """
    console = _console()
    result = _run(_demo(count, out_dir, console))
    _print_summary(console, result, out_dir)
    console.print(
        "Some failures are expected: the emulator fails ~5% of tasks at random, and one prompt "
        "contains FAIL, which it always rejects (as content moderation would). It also injects "
        "faults (HTTP 500/503, connections dropped before and after a create is recorded) and "
        "enforces a rate limit and 5 task slots; none of those cost a duplicate task.",
        highlight=False,
    )
    console.print(f"videos: {out_dir.resolve()}", highlight=False)
    ctx.exit(0)


async def _demo(count: int, out_dir: Path, console: Console) -> BatchResult:
    # Imported here: the emulator is test support, not needed by the other commands.
    from .testing import FakeKlingServer, Faults, Timeline

    key = secrets.token_hex(16)
    server = FakeKlingServer(
        api_key=key,
        timeline=Timeline(
            queue_seconds=1.0, processing_seconds=3.5, jitter=0.45, fail_rate=0.05, seed=11
        ),
        faults=Faults(
            rate=0.05,
            kinds=("500", "503", "drop_before_create", "drop_after_create"),
            seed=5,
        ),
        max_active_tasks=5,
        rate_limit=6.0,
        rate_burst=6,
    )
    async with server:
        client = KlingClient(
            api_key=key,
            provider=local_emulator(server.url),
            max_active_tasks=5,
            poll=PollPolicy(first_delay=0.5, min_interval=0.5, max_interval=1.5),
            retry=RetryPolicy(base=0.2, cap=2.0),
        )
        console.print(
            f"emulator on {server.url}: {count} prompts, 5 task slots, ~6 requests/s, faults on",
            highlight=False,
        )
        async with client, InMemoryJournal() as journal:
            display = batch_display(console, count, title="demo")
            client.events.add(display.event)
            with display:
                runner = Batch(client, journal, out_dir, on_entry=display.entry)
                return await runner.run(_demo_items(count))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``kling-async`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="kling-async")


if __name__ == "__main__":
    main()
