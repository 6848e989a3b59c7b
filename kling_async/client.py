"""``KlingClient``: one async session over one connection pool.

The client is a facade: configuration, lifecycle and the public verbs. It composes small parts
and owns none of their logic: the request pipeline (``_pipeline``: limiter, auth, transport,
wire, retries) sends requests, the create protocol (``_create``: slot hold, 1303 re-queue,
ambiguous creates, look-up by external id) makes tasks, the book of active tasks (``_active``)
holds their slots until they finish, and the [`PollScheduler`][kling_async.scheduler.PollScheduler]
decides when to check which task.

It stays one module over 500 lines on purpose: it is the one page a user reads to learn the
API, and most of its length is the public verbs' docstrings; the logic behind them lives in
the modules above.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, overload

import anyio
import attrs

from . import _fields, dialects, wire
from ._active import ActiveTasks
from ._by_ids import fetch_by_ids, fetch_one
from ._closing import AsyncClosing
from ._config import build_auth, check_options, resolve_provider
from ._create import Created, CreateOutcome, CreateProtocol
from ._download_files import check_destination
from ._fanout import submit_all
from ._listing import LIST_PAGE_SIZE, NoListRoute, fetch_by_listing
from ._pipeline import UNCHANGED, RequestPipeline
from ._slot_scope import SlotPools, slot_scope, slot_weight
from .account import AccountCosts
from .as_completed import AsCompleted
from .auth import Auth
from .clock import Clock, SystemClock
from .completion import CompletionModel, profile_of
from .download import Downloader
from .errors import (
    ConfigurationError,
    DownloadError,
    KlingError,
    PartialSubmitError,
    RateLimitError,
    TaskFailedError,
    ValidationError,
    WaitTimeoutError,
)
from .events import (
    DownloadFinished,
    Event,
    EventHub,
    TaskSubmitted,
)
from .kinds import kind_for_request, kind_named
from .limiter import RateLimit, RateLimiter, TokenBucketLimiter, UnlimitedLimiter
from .models import ImageToVideo, Task, TaskKind, TaskRequest, TextToVideo
from .providers import Provider
from .retry import RetryPolicy
from .scheduler import PartialBatchError, PollPolicy
from .shared import SharedStore
from .slots import SlotPool, TaskSlots
from .standard import TASKS_PER_QUERY, ApiStyle, create_path, standard_body
from .transport import AiohttpTransport, Transport
from .validation import RequestLimits
from .watch import Watcher
from .webhooks import WebhookReceiver

__all__ = ["ENV_BASE_URL", "KlingClient", "new_external_task_id"]

_ACCOUNT_GAP = 1.0
"""Seconds between two ``GET /account/costs`` of one client (Kling: QPS <= 1)."""
_ACCOUNT_TRIES = 3
"""Tries of one ``account_costs`` call that meets 1302s (another program on the account)."""

logger = logging.getLogger("kling_async.client")

ENV_BASE_URL = "KLING_BASE_URL"
"""The environment variable ``KlingClient`` (and the CLI) read a base URL from."""

DEFAULT_RATE = RateLimit(per_second=20.0, burst=40)
"""The default request rate: generous for Kling (which documents no QPS limit on queries), and
low enough that a batch of thousands does not flood a gateway that does."""


class KlingClient(AsyncClosing):
    """An async session with the Kling video API.

    Use it as an async context manager; all requests share one connection pool, one rate limiter
    and one pool of task slots.

    Args:
        api_key: a CometAPI key (or a Kling API key); falls back to ``$COMETAPI_KEY``.
        access_key: Kling access key, for the JWT scheme (with ``secret_key``); falls back to
            ``$KLING_ACCESS_KEY``.
        secret_key: Kling secret key; falls back to ``$KLING_SECRET_KEY``.
        auth: a ready [`Auth`][kling_async.auth.Auth] instead of the three above.
        provider: ``"cometapi"`` (default), ``"kling"``, ``"kling-standard"`` (Kling's new-standard
            API where a kind has it), or a [`Provider`][kling_async.providers.Provider].
        base_url: another host for the provider (a proxy or the emulator); falls back to
            ``$KLING_BASE_URL``.
        limits: request limits checked before sending; defaults to the provider's.
        retry: the retry policy for transient failures.
        rate: requests per second (with burst) shared by every request this client sends
            (default [`DEFAULT_RATE`][kling_async.client.DEFAULT_RATE]); a 429 then pauses every request of the client for
            one shared cool-down. ``None`` for no pacing: a 429 is then retried with each
            request's own back-off.
        max_active_tasks: how many submitted-but-unfinished tasks may exist at once (Kling's
            per-account concurrency); ``submit`` waits for a free slot.
        poll: how often the scheduler checks tasks.
        timeout: seconds allowed for each HTTP request.
        transport: a custom [`Transport`][kling_async.transport.Transport] (tests, proxies).
        clock: a custom [`Clock`][kling_async.clock.Clock] (tests).
        limiter: a custom [`RateLimiter`][kling_async.limiter.RateLimiter] instead of *rate* (one
            shared by several clients, say).
        slots: a custom [`TaskSlots`][kling_async.slots.TaskSlots] instead of *max_active_tasks*.
        model_name: the video ``model_name`` for requests that name none; defaults to the
            provider's ([`DEFAULT_VIDEO_MODEL`][kling_async.providers.DEFAULT_VIDEO_MODEL]). A request's own
            ``model_name`` always wins.
        shared: a store shared with other processes of the same account (for instance
            [`RedisStore`][kling_async.redis_store.RedisStore]): *rate* and *max_active_tasks* then
            apply to all of them together. The client opens the store on ``async with`` and
            closes it in [`aclose`][kling_async.client.KlingClient.aclose].
        webhook: a [`WebhookReceiver`][kling_async.webhooks.WebhookReceiver] with a ``public_url``. Every
            submission without a ``callback_url`` then gets the receiver's, and watchers track
            such tasks by callback with polling only as a safety net; an unsigned final status
            makes the watcher check the task at once.
        slots_per_model: count task slots per resource pack and model (``video:kling-v3``,
            ``image:kling-v2-1``, ``try-on:...``), each with *max_active_tasks*, as Kling counts
            concurrency per model version and resource pack; ``False`` (the default, and the
            safe side where that is unconfirmed) counts every task against one pool. Either
            way an image request for ``n`` images holds ``n`` slots. With *shared*, each
            scope's pool is shared too.

    Example::

        async with KlingClient() as client:
            task = await client.text_to_video("A beach at sunset", aspect_ratio="9:16")
            done = await client.wait(task, timeout=900)
            path = await client.download(done, "out/")
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        auth: Auth | None = None,
        provider: Provider | Literal["cometapi", "kling", "kling-standard"] = "cometapi",
        base_url: str | None = None,
        limits: RequestLimits | None = None,
        retry: RetryPolicy | None = None,
        rate: RateLimit | None = DEFAULT_RATE,
        max_active_tasks: int | None = None,
        poll: PollPolicy | None = None,
        timeout: float = 60.0,
        transport: Transport | None = None,
        clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        slots: TaskSlots | None = None,
        model_name: str | None = None,
        webhook: WebhookReceiver | None = None,
        shared: SharedStore | None = None,
        slots_per_model: bool = False,
    ) -> None:
        resolved = resolve_provider(provider, base_url or os.environ.get(ENV_BASE_URL))
        check_options(
            max_active_tasks=max_active_tasks,
            timeout=timeout,
            model_name=model_name,
            webhook=webhook,
        )
        self._provider = resolved
        # Asked per status check: only the new-standard style reads some kinds another way.
        self._standard_style = resolved.api_style is ApiStyle.STANDARD
        self.limits = limits or resolved.limits
        """The request limits checked before sending."""
        self._retry = retry or RetryPolicy()
        # The default policy expects Kling's minutes-long tasks; the emulator's take moments.
        self.poll_policy = poll or (
            PollPolicy() if resolved.real_durations else PollPolicy(expected=None)
        )
        """How the scheduler paces status checks."""
        self.model_name = model_name or resolved.default_model
        """The video ``model_name`` sent for requests that name none (``None``: left out)."""
        self._completions = CompletionModel()
        self._timeout = timeout
        self._clock: Clock = clock or SystemClock()
        self._events = EventHub()
        self._auth = auth or build_auth(resolved, api_key, access_key, secret_key)
        self._shared = shared
        self._shared_open = False
        # What the scheduler spreads a round of first checks over (a custom limiter's is unknown).
        self._checks_per_second = rate.per_second if limiter is None and rate is not None else None
        if limiter is None and rate is not None:
            limiter = (
                TokenBucketLimiter(rate, clock=self.clock, events=self._emit)
                if shared is None
                else shared.rate_limiter(rate, clock=self.clock, events=self._emit)
            )
        # Without pacing the pipeline skips the limiter altogether (no awaits per request).
        paced = limiter
        self._limiter: RateLimiter = limiter or UnlimitedLimiter()
        if slots_per_model and slots is not None:
            # Each scope needs a pool of its own, made here or by the shared store.
            raise ConfigurationError(
                "slots_per_model=True makes its own pools (in-process, or on shared=); "
                "it cannot split a custom slots="
            )
        if slots is None:
            slots = (
                SlotPool(max_active_tasks, clock=self.clock, events=self._emit)
                if shared is None
                else shared.task_slots(max_active_tasks, clock=self.clock, events=self._emit)
            )
        self._slots: TaskSlots = slots
        self._max_active_tasks = max_active_tasks
        self._pools = SlotPools(slots, self._scoped_pool if slots_per_model else None)
        self._pipeline = RequestPipeline(
            provider=resolved,
            auth=self._auth,
            transport=transport or AiohttpTransport(),
            limiter=paced,
            retry=self.retry,
            clock=self.clock,
            events=self.events,
            emit=self._emit,
            timeout=timeout,
        )
        # The request pipeline's entry point (the kinds with extra steps use it too).
        self._call = self._pipeline.call
        self._webhook = webhook
        self._book = ActiveTasks(
            pools=self._pools,
            clock=self.clock,
            policy=lambda: self.poll_policy,
            completions=self.completions,
            emit=self._emit,
            webhook=webhook,
        )
        self._book.refresh = self._refresh
        self._creates = CreateProtocol(
            call=self._call,
            provider=resolved,
            retry=self.retry,
            clock=self.clock,
            acquire_hold=self._book.acquire_hold,
            per_model=slots_per_model,
            emit=self._emit,
        )
        # Cleared when the provider turns out to answer no list route despite supports_list.
        self._lists_work = resolved.supports_list
        self._downloader: Downloader | None = None
        self._account_gate = anyio.Lock()
        self._account_last = -_ACCOUNT_GAP
        if webhook is not None:
            webhook.bind(self)

    # What the client was built with. Read-only: the request pipeline, the slot pools and the
    # scheduler hold these from construction on, so a reassigned one would not be used.

    @property
    def provider(self) -> Provider:
        """Where requests go, and which unconfirmed features are relied on."""
        return self._provider

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._retry

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter every request passes (an unlimited one with ``rate=None``)."""
        return self._limiter

    @property
    def slots(self) -> TaskSlots:
        """The task slots (of every task; with ``slots_per_model``, of tasks adopted without
        their request)."""
        return self._slots

    @property
    def max_active_tasks(self) -> int | None:
        """The most tasks at once (per resource pack and model with ``slots_per_model``)."""
        return self._max_active_tasks

    @property
    def timeout(self) -> float:
        """Seconds allowed for each HTTP request."""
        return self._timeout

    @property
    def clock(self) -> Clock:
        """The clock that paces checks, back-offs and slot waits."""
        return self._clock

    @property
    def events(self) -> EventHub:
        """Subscribe to submissions, polls, retries and finished tasks: ``client.events.add(fn)``."""
        return self._events

    @property
    def completions(self) -> CompletionModel:
        """How long this client's tasks took, per kind of request; the scheduler checks there."""
        return self._completions

    @property
    def webhook(self) -> WebhookReceiver | None:
        """The callback receiver this client fills ``callback_url`` in for, if any."""
        return self._webhook

    def _scoped_pool(self, scope: str) -> TaskSlots:
        """A new pool of *scope* (``slots_per_model``): in-process, or on the shared store."""
        if self._shared is None:
            return SlotPool(self.max_active_tasks, clock=self.clock, events=self._emit)
        return self._shared.task_slots(
            self.max_active_tasks, clock=self.clock, events=self._emit, scope=scope
        )

    def __repr__(self) -> str:
        return (
            f"KlingClient(provider={self.provider.name!r}, base_url={self.provider.base_url!r}, "
            f"auth={self._auth!r})"
        )

    @property
    def _closed(self) -> bool:
        return self._pipeline.closed

    async def __aenter__(self) -> KlingClient:
        if self._closed:
            raise ConfigurationError("this client is closed; create a new KlingClient")
        if self._shared is not None and not self._shared_open:
            await self._shared.open()
            self._shared_open = True
        return self

    async def aclose(self) -> None:
        """Close the connection pool (and the shared store, if it opened one). Safe to call twice."""
        if not self._closed and self.webhook is not None:
            self.webhook.unbind(self)
        self._pipeline.closed = True
        if self._shared is not None and self._shared_open:
            self._shared_open = False
            await self._shared.aclose()
        downloader, self._downloader = self._downloader, None
        if downloader is not None:
            await downloader.aclose()
        await self._pipeline.aclose()

    def _emit(self, event: Event) -> None:
        self.events(event)

    # -- single tasks ----------------------------------------------------------------------

    async def get_task(self, task: Task | str, kind: TaskKind | str = "text2video") -> Task:
        """Fetch a task's current state.

        Args:
            task: a [`Task`][kling_async.models.Task], or a task id (then *kind* says which endpoint created it).
            kind: the task kind when *task* is an id: a [`TaskKind`][kling_async.models.TaskKind] or its name.
        """
        return await self._read_task(task, kind, keep_raw=True)

    def _poll(self, task: Task) -> Coroutine[Any, Any, Task]:
        """The scheduler's status check: ``get_task`` keeping no ``raw`` while the task runs.

        It returns ``_read_task``'s coroutine rather than being one: a frame less to resume at
        each of the request's suspensions, thousands of times a second.
        """
        return self._read_task(task, task.kind, keep_raw=False)

    async def _read_task(self, task: Task | str, kind: TaskKind | str, *, keep_raw: bool) -> Task:
        like: Task | None
        if isinstance(task, Task):
            like, task_id, resolved = task, task.id, task.kind
        else:
            if not isinstance(task, str):
                raise ConfigurationError(
                    f"a task is a Task or its id (a str), got {type(task).__name__}: {task!r}"
                )
            like, task_id = None, task
            resolved = kind_named(kind) if isinstance(kind, str) else kind
        if not task_id or "/" in task_id:
            raise ConfigurationError(f"not a task id: {task_id!r}")
        if self._standard_style and self._provider.is_standard(resolved.name):
            found = await fetch_one(self._call, task_id, resolved)
        else:
            path = f"{resolved.path}/{task_id}"
            # The task in hand still describes an answer that has not changed (most do not
            # between two checks), unless it lacks the raw answer this caller wants.
            known = like.fingerprint if like is not None and (like.raw or not keep_raw) else None
            data, digest = await self._pipeline.read(path, known=known)
            if data is UNCHANGED and like is not None:
                found = like
            else:
                found = wire.parse_task(
                    data,
                    resolved,
                    where=f"GET {path}",
                    fingerprint=digest,
                    keep_raw=keep_raw,
                    like=like,
                    asked_id=task_id,
                )
        if self._book.needs_observing(found):
            await self._book.observe(found)
        return found

    async def adopt(self, task: Task, request: TaskRequest | None = None) -> None:
        """Count an unfinished task created earlier (a resumed batch) against the task slots.

        Its slots free, like any other's, when the client sees the task finish. Adopting a task
        twice, or a finished one, does nothing. Give the *request* it was created from when it
        is known: it says how many slots the task holds, and of which pool.
        """
        scope, weight = "", 1
        if request is not None:
            # As submit counts it: with the client's default model filled in.
            body = wire.request_body(self._with_defaults(request, task.kind))
            scope = slot_scope(task.kind, body, per_model=self._creates.per_model)
            weight = slot_weight(body)
        await self._book.adopt(task, scope, weight)

    async def observe(self, task: Task) -> None:
        """Note a task's state: frees its task slot once it has finished."""
        await self._book.observe(task)

    async def list_tasks(
        self, kind: TaskKind | str = "text2video", *, page: int = 1, page_size: int = 30
    ) -> list[Task]:
        """List recent tasks of one kind (Kling's ``?pageNum=&pageSize=``; UNCONFIRMED on CometAPI)."""
        resolved = kind_named(kind) if isinstance(kind, str) else kind
        if (
            not all(type(number) is int for number in (page, page_size))
            or not 1 <= page <= 1000
            or not 1 <= page_size <= 500
        ):
            raise ConfigurationError(
                "page must be a whole number in [1, 1000] and page_size one in [1, 500]"
            )
        data = await self._call(
            "GET", resolved.path, params={"pageNum": str(page), "pageSize": str(page_size)}
        )
        return wire.parse_task_list(data, resolved, where=f"GET {resolved.path}")

    async def find_by_external_id(
        self, external_task_id: str, kind: TaskKind | str = "text2video"
    ) -> Task | None:
        """Look a task up by its ``external_task_id``; ``None`` when the server says it has none.

        The query form comes from ``Provider.external_lookup`` (UNCONFIRMED on CometAPI).

        Raises:
            SubmitUncertainError: when the provider has no look-up form configured.
        """
        found, _ = await self._creates.find_external(external_task_id, _kind(kind))
        return found

    async def find_created(
        self, external_task_id: str, kind: TaskKind | str = "text2video"
    ) -> tuple[Task | None, bool]:
        """After an ambiguous create: the task it made, and whether none can exist for sure.

        Returns ``(task, False)`` when found, ``(None, True)`` only when the provider's "not
        found" is trusted (``Provider.trust_not_found``) *and* came from Kling itself, and
        ``(None, False)`` when the answer proves nothing (a re-send might pay twice).

        Raises:
            SubmitUncertainError: when the provider has no look-up form configured.
        """
        return await self._creates.find_created(external_task_id, _kind(kind))

    async def account_costs(
        self, *, start: datetime | None = None, end: datetime | None = None
    ) -> AccountCosts:
        """The account's resource packs and what is left of them (Kling direct only).

        ``GET /account/costs``, which Kling asks to call at most once a second: calls from
        this client are spaced so. The window defaults to the last 30 days.

        Raises:
            ConfigurationError: the provider has no account endpoint (CometAPI documents
                none; check your balance in its console), or *start* is after *end*.
        """
        if not self.provider.supports_account:
            raise ConfigurationError(
                f"provider {self.provider.name!r} has no account endpoint (Kling's "
                "GET /account/costs is for Kling direct; CometAPI shows its balance in its console)"
            )
        if any(moment is not None and moment.tzinfo is None for moment in (start, end)):
            raise ConfigurationError(
                "account_costs: give start and end with a time zone (datetime.now(timezone.utc))"
            )
        end = end or datetime.now(timezone.utc)
        start = start or end - timedelta(days=30)
        if start > end:
            raise ConfigurationError("account_costs: start must not be after end")
        params = {
            "start_time": str(int(start.timestamp() * 1000)),
            "end_time": str(int(end.timestamp() * 1000)),
        }
        async with self._account_gate:
            # Kling: "control the request rate (QPS<=1)". Retried here, not by the pipeline,
            # so that a retry keeps the same spacing.
            for attempt in range(_ACCOUNT_TRIES):
                wait = self._account_last + _ACCOUNT_GAP - self.clock.now()
                if wait > 0:
                    await self.clock.sleep(wait)
                try:
                    data = await self._call(
                        "GET", "account/costs", params=params, retry=False, standard=True
                    )
                except RateLimitError:
                    if attempt == _ACCOUNT_TRIES - 1:
                        raise
                    continue
                finally:
                    self._account_last = self.clock.now()
                return wire.parse_account_costs(data, where="GET account/costs")
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    # -- creating tasks --------------------------------------------------------------------

    async def submit(self, request: TaskRequest, *, external_task_id: str | None = None) -> Task:
        """Create a task; returns it as the server reported it (usually ``submitted``).

        The request is validated first (nothing is sent if it is wrong). Every create carries an
        ``external_task_id`` (the request's, this argument, or a generated one), so that after an
        ambiguous failure (a timeout or dropped connection after sending) the client can find out
        whether a task was created instead of paying twice. With ``max_active_tasks`` set, this
        waits for a free task slot first; a 1303 from the server re-queues the submission.

        Raises:
            ValidationError: before any network call, naming the field.
            SubmitUncertainError: when a task may exist and the client could not find out.
            APIError: for definite failures (content policy, bad parameters, auth, balance).
        """
        outcome = await self._submit_outcome(request, external_task_id=external_task_id)
        if isinstance(outcome, Created):
            return outcome.task
        raise outcome.error

    async def _submit_outcome(
        self, request: TaskRequest, *, external_task_id: str | None = None
    ) -> CreateOutcome:
        """[`submit`][kling_async.client.KlingClient.submit], answering what came of it instead
        of raising for a refused or uncertain create (``Batch`` records these)."""
        kind = kind_for_request(request)
        callback = None
        if self.webhook is not None:
            callback = self.webhook.callback_url()
            if request.callback_url is None:
                request = attrs.evolve(request, callback_url=callback)
            elif request.callback_url != callback:
                callback = None  # the caller's own endpoint: no callback for our receiver
        request = self._with_defaults(request, kind)
        self.check_request(request)
        ext_id = external_task_id or request.external_task_id or new_external_task_id()
        body = wire.request_body(request, external_task_id=ext_id)
        started = self.clock.now()
        outcome = await self._creates.create(kind, body, ext_id)
        if not isinstance(outcome, Created):
            return outcome
        task = outcome.task
        if task.external_task_id is None:
            task = attrs.evolve(task, external_task_id=ext_id)
            outcome = attrs.evolve(outcome, task=task)
        await self._book.bind(task, outcome.hold)
        if not task.is_finished:
            self.completions.submitted(task.id, profile_of(request, kind.name), self.clock.now())
            if callback is not None:
                self._book.callback_ids.add(task.id)
        self._emit(TaskSubmitted(task, request, self.clock.now() - started))
        return outcome

    def check_request(self, request: TaskRequest) -> None:
        """Raise what [`submit`][kling_async.client.KlingClient.submit] would raise for *request*
        before sending anything: the request limits, the model rules, and, on Kling's
        new-standard API, whether the new request shape can carry it.

        Raises:
            ValidationError: naming the field (``ModelRuleError`` for a model rule).
            ConfigurationError: no task kind creates a request of this type.
        """
        kind = kind_for_request(request)
        self.limits.check(request)
        # One body for both checks, as submit sends it (the defaults are idempotent).
        body = wire.request_body(self._with_defaults(request, kind))
        weight = slot_weight(body)
        limit = self.max_active_tasks
        if limit is not None and weight > limit:
            raise ValidationError(
                "n",
                f"{weight} images hold {weight} task slots, more than max_active_tasks={limit}",
            )
        if self.provider.is_standard(kind.name):
            create_path(kind.name, body)
            standard_body(body)

    def _with_defaults(self, request: TaskRequest, kind: TaskKind) -> TaskRequest:
        """Name the model and the fields whose default a gateway would change, explicitly."""
        changes: dict[str, Any] = {
            field: value
            for field, value in dialects.EXPLICIT_DEFAULTS.get(kind.name, {}).items()
            if getattr(request, field, value) is None
        }
        # Only where the video models apply: other kinds have models (or none) of their own.
        if (
            kind.uses_video_model
            and getattr(request, "model_name", None) is None
            and self.model_name is not None
        ):
            changes["model_name"] = self.model_name
        return attrs.evolve(request, **changes) if changes else request

    def expects_callback(self, task: Task | str) -> bool:
        """Whether *task* was created by this client with its receiver's ``callback_url``.

        Args:
            task: a [`Task`][kling_async.models.Task] or a task id.
        """
        return (task.id if isinstance(task, Task) else task) in self._book.callback_ids

    def _refresh_interval(self) -> float:
        return self._book.refresh_interval()

    async def _refresh(self, tasks: Sequence[Task]) -> None:
        """Check *tasks* (unwatched ones, while submitters wait for a slot)."""
        if self._lists_work:
            await self._batch_fetch(tasks)
            return
        for task in tasks:
            await self._poll(task)

    async def text_to_video(self, prompt: str, **fields: Any) -> Task:
        """Shorthand for ``submit(TextToVideo(prompt=prompt, **fields))``.

        Example::

            task = await client.text_to_video("A beach at sunset", aspect_ratio="9:16", mode="pro")
        """
        return await self.submit(TextToVideo(prompt=prompt, **fields))

    @overload
    async def submit_many(
        self,
        requests: Iterable[TaskRequest],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[Task]: ...

    @overload
    async def submit_many(
        self,
        requests: Iterable[TaskRequest],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[True],
    ) -> list[Task | KlingError]: ...

    async def submit_many(
        self,
        requests: Iterable[TaskRequest],
        *,
        concurrency: int = 16,
        return_exceptions: bool = False,
    ) -> list[Task] | list[Task | KlingError]:
        """Submit many requests concurrently; returns the tasks in the order of *requests*.

        Every request is validated before the first is sent. Submissions wait for task slots
        (``max_active_tasks``) and share the rate limiter. If some fail, the tasks that were created
        are never lost: they are in ``PartialSubmitError.tasks`` (or, with
        ``return_exceptions=True``, the result list holds the error in that request's place).
        """
        items = _fields.request_list(requests, "submit_many")
        for request in items:
            self.check_request(request)
        results = await submit_all(self.submit, items, concurrency)
        if return_exceptions:
            return results
        errors = [
            (index, item) for index, item in enumerate(results) if isinstance(item, KlingError)
        ]
        tasks = [item for item in results if isinstance(item, Task)]
        if errors:
            raise PartialSubmitError(tasks=tasks, errors=errors)
        return tasks

    def as_completed(
        self,
        requests: Iterable[TaskRequest],
        *,
        concurrency: int = 16,
        task_timeout: float | None = None,
    ) -> AsCompleted:
        """Submit *requests* as task slots free and yield the tasks as they finish.

        The one-call form of ``submit_many`` then ``watch``, named after ``asyncio.as_completed``:
        each task is watched from the moment it is created, by one scheduler for all of them,
        so results come while later requests are still waiting for a slot. Every request is
        validated before the first is sent. Failed tasks are yielded too (``task.failed``);
        when some submissions failed, iteration ends by raising
        [`PartialSubmitError`][kling_async.errors.PartialSubmitError], after every created task.
        For an overall deadline, put the block inside ``anyio.fail_after`` (or
        ``asyncio.timeout``): created tasks keep running on the server, ``results.created``
        lists them, and ``results.unsettled`` the requests whose create was cut off under way
        (by ``external_task_id``, to look up before sending them again).

        Args:
            requests: the requests to submit.
            concurrency: submissions in flight at once (slots and the rate limit apply too).
            task_timeout: seconds per task, counted from its creation; a task still running
                then ends iteration with [`WaitTimeoutError`][kling_async.errors.WaitTimeoutError].

        Example::

            requests = [kling.TextToVideo(prompt=p) for p in prompts]
            async with client.as_completed(requests) as results:
                async for task in results:
                    if task.succeeded:
                        await client.download(task, "videos/")
        """
        items = [
            # Each create names itself, so one cut off by leaving early can be looked up.
            request
            if request.external_task_id
            else attrs.evolve(request, external_task_id=new_external_task_id())
            for request in _fields.request_list(requests, "as_completed")
        ]
        for request in items:
            self.check_request(request)
        watcher = self.watch(task_timeout=task_timeout)
        return AsCompleted(self.submit, items, watcher, concurrency)

    # -- waiting ---------------------------------------------------------------------------

    def watch(
        self,
        tasks: Iterable[Task] | None = None,
        *,
        timeout: float | None = None,
        task_timeout: float | None = None,
    ) -> Watcher:
        """Track tasks until they finish; iterate to get them in completion order.

        With *tasks*, iteration ends when all of them have finished. With none, it is a stream:
        ``results.add(task)`` while iterating, ``results.close()`` when no more will come.

        Args:
            tasks: tasks to track from the start (then no more can be added; an empty list
                ends iteration at once). Omit it for a stream.
            timeout: overall seconds; when they pass, iteration yields what finished and then
                raises [`WaitTimeoutError`][kling_async.errors.WaitTimeoutError] listing the pending tasks.
            task_timeout: seconds per task, counted from when it is added.

        Example::

            async with client.watch(tasks, timeout=1800) as results:
                async for task in results:
                    print(task.id, task.status)
        """
        by_ids = self.provider.api_style is ApiStyle.STANDARD
        watcher = Watcher(
            fetch=self._poll,
            batch_fetch=self._batch_fetch if self._lists_work or by_ids else None,
            policy=self.poll_policy,
            clock=self.clock,
            events=self.events,
            on_finished=self._book.observe,
            timeout=timeout,
            task_timeout=task_timeout,
            # One /tasks query reads TASKS_PER_QUERY tasks; one list page LIST_PAGE_SIZE.
            batch_size=TASKS_PER_QUERY if by_ids else LIST_PAGE_SIZE,
            # A read by id answers only what it asks: tasks keep their own schedules, and a
            # query that is sent anyway takes along tasks due within one minimum gap.
            batch_pages=not by_ids,
            batch_lookahead=self.poll_policy.min_interval if by_ids else 0.0,
            callbacks=self.webhook,
            expects_callback=self.expects_callback if self.webhook is not None else None,
            completions=self.completions,
            rate=self._checks_per_second,
        )
        self._book.watchers.add(watcher)
        if tasks is not None:
            for task in tasks:
                watcher.add(task)
            watcher.close()  # even for an empty list: nothing to wait for is not a stream
        return watcher

    async def _batch_fetch(self, tasks: Sequence[Task]) -> Sequence[Task]:
        """Check many tasks at once: by id on the new-standard API, else with list requests.

        Returns every task on the listed pages, not only those asked for: the scheduler counts
        the others it tracks as checked too.
        """
        standard = [task for task in tasks if self.provider.is_standard(task.kind.name)]
        if standard:
            return await self._fetch_mixed(tasks, standard)
        if not self._lists_work:
            return [await self._poll(task) for task in tasks]
        try:
            found = await fetch_by_listing(tasks, self.list_tasks, self._book.observe)
        except NoListRoute:
            # No list route after all (a gateway in front of the provider): check one task
            # at a time from now on, instead of failing every watcher.
            self._lists_work = False
            return [await self._poll(task) for task in tasks]
        return found

    async def _fetch_mixed(self, tasks: Sequence[Task], standard: Sequence[Task]) -> Sequence[Task]:
        """Read *standard* tasks by id and the rest of *tasks* the legacy way; what either
        part read counts even when the other (or a later page) failed."""
        found: list[Task] = []
        failure: Exception | None = None
        legacy = [task for task in tasks if not self.provider.is_standard(task.kind.name)]
        for part, read in ((standard, self._read_by_ids), (legacy, self._batch_fetch)):
            if not part:
                continue
            try:
                found.extend(await read(part))
            except PartialBatchError as partial:
                found.extend(partial.tasks)
                failure = failure or partial.error
            except KlingError as exc:
                failure = failure or exc
        if failure is None:
            return found
        if not found:
            raise failure
        raise PartialBatchError(found, failure)

    async def _read_by_ids(self, tasks: Sequence[Task]) -> Sequence[Task]:
        try:
            found: Sequence[Task] = await fetch_by_ids(self._call, tasks)
        except PartialBatchError as partial:
            await self._observe_all(partial.tasks)
            raise
        await self._observe_all(found)
        return found

    async def _observe_all(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            if self._book.needs_observing(task):
                await self._book.observe(task)

    async def wait(self, task: Task, *, timeout: float | None = 900.0) -> Task:  # noqa: ASYNC109 - a polling deadline the scheduler enforces
        """Poll until *task* finishes; return it when it succeeded.

        Raises:
            TaskFailedError: the task finished with status ``failed``.
            WaitTimeoutError: *timeout* seconds passed first (the task keeps running).
        """
        if not isinstance(task, Task):
            raise ConfigurationError(
                f"wait() takes a Task (from submit or get_task), got {type(task).__name__}; "
                "for a task id: await client.wait(await client.get_task(task_id, kind))"
            )
        async with self.watch([task], timeout=timeout) as results:
            async for finished in results:
                if finished.failed:
                    raise TaskFailedError(finished)
                return finished
        raise WaitTimeoutError(f"task {task.id} did not finish", pending=[task])

    async def download(
        self, task: Task, dest: str | os.PathLike[str], *, watermark: bool = False, index: int = 0
    ) -> Path:
        """Download one video of a finished task to *dest* (a folder or a file path).

        See [`Downloader`][kling_async.download.Downloader] for how files are verified and resumed.
        """
        if self._downloader is None:
            # Its own session, created on first use: CDN links never see the API key.
            self._downloader = Downloader(refresh=self.get_task, retry=self.retry, clock=self.clock)
        started = self.clock.now()
        try:
            path = await self._downloader.download(task, dest, watermark=watermark, index=index)
        except DownloadError as exc:
            self._emit(DownloadFinished(task, self.clock.now() - started, error=exc))
            raise
        if self.events:
            size = (await anyio.Path(path).stat()).st_size
            self._emit(DownloadFinished(task, self.clock.now() - started, size))
        return path

    # -- shortcuts -------------------------------------------------------------------------

    async def image_to_video(
        self, image: str | bytes | os.PathLike[str], prompt: str | None = None, **fields: Any
    ) -> Task:
        """Shorthand for ``submit(ImageToVideo(image=..., prompt=prompt, **fields))``.

        Args:
            image: an http(s) image URL or raw base64 text; the path of a local image file (a
                ``Path`` or other path object, not a ``str``), which is read and sent as
                base64; or the image's bytes, sent as base64.
            prompt: what should happen in the video.
            **fields: any other [`ImageToVideo`][kling_async.models.ImageToVideo] field.

        Raises:
            ValidationError: *image* is none of these, or a file that cannot be read.

        Example::

            task = await client.image_to_video(Path("cat.png"), "The cat waves")
        """
        if isinstance(image, str):
            encoded = image
        elif isinstance(image, bytes | bytearray | memoryview):
            encoded = base64.b64encode(image).decode("ascii")
        elif isinstance(image, os.PathLike):
            try:
                data = await anyio.Path(image).read_bytes()
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise ValidationError(
                    "image", f"cannot read {os.fspath(image)!r}: {reason}"
                ) from None
            encoded = base64.b64encode(data).decode("ascii")
        else:
            raise ValidationError(
                "image",
                "must be an http(s) URL, raw base64 text, a pathlib.Path or bytes, got "
                f"{type(image).__name__}",
            )
        return await self.submit(ImageToVideo(image=encoded, prompt=prompt, **fields))

    async def generate(
        self,
        prompt: str | TaskRequest,
        *,
        to: str | os.PathLike[str] = ".",
        timeout: float | None = 1800.0,  # noqa: ASYNC109 - a polling deadline, as in wait()
        **fields: Any,
    ) -> Path:
        """Submit, wait and download in one call; returns the saved file.

        Args:
            prompt: a text prompt (then *fields* are [`TextToVideo`][kling_async.models.TextToVideo]
                fields), or a ready request of any kind.
            to: a folder (an existing one, or a path ending with a separator) or a file path.
            timeout: seconds to wait for the task to finish.
            **fields: request fields, only with a text prompt.

        Everything that can be checked before the task is paid for is: the request, *timeout*
        and whether *to* can be written. An error raised after the task was created carries a
        note with its id (``exc.__notes__``), to fetch it again with
        [`get_task`][kling_async.client.KlingClient.get_task].

        Raises:
            TaskFailedError: the task failed.
            WaitTimeoutError: it did not finish within *timeout* (it keeps running).
            StorageError: *to* cannot be written (before anything is sent).

        Example::

            path = await client.generate("A beach at sunset", to="out/", aspect_ratio="9:16")
        """
        if isinstance(prompt, str):
            request: TaskRequest = TextToVideo(prompt=prompt, **fields)
        elif fields:
            raise ConfigurationError("generate(request, ...) takes no extra fields")
        else:
            request = prompt
        _fields.check_seconds("timeout", timeout, zero=False)
        try:
            await check_destination(to)
        except TypeError:
            raise ConfigurationError(f"to must be a path, got {type(to).__name__}") from None
        task = await self.submit(request)
        try:
            done = await self.wait(task, timeout=timeout)
            return await self.download(done, to)
        except KlingError as exc:
            _note(
                exc,
                f"task {task.id} ({task.kind.name}) was created: fetch it again with "
                f"get_task({task.id!r}, {task.kind.name!r})",
            )
            raise


def _note(error: BaseException, note: str) -> None:
    """``error.add_note(note)``, also on Python 3.10 (which keeps but does not print notes)."""
    # setattr: typeshed declares __notes__ only from Python 3.11 on.
    setattr(error, "__notes__", [*getattr(error, "__notes__", ()), note])  # noqa: B010


def new_external_task_id() -> str:
    """A fresh ``external_task_id``: what lets an ambiguous create be looked up, not repeated."""
    return f"kling-async-{uuid.uuid4().hex}"


def _kind(kind: TaskKind | str) -> TaskKind:
    return kind_named(kind) if isinstance(kind, str) else kind
