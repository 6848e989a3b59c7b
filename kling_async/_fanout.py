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
) -> list[Task | KlingError]:
    """Run *submit* over *requests*, at most *concurrency* at once; errors are kept, not raised.

    A failed submission never cancels the others: each created task is paid for and must be
    returned to the caller.
    """
    gate = anyio.CapacityLimiter(max(1, concurrency))
    outcomes: dict[int, Task | KlingError] = {}

    async def one(index: int, request: TaskRequest) -> None:
        async with gate:
            try:
                outcomes[index] = await submit(request)
            except KlingError as exc:
                outcomes[index] = exc

    async with anyio.create_task_group() as group:
        for index, request in enumerate(requests):
            group.start_soon(one, index, request)
    return [outcomes[index] for index in range(len(requests))]
