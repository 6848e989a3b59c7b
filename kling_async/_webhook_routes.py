"""Which watchers follow which tasks' callbacks: the routing table behind ``WebhookReceiver``.

A callback names a task by our id, by the upstream's id (behind a gateway that remaps ids) or
only by our ``external_task_id``; the table finds the one entry for any of them. It also keeps
the final callbacks that came before their task was registered, so that the watcher checks such
a task at once. It knows nothing of HTTP, signatures or confirmations.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .models import Task, TaskKind

__all__ = ["CallbackRoutes", "TaskSink", "Tracked", "seen_key"]

_EARLY_KEPT = 10_000
"""Final callbacks of not-yet-registered tasks remembered (ids and external ids)."""


class TaskSink(Protocol):
    """Where callbacks end up: a [`Watcher`][kling_async.watch.Watcher] (or anything alike)."""

    def add(self, task: Task, *, has_callback: bool = False) -> None:
        """Track *task*; with *has_callback* it is polled only as a safety net."""
        ...

    def update(self, task: Task) -> None:
        """Feed in a confirmed state of a tracked task."""
        ...

    def poll_soon(self, task_id: str) -> None:
        """Check a tracked task at the next opportunity."""
        ...


class Tracked:
    """One task the receiver expects callbacks for."""

    __slots__ = (
        "confirming",
        "external_id",
        "kind",
        "queued",
        "seen",
        "sinks",
        "task_id",
        "upstream_id",
    )

    def __init__(self, task: Task, sink: TaskSink) -> None:
        self.task_id = task.id
        self.kind: TaskKind = task.kind
        self.external_id = task.external_task_id
        self.upstream_id = task.upstream_id
        # Usually one watcher; two when, say, a stream and a client.wait() follow the same task.
        self.sinks: list[TaskSink] = [sink]
        self.seen: set[str] = set()
        self.confirming = False
        # A terminal claim that came in while a confirmation was running: the GET may predate it.
        self.queued: Task | None = None


class CallbackRoutes:
    """The tracked tasks, oldest first, with their ids, external ids, upstream ids and sinks."""

    def __init__(self) -> None:
        self._tracked: OrderedDict[str, Tracked] = OrderedDict()
        self._by_sink: dict[TaskSink, set[str]] = {}
        # Final statuses of tasks nobody had registered yet (a callback that beat watch()):
        # ids and external ids, so that expect() can have the task checked at once.
        self._early: OrderedDict[str, bool] = OrderedDict()
        self._by_external: dict[str, str] = {}
        # Upstream task id -> our (gateway's) task id, for callbacks sent straight upstream.
        self._by_upstream: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._tracked)

    def get(self, task_id: str) -> Tracked | None:
        """The entry of the task with our id *task_id*, if it is tracked."""
        return self._tracked.get(task_id)

    def find(self, task: Task) -> Tracked | None:
        """The entry a callback about *task* belongs to, by any of the ids it carries."""
        entry = self._tracked.get(task.id)
        if entry is None:
            # Gateways may hand out their own task ids; the upstream's id and our external id
            # survive the remap.
            own_id = self._by_upstream.get(task.id)
            if own_id is None and task.external_task_id:
                own_id = self._by_external.get(task.external_task_id)
            entry = self._tracked.get(own_id) if own_id is not None else None
        return entry

    def expect(self, sink: TaskSink, task: Task, *, max_tracked: int) -> None:
        """Route *task*'s callbacks to *sink*, keeping at most *max_tracked* tasks."""
        if task.is_finished:
            return
        known = self._tracked.get(task.id)
        if known is not None:
            # Another watcher of the same task: route to both; keep what was seen so far.
            if sink not in known.sinks:
                known.sinks.append(sink)
                self._by_sink.setdefault(sink, set()).add(task.id)
            return
        entry = Tracked(task, sink)
        self._tracked[task.id] = entry
        self._by_sink.setdefault(sink, set()).add(task.id)
        if entry.external_id:
            self._by_external[entry.external_id] = task.id
        if entry.upstream_id:
            self._by_upstream[entry.upstream_id] = task.id
        while len(self._tracked) > max_tracked:
            # Tasks polled to completion are only forgotten through observe(); evicting the
            # oldest keeps memory bounded, and the safety-net poll still covers them.
            self.forget(next(iter(self._tracked)))
        early = self._early.pop(task.id, False)
        if entry.external_id:
            early = self._early.pop(entry.external_id, False) or early
        if early:
            # Its final callback came before this route existed: check it now, not at the
            # safety-net interval.
            sink.poll_soon(task.id)

    def forget_sink(self, sink: TaskSink) -> None:
        """Stop routing to *sink*; forget the tasks no other sink follows."""
        for task_id in self._by_sink.pop(sink, set()):
            entry = self._tracked.get(task_id)
            if entry is not None and sink in entry.sinks:
                entry.sinks.remove(sink)
                if not entry.sinks:
                    self.forget(task_id)

    def drop(self, sink: TaskSink, task_id: str) -> None:
        """Stop routing *task_id* to *sink*; forget it when no other sink follows it."""
        entry = self._tracked.get(task_id)
        if entry is None or sink not in entry.sinks:
            return
        entry.sinks.remove(sink)
        ids = self._by_sink.get(sink)
        if ids is not None:
            ids.discard(task_id)
            if not ids:
                del self._by_sink[sink]
        if not entry.sinks:
            self.forget(task_id)

    def forget(self, task_id: str) -> None:
        """Drop every route of *task_id*."""
        entry = self._tracked.pop(task_id, None)
        if entry is not None and entry.upstream_id is not None:
            self._by_upstream.pop(entry.upstream_id, None)
        if entry is None:
            return
        if entry.external_id:
            self._by_external.pop(entry.external_id, None)
        for sink in entry.sinks:
            ids = self._by_sink.get(sink)
            if ids is not None:
                ids.discard(task_id)
                if not ids:
                    del self._by_sink[sink]

    def remember_early(self, task: Task) -> None:
        """Keep a final callback of an untracked task, for when its route comes."""
        for key in (task.id, task.external_task_id):
            if key:
                self._early[key] = True
                self._early.move_to_end(key)
        while len(self._early) > _EARLY_KEPT:
            self._early.popitem(last=False)

    def alias(self, task: Task) -> None:
        """Route callbacks that carry *task*'s upstream id to the tracked *task*."""
        entry = self._tracked.get(task.id)
        if task.upstream_id is not None and entry is not None:
            entry.upstream_id = task.upstream_id
            self._by_upstream[task.upstream_id] = task.id

    def confirm_failed(self, entry: Tracked, claimed: Task) -> None:
        """A confirming GET failed: the sinks poll the task soon; the same claims may come again."""
        entry.confirming = False
        entry.seen.discard(seen_key(claimed.status.value, signed=False))
        if entry.queued is not None:
            entry.seen.discard(seen_key(entry.queued.status.value, signed=False))
            entry.queued = None
        for sink in entry.sinks:
            sink.poll_soon(entry.task_id)

    def confirmed(self, entry: Tracked, claimed: Task, actual: Task) -> Task | None:
        """Feed a confirming GET's answer to every current route of the task.

        Returns:
            a claim queued while the GET ran that still needs confirming, or ``None``.
        """
        entry.confirming = False
        # The routes may have changed while the GET ran: its watchers closed (forget_sink), and
        # maybe a new watcher now follows the same task under a new entry. The answer is news
        # for every current route; a stale entry must not forget the new one.
        current = self._tracked.get(entry.task_id)
        sinks = list(entry.sinks)
        if current is not None and current is not entry:
            sinks += [sink for sink in current.sinks if sink not in sinks]
        if actual.status is not claimed.status:
            # Let a later (genuine) callback with that status trigger a new confirmation.
            entry.seen.discard(seen_key(claimed.status.value, signed=False))
        if actual.is_finished and current is not None:
            self.forget(entry.task_id)
        for sink in sinks:
            sink.update(actual)
        queued, entry.queued = entry.queued, None
        if queued is not None and not actual.is_finished and current is entry:
            return queued
        return None


def seen_key(status: str, *, signed: bool) -> str:
    """How a callback's status is remembered in ``Tracked.seen``.

    Unsigned and signed news of one status are kept apart: an unsigned callback (which anyone
    holding the token can send) must never make the signed one read as a duplicate. Claims
    are confirmed only when unsigned, so the confirming paths discard the unsigned key.
    """
    return status if signed else f"{status} (unsigned)"
