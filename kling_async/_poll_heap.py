"""The poll scheduler's due heap: tracked tasks by the time of their next check.

Every tracked task has at most one live item on one heap of next-check times; rescheduling
pushes a new item and leaves the old one behind as stale (its sequence number no longer matches
the entry's), to be dropped when it reaches the top. That is cheaper than removing it.
"""

from __future__ import annotations

import itertools
from heapq import heappop, heappush

from ._poll_entry import Entry

__all__ = ["DueHeap"]


class DueHeap:
    """Tracked tasks ordered by the time of their next check. Strictly private."""

    __slots__ = ("_batch_size", "_batching", "_heap", "_lookahead", "_seq")

    def __init__(self, *, batching: bool, batch_size: int, lookahead: float = 0.0) -> None:
        """Create an empty heap.

        Args:
            batching: batchable tasks are checked together (the scheduler has a batch fetch).
            batch_size: the most tasks in one batch.
            lookahead: a batch started by a due task takes batchable tasks due up to this many
                seconds later too.
        """
        self._lookahead = lookahead
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = itertools.count()
        self._batching = batching
        self._batch_size = batch_size

    def stamp(self) -> int:
        """A sequence number later than every item pushed so far."""
        return next(self._seq)

    def push(self, entry: Entry, when: float) -> None:
        """Schedule *entry*'s next check at *when*; any earlier item of it becomes stale."""
        entry.heap_seq = seq = next(self._seq)
        heappush(self._heap, (when, seq, entry))

    def next_due(self) -> float | None:
        """The time on top of the heap: the next real check, right after ``take`` found none due."""
        heap = self._heap
        return heap[0][0] if heap else None

    def due_count(self, now: float) -> int:
        """How many tasks are due at *now* (stale items, as ``take`` skips them, are not counted)."""
        return sum(1 for when, seq, entry in self._heap if seq == entry.heap_seq and when <= now)

    def take(self, now: float) -> list[Entry] | None:
        """Pop the next check that is due at *now*: one task, or a batch of batchable ones.

        Returns ``None`` when nothing is due (stale items on top are dropped on the way, so the
        top is then the next real check). The popped entries are marked in flight.
        """
        heap = self._heap
        batching = self._batching
        if not batching:
            # One task per check, as without a batch fetch: no batch to gather.
            while heap:
                due_at, seq, entry = heap[0]
                if seq != entry.heap_seq:
                    heappop(heap)
                    continue
                if due_at > now:
                    return None
                heappop(heap)
                entry.heap_seq = -1
                entry.in_flight = True
                return [entry]
            return None
        batch: list[Entry] = []
        while heap:
            due_at, seq, entry = heap[0]
            if seq != entry.heap_seq:
                heappop(heap)
                continue
            if due_at > now and not (batch and due_at <= now + self._lookahead):
                break
            joins_batch = batching and entry.batchable
            if batch and not joins_batch:
                break  # it starts its own check next time
            heappop(heap)
            entry.heap_seq = -1
            entry.in_flight = True
            batch.append(entry)
            if not joins_batch or len(batch) == self._batch_size:
                break
        return batch or None
