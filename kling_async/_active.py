"""The client's book of its unfinished tasks: which task slot each holds, and when it frees.

A task slot is taken before a create and held until the client sees the task finish (Kling
counts a task against the account's concurrency until then). This module keeps that account:
binding a created task to its lease, adopting tasks created earlier, releasing on the finished
status, and waiting for a slot while refreshing the tasks nobody else is checking (a caller who
submits without watching would otherwise wait forever).
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Awaitable, Callable, Sequence

import anyio

from ._slot_scope import SlotHold, SlotPools
from .clock import Clock
from .completion import CompletionModel
from .errors import APIConnectionError, APIError
from .events import Event, SlotAcquired
from .models import _FINISHED, Task, TaskKind, TaskStatus
from .scheduler import PartialBatchError, PollPolicy
from .slots import SlotLease, TaskSlots
from .watch import Watcher
from .webhooks import WebhookReceiver

__all__ = ["ActiveTasks"]

logger = logging.getLogger("kling_async.client")

_REFRESH_BATCH = 20


class ActiveTasks:
    """The unfinished tasks of one client and their slot leases (strictly private).

    Args:
        pools: the task slot pools (in-process or shared with other processes), by scope.
        clock: where waits happen.
        policy: the client's poll policy, as it is now (how often waiting submitters refresh).
        completions: when each task was submitted, per kind of request.
        emit: the client's event sink.
        webhook: the client's callback receiver, if any.
    """

    def __init__(
        self,
        *,
        pools: SlotPools,
        clock: Clock,
        policy: Callable[[], PollPolicy],
        completions: CompletionModel,
        emit: Callable[[Event], None],
        webhook: WebhookReceiver | None,
    ) -> None:
        self.pools = pools
        self._clock = clock
        self._policy = policy
        self._completions = completions
        self._emit = emit
        self._webhook = webhook
        # Each unfinished task's kind, by id: enough to check it, and 100k tasks add up.
        self.kinds: dict[str, TaskKind] = {}
        # The task slots each active task holds (an adopted task gets them a moment later).
        self._holds: dict[str, SlotHold] = {}
        # Unfinished tasks created with the receiver's callback URL.
        self.callback_ids: set[str] = set()
        self.watchers: weakref.WeakSet[Watcher] = weakref.WeakSet()
        self._refresh_lock = anyio.Lock()
        # Per pool (by id): the lock that weighted acquisitions take turns on.
        self._weighted: dict[int, anyio.Lock] = {}
        # When waiting submitters last refreshed: once per interval for all of them, not each.
        self._refreshed_at = -math.inf
        # Set by the client: how to check tasks (one by one, or with list requests).
        self.refresh: Callable[[Sequence[Task]], Awaitable[object]] | None = None

    async def bind(self, task: Task, hold: SlotHold) -> None:
        """Count a just-created task against *hold* until it finishes."""
        if task.is_finished:
            await hold.release()
            return
        self.kinds[task.id] = task.kind
        self._holds[task.id] = hold
        await hold.bind(task.id)

    async def adopt(self, task: Task, scope: str = "", weight: int = 1) -> None:
        """Count an unfinished task created earlier against the task slots (twice: once)."""
        if task.is_finished or task.id in self.kinds:
            return
        # Marked before the await, so that a concurrent adopt of the same task does nothing.
        self.kinds[task.id] = task.kind
        pool = self.pools.pool(scope)
        leases: list[SlotLease] = []
        try:
            for _ in range(weight):
                leases.append(await pool.adopt())  # noqa: PERF401 - kept on error
        except BaseException:
            self.kinds.pop(task.id, None)
            await SlotHold(pool, leases).release()
            raise
        hold = SlotHold(pool, leases)
        if task.id in self.kinds:
            self._holds[task.id] = hold
            await hold.bind(task.id)
        else:  # seen finished while the lease was on its way
            await hold.release()

    def needs_observing(self, task: Task) -> bool:
        """Whether [`observe`][kling_async._active.ActiveTasks.observe] has anything to do.

        Most status checks see an unfinished task without an upstream id: asking first spares
        the hot path an await.
        """
        # task.is_finished, without a property call per check.
        return task.status in _FINISHED or (
            task.upstream_id is not None and self._webhook is not None
        )

    async def observe(self, task: Task) -> None:
        """Note a task's state: frees its task slot once it has finished."""
        if task.upstream_id is not None and self._webhook is not None:
            # Callbacks sent straight from the upstream carry its id, not the gateway's.
            self._webhook.alias(task)
        if not task.is_finished:
            return
        self.callback_ids.discard(task.id)
        self._completions.forget(task.id)
        ours = self.kinds.pop(task.id, None) is not None
        hold = self._holds.pop(task.id, None)
        if hold is not None:
            await hold.release()
        elif not ours:
            # Maybe created by another process that shares the task slots with this one.
            with anyio.CancelScope(shield=True):
                for pool in (self.pools.default, *self.pools.scopes.values()):
                    await pool.release_task(task.id)

    async def acquire_hold(self, scope: str, weight: int) -> SlotHold:
        """Wait for *weight* slots of the pool of *scope* (see ``acquire_slot``).

        A pool whose limit is below *weight* right now (it shrank after a 1303) gives what it
        allows: waiting for more could wait forever, and the server's answer tells the truth.
        """
        pool = self.pools.pool(scope)
        if weight == 1:
            return SlotHold(pool, [await self.acquire_slot(pool)])
        leases: list[SlotLease] = []
        try:
            # One weighted acquirer per pool at a time: two collecting slots side by side could
            # each hold part of the pool and wait for the other forever.
            async with self._weighted.setdefault(id(pool), anyio.Lock()):
                while True:
                    limit = pool.limit
                    need = weight if limit is None else max(1, min(weight, limit))
                    if len(leases) >= need:
                        break
                    leases.append(await self.acquire_slot(pool))
        except BaseException:
            await SlotHold(pool, leases).release()
            raise
        return SlotHold(pool, leases)

    async def acquire_slot(self, pool: TaskSlots | None = None) -> SlotLease:
        """Wait for a task slot of *pool* (the default one), checking our own unfinished tasks
        while we wait.

        Slots free when the client sees a task finish. A caller who submits without watching
        would otherwise wait forever, so while submitters wait, one of them at a time refreshes
        the oldest active tasks that no open watcher is already tracking, once per poll interval
        (with one list request where the provider supports it).
        """
        started = self._clock.now()
        while True:
            with self._clock.deadline(self.refresh_interval()):
                lease = await (pool or self.pools.default).acquire()
                self._emit(SlotAcquired(waited=self._clock.now() - started))
                return lease
            if self._refresh_lock.locked():
                continue
            async with self._refresh_lock:
                if self._clock.now() - self._refreshed_at >= self.refresh_interval():
                    await self._refresh_unwatched()
                    self._refreshed_at = self._clock.now()

    async def _refresh_unwatched(self) -> None:
        watched: set[str] = set()
        for watcher in self.watchers:
            if watcher.running:  # a watcher left behind checks nothing
                watched.update(task.id for task in watcher.pending)
        stale = [
            Task(task_id, kind, TaskStatus.SUBMITTED)
            for task_id, kind in self.kinds.items()
            if task_id not in watched and self._may_have_finished(task_id)
        ]
        stale = stale[:_REFRESH_BATCH]
        if not stale or self.refresh is None:
            return
        try:
            await self.refresh(stale)
        except (APIError, APIConnectionError, PartialBatchError) as exc:
            logger.info("refreshing tasks while waiting for a slot failed: %s", exc)

    def refresh_interval(self) -> float:
        """How often waiting submitters look at unwatched tasks: as often as a watcher would."""
        policy = self._policy()
        return policy.detect_gap if policy.expected is not None else policy.min_interval

    def _may_have_finished(self, task_id: str) -> bool:
        """Whether *task* is old enough to have finished, by its kind of request's window.

        Refreshing a task that cannot have finished yet only costs a request (issue 9: these
        refreshes once cost a submit_many of long tasks 150 GETs per task).
        """
        policy = self._policy()
        started = self._completions.started(task_id)
        if policy.expected is None or started is None:
            return True
        times, created = started
        return self._clock.now() - created >= times.window_or(policy.expected)[0]
