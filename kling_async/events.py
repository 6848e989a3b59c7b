"""What happened, as small values handed to synchronous callbacks.

The limiter, the task slots and the poll scheduler report progress as [`Event`][kling_async.events.Event] values to an
[`EventSink`][kling_async.events.EventSink]: any plain callable taking one event. Sinks are meant to be cheap (a progress bar,
a metrics counter, a log line); they run inline, so they must not block.

A sink that raises never breaks the work that emitted the event: [`EventHub`][kling_async.events.EventHub] and
[`emit`][kling_async.events.emit] log the exception and carry on. A broken progress bar must not cost a batch.

Examples:
    >>> seen = []
    >>> hub = EventHub()
    >>> hub.add(seen.append)
    >>> hub(ConcurrencyLimited(limit=3))
    >>> seen
    [ConcurrencyLimited(limit=3)]
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TypeAlias

import attrs

from .models import Task, TaskRequest

__all__ = [
    "CallbackReceived",
    "ConcurrencyLimited",
    "DownloadFinished",
    "Event",
    "EventHub",
    "EventSink",
    "LimiterWaited",
    "RateLimited",
    "RequestCompleted",
    "Retrying",
    "SlotAcquired",
    "TaskExpired",
    "TaskFinished",
    "TaskPolled",
    "TaskSubmitted",
    "emit",
]

_log = logging.getLogger("kling_async.events")


@attrs.frozen
class TaskSubmitted:
    """A create request succeeded and the server assigned a task id.

    Attributes:
        task: the task as the create answer described it.
        request: what was sent (it holds the prompt: never in the repr).
        duration: seconds from the ``submit()`` call to the create answer, slot wait included.
    """

    task: Task
    request: TaskRequest | None = attrs.field(default=None, eq=False, repr=False)
    duration: float | None = None


@attrs.frozen
class TaskPolled:
    """A status check returned; the task may or may not be finished.

    Attributes:
        task: the task as the check described it.
    """

    task: Task


@attrs.frozen
class TaskFinished:
    """A task reached ``succeed`` or ``failed`` and was handed to the caller.

    Attributes:
        task: the finished task.
    """

    task: Task


@attrs.frozen
class TaskExpired:
    """A task's deadline passed before it finished; it is no longer polled.

    Attributes:
        task: the task as last seen (still running on the server).
    """

    task: Task


@attrs.frozen
class Retrying:
    """An operation failed and will be tried again.

    Attributes:
        operation: what failed, e.g. ``"poll 8675309"`` or ``"create text2video"``.
        attempt: how many attempts have failed so far (1 after the first failure).
        delay: seconds until the next attempt.
        error: the exception that made the attempt fail.
    """

    operation: str
    attempt: int
    delay: float
    error: BaseException = attrs.field(eq=False)


@attrs.frozen
class RateLimited:
    """The server said "too many requests"; every request now pauses.

    Attributes:
        delay: seconds until requests may be sent again.
        rate: the request rate (per second) the limiter will use afterwards.
    """

    delay: float
    rate: float


@attrs.frozen
class ConcurrencyLimited:
    """The server said too many tasks are running (code 1303); fewer slots will be used.

    Attributes:
        limit: the number of concurrent tasks the client now allows itself.
    """

    limit: int


@attrs.frozen
class RequestCompleted:
    """One HTTP request to the API was answered, or failed without an answer.

    Reported once per attempt: a request retried twice is three events.

    Attributes:
        method: the HTTP method.
        path: the resource path below the provider's prefix (``"videos/text2video/8675309"``).
        url: the full URL without its query string (it never carries a credential).
        duration: seconds from sending to the whole answer read (or the failure).
        status: the HTTP status, or ``None`` when no answer came.
        attempt: how many earlier attempts of this request failed (0 for the first).
        error: why the request failed (an answer with an error code, a broken connection), or
            ``None``.
    """

    method: str
    path: str
    url: str
    duration: float
    status: int | None
    attempt: int = 0
    error: BaseException | None = attrs.field(default=None, eq=False)


@attrs.frozen
class SlotAcquired:
    """A submission got its task slot (``max_active_tasks``).

    Attributes:
        waited: seconds it waited for the slot (0 when one was free).
    """

    waited: float


@attrs.frozen
class LimiterWaited:
    """A request had to wait for the rate limiter before it could be sent.

    Attributes:
        waited: seconds it waited (a cool-down after a 429 included).
    """

    waited: float


@attrs.frozen
class DownloadFinished:
    """``KlingClient.download`` finished, with a file or with an error.

    Attributes:
        task: the task whose video was downloaded.
        duration: seconds the download took, retries and URL refreshes included.
        size: bytes of the finished file (0 on failure).
        error: why it failed, or ``None``.
    """

    task: Task
    duration: float
    size: int = 0
    error: BaseException | None = attrs.field(default=None, eq=False)


@attrs.frozen
class CallbackReceived:
    """The webhook receiver answered one callback request.

    Attributes:
        status: the HTTP status answered (200 when accepted).
        reason: ``"accepted"``, ``"duplicate"``, or why it was refused (``"wrong token"``,
            ``"bad signature"``, ...); never the token itself.
        task: the task the callback described, when it was read that far.
    """

    status: int
    reason: str
    task: Task | None = None


Event: TypeAlias = (
    TaskSubmitted
    | TaskPolled
    | TaskFinished
    | TaskExpired
    | Retrying
    | RateLimited
    | ConcurrencyLimited
    | RequestCompleted
    | SlotAcquired
    | LimiterWaited
    | DownloadFinished
    | CallbackReceived
)
"""Any event kling_async reports."""

EventSink: TypeAlias = Callable[[Event], None]
"""A synchronous callback that receives events. It should be quick and should not raise."""


def emit(sink: EventSink | None, event: Event) -> None:
    """Hand *event* to *sink*, logging (never raising) whatever the sink raises.

    Args:
        sink: the callback, or ``None`` to do nothing.
        event: the event to report.
    """
    if sink is None:
        return
    try:
        sink(event)
    except Exception:  # noqa: BLE001 - logged; see below
        # A sink is an observer: its failure must not change what the observed code does.
        _log.exception("event sink %r failed on %s", sink, type(event).__name__)


class EventHub:
    """Fans each event out to any number of sinks.

    An [`EventHub`][kling_async.events.EventHub] is itself an [`EventSink`][kling_async.events.EventSink], so it can be passed wherever one sink is
    expected. Sinks are called in the order they were added; one that raises is logged and the
    others still run.
    """

    __slots__ = ("_sinks",)

    def __init__(self, *sinks: EventSink) -> None:
        """Create a hub.

        Args:
            *sinks: sinks to add straight away.
        """
        # A tuple, replaced on add/remove: sending iterates it without copying, and a sink that
        # removes itself mid-send does not disturb the send in progress.
        self._sinks: tuple[EventSink, ...] = tuple(sinks)

    def add(self, sink: EventSink) -> None:
        """Start sending events to *sink*.

        Args:
            sink: the callback to add (adding the same one twice calls it twice).
        """
        self._sinks = (*self._sinks, sink)

    def remove(self, sink: EventSink) -> None:
        """Stop sending events to *sink*; a sink that was never added is ignored.

        Args:
            sink: the callback to remove (its first registration).
        """
        sinks = list(self._sinks)
        with contextlib.suppress(ValueError):
            sinks.remove(sink)
        self._sinks = tuple(sinks)

    def __len__(self) -> int:
        """Return the number of registered sinks."""
        return len(self._sinks)

    def __call__(self, event: Event) -> None:
        """Send *event* to every sink.

        Args:
            event: the event to report.
        """
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:  # noqa: BLE001, PERF203 - logged, as in emit(); try is free in 3.11
                _log.exception("event sink %r failed on %s", sink, type(event).__name__)
