"""The ``kling-async`` command: generate one video, run resumable batches, check tasks, demo.

Connection options (``--api-key``, ``--access-key``/``--secret-key``, ``--base-url``,
``--provider``) may be given before or after the sub-command. Keys fall back to
``$COMETAPI_KEY`` (or ``$KLING_ACCESS_KEY`` and ``$KLING_SECRET_KEY``) and are never printed.

Exit codes: 0 success; 1 a task failed, is uncertain or unfinished, or the server refused; 2 bad
usage or input (nothing was submitted); 3 a file could not be written (disk full, file-size limit,
unwritable folder or journal; a batch resumes when run again); 4 the journal is in use by another
run; 130 interrupted (a batch resumes when run again).

The commands live here; reading input files, connection options, running a command and the demo
each have a private module beside this one. What stays (a little over 500 lines, on purpose)
is the command table: one function per command under its click options, read as a whole.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ._cli_connection import Connection, connection_from, connection_options
from ._cli_demo import run_demo
from ._cli_input import InputError, image_field, load_items
from ._cli_run import (
    EXIT_FAILED,
    EXIT_JOURNAL_BUSY,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    rerun_command,
    run,
    stdout_console,
)
from ._download_files import check_destination
from .batch import Batch, BatchResult
from .cli_postgres import format_status, journal_status, run_worker
from .client import KlingClient
from .errors import KlingError, NotFoundError, StorageError, TaskFailedError, WaitTimeoutError
from .events import Event, TaskSubmitted
from .journal import SqliteJournal
from .journal_postgres import BatchStatus, is_postgres_url
from .kinds import KINDS, build_request
from .models import TaskRequest
from .progress import batch_display, summary_table, task_display

__all__ = [
    "EXIT_FAILED",
    "EXIT_JOURNAL_BUSY",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "InputError",
    "cli",
    "load_items",
    "main",
]

_JOURNAL_NAME = ".kling-journal.sqlite3"


# -- commands ---------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
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
        # The PostgreSQL driver's pool logs each failed connection attempt; the journal retries
        # and reports what matters in one line.
        logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    ctx.obj = Connection(**given)


@cli.command()
@click.argument("prompt", required=False)
@click.option(
    "--kind",
    type=click.Choice(["text2video", "image2video"]),
    default="text2video",
    show_default=True,
    help="What to make the video from (batch files take every kind).",
)
@click.option(
    "--image",
    help="image2video: the first frame, a local .png/.jpg (sent as base64) or an http(s) URL.",
)
@click.option("--model", "model_name", help="Model name, e.g. kling-v2-6.")
@click.option("--mode", type=click.Choice(["std", "pro"]), help="Quality mode.")
@click.option("--duration", default="5", show_default=True, help="Seconds.")
@click.option("--aspect-ratio", help="e.g. 16:9, 9:16, 1:1.")
@click.option("--negative-prompt", help="What to avoid.")
@click.option(
    "-o",
    "--output",
    # A str, not a Path: Path("out/") drops the slash that says "a folder".
    type=click.Path(),
    default=".",
    show_default=True,
    help="A file (out.mp4), or a folder: an existing one or a name ending in /.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=1800.0,
    show_default=True,
    help="Seconds to wait.",
)
@connection_options
@click.pass_context
def generate(
    ctx: click.Context,
    /,
    prompt: str | None,
    kind: str,
    image: str | None,
    model_name: str | None,
    mode: str | None,
    duration: str,
    aspect_ratio: str | None,
    negative_prompt: str | None,
    output: str,
    timeout: float,
    **given: Any,
) -> None:
    """Generate one video from PROMPT (and, with --kind image2video, an --image) and download it."""
    connection = connection_from(ctx, **given)
    provider, _ = connection.resolve()
    fields: dict[str, Any] = {
        "prompt": prompt,
        "model_name": model_name,
        "mode": mode,
        "duration": duration,
        "aspect_ratio": aspect_ratio,
        "negative_prompt": negative_prompt,
    }
    if kind == "image2video":
        if image is None:
            raise click.UsageError("--kind image2video needs --image (a file or an http(s) URL)")
        fields["image"] = image_field(image)
    elif image is not None:
        raise click.UsageError("--image goes with --kind image2video")
    try:
        request = build_request(kind, {name: value for name, value in fields.items() if value})
        provider.limits.check(request)
    except (ValueError, KlingError) as exc:
        raise click.UsageError(str(exc)) from None
    console = stdout_console()
    submitted: list[str] = []

    def interrupted() -> str:
        # generate keeps no journal: running it again would pay for a second task.
        if submitted:
            task_id = submitted[0]
            return (
                f"interrupted; task {task_id} keeps running on the server: check it with "
                f"{_status_hint(task_id, kind, connection)} (running generate again pays for a "
                "new task)"
            )
        return (
            "interrupted while submitting; a task may have been created "
            "(running generate again pays for a new one)"
        )

    code = run(
        _generate(connection, request, kind, output, timeout, console, submitted),
        on_interrupt=interrupted,
    )
    ctx.exit(code)


def _status_hint(task_id: str, kind: str, connection: Connection) -> str:
    """The ``kling-async status`` line that finds *task_id* again, on the same API."""
    words = ["kling-async status", shlex.quote(task_id)]
    if kind != "text2video":
        words.append(f"--kind {kind}")
    options = connection.repeatable()
    return " ".join([*words, options] if options else words)


async def _generate(
    connection: Connection,
    request: TaskRequest,
    kind: str,
    output: str,
    timeout: float,
    console: Console,
    submitted: list[str],
) -> int:
    # Before anything is paid for: a destination that cannot be written fails now.
    await check_destination(output)
    async with connection.client() as client:

        def note_task(event: Event) -> None:
            # From the event, not from submit()'s return: a Ctrl-C that lands in between (on
            # Python 3.10 it raises wherever the code is) must still name the task.
            if isinstance(event, TaskSubmitted) and not submitted:
                submitted.append(event.task.id)

        client.events.add(note_task)  # first, so that it runs before the display
        display = task_display(console, "generating")
        client.events.add(display.event)
        with display:
            task = await client.submit(request)
            hint = _status_hint(task.id, kind, connection)
            try:
                done = await client.wait(task, timeout=timeout)
            except TaskFailedError as exc:
                display.note(f"task {task.id} failed: {exc.task.status_msg or 'no reason given'}")
                return 1
            except WaitTimeoutError:
                display.note(f"task {task.id} is still running; check it with: {hint}")
                return 1
            except KlingError:
                display.note(f"task {task.id} was created; check it with: {hint}")
                raise
            display.note("downloading")
            try:
                path = await client.download(done, output)
            except KlingError:
                display.note(f"task {task.id} succeeded; its video URLs: {hint}")
                raise
    console.print(f"saved {path.resolve()}", highlight=False, markup=False)
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
    help=f"Progress journal: a file (default: OUT/{_JOURNAL_NAME}), or a postgresql:// URL to "
    "share the batch with other workers.",
)
@click.option(
    "--batch-name",
    help="The batch's name in a postgresql:// journal (default: the PROMPTS file's name).",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="postgresql:// journal: seconds a dead worker's items wait before others adopt them.",
)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Overall seconds.")
@connection_options
@click.pass_context
def batch(
    ctx: click.Context,
    /,
    prompts: Path,
    out_dir: Path,
    max_active: int | None,
    rate: float | None,
    journal_path: str | None,
    batch_name: str | None,
    lease: float,
    timeout: float | None,
    **given: Any,
) -> None:
    """Generate a video per line of PROMPTS (.txt, .jsonl or .csv) into OUT; resumable.

    The whole file is checked first; any bad line is reported as file:line and nothing is
    submitted. Run the same command again after a crash or Ctrl-C to continue: tasks already
    created are polled, never paid for twice. With a postgresql:// journal this runs one worker
    of a shared batch: start it on several hosts (or several times) to share the work.
    """
    shared = journal_path is not None and is_postgres_url(journal_path)
    if batch_name is not None and not shared:
        raise click.UsageError("--batch-name needs a postgresql:// --journal")
    connection = connection_from(ctx, **given)
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
    rerun = rerun_command(
        connection,
        prompts,
        out_dir,
        {
            "--journal": journal_path,
            "--batch-name": batch_name,
            "--max-active": max_active,
            "--rate": rate,
            "--timeout": timeout,
        },
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error = StorageError.from_os_error(str(out_dir), exc, action="cannot create")
        click.echo(f"error: {error}; nothing was submitted", err=True)
        ctx.exit(EXIT_STORAGE)
    client = connection.client(max_active=max_active, rate=rate)
    console = stdout_console()
    concurrency = max(16, max_active or 0)
    if shared:
        assert journal_path is not None  # noqa: S101 - shared implies it
        worker = run_worker(
            client,
            items,
            out_dir,
            journal_path,
            batch_name or prompts.name,
            lease=lease,
            timeout=timeout,
            concurrency=concurrency,
            console=console,
        )
        result = run(worker, rerun=rerun)
    else:
        journal = Path(journal_path) if journal_path else out_dir / _JOURNAL_NAME
        result = run(
            _batch(client, items, out_dir, journal, timeout, concurrency, console), rerun=rerun
        )
    _print_summary(console, result, out_dir)
    ctx.exit(0 if result.ok else 1)


async def _batch(
    client: KlingClient,
    items: list[tuple[str, TaskRequest]],
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
@click.argument("task_id", required=False)
@click.option("--kind", type=click.Choice(sorted(KINDS)), default="text2video", show_default=True)
@click.option("--journal", "journal_url", help="A postgresql:// journal: show its batches.")
@click.option("--batch-name", help="Only this batch of the --journal.")
@connection_options
@click.pass_context
def status(
    ctx: click.Context,
    /,
    task_id: str | None,
    kind: str,
    journal_url: str | None,
    batch_name: str | None,
    **given: Any,
) -> None:
    """Show a task's status, message and video URLs; or, with --journal, a shared batch's
    progress (counts by state, live workers, throughput, ETA, failures)."""
    if journal_url is not None:
        if task_id is not None or not is_postgres_url(journal_url):
            raise click.UsageError("status --journal takes a postgresql:// URL and no TASK_ID")
        _print_journal_status(run(journal_status(journal_url, batch_name)), stdout_console())
        return
    if task_id is None:
        raise click.UsageError("give a TASK_ID, or --journal postgresql://... for a batch")
    connection = connection_from(ctx, **given)
    client = connection.client()
    console = stdout_console()
    ctx.exit(run(_status(client, task_id, kind, console)))


def _print_journal_status(batches: list[BatchStatus], console: Console) -> None:
    if not batches:
        console.print("no batches in this journal", highlight=False)
    for batch_status in batches:
        for line in format_status(batch_status):
            console.print(line, highlight=False, markup=False)


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


@cli.command()
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True)
@connection_options
@click.pass_context
def account(ctx: click.Context, /, days: int, **given: Any) -> None:
    """Show the account's resource packs and what is left (Kling direct: --provider kling)."""
    client = connection_from(ctx, **given).client()
    ctx.exit(run(_account(client, days, stdout_console())))


async def _account(client: KlingClient, days: int, console: Console) -> int:
    end = datetime.now(timezone.utc)
    async with client:
        costs = await client.account_costs(start=end - timedelta(days=days), end=end)
    if not costs.packs:
        console.print("no resource packs", highlight=False)
    for pack in costs.packs:
        until = f", until {pack.expires_at.date().isoformat()}" if pack.expires_at else ""
        console.print(
            f"{pack.name or pack.id or '?'}: {pack.remaining or 0:g} of {pack.total or 0:g} "
            f"left ({pack.status or 'unknown'}{until})",
            highlight=False,
            markup=False,
        )
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

    It prints the API URL, the key it accepts and a command line to paste into another
    terminal: --provider emulator --base-url URL --api-key KEY.
    """
    from .testing.__main__ import main as emulator_main

    args = ["--port", str(port), *emulator_args]
    connection = ctx.find_object(Connection)
    if connection is not None and connection.api_key and "--api-key" not in emulator_args:
        args += ["--api-key", connection.api_key]
    ctx.exit(emulator_main(args))


@cli.command()
@click.option("--count", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
)
@click.option(
    "--dialect",
    type=click.Choice(["kling", "new-api"]),
    default="kling",
    show_default=True,
    help="Answer as Kling does, or as a gateway running new-api's Kling relay.",
)
@click.pass_context
def demo(ctx: click.Context, count: int, out_dir: Path, dialect: str) -> None:
    """Run a batch against an in-process emulator with realistic timings and faults.

    Nothing leaves this machine: the emulator listens on 127.0.0.1 only. With
    ``--dialect new-api`` the emulator answers as the new-api gateway's Kling relay does, and the
    client talks to it as to CometAPI, with no setting for the dialect.
    """
    console = stdout_console()
    result = run(run_demo(count, out_dir, console, dialect))
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


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``kling-async`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="kling-async")


if __name__ == "__main__":
    main()
