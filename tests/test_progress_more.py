"""Progress displays: the counts, the plain log lines for pipes, the rich bar, the summary table."""

from __future__ import annotations

import io
import re
from pathlib import Path

import attrs
from rich.console import Console

import kling_async as kling
from kling_async.batch import Batch
from kling_async.errors import ConcurrencyLimitError, RateLimitError, ServerError
from kling_async.events import (
    ConcurrencyLimited,
    RateLimited,
    Retrying,
    TaskExpired,
    TaskFinished,
    TaskPolled,
    TaskSubmitted,
)
from kling_async.journal import InMemoryJournal, JournalEntry
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.limiter import RateLimit, TokenBucketLimiter
from kling_async.models import Task, TaskStatus
from kling_async.progress import (
    BatchTally,
    PlainBatchProgress,
    PlainTaskProgress,
    RichBatchProgress,
    RichTaskProgress,
    batch_display,
    summary_table,
    task_display,
)
from kling_async.testing import FakeKlingServer

from .conftest import API_KEY, FAST_POLL, FAST_RETRY

_RATE_LIMITED = RateLimitError("Request too fast", status=429, code=1302)
_SLOTS_FULL = ConcurrencyLimitError("parallel task over resource pack limit", status=429, code=1303)


def _entry(
    key: str,
    status: str,
    *,
    task_id: str | None = None,
    file_path: str | None = None,
    error: str | None = None,
) -> JournalEntry:
    return JournalEntry(
        key=key,
        external_task_id=f"ext-{key}",
        kind="text2video",
        request_json="{}",
        task_id=task_id,
        status=status,
        file_path=file_path,
        error=error,
    )


def _task(status: TaskStatus, message: str | None = None) -> Task:
    return Task(id="8001", kind=TEXT_TO_VIDEO, status=status, status_msg=message)


def _terminal(width: int = 120) -> tuple[Console, io.StringIO]:
    """A console that believes it is a terminal, without colours (so text stays contiguous)."""
    stream = io.StringIO()
    return Console(file=stream, force_terminal=True, color_system=None, width=width), stream


def _pipe(width: int = 200) -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=False, no_color=True, width=width), stream


# -- counts ----------------------------------------------------------------------------------


def test_tally_counts_created_only_for_items_with_a_task() -> None:
    """A refused create (failed, no task id) is failed but was never created on the server."""
    tally = BatchTally(5)
    tally.update(_entry("a", "created", task_id="1"))
    tally.update(_entry("b", "downloaded", task_id="2"))
    tally.update(_entry("c", "failed", task_id="3"))  # the task failed
    tally.update(_entry("d", "failed"))  # the create was refused
    tally.update(_entry("e", "uncertain"))
    assert (tally.created, tally.downloaded, tally.failed, tally.uncertain) == (3, 1, 2, 1)
    assert tally.done == 4  # all but the one still running
    assert tally.describe().startswith("created 3 · ")


def test_tally_refused_create_is_not_a_finished_task() -> None:
    """ "finished" is documented as items whose task has finished; a refused create has none."""
    tally = BatchTally(1)
    tally.update(_entry("d", "failed", error="create refused: bad prompt"))
    assert (tally.created, tally.failed) == (0, 1)
    assert tally.finished == 0


def test_tally_without_downloads_is_done_when_finished() -> None:
    """Not downloading: a succeeded item is done, and there is no downloaded count."""
    tally = BatchTally(2, download=False)
    assert tally.update(_entry("a", "created", task_id="1")) is None
    assert tally.update(_entry("a", "succeed", task_id="1")) == "created"
    tally.update(_entry("b", "created", task_id="2"))
    assert tally.done == 1
    assert tally.describe() == "created 2 · finished 1 · failed 0 · rate-limited 0"


def test_tally_tells_rate_limits_from_full_slots() -> None:
    """A 429 "too fast" is rate-limited; a 1303 retry is a retry; 1303 slot cuts count apart."""
    tally = BatchTally(1)
    tally.count(Retrying("POST videos/text2video", 1, 0.5, _RATE_LIMITED))
    tally.count(Retrying("POST videos/text2video", 2, 1.0, _SLOTS_FULL))
    tally.count(Retrying("GET videos/text2video/1", 1, 0.1, ServerError("boom", status=500)))
    tally.count(ConcurrencyLimited(limit=3))
    tally.count(RateLimited(delay=2.0, rate=1.0))  # its Retrying is what counts
    tally.count(TaskPolled(_task(TaskStatus.PROCESSING)))
    assert (tally.rate_limited, tally.retries, tally.concurrency_limited) == (1, 3, 1)
    assert tally.describe().endswith("rate-limited 1 · slot-limited 1 · retries 3")


# -- plain batch lines -----------------------------------------------------------------------


def test_plain_batch_lines_report_each_change_once() -> None:
    """One line per change of state; resumed entries and repeats are silent."""
    stream = io.StringIO()
    with PlainBatchProgress(stream, 5) as display:
        display.entry(_entry("old", "downloaded", task_id="9", file_path="out/old.mp4"))
        display.entry(_entry("a", "pending"))
        display.entry(_entry("a", "created", task_id="1"))
        display.entry(_entry("a", "created", task_id="1"))
        display.entry(_entry("a", "succeed", task_id="1"))
        display.entry(_entry("a", "downloaded", task_id="1", file_path="out/a.mp4"))
        display.entry(_entry("b", "pending"))
        display.entry(_entry("b", "created", task_id="2"))
        display.entry(_entry("b", "failed", task_id="2", error="content risk control"))
        display.entry(_entry("c", "pending"))
        display.entry(_entry("c", "uncertain"))
        display.entry(_entry("d", "created", task_id="4"))
        display.entry(_entry("d", "failed", task_id="4"))
    assert stream.getvalue().splitlines() == [
        "batch: 5 item(s)",
        "created a task 1",
        "finished a succeed",
        "downloaded a -> out/a.mp4",
        "created b task 2",
        "failed b: content risk control",
        "uncertain c: create outcome unknown",
        "failed d: failed",
        "batch: 5/5 done; created 4 · finished 4 · downloaded 2 · failed 2 · uncertain 1 · "
        "rate-limited 0",
    ]


def test_plain_batch_download_retry_is_not_reported_as_a_new_finish() -> None:
    """A downloaded entry set back to succeed (its file vanished) does not say "finished" again."""
    stream = io.StringIO()
    display = PlainBatchProgress(stream, 1)
    display.entry(_entry("a", "downloaded", task_id="1", file_path="a.mp4"))
    display.entry(_entry("a", "succeed", task_id="1"))
    assert stream.getvalue() == ""


def test_plain_batch_lines_for_rate_and_slot_limits() -> None:
    """Client events that slow the whole batch get a line; others are only counted."""
    stream = io.StringIO()
    display = PlainBatchProgress(stream, 1)
    display.event(RateLimited(delay=2.25, rate=0.5))
    display.event(ConcurrencyLimited(limit=3))
    display.event(Retrying("POST videos/text2video", 1, 0.5, _RATE_LIMITED))
    display.event(TaskSubmitted(_task(TaskStatus.SUBMITTED)))
    assert stream.getvalue().splitlines() == [
        "rate-limited: pausing 2.2s",
        "too many tasks running: using at most 3 slot(s)",
    ]
    assert display.tally.rate_limited == 1


async def test_plain_batch_display_fed_by_a_rate_limited_batch(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """Against a server answering 429 to quick creates: pause lines, and the counts at the end."""
    server.rate_limit_routes = ("create",)
    server.rate_limit = 10.0  # one create per 0.1 s; the other two are refused at first
    server.rate_burst = 1.0
    stream = io.StringIO()
    items = [(f"k{n}", kling.TextToVideo(prompt=f"prompt {n}")) for n in range(3)]
    display = PlainBatchProgress(stream, len(items))
    # The client's limiter reports its shared cool-downs to the display (0.1 s, not 1 s).
    limiter = TokenBucketLimiter(RateLimit(100.0, burst=10), cooldown=0.1, events=display.event)
    async with (
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=attrs.evolve(FAST_RETRY, max_retries=50),
            poll=FAST_POLL,
            limiter=limiter,
        ) as client,
        InMemoryJournal() as journal,
    ):
        client.events.add(display.event)
        with display:
            result = await Batch(client, journal, tmp_path, on_entry=display.entry).run(items)
    assert result.ok
    lines = stream.getvalue().splitlines()
    refused = server.stats.codes[1302]
    assert refused >= 1
    assert 1 <= lines.count("rate-limited: pausing 0.1s") <= refused
    assert display.tally.rate_limited == display.tally.retries == refused
    assert lines[-1] == (
        f"batch: 3/3 done; created 3 · finished 3 · downloaded 3 · failed 0 · "
        f"rate-limited {refused} · retries {refused}"
    )
    assert sorted(line.split()[1] for line in lines if line.startswith("downloaded ")) == [
        "k0",
        "k1",
        "k2",
    ]


# -- choosing a display ----------------------------------------------------------------------


def test_displays_are_plain_when_not_a_terminal() -> None:
    """Piped output gets plain lines written to the console's file; a terminal gets rich."""
    pipe, stream = _pipe()
    plain = batch_display(pipe, 2, download=False)
    assert isinstance(plain, PlainBatchProgress)
    assert plain.tally.download is False
    with plain:
        pass
    assert stream.getvalue().startswith("batch: 2 item(s)\n")
    assert isinstance(task_display(pipe, "generating"), PlainTaskProgress)

    terminal, _ = _terminal()
    assert isinstance(batch_display(terminal, 2), RichBatchProgress)
    assert isinstance(task_display(terminal, "generating"), RichTaskProgress)


# -- rich batch bar --------------------------------------------------------------------------


def test_rich_batch_bar_shows_counts_and_prints_each_problem_once() -> None:
    """The bar ends at done/total with the counts line; failures are printed above it once."""
    console, stream = _terminal()
    with RichBatchProgress(console, 3, title="nightly") as display:
        display.entry(_entry("a", "pending"))
        display.entry(_entry("a", "created", task_id="1"))
        display.entry(_entry("a", "downloaded", task_id="1", file_path="a.mp4"))
        display.entry(_entry("b", "created", task_id="2"))
        display.entry(_entry("b", "failed", task_id="2", error="content risk control"))
        display.entry(_entry("b", "failed", task_id="2", error="content risk control"))
        display.entry(_entry("c", "uncertain"))
        display.event(Retrying("POST videos/text2video", 1, 0.5, _RATE_LIMITED))
        display.event(ConcurrencyLimited(limit=2))
        display.event(TaskPolled(_task(TaskStatus.PROCESSING)))
    output = stream.getvalue()
    assert output.count("failed b: content risk control") == 1
    assert output.count("uncertain c") == 1
    assert "failed a" not in output
    final = output[output.rindex("nightly") :]
    assert "3/3" in final
    assert (
        "created 2 · finished 2 · downloaded 1 · failed 1 · uncertain 1 · rate-limited 1 · "
        "slot-limited 1 · retries 1"
    ) in final


# -- single-task displays --------------------------------------------------------------------


def test_plain_task_lines_follow_the_task_and_drop_repeats() -> None:
    """Each change of the task is one line; polls without news are not repeated."""
    stream = io.StringIO()
    with PlainTaskProgress(stream) as display:
        display.event(TaskSubmitted(_task(TaskStatus.SUBMITTED)))
        display.event(TaskPolled(_task(TaskStatus.SUBMITTED)))
        display.event(TaskPolled(_task(TaskStatus.PROCESSING)))
        display.event(TaskPolled(_task(TaskStatus.PROCESSING)))
        display.event(Retrying("GET videos/text2video/8001", 1, 0.25, ServerError("x", status=503)))
        display.event(RateLimited(delay=1.0, rate=2.0))
        display.event(ConcurrencyLimited(limit=1))
        display.event(TaskExpired(_task(TaskStatus.PROCESSING)))
        display.event(TaskFinished(_task(TaskStatus.FAILED, "content risk control")))
        display.note("downloading")
        display.note("downloading")
    assert stream.getvalue().splitlines() == [
        "created task 8001 (submitted)",
        "task 8001: submitted",
        "task 8001: processing",
        "retrying GET videos/text2video/8001 in 0.2s (ServerError)",
        "rate-limited: pausing 1.0s",
        "too many tasks running: using at most 1 slot(s)",
        "task 8001 finished: failed: content risk control",
        "downloading",
    ]


def test_plain_task_finish_without_a_reason() -> None:
    """A succeeded task, or a failure the server gave no reason for, shows just the status."""
    stream = io.StringIO()
    display = PlainTaskProgress(stream)
    display.event(TaskFinished(_task(TaskStatus.SUCCEED, "ok")))
    display.event(TaskFinished(Task(id="8002", kind=TEXT_TO_VIDEO, status=TaskStatus.FAILED)))
    assert stream.getvalue().splitlines() == [
        "task 8001 finished: succeed",
        "task 8002 finished: failed",
    ]


def test_rich_task_spinner_ends_on_the_latest_state() -> None:
    """The spinner's detail follows the events; the last frame shows the final state."""
    console, stream = _terminal()
    with RichTaskProgress(console, "generating") as display:
        display.event(TaskSubmitted(_task(TaskStatus.SUBMITTED)))
        display.event(TaskExpired(_task(TaskStatus.SUBMITTED)))  # not shown: no text for it
        display.event(TaskFinished(_task(TaskStatus.SUCCEED)))
        display.note("saved clip.mp4")
    output = stream.getvalue()
    final = output[output.rindex("generating") :]
    assert "saved clip.mp4" in final
    assert "submitting" not in final


# -- summary table ---------------------------------------------------------------------------


def test_summary_table_rows_and_caption() -> None:
    """Each entry's key, task id, status and file name (or reason); counts in the caption."""
    entries = [
        _entry("ok", "downloaded", task_id="11", file_path="/deep/out/dir/ok.mp4"),
        _entry("bad", "failed", task_id="12", error="content risk control"),
        _entry("[bold]odd[/bold]", "uncertain", error="create outcome unknown"),
        _entry("late", "created", task_id="14"),
    ]
    console, stream = _pipe()
    console.print(summary_table(entries, title="Nightly"))
    output = stream.getvalue()
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in output.splitlines()
        if line.startswith("│")
    }
    assert rows["ok"] == ["11", "downloaded", "ok.mp4"]
    assert rows["bad"] == ["12", "failed", "content risk control"]
    assert rows["[bold]odd[/bold]"] == ["-", "uncertain", "create outcome unknown"]
    assert rows["late"] == ["14", "created", ""]
    assert "Nightly" in output
    assert re.search(r"created 1, downloaded 1, failed 1, uncertain 1", output)
    assert "/deep/out" not in output
