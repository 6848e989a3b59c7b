"""The CDN site of the emulator: serves generated videos, with ranges, expiry and faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from aiohttp import web

from ._config import RouteKind
from ._faults import Fault, FaultInjector
from ._http import FAULT_ERRORS, drop_connection, parse_range
from ._mp4 import build_mp4
from ._records import RequestRecord, ServerStats
from ._tasks import FakeTask

__all__ = ["CdnSite"]

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
}
_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".mp3": b"ID3", ".wav": b"RIFF"}


def _split_name(name: str) -> tuple[str, str | None]:
    for suffix in _CONTENT_TYPES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix), suffix
    return name, None


class CdnSite:
    """Mixin of [`FakeKlingServer`][kling_async.testing.server.FakeKlingServer] holding the CDN handlers.

    It only declares the server state it needs; the server owns and initialises it.
    """

    requests: list[RequestRecord]
    stats: ServerStats
    faults: FaultInjector
    clock: Callable[[], float]
    cdn_require_no_auth: bool
    expired_url_status: int
    video_size: int
    _videos: dict[str, FakeTask]
    _video_cache: dict[tuple[str, bool], bytes]

    def _record(self, request: web.Request, site: Literal["api", "cdn"], route: RouteKind) -> None:
        self.requests.append(
            RequestRecord(
                site=site,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                route=route,
            )
        )
        self.stats.routes[route] += 1

    async def _sleep(self, fault: Fault) -> None:
        await asyncio.sleep(
            fault.seconds if fault.seconds is not None else self.faults.config.slow_seconds
        )

    def _video_data(self, task: FakeTask, watermark: bool) -> bytes:
        key = (task.video_id, watermark)
        data = self._video_cache.get(key)
        if data is None:
            seed = task.video_id + ("-wm" if watermark else "")
            data = build_mp4(
                seed, duration_seconds=float(task.video_duration()), mdat_size=self.video_size
            )
            self._video_cache[key] = data
        return data

    def _cdn_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/videos/{name}", self._video)
        app.router.add_route("*", "/{tail:.*}", self._cdn_unknown)
        return app

    async def _cdn_unknown(self, request: web.Request) -> web.StreamResponse:
        self._record(request, "cdn", "other")
        self.stats.http_statuses[404] += 1
        return web.Response(status=404, text="Not Found")

    async def _video(self, request: web.Request) -> web.StreamResponse:
        self._record(request, "cdn", "video")
        fault = self.faults.take("video")
        if fault is not None:
            self.stats.faults[fault.kind] += 1
        response = await self._video_response(request, fault)
        if response is not None:
            self.stats.http_statuses[response.status] += 1
            return response
        return await drop_connection(request)

    async def _video_response(
        self, request: web.Request, fault: Fault | None
    ) -> web.StreamResponse | None:
        if "Authorization" in request.headers:
            self.stats.cdn_auth_rejections[request.path] += 1
            if self.cdn_require_no_auth:
                return web.Response(
                    status=403, text="Forbidden: credentials must not be sent to the CDN"
                )
        if fault is not None and fault.kind in FAULT_ERRORS:
            return web.Response(status=FAULT_ERRORS[fault.kind][0], text="CDN error")
        if fault is not None and fault.kind == "drop_before_create":
            return None
        name = request.match_info["name"]
        stem, suffix = _split_name(name)
        watermark = stem.endswith("-wm")
        stem = stem.removesuffix("-wm")
        if suffix == ".png":
            stem, _, index = stem.rpartition("-")
            if not index.isdigit():
                stem = ""
        task = self._videos.get(stem)
        if suffix is None or task is None or task.status_at(self.clock()) != "succeed":
            return web.Response(status=404, text="Not Found")
        if request.query.get("v", "1") != str(task.url_version):
            return web.Response(status=self.expired_url_status, text="URL expired")
        data = self._video_data(task, watermark)
        if suffix != ".mp4":
            # Images and audio are the video's bytes behind their format's magic number, made
            # distinct per file: enough for a downloader to check size and tell files apart.
            data = _MAGIC[suffix] + data + name.encode()
        status, start, end = 200, 0, len(data) - 1
        headers = {"Accept-Ranges": "bytes", "Content-Type": _CONTENT_TYPES[suffix]}
        range_header = request.headers.get("Range")
        if range_header is not None:
            parsed = parse_range(range_header, len(data))
            if parsed is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        chunk = data[start : end + 1]
        if fault is not None and fault.kind == "slow":
            await self._sleep(fault)
        if fault is not None and fault.kind == "cut_download":
            return await self._cut(request, status, headers, chunk)
        return web.Response(status=status, body=chunk, headers=headers)

    async def _cut(
        self, request: web.Request, status: int, headers: dict[str, str], chunk: bytes
    ) -> web.StreamResponse:
        # Promise the full length, deliver half, hang up: what a resuming downloader must survive.
        response = web.StreamResponse(
            status=status, headers={**headers, "Content-Length": str(len(chunk))}
        )
        await response.prepare(request)
        await response.write(chunk[: len(chunk) // 2])
        transport = request.transport
        if transport is not None:
            transport.close()
        return response
