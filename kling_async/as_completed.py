"""``client.as_completed(requests)``: submit as task slots free, yield tasks as they finish.

One call for the README's many-task pattern. Each task is handed to one watcher the moment it is
created, so a single scheduler checks every running task while the rest are still being
submitted; the submissions themselves wait for task slots and share the rate limiter, as
[`submit_many`][kling_async.client.KlingClient.submit_many]'s do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.abc

from ._closing import AsyncScoped
from ._fanout import submit_all
from .errors import ConfigurationError, KlingError, PartialSubmitError
from .models import Task, TaskRequest
from .watch import Watcher

__all__ = ["AsCompleted"]


class AsCompleted(AsyncScoped):
    """Finished tasks of many requests, in completion order, while the rest are submitted.

    Made by [`KlingClient.as_completed`][kling_async.client.KlingClient.as_completed]; use it as
    ``async with client.as_completed(requests) as results: async for task in results: ...``.
    Failed tasks are yielded too (``task.failed``). When some submissions failed, iteration
    first yields every task that was created, then raises
    [`PartialSubmitError`][kling_async.errors.PartialSubmitError] naming the failed requests.

    Leaving the block early stops submitting and checking; tasks already created keep running
    on the server, and [`created`][kling_async.as_completed.AsCompleted.created] lists them. A
    create that was cut off while under way may still have made a task:
    [`unsettled`][kling_async.as_completed.AsCompleted.unsettled] names those requests by their
    ``external_task_id``, to look up before submitting them again.
    """

    def __init__(
        self,
        submit: Callable[[TaskRequest], Awaitable[Task]],
        requests: Sequence[TaskRequest],
        watcher: Watcher,
        concurrency: int,
    ) -> None:
        self._submit = submit
        self._requests = requests
        self._watcher = watcher
        self._concurrency = concurrency
        self._created: list[Task] = []
        self._in_order: list[Task] = []
        self._unsettled: list[str] = []
        self._failed: list[tuple[int, KlingError]] = []
        self._group: anyio.abc.TaskGroup | None = None
        self._reported = False

    @property
    def created(self) -> tuple[Task, ...]:
        """The tasks created so far, in the order they were created."""
        return tuple(self._created)

    @property
    def errors(self) -> tuple[tuple[int, KlingError], ...]:
        """``(index, error)`` for each request whose submission failed so far, by its position
        in the input.

        The end of iteration raises them as a
        [`PartialSubmitError`][kling_async.errors.PartialSubmitError]; when iteration ends
        with another error first (a ``task_timeout``, a failure polling a task), read them here.
        """
        return tuple(self._failed)

    @property
    def unsettled(self) -> tuple[str, ...]:
        """``external_task_id`` of each request whose submission was cut off (by leaving the
        block early, or by an unexpected error), once the block has been left.

        Such a create may have reached the server: look each up with
        [`find_by_external_id`][kling_async.client.KlingClient.find_by_external_id] before
        submitting it again. The list errs on the safe side: it also names requests that were
        still waiting for a task slot, which sent nothing (their look-up finds no task). Empty
        when the block ran to its end.
        """
        return tuple(self._unsettled)

    @property
    def pending(self) -> tuple[Task, ...]:
        """Created tasks that have not finished yet, as last seen."""
        return self._watcher.pending

    async def _enter(self) -> None:
        await self._watcher.__aenter__()
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._submit_every)

    async def _submit_every(self) -> None:
        try:
            outcomes = await submit_all(
                self._submit_one,
                self._requests,
                self._concurrency,
                on_created=self._track,
                on_failed=lambda index, error: self._failed.append((index, error)),
            )
        finally:
            self._watcher.close()  # iteration ends once the tracked tasks have finished
        # In request order, as submit_many's PartialSubmitError lists them.
        self._in_order = [outcome for outcome in outcomes if isinstance(outcome, Task)]
        self._failed.sort(key=lambda failure: failure[0])

    async def _submit_one(self, request: TaskRequest) -> Task:
        try:
            return await self._submit(request)
        except KlingError:
            raise  # a definite answer (or SubmitUncertainError, which names the request)
        except BaseException:
            # Cut off (leaving the block, or an error nothing expected): the create may have
            # been sent. Every request carries an external_task_id (the client gives one).
            self._unsettled.append(request.external_task_id or "")
            raise

    def _track(self, task: Task) -> None:
        self._created.append(task)
        self._watcher.add(task)

    async def _exit(self) -> None:
        group, self._group = self._group, None
        try:
            if group is not None:
                group.cancel_scope.cancel()  # submissions not yet sent are not sent
                await group.__aexit__(None, None, None)
        finally:
            await self._watcher.__aexit__(None, None, None)

    def __aiter__(self) -> AsCompleted:
        return self

    async def __anext__(self) -> Task:
        """Return the next finished task.

        Raises:
            PartialSubmitError: after the last created task, when some submissions failed.
            ConfigurationError: iterated outside ``async with``.
        """
        if self._group is None:
            raise ConfigurationError(
                "iterate inside the block: `async with client.as_completed(requests) as "
                "results: async for task in results: ...`"
            )
        try:
            return await self._watcher.__anext__()
        except StopAsyncIteration:
            # The watcher closes only once every submission is settled: the list is complete.
            if self._failed and not self._reported:
                self._reported = True  # raised once; the next call stops iteration
                raise PartialSubmitError(tasks=self._in_order, errors=self._failed) from None
            raise
