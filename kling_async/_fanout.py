"""Submitting many requests at once, bounded, keeping every outcome in its request's place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from .errors import KlingError
from .models import Task, TaskRequest

__all__ = ["submit_all"]


async def submit_all(
    submit: Callable[[TaskRequest], Awaitable[Task]],
    requests: Sequence[TaskRequest],
    concurrency: int,
    on_created: Callable[[Task], None] | None = None,
    on_failed: Callable[[int, KlingError], None] | None = None,
) -> list[Task | KlingError]:
    """Run *submit* over *requests*, at most *concurrency* at once; errors are kept, not raised.

    A failed submission never cancels the others: each created task is paid for and must be
    returned to the caller. *on_created* sees each task as soon as it exists (a watcher that
    starts checking it while the others are still being submitted); *on_failed* sees each
    failure with its request's index, as it happens.
    """
    gate = anyio.CapacityLimiter(max(1, concurrency))
    outcomes: dict[int, Task | KlingError] = {}

    async def one(index: int, request: TaskRequest) -> None:
        async with gate:
            try:
                task = await submit(request)
            except KlingError as exc:
                outcomes[index] = exc
                if on_failed is not None:
                    on_failed(index, exc)
                return
            outcomes[index] = task
            if on_created is not None:
                on_created(task)

    async with anyio.create_task_group() as group:
        for index, request in enumerate(requests):
            group.start_soon(one, index, request)
    return [outcomes[index] for index in range(len(requests))]
