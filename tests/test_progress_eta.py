"""The batch ETA: estimated from the items this run completed, hidden until it means something."""

from __future__ import annotations

import io

from rich.console import Console

from kling_async.journal import JournalEntry
from kling_async.progress import BatchTally, EtaEstimate, RichBatchProgress


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _entry(key: str, status: str) -> JournalEntry:
    return JournalEntry(
        key=key, external_task_id=f"ext-{key}", kind="text2video", request_json="{}", status=status
    )


def test_no_estimate_until_three_items_completed_in_this_run() -> None:
    clock = _Clock()
    tally = BatchTally(30, eta=EtaEstimate(clock=clock))
    for index in range(30):
        tally.update(_entry(f"k{index}", "pending"))
    for index in range(2):
        clock.now += 10
        tally.update(_entry(f"k{index}", "downloaded"))
    assert tally.eta.seconds_left(tally.total - tally.done) is None
    clock.now += 10
    tally.update(_entry("k2", "downloaded"))
    # 3 items in 30 s: 27 more take 270 s.
    assert tally.eta.seconds_left(tally.total - tally.done) == 270.0


def test_items_resumed_already_done_do_not_shorten_the_estimate() -> None:
    """The issue's 15/30 after a resume: the 15 done before say nothing about this run's pace."""
    clock = _Clock()
    tally = BatchTally(30, eta=EtaEstimate(clock=clock))
    for index in range(15):
        tally.update(_entry(f"old{index}", "downloaded"))  # first sight: resumed
    for index in range(15):
        tally.update(_entry(f"new{index}", "pending"))
    assert tally.done == 15
    assert tally.eta.seconds_left(15) is None
    for index in range(3):
        clock.now += 20
        tally.update(_entry(f"new{index}", "downloaded"))
    assert tally.eta.completed == 3
    assert tally.eta.seconds_left(tally.total - tally.done) == 12 * 60 / 3


def test_a_repeated_final_status_is_not_a_second_completion() -> None:
    tally = BatchTally(2, download=False)
    tally.update(_entry("a", "created"))
    tally.update(_entry("a", "succeed"))
    tally.update(_entry("a", "downloaded"))  # still final without downloads: not counted again
    assert tally.eta.completed == 1
    assert tally.eta.seconds_left(0) == 0.0


def test_rich_bar_hides_the_eta_then_shows_the_estimate() -> None:
    clock = _Clock()
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, color_system=None, width=120)
    display = RichBatchProgress(console, 4, title="nightly", eta=EtaEstimate(clock=clock))
    with display:
        for key in "abcd":
            display.entry(_entry(key, "pending"))
        console.file.write("\n")
        hidden = display._progress.make_tasks_table(display._progress.tasks)
        console.print(hidden)
        for key in "abc":
            clock.now += 60
            display.entry(_entry(key, "downloaded"))
    output = stream.getvalue()
    assert "ETA -:--:--" in output
    # 3 items in 180 s: the last takes 60 s.
    assert "ETA 0:01:00" in output
