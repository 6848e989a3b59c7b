"""``KlingClient``: one async session over one connection pool.

The client composes small parts and owns none of their logic: the :class:`Transport` sends bytes,
:mod:`~kling_async.wire` reads them, the :class:`~kling_async.limiter.RateLimiter` spaces requests,
:class:`~kling_async.slots.TaskSlots` bounds tasks in flight, and the
:class:`~kling_async.scheduler.PollScheduler` decides when to check which task.
"""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import anyio
import attrs

from . import wire
from ._closing import AsyncClosing
from .auth import AccessKeyAuth, ApiKeyAuth, Auth
from .clock import Clock, SystemClock
from .download import Downloader
from .errors import (
    APIConnectionError,
    APIError,
    BadRequestError,
    ConcurrencyLimitError,
    ConfigurationError,
    KlingError,
    NotFoundError,
    PartialSubmitError,
    RateLimitError,
    ResponseParseError,
    ServerError,
    SubmitUncertainError,
    TaskFailedError,
    WaitTimeoutError,
)
from .events import Event, EventHub, Retrying, TaskSubmitted
from .kinds import kind_for_request, kind_named
from .limiter import RateLimit, RateLimiter, TokenBucketLimiter, UnlimitedLimiter
from .models import Task, TaskKind, TaskRequest, TextToVideo
from .providers import COMETAPI, KLING, ExternalIdLookup, Provider
from .retry import RetryPolicy, needs_new_token
from .scheduler import PollPolicy
from .slots import SlotPool, TaskSlots
from .transport import AiohttpTransport, Transport
from .validation import RequestLimits
from .watch import Watcher
from .webhooks import WebhookReceiver

__all__ = ["ENV_BASE_URL", "KlingClient", "new_external_task_id"]

logger = logging.getLogger("kling_async.client")

_ENV_API_KEY = "COMETAPI_KEY"
_ENV_ACCESS_KEY = "KLING_ACCESS_KEY"
_ENV_SECRET_KEY = "KLING_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
ENV_BASE_URL = "KLING_BASE_URL"
"""The environment variable ``KlingClient`` (and the CLI) read a base URL from."""
_REFRESH_BATCH = 20
_LIST_PAGE_SIZE = 500
_LIST_MAX_PAGES = 4
"""List pages one batched check may read: 2,000 tasks back, then single GETs take over."""

DEFAULT_RATE = RateLimit(per_second=20.0, burst=40)
"""The default request rate: generous for Kling (which documents no QPS limit on queries), and
low enough that a batch of thousands does not flood a gateway that does."""


def _provider_named(name: str) -> Provider:
    providers = {"cometapi": COMETAPI, "kling": KLING}
    try:
        return providers[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown provider {name!r}; use 'cometapi', 'kling' or a Provider instance"
        ) from None


def _build_auth(
    provider: Provider, api_key: str | None, access_key: str | None, secret_key: str | None
) -> Auth:
    if api_key is not None:
        return ApiKeyAuth(api_key)
    if access_key is not None or secret_key is not None:
        if not (access_key and secret_key):
            raise ConfigurationError("access_key and secret_key must be given together")
        return AccessKeyAuth(access_key, secret_key)
    env_key = os.environ.get(_ENV_API_KEY)
    if env_key:
        return ApiKeyAuth(env_key)
    env_access, env_secret = os.environ.get(_ENV_ACCESS_KEY), os.environ.get(_ENV_SECRET_KEY)
    if env_access and env_secret:
        return AccessKeyAuth(env_access, env_secret)
    raise ConfigurationError(
        f"no credentials for provider {provider.name!r}: pass api_key=..., or set "
        f"${_ENV_API_KEY} (or ${_ENV_ACCESS_KEY} and ${_ENV_SECRET_KEY} for Kling's own API)"
    )


class KlingClient(AsyncClosing):
    """An async session with the Kling video API.

    Use it as an async context manager; all requests share one connection pool, one rate limiter
    and one pool of task slots.

    Args:
        api_key: a CometAPI key (or a Kling API key); falls back to ``$COMETAPI_KEY``.
        access_key: Kling access key, for the JWT scheme (with ``secret_key``); falls back to
            ``$KLING_ACCESS_KEY``.
        secret_key: Kling secret key; falls back to ``$KLING_SECRET_KEY``.
        auth: a ready :class:`~kling_async.auth.Auth` instead of the three above.
        provider: ``"cometapi"`` (default), ``"kling"``, or a :class:`Provider`.
        base_url: another host for the provider (a proxy or the emulator); falls back to
            ``$KLING_BASE_URL``.
        limits: request limits checked before sending; defaults to the provider's.
        retry: the retry policy for transient failures.
        rate: requests per second (with burst) shared by every request this client sends
            (default :data:`DEFAULT_RATE`); a 429 then pauses every request of the client for
            one shared cool-down. ``None`` for no pacing: a 429 is then retried with each
            request's own back-off.
        max_active_tasks: how many submitted-but-unfinished tasks may exist at once (Kling's
            per-account concurrency); ``submit`` waits for a free slot.
        poll: how often the scheduler checks tasks.
        timeout: seconds allowed for each HTTP request.
        transport: a custom :class:`Transport` (tests, proxies).
        clock: a custom :class:`Clock` (tests).
        limiter: a custom :class:`~kling_async.limiter.RateLimiter` instead of *rate* (one
            shared by several clients, say).
        slots: a custom :class:`~kling_async.slots.TaskSlots` instead of *max_active_tasks*.
        webhook: a :class:`~kling_async.webhooks.WebhookReceiver` with a ``public_url``. Every
            submission without a ``callback_url`` then gets the receiver's, and watchers track
            such tasks by callback with polling only as a safety net; an unsigned final status
            makes the watcher check the task at once.

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
        provider: Provider | Literal["cometapi", "kling"] = "cometapi",
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
        webhook: WebhookReceiver | None = None,
    ) -> None:
        resolved = _provider_named(provider) if isinstance(provider, str) else provider
        base_url = base_url or os.environ.get(ENV_BASE_URL)
        if base_url is not None:
            if not base_url.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"base_url must start with http:// or https://: {base_url!r}"
                )
            resolved = resolved.with_base_url(base_url)
        if max_active_tasks is not None and max_active_tasks < 1:
            raise ConfigurationError("max_active_tasks must be at least 1")
        if timeout <= 0:
            raise ConfigurationError("timeout must be positive")
        if webhook is not None:
            if not webhook.public_url:
                raise ConfigurationError(
                    "KlingClient(webhook=...) needs a receiver with public_url: the externally "
                    "reachable URL of its callback route, which the client sends as callback_url"
                )
            webhook.callback_url()  # a public_url that is not http(s) fails here, not on submit
        self.provider = resolved
        """Where requests go, and which unconfirmed features are relied on."""
        self.limits = limits or resolved.limits
        """The request limits checked before sending."""
        self.retry = retry or RetryPolicy()
        """The retry policy."""
        self.poll_policy = poll or PollPolicy()
        """How the scheduler paces status checks."""
        self.timeout = timeout
        self.clock: Clock = clock or SystemClock()
        self.events = EventHub()
        """Subscribe to submissions, polls, retries and finished tasks: ``client.events.add(fn)``."""
        self._auth = auth or _build_auth(resolved, api_key, access_key, secret_key)
        # Shared by every request and never mutated: the transport reads it, aiohttp copies it.
        self._request_headers: dict[str, str] = {}
        self._transport = transport or AiohttpTransport()
        self.limiter: RateLimiter = limiter or (
            TokenBucketLimiter(rate, clock=self.clock, events=self._emit)
            if rate is not None
            else UnlimitedLimiter()
        )
        self.slots: TaskSlots = slots or SlotPool(
            max_active_tasks, clock=self.clock, events=self._emit
        )
        self._active: dict[str, Task] = {}
        self._closed = False
        self._downloader: Downloader | None = None
        self._watchers: weakref.WeakSet[Watcher] = weakref.WeakSet()
        self._refresh_lock = anyio.Lock()
        self.webhook = webhook
        """The callback receiver this client fills ``callback_url`` in for, if any."""
        # Unfinished tasks created with the receiver's callback URL.
        self._callback_ids: set[str] = set()
        if webhook is not None:
            webhook.bind(self)

    def __repr__(self) -> str:
        return (
            f"KlingClient(provider={self.provider.name!r}, base_url={self.provider.base_url!r}, "
            f"auth={self._auth!r})"
        )

    async def __aenter__(self) -> KlingClient:
        if self._closed:
            raise ConfigurationError("this client is closed; create a new KlingClient")
        return self

    async def aclose(self) -> None:
        """Close the connection pool. Safe to call twice."""
        if not self._closed and self.webhook is not None:
            self.webhook.unbind(self)
        self._closed = True
        downloader, self._downloader = self._downloader, None
        if downloader is not None:
            await downloader.aclose()
        await self._transport.aclose()

    def _emit(self, event: Event) -> None:
        self.events(event)

    def _headers(self) -> dict[str, str]:
        """The request headers, rebuilt only when the Authorization value changes (a new JWT)."""
        authorization = self._auth.header()
        if self._request_headers.get("Authorization") != authorization:
            self._request_headers = {"Authorization": authorization, "Accept": "application/json"}
        return self._request_headers

    # -- requests --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> Any:
        """Send one API request through the limiter, retrying transient failures if *retry*."""
        if self._closed:
            raise ConfigurationError("this client is closed; create a new KlingClient")
        where = f"{method} {path}"
        retries = 0
        resigned = False
        limiter = self.limiter
        # Without a rate limit there is nothing to await or report: skip it on the hot path.
        unlimited = isinstance(limiter, UnlimitedLimiter)
        while True:
            if not unlimited:
                await limiter.acquire()
            try:
                raw = await self._transport.request(
                    method,
                    self.provider.url(path),
                    headers=self._headers(),
                    json=json,
                    params=params,
                    timeout=self.timeout,
                )
                data = wire.parse_envelope(raw.status, raw.headers, raw.body, where=where)
            except (APIError, APIConnectionError, ResponseParseError) as exc:
                # One shared cool-down for every coroutine, instead of N private back-offs.
                shared_pause = (
                    not unlimited
                    and isinstance(exc, RateLimitError)
                    and not isinstance(exc, ConcurrencyLimitError)
                )
                if shared_pause:
                    limiter.on_rate_limited(getattr(exc, "retry_after", None))
                if needs_new_token(exc) and not resigned:
                    self._auth.invalidate()
                    resigned = True
                    continue
                if not retry or not self.retry.should_retry(exc, retries):
                    raise
                delay = self.retry.delay(retries, getattr(exc, "retry_after", None))
                if shared_pause:
                    delay = 0.0
                retries += 1
                logger.info(
                    "%s failed (%s); retry %d in %.2fs", where, type(exc).__name__, retries, delay
                )
                self._emit(Retrying(operation=where, attempt=retries, delay=delay, error=exc))
                await self.clock.sleep(delay)
                continue
            if not unlimited:
                limiter.on_success()
            return data

    # -- single tasks ----------------------------------------------------------------------

    async def get_task(self, task: Task | str, kind: TaskKind | str = "text2video") -> Task:
        """Fetch a task's current state.

        Args:
            task: a :class:`Task`, or a task id (then *kind* says which endpoint created it).
            kind: the task kind when *task* is an id: a :class:`TaskKind` or its name.
        """
        if isinstance(task, Task):
            task_id, resolved = task.id, task.kind
        else:
            task_id, resolved = task, kind_named(kind) if isinstance(kind, str) else kind
        if not task_id or "/" in task_id:
            raise ConfigurationError(f"not a task id: {task_id!r}")
        path = f"{resolved.path}/{task_id}"
        data = await self._call("GET", path)
        if isinstance(task, Task) and task.kind is resolved and task.raw == data:
            # Most status checks answer exactly what the last one did; the Task built from
            # that answer is still right, and skipping the rebuild is most of a check's CPU.
            found = task
        else:
            found = wire.parse_task(data, resolved, where=f"GET {path}")
        self.observe(found)
        return found

    def adopt(self, task: Task) -> None:
        """Count an unfinished task created earlier (a resumed batch) against the task slots.

        Its slot frees, like any other, when the client sees the task finish. Adopting a task
        twice, or a finished one, does nothing.
        """
        if task.is_finished or task.id in self._active:
            return
        adopt = getattr(self.slots, "adopt", None)
        if adopt is not None:
            adopt(1)
            self._active[task.id] = task

    def observe(self, task: Task) -> None:
        """Note a task's state: frees its task slot once it has finished."""
        if not task.is_finished:
            return
        self._callback_ids.discard(task.id)
        if self._active.pop(task.id, None) is not None:
            self.slots.release()

    async def list_tasks(
        self, kind: TaskKind | str = "text2video", *, page: int = 1, page_size: int = 30
    ) -> list[Task]:
        """List recent tasks of one kind (Kling's ``?pageNum=&pageSize=``; UNCONFIRMED on CometAPI)."""
        resolved = kind_named(kind) if isinstance(kind, str) else kind
        if not 1 <= page <= 1000 or not 1 <= page_size <= 500:
            raise ConfigurationError("page must be in [1, 1000] and page_size in [1, 500]")
        data = await self._call(
            "GET", resolved.path, params={"pageNum": str(page), "pageSize": str(page_size)}
        )
        return wire.parse_task_list(data, resolved, where=f"GET {resolved.path}")

    async def find_by_external_id(
        self, external_task_id: str, kind: TaskKind | str = "text2video"
    ) -> Task | None:
        """Look a task up by its ``external_task_id``; ``None`` when the server says it has none.

        The query form comes from :attr:`Provider.external_lookup` (UNCONFIRMED on CometAPI).

        Raises:
            SubmitUncertainError: when the provider has no look-up form configured.
        """
        resolved = kind_named(kind) if isinstance(kind, str) else kind
        lookup = self.provider.external_lookup
        if lookup is ExternalIdLookup.NONE:
            raise SubmitUncertainError(
                "this provider has no external-id look-up",
                external_task_id=external_task_id,
                kind=resolved.name,
            )
        try:
            if lookup is ExternalIdLookup.PATH:
                path = f"{resolved.path}/{external_task_id}"
                data = await self._call("GET", path)
            else:
                path = resolved.path
                data = await self._call("GET", path, params={"external_task_id": external_task_id})
        except NotFoundError:
            return None
        if isinstance(data, list):
            tasks = wire.parse_task_list(data, resolved, where=f"GET {path}")
            matches = [task for task in tasks if task.external_task_id == external_task_id]
            return matches[0] if matches else None
        return wire.parse_task(data, resolved, where=f"GET {path}")

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
        kind = kind_for_request(request)
        callback = None
        if self.webhook is not None:
            callback = self.webhook.callback_url()
            if request.callback_url is None:
                request = attrs.evolve(request, callback_url=callback)
            elif request.callback_url != callback:
                callback = None  # the caller's own endpoint: no callback for our receiver
        self.limits.check(request)
        ext_id = external_task_id or request.external_task_id or new_external_task_id()
        body = wire.request_body(request, external_task_id=ext_id)
        await self._acquire_slot()
        slot = _HeldSlot()
        try:
            task = await self._create(kind, body, ext_id, slot)
        except BaseException:
            if slot.held:
                self.slots.release()
            raise
        if task.external_task_id is None:
            task = _with_external_id(task, ext_id)
        if task.is_finished:
            self.slots.release()
        else:
            self._active[task.id] = task
            if callback is not None:
                self._callback_ids.add(task.id)
        self._emit(TaskSubmitted(task=task))
        return task

    def expects_callback(self, task: Task | str) -> bool:
        """Whether *task* was created by this client with its receiver's ``callback_url``.

        Args:
            task: a :class:`Task` or a task id.
        """
        return (task.id if isinstance(task, Task) else task) in self._callback_ids

    async def _acquire_slot(self) -> None:
        """Wait for a task slot, checking our own unfinished tasks while we wait.

        Slots free when the client sees a task finish. A caller who submits without watching
        would otherwise wait forever, so while submitters wait, one of them at a time refreshes
        the oldest active tasks that no open watcher is already tracking, once per poll interval
        (with one list request where the provider supports it).
        """
        while True:
            with anyio.move_on_after(self.poll_policy.min_interval):
                await self.slots.acquire()
                return
            if self._refresh_lock.locked():
                continue
            async with self._refresh_lock:
                await self._refresh_unwatched()

    async def _refresh_unwatched(self) -> None:
        watched: set[str] = set()
        for watcher in self._watchers:
            if watcher.running:  # a watcher left behind checks nothing
                watched.update(task.id for task in watcher.pending)
        stale = [task for task in self._active.values() if task.id not in watched]
        stale = stale[:_REFRESH_BATCH]
        if not stale:
            return
        try:
            if self.provider.supports_list:
                await self._batch_fetch(stale)
                return
            for task in stale:
                await self.get_task(task)
        except (APIError, APIConnectionError) as exc:
            logger.info("refreshing tasks while waiting for a slot failed: %s", exc)

    async def text_to_video(self, prompt: str, **fields: Any) -> Task:
        """Shorthand for ``submit(TextToVideo(prompt=prompt, **fields))``.

        Example::

            task = await client.text_to_video("A beach at sunset", aspect_ratio="9:16", mode="pro")
        """
        return await self.submit(TextToVideo(prompt=prompt, **fields))

    async def _create(
        self, kind: TaskKind, body: dict[str, Any], ext_id: str, slot: _HeldSlot
    ) -> Task:
        retries = 0
        maybe_created = False
        first_1303: float | None = None
        while True:
            try:
                data = await self._call("POST", kind.path, json=body, retry=False)
                return wire.parse_task(data, kind, where=f"POST {kind.path}")
            except ConcurrencyLimitError as exc:
                # Definitely not created; someone else holds slots on this account.
                error: KlingError = exc
                now = self.clock.now()
                first_1303 = now if first_1303 is None else first_1303
                # Shrink first, while this submission still holds its slot: a slot released into
                # the old limit would go straight to the next waiter, to meet a 1303 of its own.
                self.slots.on_concurrency_limited()
                limit = self.retry.max_concurrency_wait
                if limit is not None and now - first_1303 >= limit:
                    raise  # submit() releases the slot on the way out
                self.slots.release()
                slot.held = False
                await self.clock.sleep(self.retry.delay(min(retries, 4), exc.retry_after))
                if limit is None:
                    await self._acquire_slot()
                else:
                    # The slot limit just shrank to what is running: waiting for a slot is part
                    # of the wait that the cap bounds.
                    with anyio.move_on_after(
                        max(0.0, first_1303 + limit - self.clock.now())
                    ) as wait:
                        await self._acquire_slot()
                    if wait.cancelled_caught:
                        raise
                slot.held = True
                retries += 1
                continue
            except BadRequestError as exc:
                if maybe_created and "external_task_id" in exc.message:
                    # Our earlier attempt did land: the id is taken by the task we created.
                    found = await self._lookup_after_ambiguous(kind, ext_id)
                    if found is not None:
                        return found
                raise
            except (APIConnectionError, ServerError, RateLimitError, ResponseParseError) as exc:
                error = exc
                ambiguous = _ambiguous(exc)
            if not self.retry.should_retry(error, retries):
                if ambiguous or maybe_created:
                    found = await self._lookup_after_ambiguous(kind, ext_id)
                    if found is not None:
                        return found
                    raise SubmitUncertainError(
                        f"create failed ({error}) and retries are exhausted",
                        external_task_id=ext_id,
                        kind=kind.name,
                    ) from error
                raise error
            if ambiguous:
                maybe_created = True
                found = await self._lookup_after_ambiguous(kind, ext_id)
                if found is not None:
                    logger.info("create of %s was ambiguous; adopted task %s", ext_id, found.id)
                    return found
            delay = self.retry.delay(retries, getattr(error, "retry_after", None))
            retries += 1
            self._emit(
                Retrying(operation=f"POST {kind.path}", attempt=retries, delay=delay, error=error)
            )
            await self.clock.sleep(delay)

    async def _lookup_after_ambiguous(self, kind: TaskKind, ext_id: str) -> Task | None:
        """Find the task an ambiguous create may have made; raise if we cannot be sure."""
        try:
            found = await self.find_by_external_id(ext_id, kind)
        except (APIError, APIConnectionError) as exc:
            raise SubmitUncertainError(
                f"create may have succeeded and the look-up failed ({exc})",
                external_task_id=ext_id,
                kind=kind.name,
            ) from exc
        if found is None and not self.provider.trust_not_found:
            raise SubmitUncertainError(
                f"create may have succeeded; provider {self.provider.name!r} cannot confirm "
                "that no task exists",
                external_task_id=ext_id,
                kind=kind.name,
            )
        return found

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
        are never lost: they are in :attr:`PartialSubmitError.tasks` (or, with
        ``return_exceptions=True``, the result list holds the error in that request's place).
        """
        items = list(requests)
        for request in items:
            self.limits.check(request)
        gate = anyio.CapacityLimiter(max(1, concurrency))

        outcomes: dict[int, Task | KlingError] = {}

        async def one(index: int, request: TaskRequest) -> None:
            async with gate:
                try:
                    outcomes[index] = await self.submit(request)
                except KlingError as exc:
                    outcomes[index] = exc

        async with anyio.create_task_group() as group:
            for index, request in enumerate(items):
                group.start_soon(one, index, request)
        results: list[Task | KlingError] = [outcomes[index] for index in range(len(items))]
        if return_exceptions:
            return results
        errors = [
            (index, item) for index, item in enumerate(results) if isinstance(item, KlingError)
        ]
        tasks = [item for item in results if isinstance(item, Task)]
        if errors:
            raise PartialSubmitError(tasks=tasks, errors=errors)
        return tasks

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
                raises :class:`~kling_async.WaitTimeoutError` listing the pending tasks.
            task_timeout: seconds per task, counted from when it is added.

        Example::

            async with client.watch(tasks, timeout=1800) as results:
                async for task in results:
                    print(task.id, task.status)
        """
        watcher = Watcher(
            fetch=self.get_task,
            batch_fetch=self._batch_fetch if self.provider.supports_list else None,
            policy=self.poll_policy,
            clock=self.clock,
            events=self.events,
            on_finished=self.observe,
            timeout=timeout,
            task_timeout=task_timeout,
            batch_size=_LIST_PAGE_SIZE,
            callbacks=self.webhook,
            expects_callback=self.expects_callback if self.webhook is not None else None,
        )
        self._watchers.add(watcher)
        if tasks is not None:
            for task in tasks:
                watcher.add(task)
            watcher.close()  # even for an empty list: nothing to wait for is not a stream
        return watcher

    async def _batch_fetch(self, tasks: Sequence[Task]) -> Sequence[Task]:
        """Check many tasks with list requests (only where the provider lists tasks).

        Returns every task on the listed pages, not only those asked for: the scheduler counts
        the others it tracks as checked too.
        """
        found: list[Task] = []
        for kind in {task.kind for task in tasks}:
            wanted = {task.id for task in tasks if task.kind == kind}
            # The newest tasks come first; walk back until every wanted one was seen, a short
            # page says there are no more, or the page cap is reached (older tasks then fall
            # back to their own GETs in the scheduler).
            for page in range(1, _LIST_MAX_PAGES + 1):
                listed = await self.list_tasks(kind, page=page, page_size=_LIST_PAGE_SIZE)
                found.extend(listed)
                wanted.difference_update(task.id for task in listed)
                if not wanted or len(listed) < _LIST_PAGE_SIZE:
                    break
        for task in found:
            self.observe(task)
        return found

    async def wait(self, task: Task, *, timeout: float | None = 900.0) -> Task:  # noqa: ASYNC109 - a polling deadline the scheduler enforces
        """Poll until *task* finishes; return it when it succeeded.

        Raises:
            TaskFailedError: the task finished with status ``failed``.
            WaitTimeoutError: *timeout* seconds passed first (the task keeps running).
        """
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

        See :class:`~kling_async.download.Downloader` for how files are verified and resumed.
        """
        if self._downloader is None:
            # Its own session, created on first use: CDN links never see the API key.
            self._downloader = Downloader(refresh=self.get_task, retry=self.retry, clock=self.clock)
        return await self._downloader.download(task, dest, watermark=watermark, index=index)


class _HeldSlot:
    """Whether a submission holds its task slot right now (a 1303 gives it back for a while)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = True


def new_external_task_id() -> str:
    """A fresh ``external_task_id``: what lets an ambiguous create be looked up, not repeated."""
    return f"kling-async-{uuid.uuid4().hex}"


def _ambiguous(error: KlingError) -> bool:
    """Whether a failed create may nevertheless have created a task."""
    if isinstance(error, APIConnectionError):
        return error.maybe_sent
    if isinstance(error, ResponseParseError):
        # The server answered, so it saw the request; the answer just cannot be read.
        return True
    # A 5xx came from a server that may have recorded the task before failing; a 429 did not.
    return isinstance(error, ServerError)


def _with_external_id(task: Task, ext_id: str) -> Task:
    return attrs.evolve(task, external_task_id=ext_id)
