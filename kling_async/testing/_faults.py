"""Fault injection: seeded random faults plus queues of one-shot faults for exact tests."""

from __future__ import annotations

import random
from collections import deque
from typing import Literal

import attrs

from ._config import API_FAULTS, DOWNLOAD_FAULTS, FaultKind, Faults, RouteKind

__all__ = ["Fault", "FaultInjector", "FailureDraw"]

_Queue = Literal["create", "query", "list", "video", "request"]


@attrs.frozen
class Fault:
    """One fault to apply to one request."""

    kind: FaultKind
    """What goes wrong."""
    seconds: float | None = None
    """Delay for ``"slow"`` (``None``: [`Faults.slow_seconds`][kling_async.testing.Faults.slow_seconds])."""


class FaultInjector:
    """Decides which fault, if any, each request suffers.

    One-shot faults are consumed in order: first the queue of the request's route
    ([`next_create`][kling_async.testing.FaultInjector.next_create], [`next_query`][kling_async.testing.FaultInjector.next_query], [`next_list`][kling_async.testing.FaultInjector.next_list], [`next_download`][kling_async.testing.FaultInjector.next_download]), then the
    queue shared by all API routes ([`next_request`][kling_async.testing.FaultInjector.next_request]), then a random draw per
    [`Faults`][kling_async.testing.Faults].
    """

    def __init__(self, config: Faults | None = None) -> None:
        self._queues: dict[_Queue, deque[Fault]] = {
            name: deque() for name in ("create", "query", "list", "video", "request")
        }
        self.config = config or Faults()

    @property
    def config(self) -> Faults:
        """The random-fault configuration; assigning it reseeds the generator."""
        return self._config

    @config.setter
    def config(self, value: Faults) -> None:
        self._config = value
        self._rng = random.Random(value.seed)

    def _push(self, queue: _Queue, kind: FaultKind, seconds: float | None, times: int) -> None:
        allowed = DOWNLOAD_FAULTS if queue == "video" else API_FAULTS
        if kind not in allowed:
            raise ValueError(f"fault {kind!r} does not apply to {queue} requests")
        self._queues[queue].extend(Fault(kind, seconds) for _ in range(times))

    def next_create(self, kind: FaultKind, *, seconds: float | None = None, times: int = 1) -> None:
        """Apply *kind* to the next *times* create requests."""
        self._push("create", kind, seconds, times)

    def next_query(self, kind: FaultKind, *, seconds: float | None = None, times: int = 1) -> None:
        """Apply *kind* to the next *times* single-task queries."""
        self._push("query", kind, seconds, times)

    def next_list(self, kind: FaultKind, *, seconds: float | None = None, times: int = 1) -> None:
        """Apply *kind* to the next *times* list requests."""
        self._push("list", kind, seconds, times)

    def next_download(
        self, kind: FaultKind, *, seconds: float | None = None, times: int = 1
    ) -> None:
        """Apply *kind* to the next *times* CDN requests (e.g. ``"cut_download"``)."""
        self._push("video", kind, seconds, times)

    def next_request(
        self, kind: FaultKind, *, seconds: float | None = None, times: int = 1
    ) -> None:
        """Apply *kind* to the next *times* API requests of any route."""
        self._push("request", kind, seconds, times)

    def pending(self) -> int:
        """Number of queued one-shot faults not yet consumed."""
        return sum(len(queue) for queue in self._queues.values())

    def clear(self) -> None:
        """Forget every queued one-shot fault."""
        for queue in self._queues.values():
            queue.clear()

    def take(self, route: RouteKind) -> Fault | None:
        """Consume and return the fault for one request on *route*, or ``None``."""
        if route == "other":
            return None
        own = self._queues[route]
        if own:
            return own.popleft()
        if route != "video" and self._queues["request"]:
            return self._queues["request"].popleft()
        config = self._config
        if route not in config.routes or config.rate <= 0:
            return None
        if self._rng.random() >= config.rate:
            return None
        allowed = DOWNLOAD_FAULTS if route == "video" else API_FAULTS
        kinds = [kind for kind in config.kinds if kind in allowed]
        if not kinds:
            return None
        return Fault(self._rng.choice(kinds))


class FailureDraw:
    """Decides which tasks fail at random, so that the rate holds from the first task on.

    Independent draws can stray far from the rate over a short run (at 10 %, one run of 30 tasks
    in 25 has no failure at all). Instead, each task adds *rate* to a credit, and a task fails
    when the credit reaches a threshold drawn at random in ``[0, 1)``; a failure spends one unit
    and draws the next threshold. So any run of *n* tasks has ``n * rate`` failures give or take
    one, yet which tasks fail is still random (and repeatable for a seed).
    """

    def __init__(self, rate: float, seed: int) -> None:
        self._rate = rate
        self._rng = random.Random(seed)
        self._credit = 0.0
        self._threshold = self._rng.random()

    def __call__(self) -> bool:
        """Whether the next task fails."""
        if self._rate <= 0:
            return False
        self._credit += self._rate
        if self._credit < self._threshold:
            return False
        self._credit -= 1.0
        self._threshold = self._rng.random()
        return True
