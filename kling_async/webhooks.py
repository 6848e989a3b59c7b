"""Push delivery: a callback receiver that feeds the same stream as polling.

Kling POSTs the task object to a task's ``callback_url`` when its status changes (kling-api.md §5).
Deliveries may repeat, arrive out of order or never come, and through CometAPI they are
unauthenticated, so a callback is treated as a *hint*:

* The callback URL carries a per-receiver secret token (:meth:`WebhookReceiver.callback_url`);
  a request without it is refused (401/403) before the body is even parsed.
* With a Kling webhook secret configured, Standard-Webhooks signatures are verified
  (:func:`verify_signature`); a verified terminal status is fed to the watcher directly.
* A terminal status from an unsigned callback is confirmed with one request before the watcher
  yields the task (the callback is answered first).
* Tasks whose callbacks are expected are polled only every
  :attr:`~kling_async.PollPolicy.callback_interval` seconds, a safety net for lost callbacks.

The core, :meth:`WebhookReceiver.handle`, knows no web framework. :func:`aiohttp_handler` serves
it from ``aiohttp.web``; :mod:`kling_async.webhooks_asgi` from Starlette, FastAPI or any ASGI server.

The usual way: give the receiver to the client, which fills in ``callback_url`` and makes its
watchers track such tasks by callback::

    receiver = WebhookReceiver(public_url="https://example.com/kling/callback")
    app.router.add_post("/kling/callback", aiohttp_handler(receiver))
    async with KlingClient(webhook=receiver) as client:
        task = await client.text_to_video("A beach")
        done = await client.wait(task)

Wired by hand instead (the receiver confirms with the client's ``get_task`` in its own task
group)::

    receiver = WebhookReceiver.for_client(client)
    app.router.add_post("/kling/callback", aiohttp_handler(receiver))
    async with receiver, client.watch() as results:
        url = receiver.callback_url("https://example.com/kling/callback")
        task = await client.submit(TextToVideo(prompt="A beach", callback_url=url))
        receiver.track(results, task)
        results.close()
        async for finished in results:
            ...
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.abc
import attrs

from . import wire
from .errors import ConfigurationError, ResponseParseError, WebhookVerificationError
from .events import Event, TaskFinished
from .kinds import TEXT_TO_VIDEO
from .models import Task, TaskKind
from .signatures import SIGNATURE_TOLERANCE, sign_payload, signing_key, verify_signature

if TYPE_CHECKING:
    from aiohttp import web

    from .client import KlingClient

__all__ = [
    "DEFAULT_MAX_BODY",
    "SIGNATURE_TOLERANCE",
    "TOKEN_PARAM",
    "Confirm",
    "TaskSink",
    "WebhookReceiver",
    "WebhookStats",
    "WebhookVerificationError",
    "aiohttp_handler",
    "sign_payload",
    "verify_signature",
]

logger = logging.getLogger("kling_async.webhooks")

DEFAULT_MAX_BODY = 64 * 1024
"""Largest callback body accepted, in bytes; a task object is a few kilobytes at most."""

_EARLY_KEPT = 10_000
"""Final callbacks of not-yet-registered tasks remembered (ids and external ids)."""

TOKEN_PARAM = "token"  # noqa: S105 - the name of a query parameter, not a secret
"""The query parameter of the callback URL that carries the receiver's token."""

Confirm = Callable[[Task], Awaitable[Task]]
"""Fetch a task's real state, e.g. :meth:`KlingClient.get_task`."""


class TaskSink(Protocol):
    """Where callbacks end up: a :class:`~kling_async.Watcher` (or anything alike)."""

    def add(self, task: Task, *, has_callback: bool = False) -> None:
        """Track *task*; with *has_callback* it is polled only as a safety net."""
        ...

    def update(self, task: Task) -> None:
        """Feed in a confirmed state of a tracked task."""
        ...

    def poll_soon(self, task_id: str) -> None:
        """Check a tracked task at the next opportunity."""
        ...


@attrs.define
class WebhookStats:
    """What a receiver did, for metrics and tests.

    Attributes:
        received: requests handed to :meth:`WebhookReceiver.handle`.
        rejected: refused requests by HTTP status (400, 401, 403, 413).
        duplicates: accepted callbacks that repeated a status already seen.
        ignored: accepted callbacks about tasks the receiver does not track.
        direct: terminal states fed to a watcher without a GET (signed callbacks).
        confirmations: confirming GETs started.
        disagreements: confirming GETs that contradicted the callback.
        confirm_failures: confirming GETs that failed (the watcher then polls soon instead).
    """

    received: int = 0
    rejected: Counter[int] = attrs.Factory(Counter)
    duplicates: int = 0
    ignored: int = 0
    direct: int = 0
    confirmations: int = 0
    disagreements: int = 0
    confirm_failures: int = 0


class _Tracked:
    """One task the receiver expects callbacks for. Strictly private."""

    __slots__ = ("confirming", "external_id", "kind", "queued", "seen", "sinks", "task_id")

    def __init__(self, task: Task, sink: TaskSink) -> None:
        self.task_id = task.id
        self.kind: TaskKind = task.kind
        self.external_id = task.external_task_id
        # Usually one watcher; two when, say, a stream and a client.wait() follow the same task.
        self.sinks: list[TaskSink] = [sink]
        self.seen: set[str] = set()
        self.confirming = False
        # A terminal claim that came in while a confirmation was running: the GET may predate it.
        self.queued: Task | None = None


class WebhookReceiver:
    """Turns Kling callbacks into watcher updates; framework-neutral (see :meth:`handle`).

    Run it as ``async with receiver:`` around the time callbacks may arrive: the confirming GETs
    of unsigned callbacks run in its task group. Outside that block an unsigned terminal callback
    only asks the watcher to poll the task soon.

    Args:
        confirm: fetches a task's real state (``client.get_task``); without it, unsigned
            terminal callbacks only make the watcher poll soon.
        token: the secret the callback URL carries; a random one when omitted. It is never
            logged or shown in ``repr``.
        signing_secret: the Kling console's webhook secret (``whsec_...``), or several during a
            rotation; then every callback must carry a valid signature.
        max_body: the largest body accepted, in bytes (413 above).
        tolerance: seconds a signature timestamp may be off.
        confirm_timeout: seconds allowed for one confirming GET.
        public_url: the externally reachable URL of the callback route, used by
            :meth:`callback_url` when it is given no URL.
        max_tracked: the most tasks remembered; beyond it the oldest are forgotten (their
            callbacks are then ignored and the safety-net poll finds them).
        wall_clock: unix time for signature timestamps (tests).

    Raises:
        ConfigurationError: an argument is out of range or a secret is not base64.
    """

    def __init__(
        self,
        *,
        confirm: Confirm | None = None,
        token: str | None = None,
        signing_secret: str | Sequence[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        tolerance: float = SIGNATURE_TOLERANCE,
        confirm_timeout: float = 30.0,
        public_url: str | None = None,
        max_tracked: int = 200_000,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if token is not None and len(token) < 16:
            raise ConfigurationError("a callback token needs at least 16 characters")
        if max_body < 1 or max_tracked < 1 or tolerance <= 0 or confirm_timeout <= 0:
            raise ConfigurationError(
                "max_body, max_tracked, tolerance and confirm_timeout must be positive"
            )
        self._token = token if token is not None else secrets.token_urlsafe(24)
        secrets_list = [signing_secret] if isinstance(signing_secret, str) else signing_secret
        self._signing: tuple[str, ...] = tuple(secrets_list or ())
        for item in self._signing:
            signing_key(item)  # fail now, not on the first callback
        self.max_body = max_body
        """The largest body accepted, in bytes."""
        self.tolerance = tolerance
        """Seconds a signature timestamp may be off."""
        self.confirm_timeout = confirm_timeout
        """Seconds allowed for one confirming GET."""
        self.public_url = public_url
        """The callback route's external URL, for :meth:`callback_url`."""
        self.max_tracked = max_tracked
        """The most tasks remembered at once."""
        self.stats = WebhookStats()
        """Counters of what the receiver did."""
        self._confirm = confirm
        self._wall_clock = wall_clock
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()
        self._by_sink: dict[TaskSink, set[str]] = {}
        # Final statuses of tasks nobody had registered yet (a callback that beat watch()):
        # ids and external ids, so that expect() can have the task checked at once.
        self._early: OrderedDict[str, bool] = OrderedDict()
        self._by_external: dict[str, str] = {}
        self._recent_ids: OrderedDict[str, float] = OrderedDict()
        self._group: anyio.abc.TaskGroup | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def for_client(cls, client: KlingClient, **options: Any) -> WebhookReceiver:
        """Make a receiver that confirms with *client* and forgets tasks the client saw finish.

        Args:
            client: the client whose ``get_task`` confirms unsigned callbacks.
            **options: any other :class:`WebhookReceiver` argument.

        Returns:
            the receiver (its event subscription ends when its ``async with`` block does).
        """
        receiver = cls(confirm=client.get_task, **options)
        receiver.bind(client)
        receiver._unsubscribe = lambda: receiver.unbind(client)
        return receiver

    def bind(self, client: KlingClient) -> None:
        """Forget tasks as *client* sees them finish (``KlingClient(webhook=...)`` calls this).

        A receiver made without ``confirm`` (or not inside its ``async with``) needs no task
        group of its own: an unsigned final status asks the watcher to check the task at once,
        through the client's scheduler, rate limiter and checks in flight. One made with
        ``confirm`` and running confirms the status itself.

        Args:
            client: the client to follow.
        """
        client.events.add(self.observe)

    def unbind(self, client: KlingClient) -> None:
        """Stop following *client* (called when it closes).

        Args:
            client: a client passed to :meth:`bind` before.
        """
        client.events.remove(self.observe)

    def __repr__(self) -> str:
        signed = "signed" if self._signing else "unsigned"
        return f"WebhookReceiver({signed}, tracking={len(self._tracked)}, token=<redacted>)"

    async def __aenter__(self) -> WebhookReceiver:
        if self._group is not None:
            raise RuntimeError("this WebhookReceiver is already running (async with it once)")
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if group is None:
            return
        # Confirmations still running lose their reason to exist with the watchers they feed.
        group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)

    # -- what callers set up -----------------------------------------------------------------

    def callback_url(self, base_url: str | None = None) -> str:
        """Return the URL to send as ``callback_url``: *base_url* plus the token.

        Args:
            base_url: the externally reachable URL of the callback route; :attr:`public_url`
                when omitted.

        Returns:
            the URL with ``?token=...`` added (other query parameters are kept).

        Raises:
            ConfigurationError: no URL was given or configured, or it is not http(s).
        """
        url = base_url or self.public_url
        if not url or not url.startswith(("http://", "https://")):
            raise ConfigurationError("callback_url needs an http:// or https:// base URL")
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != TOKEN_PARAM]
        query.append((TOKEN_PARAM, self._token))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def track(self, sink: TaskSink, task: Task) -> None:
        """Add *task* to *sink* (a watcher) and expect its callbacks.

        The task is added with ``has_callback=True``, so the watcher polls it only as a safety
        net. It must have been submitted with ``callback_url=receiver.callback_url(...)``.

        Args:
            sink: the watcher that should yield the task.
            task: the submitted task.
        """
        sink.add(task, has_callback=True)
        self.expect(sink, task)  # after add(): an early callback makes the sink check it now

    def expect(self, sink: TaskSink, task: Task) -> None:
        """Route *task*'s callbacks to *sink* without adding it there (the caller adds it).

        Add the task to *sink* first: if its final callback came before this call, the sink is
        asked to check it at once (``poll_soon``), which only works for a task it tracks.

        Args:
            sink: the watcher that tracks (or will track) the task.
            task: the submitted task; a finished one is not remembered.
        """
        if task.is_finished:
            return
        known = self._tracked.get(task.id)
        if known is not None:
            # Another watcher of the same task: route to both; keep what was seen so far.
            if sink not in known.sinks:
                known.sinks.append(sink)
                self._by_sink.setdefault(sink, set()).add(task.id)
            return
        entry = _Tracked(task, sink)
        self._tracked[task.id] = entry
        self._by_sink.setdefault(sink, set()).add(task.id)
        if entry.external_id:
            self._by_external[entry.external_id] = task.id
        while len(self._tracked) > self.max_tracked:
            # Tasks polled to completion are only forgotten through observe(); evicting the
            # oldest keeps memory bounded, and the safety-net poll still covers them.
            self._forget(next(iter(self._tracked)))
        early = self._early.pop(task.id, False)
        if entry.external_id:
            early = self._early.pop(entry.external_id, False) or early
        if early:
            # Its final callback came before this route existed: check it now, not at the
            # safety-net interval.
            sink.poll_soon(task.id)

    def forget_sink(self, sink: TaskSink) -> None:
        """Stop routing callbacks to *sink* (a watcher that closed).

        Tasks that no other sink follows are forgotten.

        Args:
            sink: the watcher.
        """
        for task_id in self._by_sink.pop(sink, set()):
            entry = self._tracked.get(task_id)
            if entry is not None and sink in entry.sinks:
                entry.sinks.remove(sink)
                if not entry.sinks:
                    self._forget(task_id)

    def forget(self, task_id: str) -> None:
        """Stop expecting callbacks for *task_id* (later ones are accepted and ignored).

        Args:
            task_id: the task's id.
        """
        self._forget(task_id)

    def observe(self, event: Event) -> None:
        """An event sink: forgets tasks as they finish (``client.events.add``).

        A task one watcher saw finish is handed to the other watchers of it too. An expired
        task is not forgotten here: another watcher may still be waiting for it, and the one
        that gave up drops its routes when it closes.

        Args:
            event: any client event; only finished tasks matter.
        """
        if isinstance(event, TaskFinished):
            entry = self._tracked.get(event.task.id)
            if entry is None:
                return
            self._forget(event.task.id)
            for sink in entry.sinks:
                sink.update(event.task)

    def _forget(self, task_id: str) -> None:
        entry = self._tracked.pop(task_id, None)
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

    def _remember_early(self, task: Task) -> None:
        for key in (task.id, task.external_task_id):
            if key:
                self._early[key] = True
                self._early.move_to_end(key)
        while len(self._early) > _EARLY_KEPT:
            self._early.popitem(last=False)

    @property
    def tracking(self) -> int:
        """How many tasks the receiver expects callbacks for."""
        return len(self._tracked)

    # -- the request path --------------------------------------------------------------------

    async def handle(
        self,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: bytes,
        *,
        peer: str | None = None,
    ) -> tuple[int, str]:
        """Process one callback request and return the HTTP status and text to answer.

        Never raises for anything a sender can put in a request, and never waits for the
        network: a confirming GET runs in the background.

        Args:
            headers: the request headers (names in any case).
            query: the URL's query parameters.
            body: the raw body; adapters stop reading just past :attr:`max_body`.
            peer: the sender's address, for log lines.

        Returns:
            ``(200, "ok")`` for every authenticated, well-formed callback (whether or not the
            task is tracked, so that nothing is revealed), or a 4xx status and a reason.
        """
        self.stats.received += 1
        if len(body) > self.max_body:
            return self._reject(413, "body too large", peer)
        offered = query.get(TOKEN_PARAM)
        if not offered:
            return self._reject(401, "missing token", peer)
        if not hmac.compare_digest(offered.encode(), self._token.encode()):
            return self._reject(403, "wrong token", peer)
        signed = False
        if self._signing:
            try:
                msg_id = verify_signature(
                    self._signing,
                    headers,
                    body,
                    now=self._wall_clock(),
                    tolerance=self.tolerance,
                )
            except WebhookVerificationError as exc:
                return self._reject(401, f"bad signature: {exc}", peer)
            if self._replayed(msg_id):
                self.stats.duplicates += 1
                return 200, "ok"
            signed = True
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self._reject(400, "body is not JSON", peer)
        try:
            task = wire.parse_task(data, TEXT_TO_VIDEO, where="callback")
        except ResponseParseError as exc:
            return self._reject(400, f"not a task object: {exc.args[0]}", peer)
        self._route(task, signed=signed)
        return 200, "ok"

    def refuse_oversized(self, *, peer: str | None = None) -> tuple[int, str]:
        """Answer a request whose declared length is over :attr:`max_body`, without reading it.

        Args:
            peer: the sender's address, for the log line.

        Returns:
            ``(413, reason)``.
        """
        self.stats.received += 1
        return self._reject(413, "body too large", peer)

    def _reject(self, status: int, reason: str, peer: str | None) -> tuple[int, str]:
        self.stats.rejected[status] += 1
        # The reason never contains the query string, so the token cannot reach a log line.
        logger.warning("rejected a callback from %s: %s (HTTP %d)", peer or "?", reason, status)
        return status, reason

    def _replayed(self, msg_id: str) -> bool:
        now = self._wall_clock()
        horizon = now - 2 * self.tolerance
        while self._recent_ids and next(iter(self._recent_ids.values())) < horizon:
            self._recent_ids.popitem(last=False)
        if msg_id in self._recent_ids:
            return True
        self._recent_ids[msg_id] = now
        return False

    def _route(self, task: Task, *, signed: bool) -> None:
        entry = self._tracked.get(task.id)
        if entry is None and task.external_task_id:
            # Gateways may hand out their own task ids; our external id survives the remap.
            own_id = self._by_external.get(task.external_task_id)
            entry = self._tracked.get(own_id) if own_id is not None else None
        if entry is None:
            self.stats.ignored += 1
            logger.debug("callback for untracked task %s ignored", task.id)
            if task.is_finished:
                self._remember_early(task)
            return
        task = attrs.evolve(task, id=entry.task_id, kind=entry.kind)
        status = task.status.value
        if status in entry.seen:
            self.stats.duplicates += 1
            return
        entry.seen.add(status)
        logger.debug("callback: task %s is %s (signed=%s)", task.id, status, signed)
        if signed:
            if task.is_finished:
                self.stats.direct += 1
                self._forget(entry.task_id)
            # A verified non-terminal state is news too: it moves the safety-net poll later.
            for sink in entry.sinks:
                sink.update(task)
            return
        if not task.is_finished:
            # Unsigned progress is not fed in: a forger could postpone the safety-net poll.
            return
        if entry.confirming:
            entry.queued = task
            return
        group = self._group
        if self._confirm is None or group is None:
            entry.seen.discard(status)
            for sink in entry.sinks:
                sink.poll_soon(entry.task_id)
            return
        self._start_confirm(group, entry, task)

    def _start_confirm(self, group: anyio.abc.TaskGroup, entry: _Tracked, claimed: Task) -> None:
        entry.confirming = True
        self.stats.confirmations += 1
        group.start_soon(self._confirm_task, entry, claimed)

    async def _confirm_task(self, entry: _Tracked, claimed: Task) -> None:
        assert self._confirm is not None  # noqa: S101 - only started with a confirm function
        try:
            with anyio.fail_after(self.confirm_timeout):
                actual = await self._confirm(claimed)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the poll scheduler
            self.stats.confirm_failures += 1
            logger.warning("confirming task %s failed (%s); polling it soon", claimed.id, exc)
            entry.confirming = False
            entry.seen.discard(claimed.status.value)
            if entry.queued is not None:
                entry.seen.discard(entry.queued.status.value)
                entry.queued = None
            for sink in entry.sinks:
                sink.poll_soon(entry.task_id)
            return
        entry.confirming = False
        if actual.status is not claimed.status:
            self.stats.disagreements += 1
            logger.warning(
                "callback said task %s is %s, the API says %s; trusting the API",
                claimed.id,
                claimed.status.value,
                actual.status.value,
            )
            # Let a later (genuine) callback with that status trigger a new confirmation.
            entry.seen.discard(claimed.status.value)
        if actual.is_finished:
            self._forget(entry.task_id)
        for sink in entry.sinks:
            sink.update(actual)
        queued, entry.queued = entry.queued, None
        if queued is not None and not actual.is_finished and self._group is not None:
            self._start_confirm(self._group, entry, queued)


def aiohttp_handler(
    receiver: WebhookReceiver,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Serve *receiver* from ``aiohttp.web``: ``app.router.add_post(path, handler)``.

    Args:
        receiver: the receiver to feed.

    Returns:
        a request handler that reads at most ``receiver.max_body + 1`` bytes.
    """
    from aiohttp import web  # lazily: importing the core must not load the server half of aiohttp

    async def handle(request: web.Request) -> web.StreamResponse:
        limit = receiver.max_body
        declared = request.content_length
        if declared is not None and declared > limit:
            status, text = receiver.refuse_oversized(peer=request.remote)
            return web.Response(status=status, text=text)
        body = bytearray()
        while len(body) <= limit:
            chunk = await request.content.read(limit + 1 - len(body))
            if not chunk:
                break
            body.extend(chunk)
        status, text = await receiver.handle(
            request.headers, request.query, bytes(body), peer=request.remote
        )
        return web.Response(status=status, text=text)

    return handle
