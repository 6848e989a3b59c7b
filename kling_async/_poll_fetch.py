"""What the poll scheduler calls to check tasks, and which of its failures are final.

Re-exported by [`kling_async.scheduler`][kling_async.scheduler], where these are documented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ._poll_entry import Entry
from .errors import AuthenticationError, NotFoundError
from .models import Task

__all__ = ["FATAL_ERRORS", "BatchFetch", "Fetch", "PartialBatchError", "read_batch"]

Fetch = Callable[[Task], Awaitable[Task]]
"""Fetch one task's current state. May raise; the scheduler retries it later."""

BatchFetch = Callable[[Sequence[Task]], Awaitable[Sequence[Task]]]
"""Fetch the current state of many tasks in one call (a list endpoint).

It may return fewer tasks than asked for (matched by id); a missing task falls back to
[`Fetch`][kling_async.scheduler.Fetch] for the rest of its life. It may also return other tasks (a list page holds what
it holds): those that are tracked count as checked, so their next checks move later. A call
that failed part-way (page 2 of 4, say) raises [`PartialBatchError`][kling_async.scheduler.PartialBatchError] with what it read:
those answers count, and only the tasks it did not reach count as a failed check.
"""

FATAL_ERRORS: tuple[type[BaseException], ...] = (NotFoundError, AuthenticationError)
"""Fetch errors that are never retried: waiting longer cannot make them go away."""


class PartialBatchError(Exception):
    """A [`BatchFetch`][kling_async.scheduler.BatchFetch] failed after reading some answers; raised by the batch fetch.

    Attributes:
        tasks: the tasks read before the failure.
        error: the failure, reported (and retried) for the tasks not read.
    """

    def __init__(self, tasks: Sequence[Task], error: Exception) -> None:
        self.tasks = tuple(tasks)
        self.error = error
        super().__init__(f"read {len(self.tasks)} tasks, then failed: {error}")


async def read_batch(
    batch_fetch: BatchFetch, entries: Sequence[Entry]
) -> tuple[dict[str, Task], Exception | None]:
    """Ask *batch_fetch* about *entries*' tasks.

    Returns:
        every task the answer holds, by id, and the failure that cut the answer short (if any).

    Raises:
        Exception: whatever made the batch fetch read nothing at all.
    """
    failure: Exception | None = None
    try:
        answer = await batch_fetch([entry.task for entry in entries])
    except PartialBatchError as partial:
        # Page 1 answered before page 2 failed: its answers are as good as any.
        answer, failure = partial.tasks, partial.error
    return {task.id: task for task in answer}, failure
