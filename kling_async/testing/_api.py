"""The API site of the emulator: routing, faults, authentication, the rate limit, and queries.

A mixin, like ``CdnSite``: it declares the server state it reads; ``FakeKlingServer`` owns it,
creates tasks (``_create``) and keeps the clock.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from ._config import RouteKind
from ._faults import Fault, FaultInjector
from ._http import FAULT_ERRORS, JsonReply, TokenBucket, drop_connection
from ._jwt import JwtRejectedError, verify_jwt
from ._kinds import SYNCHRONOUS, KindSpec
from ._newapi import NewApiRelay
from ._records import ServerStats
from ._standard import PRODUCT_KINDS, StandardSite
from ._tasks import FakeTask, render_task, render_wrapped

__all__ = ["ApiSite", "Handler"]

Handler = Callable[[web.Request, KindSpec], Awaitable[web.StreamResponse]]
"""A route's handler: the request and the task kind its path names."""


class ApiSite(StandardSite):
    """Mixin of [`FakeKlingServer`][kling_async.testing.server.FakeKlingServer] holding the API pipeline.

    Every API request is recorded, may meet a fault, is authenticated and rate-limited, and is
    then handled; queries and lists are answered here, creates by the server.
    """

    api_key: str | None
    access_key: str | None
    secret_key: str | None
    jwt_leeway: float
    gateway_errors: bool
    wrap_queries: bool
    restamp_answers: bool
    rate_limit: float | None
    rate_burst: float | None
    rate_limit_retry_after: bool
    rate_limit_routes: tuple[RouteKind, ...]
    prefixes: tuple[str, ...]
    kinds: tuple[KindSpec, ...]
    relay: NewApiRelay | None
    faults: FaultInjector
    stats: ServerStats
    clock: Callable[[], float]
    _bucket: TokenBucket | None
    _bucket_key: tuple[float, float] | None
    _tasks: dict[str, FakeTask]
    _by_external: dict[str, FakeTask]

    if TYPE_CHECKING:
        # Provided by the server and by CdnSite.
        @property
        def cdn_url(self) -> str: ...

        def wall_time(self) -> float: ...

        def _stamp(self, clock_value: float) -> int: ...

        def _seconds(self, clock_value: float) -> int: ...

        def _record(
            self, request: web.Request, site: Literal["api", "cdn"], route: RouteKind
        ) -> None: ...

        async def _sleep(self, fault: Fault) -> None: ...

        async def _create(self, request: web.Request, kind: KindSpec) -> web.StreamResponse: ...

        def _synchronous(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler: ...

    # -- replies -----------------------------------------------------------------------------

    def _reply(
        self,
        status: int,
        body: Mapping[str, Any],
        code: int,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        return JsonReply(status, body, code, headers)

    def _ok(self, data: Any) -> web.Response:
        return self._reply(
            200, {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data}, 0
        )

    def _error(
        self, status: int, code: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        body = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
        return self._reply(status, body, code, headers)

    def _rate_limited(self) -> web.Response | None:
        rate = self.rate_limit
        if rate is None or rate <= 0:
            return None
        burst = self.rate_burst if self.rate_burst is not None else max(1.0, rate)
        now = self.clock()
        if self._bucket is None or self._bucket_key != (rate, burst):
            self._bucket = TokenBucket(rate, burst, now)
            self._bucket_key = (rate, burst)
        wait = self._bucket.take(now)
        if wait is None:
            return None
        headers = (
            {"Retry-After": str(max(1, math.ceil(wait)))} if self.rate_limit_retry_after else None
        )
        return self._error(429, 1302, "Request too fast, exceeds rate limit", headers)

    def _authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.strip():
            return self._auth_error(1001, "Authorization is empty")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme != "Bearer" or not token:
            return self._auth_error(1002, "Authorization is invalid")
        if self.api_key is not None and hmac.compare_digest(token.encode(), self.api_key.encode()):
            return None
        if self.access_key is not None and self.secret_key is not None and token.count(".") == 2:
            try:
                verify_jwt(
                    token,
                    {self.access_key: self.secret_key},
                    now=self.wall_time(),
                    leeway=self.jwt_leeway,
                )
            except JwtRejectedError as exc:
                return self._auth_error(exc.code, exc.message)
            return None
        return self._auth_error(1002, "Authorization is invalid")

    def _auth_error(self, code: int, message: str) -> web.Response:
        if not self.gateway_errors and self.relay is None:
            return self._error(401, code, message)
        request_id = uuid.uuid4().hex
        body = {
            "error": {
                "code": "",
                "message": f"{message} (request id: {request_id})",
                "type": "comet_api_error",
            }
        }
        return self._reply(401, body, code)

    def _malformed(self, kind: str) -> web.Response:
        envelope: dict[str, Any] = {
            "code": 0,
            "message": "SUCCEED",
            "request_id": str(uuid.uuid4()),
        }
        if kind == "malformed_text":
            return web.Response(
                status=200,
                text="<html><body>upstream hiccup</body></html>",
                content_type="text/html",
            )
        if kind == "malformed_types":
            envelope["data"] = {
                "task_id": 12345,
                "task_status": None,
                "task_result": "none",
                "created_at": "yesterday",
            }
        return JsonReply(200, envelope, 0)

    # -- the pipeline ------------------------------------------------------------------------

    def _api_app(self) -> web.Application:
        app = web.Application()
        for prefix in self.prefixes:
            for kind in self.kinds:
                base = f"{prefix}/{kind.path}"
                app.router.add_post(base, self._route("create", kind, self._create))
                app.router.add_get(base, self._route("list", kind, self._list))
                app.router.add_get(base + "/{task_id}", self._route("query", kind, self._query))
                for path, answer in SYNCHRONOUS.get(kind.name, {}).items():
                    app.router.add_post(
                        f"{prefix}/{path}", self._route("create", kind, self._synchronous(answer))
                    )
        if self.relay is None and self.kinds:
            # Kling's new-standard API, at the root (no gateway documents it).
            anchor = self.kinds[0]  # the handlers find the kind from the path themselves
            products = "|".join(PRODUCT_KINDS)
            app.router.add_post(
                f"/{{product:{products}}}/{{model}}",
                self._route("create", anchor, self._standard_create),
            )
            app.router.add_get("/tasks", self._route("query", anchor, self._standard_query))
            app.router.add_post("/tasks", self._route("list", anchor, self._standard_list))
            app.router.add_get("/account/costs", self._route("other", anchor, self._account_costs))
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    def _route(
        self, route: RouteKind, kind: KindSpec, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, route, kind, handler)

        return serve

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        self._record(request, "api", "other")
        response = self._error(404, 1202, "Requested method invalid")
        self._count(response)
        return response

    def _count(self, response: web.StreamResponse) -> None:
        self.stats.http_statuses[response.status] += 1
        if isinstance(response, JsonReply):
            self.stats.codes[response.kling_code] += 1

    async def _serve(
        self, request: web.Request, route: RouteKind, kind: KindSpec, handler: Handler
    ) -> web.StreamResponse:
        self._record(request, "api", route)
        fault = self.faults.take(route)
        if fault is not None:
            self.stats.faults[fault.kind] += 1
            if fault.kind in FAULT_ERRORS:
                status, code, message = FAULT_ERRORS[fault.kind]
                response: web.StreamResponse = self._relayed(self._error(status, code, message))
                self._count(response)
                return response
            if fault.kind == "drop_before_create":
                return await drop_connection(request)
        response = await self._checked(request, route, kind, handler)
        held = self.faults.config.create_answer_delay
        if route == "create" and held > 0 and response.status == 200:
            await asyncio.sleep(held)
        if fault is not None:
            if fault.kind == "drop_after_create":
                return await drop_connection(request)
            if fault.kind == "slow":
                await self._sleep(fault)
            elif fault.kind.startswith("malformed"):
                response = self._malformed(fault.kind)
        response = self._relayed(response)
        self._count(response)
        return response

    def _relayed(self, response: web.StreamResponse) -> web.StreamResponse:
        return response if self.relay is None else self.relay.relay(response)

    async def _checked(
        self, request: web.Request, route: RouteKind, kind: KindSpec, handler: Handler
    ) -> web.StreamResponse:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        if route in self.rate_limit_routes:
            limited = self._rate_limited()
            if limited is not None:
                return limited
        return await handler(request, kind)

    # -- queries -----------------------------------------------------------------------------

    def _find(self, kind: KindSpec, ident: str, *, by_external: bool) -> FakeTask | None:
        if self.relay is not None:
            # The gateway knows only its own ids: no look-up by external id, no upstream ids.
            upstream = None if by_external else self.relay.upstream_id(ident)
            if upstream is None:
                return None
            ident = upstream
        task = None if by_external else self._tasks.get(ident)
        if task is None:
            task = self._by_external.get(ident)
        if task is None or task.kind.name != kind.name:
            return None
        return task

    def _task_response(self, task: FakeTask) -> web.Response:
        now = self.clock()
        if self.relay is not None:
            return self.relay.queried(task, now, self.cdn_url, self._stamp, self._seconds)
        if self.wrap_queries:
            wrapped = render_wrapped(task, now, self.cdn_url, self._stamp)
            if self.restamp_answers:
                wrapped["data"]["data"]["updated_at"] = self._stamp(now)
            return self._reply(200, wrapped, 0)
        data = render_task(task, now, self.cdn_url, self._stamp)
        if self.restamp_answers:
            data["updated_at"] = self._stamp(now)
        return self._ok(data)

    async def _query(self, request: web.Request, kind: KindSpec) -> web.StreamResponse:
        # Form (c) of kling-api.md §1.7: the external id in the path plus a flag.
        by_external = request.query.get("external_task_id", "").lower() == "true"
        task = self._find(kind, request.match_info["task_id"], by_external=by_external)
        if task is None:
            if self.relay is not None:
                return self.relay.not_found()
            return self._error(404, 1203, "task not found")
        return self._task_response(task)

    async def _list(self, request: web.Request, kind: KindSpec) -> web.StreamResponse:
        if self.relay is not None:
            # new-api registers no list route (and no query-string look-up).
            return web.Response(status=404, text="404 page not found")
        external = request.query.get("external_task_id")
        if external is not None:
            task = self._find(kind, external, by_external=True)
            if task is None:
                return self._error(404, 1203, "task not found")
            return self._task_response(task)
        try:
            page_num = int(request.query.get("pageNum", "1"))
            page_size = int(request.query.get("pageSize", "30"))
        except ValueError:
            return self._error(400, 1201, "pageNum/pageSize: must be integers")
        if not 1 <= page_num <= 1000:
            return self._error(400, 1201, "pageNum: must be between 1 and 1000")
        if not 1 <= page_size <= 500:
            return self._error(400, 1201, "pageSize: must be between 1 and 500")
        now = self.clock()
        mine = sorted(
            (task for task in self._tasks.values() if task.kind.name == kind.name),
            key=lambda task: task.seq,
            reverse=True,
        )
        page = mine[(page_num - 1) * page_size : page_num * page_size]
        return self._ok([render_task(task, now, self.cdn_url, self._stamp) for task in page])
