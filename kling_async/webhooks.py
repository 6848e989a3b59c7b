"""Push delivery: a callback receiver that feeds the same stream as polling.

Kling POSTs the task object to a task's ``callback_url`` when its status changes (kling-api.md §5).
Deliveries may repeat, arrive out of order or never come, and through CometAPI they are
unauthenticated, so a callback is treated as a *hint*:

* The callback URL carries a per-receiver secret token ([`WebhookReceiver.callback_url`][kling_async.webhooks.WebhookReceiver.callback_url]);
  a request without it is refused (401/403) before the body is even parsed.
* With a Kling webhook secret configured, Standard-Webhooks signatures are verified
  ([`verify_signature`][kling_async.signatures.verify_signature]); a verified terminal status is fed to the watcher directly.
* A terminal status from an unsigned callback is confirmed with one request before the watcher
  yields the task (the callback is answered first).
* Tasks whose callbacks are expected are polled only every
  ``callback_interval`` seconds, a safety net for lost callbacks.

The core, [`WebhookReceiver.handle`][kling_async.webhooks.WebhookReceiver.handle], knows no web framework. [`aiohttp_handler`][kling_async.webhooks.aiohttp_handler] serves
it from ``aiohttp.web``; [`kling_async.webhooks_asgi`][kling_async.webhooks_asgi] from Starlette, FastAPI or any ASGI server.

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

This module is the receiver, its counters and its limits: one concept, over 500 lines mostly
of the docstrings of its public methods, that reads better whole; its routing table
(``_webhook_routes``), body checks (``_webhook_checks``) and aiohttp adapter
(``_webhook_aiohttp``) are private modules beside it.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.abc
import attrs

from . import _urls
from ._closing import AsyncScoped
from ._webhook_aiohttp import aiohttp_handler
from ._webhook_checks import ReplayWindow, parse_callback
from ._webhook_routes import CallbackRoutes, TaskSink, Tracked, seen_key
from .errors import ConfigurationError, WebhookVerificationError
from .events import CallbackReceived, Event, EventSink, TaskFinished, emit
from .logfields import task_fields
from .models import Task
from .signatures import (
    SIGNATURE_TOLERANCE,
    carries_signature,
    sign_payload,
    signing_key,
    verify_signature,
)

if TYPE_CHECKING:
    from .client import KlingClient

__all__ = [
    "DEFAULT_MAX_BODY",
    "MAX_JSON_DEPTH",
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

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a callback body (400 beyond it).

A task object nests four or five levels deep. The limit is checked on the raw bytes before
parsing, so a body of thousands of ``[`` cannot exhaust the parser's recursion.
"""

TOKEN_PARAM = _urls.TOKEN_PARAM
"""The query parameter of the callback URL that carries the receiver's token."""

Confirm = Callable[[Task], Awaitable[Task]]
"""Fetch a task's real state, e.g. [`KlingClient.get_task`][kling_async.client.KlingClient.get_task]."""


@attrs.define
class WebhookStats:
    """What a receiver did, for metrics and tests.

    Attributes:
        received: requests handed to [`WebhookReceiver.handle`][kling_async.webhooks.WebhookReceiver.handle].
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


class WebhookReceiver(AsyncScoped):
    """Turns Kling callbacks into watcher updates; framework-neutral (see [`handle`][kling_async.webhooks.WebhookReceiver.handle]).

    Run it as ``async with receiver:`` around the time callbacks may arrive: the confirming GETs
    of unsigned callbacks run in its task group. Outside that block an unsigned terminal callback
    only asks the watcher to poll the task soon.

    Args:
        confirm: fetches a task's real state (``client.get_task``); without it, unsigned
            terminal callbacks only make the watcher poll soon.
        token: the secret the callback URL carries; a random one when omitted. It is never
            logged or shown in ``repr``.
        signing_secret: the Kling console's webhook secret (``whsec_...``), or several during a
            rotation. A callback that carries a signature must then carry a valid one (401
            otherwise); one that carries none is read as an unsigned callback (a hint, confirmed
            by a GET), because whether Kling signs legacy-path callbacks is unconfirmed.
        require_signature: with a *signing_secret*, refuse (401) callbacks that carry no
            signature too, once you know yours are all signed.
        max_body: the largest body accepted, in bytes (413 above).
        tolerance: seconds a signature timestamp may be off.
        confirm_timeout: seconds allowed for one confirming GET.
        public_url: the externally reachable URL of the callback route, used by
            [`callback_url`][kling_async.webhooks.WebhookReceiver.callback_url] when it is given no URL.
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
        require_signature: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        tolerance: float = SIGNATURE_TOLERANCE,
        confirm_timeout: float = 30.0,
        public_url: str | None = None,
        max_tracked: int = 200_000,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigurationError("a callback token is a str of at least 16 characters")
        if public_url is not None and not isinstance(public_url, str):
            raise ConfigurationError(f"public_url must be a URL (a str), got {public_url!r}")
        numbers = (max_body, max_tracked, tolerance, confirm_timeout)
        if any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers) or (
            max_body < 1 or max_tracked < 1 or not tolerance > 0 or not confirm_timeout > 0
        ):
            raise ConfigurationError(
                "max_body, max_tracked, tolerance and confirm_timeout must be positive numbers"
            )
        self._token = token if token is not None else secrets.token_urlsafe(24)
        secrets_list = [signing_secret] if isinstance(signing_secret, str) else signing_secret
        self._signing: tuple[str, ...] = tuple(secrets_list or ())
        for item in self._signing:
            signing_key(item)  # fail now, not on the first callback
        if require_signature and not self._signing:
            raise ConfigurationError("require_signature needs a signing_secret")
        self._require_signature = require_signature
        self.max_body = max_body
        """The largest body accepted, in bytes."""
        self.tolerance = tolerance
        """Seconds a signature timestamp may be off."""
        self.confirm_timeout = confirm_timeout
        """Seconds allowed for one confirming GET."""
        self.public_url = public_url
        """The callback route's external URL, for [`callback_url`][kling_async.webhooks.WebhookReceiver.callback_url]."""
        self.max_tracked = max_tracked
        """The most tasks remembered at once."""
        self.stats = WebhookStats()
        """Counters of what the receiver did."""
        self._confirm = confirm
        self._wall_clock = wall_clock
        self._routes = CallbackRoutes()
        self._replays = ReplayWindow()
        self._group: anyio.abc.TaskGroup | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # The bound client's event hub: every answer is reported there as a CallbackReceived.
        self._events: EventSink | None = None

    @classmethod
    def for_client(cls, client: KlingClient, **options: Any) -> WebhookReceiver:
        """Make a receiver that confirms with *client* and forgets tasks the client saw finish.

        Args:
            client: the client whose ``get_task`` confirms unsigned callbacks.
            **options: any other [`WebhookReceiver`][kling_async.webhooks.WebhookReceiver] argument.

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
        self._events = client.events

    def unbind(self, client: KlingClient) -> None:
        """Stop following *client* (called when it closes).

        Args:
            client: a client passed to [`bind`][kling_async.webhooks.WebhookReceiver.bind] before.
        """
        client.events.remove(self.observe)
        if self._events is client.events:
            self._events = None

    def __repr__(self) -> str:
        signed = "signed" if self._signing else "unsigned"
        return f"WebhookReceiver({signed}, tracking={len(self._routes)}, token=<redacted>)"

    async def _enter(self) -> None:
        if self._group is not None:
            raise RuntimeError("this WebhookReceiver is already running (async with it once)")
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group

    async def _exit(self) -> None:
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
            base_url: the externally reachable URL of the callback route; [`public_url`][kling_async.webhooks.WebhookReceiver.public_url]
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
        self._routes.expect(sink, task, max_tracked=self.max_tracked)

    def forget_sink(self, sink: TaskSink) -> None:
        """Stop routing callbacks to *sink* (a watcher that closed).

        Tasks that no other sink follows are forgotten.

        Args:
            sink: the watcher.
        """
        self._routes.forget_sink(sink)

    def drop(self, sink: TaskSink, task_id: str) -> None:
        """Stop routing *task_id*'s callbacks to *sink* (it gave the task up: its deadline).

        The task is forgotten once no other sink follows it, so a long-lived stream does not
        keep routes for tasks it stopped waiting for.

        Args:
            sink: the watcher.
            task_id: the task's id.
        """
        self._routes.drop(sink, task_id)

    def forget(self, task_id: str) -> None:
        """Stop expecting callbacks for *task_id* (later ones are accepted and ignored).

        Args:
            task_id: the task's id.
        """
        self._routes.forget(task_id)

    def observe(self, event: Event) -> None:
        """An event sink: forgets tasks as they finish (``client.events.add``).

        A task one watcher saw finish is handed to the other watchers of it too. An expired
        task is not forgotten here: another watcher may still be waiting for it, and the one
        that gave up drops its routes when it closes.

        Args:
            event: any client event; only finished tasks matter.
        """
        if isinstance(event, TaskFinished):
            entry = self._routes.get(event.task.id)
            if entry is None:
                return
            self._routes.forget(event.task.id)
            for sink in entry.sinks:
                sink.update(event.task)

    @property
    def tracking(self) -> int:
        """How many tasks the receiver expects callbacks for."""
        return len(self._routes)

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
        network: a confirming GET runs in the background. A body over [`max_body`][kling_async.webhooks.WebhookReceiver.max_body] bytes
        is refused with 413, one nested deeper than [`MAX_JSON_DEPTH`][kling_async.webhooks.MAX_JSON_DEPTH] with 400.

        Args:
            headers: the request headers (names in any case).
            query: the URL's query parameters.
            body: the raw body; adapters stop reading just past [`max_body`][kling_async.webhooks.WebhookReceiver.max_body].
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
        if self._signing and (self._require_signature or carries_signature(headers)):
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
            if self._replays.replayed(msg_id, now=self._wall_clock(), keep=2 * self.tolerance):
                self.stats.duplicates += 1
                emit(self._events, CallbackReceived(200, "duplicate"))
                return 200, "ok"
            signed = True
        task = parse_callback(body, signed=signed, max_depth=MAX_JSON_DEPTH)
        if isinstance(task, str):
            return self._reject(400, task, peer)
        self._route(task, signed=signed)
        emit(self._events, CallbackReceived(200, "accepted", task))
        return 200, "ok"

    def refuse_oversized(self, *, peer: str | None = None) -> tuple[int, str]:
        """Answer a request whose declared length is over [`max_body`][kling_async.webhooks.WebhookReceiver.max_body], without reading it.

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
        # The reason's head ("bad signature"), not its detail: a short, stable metric label.
        emit(self._events, CallbackReceived(status, reason.split(":", 1)[0]))
        return status, reason

    def alias(self, task: Task) -> None:
        """Route callbacks that carry *task*'s upstream id (a gateway's remapped task) to it.

        Args:
            task: a tracked task whose ``upstream_id`` is known.
        """
        self._routes.alias(task)

    def _route(self, task: Task, *, signed: bool) -> None:
        entry = self._routes.find(task)
        if entry is None:
            self.stats.ignored += 1
            logger.debug("callback for untracked task %s ignored", task.id, extra=task_fields(task))
            if task.is_finished:
                self._routes.remember_early(task)
            return
        task = attrs.evolve(task, id=entry.task_id, kind=entry.kind)
        status = seen_key(task.status.value, signed=signed)
        if status in entry.seen:
            self.stats.duplicates += 1
            return
        entry.seen.add(status)
        logger.debug(
            "callback: task %s is %s (signed=%s)",
            task.id,
            task.status.value,
            signed,
            extra=task_fields(task),
        )
        if signed:
            if task.is_finished:
                self.stats.direct += 1
                self._routes.forget(entry.task_id)
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

    def _start_confirm(self, group: anyio.abc.TaskGroup, entry: Tracked, claimed: Task) -> None:
        entry.confirming = True
        self.stats.confirmations += 1
        group.start_soon(self._confirm_task, entry, claimed)

    async def _confirm_task(self, entry: Tracked, claimed: Task) -> None:
        assert self._confirm is not None  # noqa: S101 - only started with a confirm function
        try:
            with anyio.fail_after(self.confirm_timeout):
                actual = await self._confirm(claimed)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the poll scheduler
            self.stats.confirm_failures += 1
            logger.warning(
                "confirming task %s failed (%s); polling it soon",
                claimed.id,
                exc,
                extra=task_fields(claimed),
            )
            self._routes.confirm_failed(entry, claimed)
            return
        if actual.status is not claimed.status:
            self.stats.disagreements += 1
            logger.warning(
                "callback said task %s is %s, the API says %s; trusting the API",
                claimed.id,
                claimed.status.value,
                actual.status.value,
                extra=task_fields(actual),
            )
        queued = self._routes.confirmed(entry, claimed, actual)
        if queued is not None and self._group is not None:
            self._start_confirm(self._group, entry, queued)
