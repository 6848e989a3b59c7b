"""``FakeKlingServer``: an in-process emulator of the Kling video API (legacy ``/v1`` shape).

It answers like Kling served directly (``/v1/...``) and through CometAPI (``/kling/v1/...``),
and is written independently of the client's wire code so that it can check the client.
Task state is a pure function of an injectable clock, so no timers drive the lifecycle; the one
background task only delivers callbacks. The API pipeline (``ApiSite``) and the CDN
(``CdnSite``) are mixins in private modules beside this one. What stays here (a little over
500 lines, on purpose) is the emulator's face: its constructor's options, each documented, and
the state tests read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

from aiohttp import web

from kling_async._closing import AsyncScoped

from ._api import ApiSite, Handler
from ._callbacks import CallbackSender
from ._cdn import CdnSite
from ._config import Faults, RouteKind, Timeline, Validation
from ._faults import FailureDraw, FaultInjector
from ._http import (
    LOCAL_HOSTS,
    TokenBucket,
)
from ._kinds import DEFAULT_KINDS, InvalidParameterError, KindSpec
from ._newapi import NewApiRelay
from ._records import CallbackRecord, RequestRecord, ServerStats
from ._tasks import (
    ACTIVE_STATUSES,
    FakeTask,
    Status,
    render_new_style,
    render_task,
)

__all__ = ["FakeKlingServer"]

logger = logging.getLogger(__name__)

_STATUSES: frozenset[str] = frozenset({"submitted", "processing", "succeed", "failed"})


class FakeKlingServer(AsyncScoped, ApiSite, CdnSite):
    """A real ``aiohttp.web`` server on 127.0.0.1 that behaves like the Kling API.

    Use it as an async context manager (or call [`start`][kling_async.testing.server.FakeKlingServer.start] / [`stop`][kling_async.testing.server.FakeKlingServer.stop]). It listens on two
    ports: [`url`][kling_async.testing.server.FakeKlingServer.url] serves the API under both ``/kling/v1`` and ``/v1``, [`cdn_url`][kling_async.testing.server.FakeKlingServer.cdn_url] serves
    the generated videos, so tests can check that credentials never reach the CDN.

    Every keyword argument is also an attribute that tests may change while it runs.
    """

    def __init__(
        self,
        api_key: str | None = "test-key",
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cdn_port: int = 0,
        timeline: Timeline | None = None,
        validation: Validation | None = None,
        faults: Faults | None = None,
        kinds: Sequence[KindSpec] = DEFAULT_KINDS,
        prefixes: Sequence[str] = ("/kling/v1", "/v1"),
        max_active_tasks: int | None = None,
        slots_per_model: bool = False,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
        rate_limit_routes: Sequence[RouteKind] = ("create", "query", "list"),
        rate_limit_retry_after: bool = False,
        gateway_errors: bool = False,
        wrap_queries: bool = False,
        restamp_answers: bool = False,
        timestamps_in_seconds: bool = False,
        jwt_leeway: float = 0.0,
        callback_style: Literal["legacy", "new"] = "legacy",
        callback_drop_rate: float = 0.0,
        callback_duplicate_rate: float = 0.0,
        callback_interval: float = 0.02,
        callback_timeout: float = 2.0,
        cdn_require_no_auth: bool = True,
        expired_url_status: int = 403,
        video_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
        dialect: Literal["kling", "new-api"] = "kling",
        gateway_poll_interval: float = 15.0,
        upstream_200_errors: bool = False,
        resource_pack_units: float = 1000.0,
    ) -> None:
        if host not in LOCAL_HOSTS:
            raise ValueError(f"the emulator only binds to loopback, not {host!r}")
        self.api_key = api_key
        """Accepted plain bearer key (``None``: only JWTs)."""
        self.access_key = access_key
        """JWT issuer accepted together with [`secret_key`][kling_async.testing.server.FakeKlingServer.secret_key]."""
        self.secret_key = secret_key
        """HS256 secret for [`access_key`][kling_async.testing.server.FakeKlingServer.access_key] tokens."""
        self.host = host
        """Bind address (loopback only)."""
        self.port = port
        """API port requested (0: any free port)."""
        self.cdn_port = cdn_port
        """CDN port requested (0: any free port)."""
        self.timeline = timeline or Timeline()
        self.validation = validation or Validation()
        """Create-body limits."""
        self.faults = FaultInjector(faults)
        """Fault injection: queue one-shot faults with ``next_create`` and friends."""
        self.kinds: tuple[KindSpec, ...] = tuple(kinds)
        """Served task kinds."""
        self.prefixes: tuple[str, ...] = tuple(p.rstrip("/") for p in prefixes)
        """API path prefixes."""
        self.max_active_tasks = max_active_tasks
        """Task slots per account; a create beyond it gets 429/1303."""
        self.slots_per_model = slots_per_model
        """Count ``max_active_tasks`` per resource pack and model (as Kling's newer docs say),
        not per account."""
        self.rate_limit = rate_limit
        """Requests per second before 429/1302 (``None``: unlimited)."""
        self.rate_burst = rate_burst
        """Token-bucket size (``None``: ``max(1, rate_limit)``)."""
        self.rate_limit_routes: tuple[RouteKind, ...] = tuple(rate_limit_routes)
        """Route kinds the rate limit counts."""
        self.rate_limit_retry_after = rate_limit_retry_after
        """Send ``Retry-After`` with 1302 (Kling does not)."""
        self.gateway_errors = gateway_errors
        """Answer auth failures in CometAPI's ``{"error": ...}`` envelope."""
        self.wrap_queries = wrap_queries
        """Answer single queries in the gateway-wrapped shape (kling-api.md §2.4)."""
        self.restamp_answers = restamp_answers
        """Stamp each single query's ``updated_at`` with the time of the answer (a gateway that
        sends its own clock), so that no two answers are alike."""
        self.timestamps_in_seconds = timestamps_in_seconds
        """Send ``created_at``/``updated_at`` in seconds instead of milliseconds."""
        self.jwt_leeway = jwt_leeway
        """Seconds of tolerance for JWT ``exp``/``nbf``."""
        self.callback_style: Literal["legacy", "new"] = callback_style
        """Callback body: legacy task object (§5.2) or new-style (§5.3)."""
        self.callback_drop_rate = callback_drop_rate
        """Fraction of callbacks silently not sent."""
        self.callback_duplicate_rate = callback_duplicate_rate
        """Fraction of callbacks sent twice."""
        self.callback_interval = callback_interval
        """Seconds between callback ticks."""
        self.callback_timeout = callback_timeout
        """Timeout of one callback POST."""
        self.cdn_require_no_auth = cdn_require_no_auth
        """Refuse (403) CDN requests that carry an ``Authorization`` header."""
        self.expired_url_status = expired_url_status
        """HTTP status for expired video URLs (403 or 410)."""
        self.video_size = video_size
        """Size of the ``mdat`` payload of generated videos."""
        self.clock = clock
        """Server clock (monotonic seconds); task state is computed from it."""
        self.resource_pack_units = resource_pack_units
        """Units of the one video resource pack ``GET /account/costs`` lists; succeeded tasks
        use them up."""
        self._account_asked_at: float | None = None
        if dialect not in ("kling", "new-api"):
            raise ValueError(f"unknown dialect {dialect!r}; use 'kling' or 'new-api'")
        self.dialect = dialect
        """``"kling"`` answers as Kling (and CometAPI's docs); ``"new-api"`` as new-api's relay."""
        self.relay = (
            NewApiRelay(
                poll_interval=gateway_poll_interval,
                upstream_200_errors=upstream_200_errors,
                seed=seed + 2,
            )
            if dialect == "new-api"
            else None
        )
        """The gateway in front of the emulated upstream (``None`` for the Kling dialect)."""

        self.requests: list[RequestRecord] = []
        """Every request received, API and CDN, in order."""
        self.callbacks: list[CallbackRecord] = []
        """Every callback attempted, dropped or refused, in order."""
        self.create_counts: Counter[str] = Counter()
        """external_task_id → tasks actually created with it (never above 1)."""
        self.create_attempts: Counter[str] = Counter()
        """external_task_id → create requests that reached the handler with it."""
        self.stats = ServerStats()
        """Counters by route, code, HTTP status and fault."""

        self._tasks: dict[str, FakeTask] = {}
        self._by_external: dict[str, FakeTask] = {}
        self._videos: dict[str, FakeTask] = {}
        self._video_cache: dict[tuple[str, bool], bytes] = {}
        self._id_rng = random.Random(seed)
        self._sender = CallbackSender(self.callbacks, seed + 1)
        self._clock0 = clock()
        self._wall0 = time.time()
        self._bucket: TokenBucket | None = None
        self._bucket_key: tuple[float, float] | None = None
        self._api_runner: web.AppRunner | None = None
        self._cdn_runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._url: str | None = None
        self._cdn_url: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind both sites and start the callback ticker."""
        if self._api_runner is not None:
            raise RuntimeError("FakeKlingServer is already running")
        try:
            self._api_runner = await self._start_site(self._api_app(), self.port)
            self._url = self._site_url(self._api_runner)
            self._cdn_runner = await self._start_site(self._cdn_app(), self.cdn_port)
            self._cdn_url = self._site_url(self._cdn_runner)
            await self._sender.open()
            self._ticker = asyncio.create_task(self._tick_forever(), name="kling-fake-callbacks")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the ticker, close the callback session and both sites; safe to call twice."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self._sender.close()
        for runner in (self._api_runner, self._cdn_runner):
            if runner is not None:
                await runner.cleanup()
        self._api_runner = self._cdn_runner = None

    async def _start_site(self, app: web.Application, port: int) -> web.AppRunner:
        # A short shutdown timeout: "slow" faults must not hold a test's teardown for a minute.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner

    def _site_url(self, runner: web.AppRunner) -> str:
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """Base URL of the API site, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("FakeKlingServer is not started")
        return self._url

    @property
    def cdn_url(self) -> str:
        """Base URL of the CDN site that serves the videos."""
        if self._cdn_url is None:
            raise RuntimeError("FakeKlingServer is not started")
        return self._cdn_url

    # -- inspection and control ------------------------------------------------------------

    @property
    def timeline(self) -> Timeline:
        """Lifecycle timing of new tasks; assigning it reseeds its random generator."""
        return self._timeline

    @timeline.setter
    def timeline(self, value: Timeline) -> None:
        self._timeline = value
        self._timeline_rng = random.Random(value.seed)
        self._fails = FailureDraw(value.fail_rate, value.seed)

    @property
    def tasks(self) -> Mapping[str, FakeTask]:
        """Read-only view of stored tasks by task_id."""
        return MappingProxyType(self._tasks)

    def now(self) -> float:
        """The server clock."""
        return self.clock()

    def wall_time(self) -> float:
        """Unix time derived from the server clock (used for timestamps and JWT checks)."""
        return self._wall0 + (self.clock() - self._clock0)

    def task_by_external_id(self, external_task_id: str) -> FakeTask | None:
        """The task created with *external_task_id*, if any."""
        return self._by_external.get(external_task_id)

    def status_of(self, task_id: str) -> Status:
        """The current status of *task_id* (``KeyError`` if unknown)."""
        return self._tasks[task_id].status_at(self.clock())

    def active_count(self) -> int:
        """Tasks currently holding a slot (``submitted`` or ``processing``)."""
        now = self.clock()
        return sum(1 for task in self._tasks.values() if task.status_at(now) in ACTIVE_STATUSES)

    def slots_held(self, kind: KindSpec, body: Mapping[str, Any]) -> int:
        """Slots held now in the pool a create of *kind* with *body* counts against: an image
        task holds one per image (``n``); pools are per resource pack and model with
        ``slots_per_model``."""
        now = self.clock()
        scope = self._slot_scope(kind, body)
        return sum(
            _slot_weight(task.body)
            for task in self._tasks.values()
            if task.status_at(now) in ACTIVE_STATUSES
            and self._slot_scope(task.kind, task.body) == scope
        )

    def _slot_scope(self, kind: KindSpec, body: Mapping[str, Any]) -> tuple[str, str]:
        if not self.slots_per_model:
            return "", ""
        pack = "try-on" if kind.name == "virtual-try-on" else kind.results
        model = body.get("model_name")
        return pack, model if isinstance(model, str) else ""

    def set_status(self, task_id: str, status: Status, msg: str | None = None) -> FakeTask:
        """Force *task_id* into *status* from now on, overriding its timeline.

        ``msg`` becomes ``task_status_msg``; for ``"failed"`` it defaults to the timeline's
        ``fail_message``. A finished task frees its slot at once.
        """
        if status not in _STATUSES:
            raise ValueError(f"unknown status {status!r}")
        task = self._tasks[task_id]
        if msg is None and status == "failed":
            msg = self.timeline.fail_message
        task.forced_status = status
        task.forced_message = msg or ""
        task.forced_at = self.clock()
        return task

    def expire_video_urls(self, task_id: str) -> tuple[str, str]:
        """Make the current video URLs of *task_id* stale; return the fresh (url, watermark_url).

        Old URLs then answer [`expired_url_status`][kling_async.testing.server.FakeKlingServer.expired_url_status]; queries return the fresh ones.
        """
        task = self._tasks[task_id]
        task.url_version += 1
        return task.video_urls(self.cdn_url)

    def video_bytes(self, task_id: str, *, watermark: bool = False) -> bytes:
        """The exact bytes the CDN serves for *task_id*'s video."""
        return self._video_data(self._tasks[task_id], watermark)

    def render(self, task_id: str) -> dict[str, Any]:
        """The legacy task object a query would return for *task_id* now."""
        return render_task(self._tasks[task_id], self.clock(), self.cdn_url, self._stamp)

    def requests_to(self, site: Literal["api", "cdn"]) -> list[RequestRecord]:
        """Recorded requests of one site."""
        return [record for record in self.requests if record.site == site]

    # -- helpers -----------------------------------------------------------------------------

    def _seconds(self, clock_value: float) -> int:
        return int(self._wall0 + (clock_value - self._clock0))

    def _stamp(self, clock_value: float) -> int:
        wall = self._wall0 + (clock_value - self._clock0)
        return int(wall) if self.timestamps_in_seconds else int(wall * 1000)

    def _new_task_id(self) -> str:
        while True:
            task_id = str(self._id_rng.randrange(8 * 10**17, 9 * 10**17))
            if task_id not in self._tasks:
                return task_id

    # -- creates -----------------------------------------------------------------------------

    async def _create(self, request: web.Request, kind: KindSpec) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, 1200, "Invalid request parameters: body is not valid JSON")
        if not isinstance(body, dict):
            return self._error(400, 1200, "Invalid request parameters: body must be a JSON object")
        if self.relay is not None:
            refused = self.relay.incoming_create(body)
            if refused is not None:
                return refused
        task = self._create_task(kind, body)
        if not isinstance(task, FakeTask):
            return task
        if self.relay is not None:
            return self.relay.created(task, self._seconds)
        info = {"external_task_id": task.external_task_id} if task.external_task_id else {}
        created = self._stamp(task.created)
        return self._ok(
            {
                "task_id": task.task_id,
                "task_status": "submitted",
                "task_info": info,
                "created_at": created,
                "updated_at": created,
            }
        )

    def _create_task(self, kind: KindSpec, body: dict[str, Any]) -> FakeTask | web.Response:
        """Validate a legacy-shaped create *body* and make its task, or answer the refusal."""
        external = body.get("external_task_id")
        external_id = external if isinstance(external, str) and external else None
        if external_id is not None:
            self.create_attempts[external_id] += 1
        try:
            kind.validate(body, self.validation)
        except InvalidParameterError as exc:
            return self._error(400, 1201, str(exc))
        if external_id is not None and external_id in self._by_external:
            return self._error(400, 1201, "external_task_id already exists")
        if (
            self.max_active_tasks is not None
            and self.slots_held(kind, body) + _slot_weight(body) > self.max_active_tasks
        ):
            return self._error(429, 1303, "parallel task over resource pack limit")
        return self._new_task(kind, body, external_id)

    def _synchronous(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
        """A handler for a step that answers at once and creates no task (identify-face)."""

        async def handle(request: web.Request, kind: KindSpec) -> web.StreamResponse:
            try:
                body = await request.json()
            except ValueError:
                return self._error(400, 1200, "Invalid request parameters: body is not valid JSON")
            try:
                return self._ok(answer(body if isinstance(body, dict) else {}))
            except InvalidParameterError as exc:
                return self._error(400, 1201, str(exc))

        return handle

    def _new_task(self, kind: KindSpec, body: dict[str, Any], external_id: str | None) -> FakeTask:
        now = self.clock()
        callback = body.get("callback_url")
        task = FakeTask(
            task_id=self._new_task_id(),
            kind=kind,
            seq=len(self._tasks),
            body=body,
            external_task_id=external_id,
            callback_url=callback if isinstance(callback, str) and callback else None,
            created=now,
            video_id=str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4)),
        )
        timeline = self.timeline
        rng = self._timeline_rng
        factor = 1.0 + rng.uniform(-timeline.jitter, timeline.jitter) if timeline.jitter else 1.0
        processing = timeline.processing_seconds
        seconds = processing(task) if callable(processing) else processing
        task.processing_at = now + max(0.0, timeline.queue_seconds * factor)
        task.finished_at = task.processing_at + max(0.0, seconds * factor)
        prompt = body.get("prompt")
        if timeline.fail_marker and isinstance(prompt, str) and timeline.fail_marker in prompt:
            task.outcome, task.outcome_message = "failed", timeline.fail_message
        elif self._fails():
            task.outcome, task.outcome_message = "failed", timeline.random_fail_message
        self._tasks[task.task_id] = task
        self._videos[task.video_id] = task
        if external_id is not None:
            self._by_external[external_id] = task
            self.create_counts[external_id] += 1
        return task

    # -- callbacks ---------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.callback_interval)
            try:
                await self.deliver_callbacks()
            except Exception:
                # A bug in one delivery must not silently stop all later callbacks.
                logger.exception("callback tick failed")

    async def deliver_callbacks(self) -> int:
        """Fire callbacks for every status change since the last tick; return how many changed.

        The background ticker calls this every [`callback_interval`][kling_async.testing.server.FakeKlingServer.callback_interval]; tests may call it
        directly after stepping an injected clock.
        """
        now = self.clock()
        due: list[tuple[str, dict[str, Any]]] = []
        for task in self._tasks.values():
            if task.callback_url is None:
                continue
            status = task.status_at(now)
            if status == task.last_notified:
                continue
            task.last_notified = status
            new_style = task.standard or self.callback_style == "new"
            render = render_new_style if new_style else render_task
            due.append((task.callback_url, render(task, now, self.cdn_url, self._stamp)))
        if due:
            await asyncio.gather(
                *(
                    self._sender.deliver(
                        url,
                        payload,
                        drop_rate=self.callback_drop_rate,
                        duplicate_rate=self.callback_duplicate_rate,
                        timeout=self.callback_timeout,
                    )
                    for url, payload in due
                )
            )
        return len(due)


def _slot_weight(body: Mapping[str, Any]) -> int:
    count = body.get("n")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 1 else 1
