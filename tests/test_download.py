"""The result downloader against a small CDN served on 127.0.0.1 (no mocks on the main paths)."""
# ruff: noqa: ASYNC240  # tests inspect small temporary files; blocking for microseconds is fine

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kling_async.download import Downloader
from kling_async.errors import ConfigurationError, DownloadError, StorageError
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.models import Task, TaskStatus, Video
from kling_async.retry import RetryPolicy
from kling_async.testing.clock import FakeClock

FAST = RetryPolicy(max_retries=3, base=0.001, cap=0.01, jitter=0.0)
SECRET = "sig-0123456789abcdef"
ETAG = '"v1"'


def payload(seed: str, size: int = 200_000) -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


class FakeCdn:
    """Serves files with Content-Length, Range and ETag; faults are queued per file name."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str | int]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server: TestServer | None = None
        self.delay = 0.0
        # A "cut" waits for this (e.g. "the client has written some bytes") before hanging up,
        # so the test does not depend on how fast the client reads.
        self.cut_when: Callable[[], bool] = lambda: True
        self.active = 0
        self.peak = 0

    def url(self, name: str, *, token: str = SECRET) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/v/{name}").with_query(token=token))

    def headers_for(self, name: str) -> list[dict[str, str]]:
        return [headers for path, headers in self.requests if path == f"/v/{name}"]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.delay:
                await anyio.sleep(self.delay)
            return await self._serve(request)
        finally:
            self.active -= 1

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((request.path, dict(request.headers)))
        data = self.files.get(name)
        queue = self.faults.get(name, [])
        fault = queue.pop(0) if queue else None
        if data is None:
            return web.Response(status=404)
        if isinstance(fault, int):
            headers = {"Retry-After": "0"} if fault in (429, 503) else {}
            return web.Response(status=fault, headers=headers)
        start = 0
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        honour = range_header is not None and fault != "ignore-range"
        if honour and if_range is not None and if_range != ETAG:
            honour = False
        if honour:
            assert range_header is not None
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        response = web.StreamResponse(status=206 if start else 200)
        response.headers["ETag"] = ETAG
        response.headers["Set-Cookie"] = "cdn_session=abc; Path=/"
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response.content_length = len(body)
        await response.prepare(request)
        if fault == "cut":
            # Announce the whole body, send a third of it, then drop the connection.
            await response.write(body[: len(body) // 3])
            for _ in range(2500):  # at most ~5 s, normally a few milliseconds
                if self.cut_when():
                    break
                await anyio.sleep(0.002)
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(body)
        await response.write_eof()
        return response


@pytest.fixture
async def cdn() -> AsyncIterator[FakeCdn]:
    fake = FakeCdn()
    app = web.Application()
    app.router.add_get("/v/{name}", fake.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    async with server:
        fake.server = server
        yield fake


class NoWait:
    """A clock whose sleeps return at once and are recorded."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await anyio.lowlevel.checkpoint()

    def deadline(self, seconds: float | None) -> AbstractContextManager[anyio.CancelScope]:
        # Time never passes on this clock, so no deadline ever expires.
        return anyio.CancelScope()


def part_has_bytes(part: Path) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return part.stat().st_size > 0
        except FileNotFoundError:
            return False

    return check


def make_task(
    *videos: Video, status: TaskStatus = TaskStatus.SUCCEED, task_id: str = "123"
) -> Task:
    return Task(id=task_id, kind=TEXT_TO_VIDEO, status=status, videos=tuple(videos))


def add(cdn: FakeCdn, name: str, size: int = 200_000) -> tuple[Video, bytes]:
    data = payload(name, size)
    cdn.files[name] = data
    return Video(id=name.removesuffix(".mp4"), url=cdn.url(name)), data


def downloader(**kwargs: object) -> Downloader:
    options: dict[str, object] = {"retry": FAST, "clock": NoWait(), "chunk_size": 16 * 1024}
    options.update(kwargs)
    return Downloader(**options)  # type: ignore[arg-type]


async def test_downloads_atomically_into_a_folder(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4")
    async with downloader() as d:
        path = await d.download(make_task(video), tmp_path)
    assert path == tmp_path.resolve() / "123-v1.mp4"
    assert path.read_bytes() == data
    assert list(tmp_path.iterdir()) == [path]  # no .part left behind


@pytest.mark.parametrize("which", ["final", "part"])
async def test_never_replaces_or_writes_into_a_pipe(
    cdn: FakeCdn, tmp_path: Path, which: str
) -> None:
    """A destination (or its part file) that exists but is no regular file, a FIFO here as
    ``/dev/null`` would be for root, is refused and left as it was."""
    video, _ = add(cdn, "v1.mp4")
    target = tmp_path / "out.mp4"
    special = target if which == "final" else tmp_path / "out.mp4.part"
    os.mkfifo(special)
    async with downloader() as d:
        with pytest.raises(StorageError, match="not a regular file"):
            await d.download(make_task(video), target)
    assert stat.S_ISFIFO(special.lstat().st_mode)
    assert not cdn.requests  # refused before the download began


async def test_never_sends_authorization_or_cookies(cdn: FakeCdn, tmp_path: Path) -> None:
    video, _ = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = [503]
    async with downloader() as d:
        await d.download(make_task(video), tmp_path / "a.mp4")
        await d.download(make_task(video), tmp_path / "b.mp4")
    seen = cdn.headers_for("v1.mp4")
    assert len(seen) == 3
    for headers in seen:
        lowered = {key.lower() for key in headers}
        assert "authorization" not in lowered
        assert "cookie" not in lowered  # the CDN set one; it must not come back


async def test_a_client_with_a_key_does_not_leak_it(cdn: FakeCdn, tmp_path: Path) -> None:
    import kling_async as kling

    key = "sk-client-secret-key-0000"
    video, data = add(cdn, "v1.mp4")
    assert cdn.server is not None
    async with kling.KlingClient(api_key=key, base_url=str(cdn.server.make_url("/"))) as client:
        path = await client.download(make_task(video), tmp_path)
    assert path.read_bytes() == data
    for headers in cdn.headers_for("v1.mp4"):
        assert "authorization" not in {k.lower() for k in headers}
        assert not any(key in value for value in headers.values())


async def test_rejects_a_session_that_carries_credentials() -> None:
    session = aiohttp.ClientSession(headers={"Authorization": "Bearer sk-x"})
    try:
        with pytest.raises(ConfigurationError, match="Authorization"):
            Downloader(session=session)
    finally:
        await session.close()


async def test_expired_url_is_refreshed_once(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = [403]
    stale = make_task(Video(id="v1", url=cdn.url("v1.mp4", token="old")))
    calls: list[str] = []

    async def refresh(task: Task) -> Task:
        calls.append(task.id)
        return make_task(video)

    async with downloader(refresh=refresh) as d:
        path = await d.download(stale, tmp_path)
    assert calls == ["123"]
    assert path.read_bytes() == data


async def test_expired_url_without_refresh_names_task_and_status_not_token(
    cdn: FakeCdn, tmp_path: Path
) -> None:
    video, _ = add(cdn, "v1.mp4")

    async def refresh(task: Task) -> Task:
        return task

    for refresher in (None, refresh):
        cdn.faults["v1.mp4"] = [410, 410]
        async with downloader(refresh=refresher) as d:
            with pytest.raises(DownloadError) as caught:
                await d.download(make_task(video), tmp_path)
        message = str(caught.value)
        assert "123" in message
        assert "410" in message
        assert "/v/v1.mp4" in message
        assert SECRET not in message
        assert caught.value.__cause__ is None
    assert not (tmp_path / "123-v1.mp4").exists()


async def test_resumes_a_partial_file_with_range(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4")
    half = len(data) // 2
    (tmp_path / "123-v1.mp4.part").write_bytes(data[:half])
    async with downloader() as d:
        path = await d.download(make_task(video), tmp_path)
    [headers] = cdn.headers_for("v1.mp4")
    assert headers["Range"] == f"bytes={half}-"
    assert path.read_bytes() == data


async def test_server_ignoring_range_starts_over(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4")
    (tmp_path / "123-v1.mp4.part").write_bytes(b"x" * 1000)
    cdn.faults["v1.mp4"] = ["ignore-range"]
    async with downloader() as d:
        path = await d.download(make_task(video), tmp_path)
    assert path.read_bytes() == data


async def test_oversized_part_gets_416_then_starts_over(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4", size=5000)
    (tmp_path / "123-v1.mp4.part").write_bytes(b"x" * 9000)
    async with downloader() as d:
        path = await d.download(make_task(video), tmp_path)
    assert path.read_bytes() == data
    assert [h.get("Range") for h in cdn.headers_for("v1.mp4")] == ["bytes=9000-", None]


async def test_complete_part_is_finished_on_416(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4", size=5000)
    (tmp_path / "123-v1.mp4.part").write_bytes(data)
    async with downloader() as d:
        path = await d.download(make_task(video), tmp_path)
    assert path.read_bytes() == data
    assert len(cdn.headers_for("v1.mp4")) == 1


async def test_cut_off_transfer_is_resumed(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = ["cut"]
    cdn.cut_when = part_has_bytes(tmp_path / "123-v1.mp4.part")
    clock = NoWait()
    async with downloader(clock=clock) as d:
        path = await d.download(make_task(video), tmp_path)
    assert path.read_bytes() == data
    ranges = [h.get("Range") for h in cdn.headers_for("v1.mp4")]
    assert ranges[0] is None
    assert ranges[-1] is not None  # the second attempt resumed instead of starting over
    assert cdn.headers_for("v1.mp4")[-1]["If-Range"] == ETAG
    assert len(clock.sleeps) == 1


async def test_short_body_is_never_renamed(cdn: FakeCdn, tmp_path: Path) -> None:
    video, _ = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = ["cut"] * 10
    cdn.cut_when = part_has_bytes(tmp_path / "123-v1.mp4.part")
    async with downloader(retry=RetryPolicy(max_retries=1, base=0.001, jitter=0)) as d:
        with pytest.raises(DownloadError, match="after 2 attempts"):
            await d.download(make_task(video), tmp_path)
    assert not (tmp_path / "123-v1.mp4").exists()
    part = tmp_path / "123-v1.mp4.part"
    assert 0 < part.stat().st_size < len(cdn.files["v1.mp4"])  # kept for a later resume


async def test_server_errors_are_retried_with_backoff(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = [500, 502, 429]
    clock = NoWait()
    async with downloader(clock=clock) as d:
        path = await d.download(make_task(video), tmp_path)
    assert path.read_bytes() == data
    assert clock.sleeps == [0.001, 0.002, 0.0]  # the 429 said Retry-After: 0


async def test_retry_waits_are_on_the_injected_clock(cdn: FakeCdn, tmp_path: Path) -> None:
    """Minutes of back-off pass on a fake clock in no wall time: nothing sleeps for real."""
    video, data = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = [500, 502]
    clock = FakeClock()
    slow = RetryPolicy(max_retries=3, base=60.0, cap=600.0, jitter=0.0)
    started = time.monotonic()
    async with clock.autojump(), downloader(clock=clock, retry=slow) as d:
        path = await d.download(make_task(video), tmp_path)
    assert path.read_bytes() == data
    assert clock.now() == 180.0  # 60 s, then 120 s, on virtual time
    assert time.monotonic() - started < 60


async def test_retries_run_out(cdn: FakeCdn, tmp_path: Path) -> None:
    video, _ = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = [500] * 10
    async with downloader() as d:
        with pytest.raises(DownloadError, match=r"after 4 attempts: HTTP 500"):
            await d.download(make_task(video), tmp_path)


async def test_client_error_status_is_final(cdn: FakeCdn, tmp_path: Path) -> None:
    video, _ = add(cdn, "v1.mp4")
    cdn.faults["v1.mp4"] = [400]
    async with downloader() as d:
        with pytest.raises(DownloadError, match="HTTP 400"):
            await d.download(make_task(video), tmp_path)
    assert len(cdn.headers_for("v1.mp4")) == 1


@pytest.mark.parametrize("video_id", ["../../x", "/etc/passwd", "..", "a\\..\\b", ""])
async def test_path_traversal_is_refused(cdn: FakeCdn, tmp_path: Path, video_id: str) -> None:
    _, _ = add(cdn, "v1.mp4")
    folder = tmp_path / "out"
    folder.mkdir()
    async with downloader() as d:
        with pytest.raises(DownloadError, match="not a plain name"):
            await d.download(make_task(Video(id=video_id, url=cdn.url("v1.mp4"))), folder)
    assert cdn.requests == []
    assert not any(tmp_path.rglob("*.mp4*"))


async def test_odd_characters_are_sanitised(cdn: FakeCdn, tmp_path: Path) -> None:
    _, data = add(cdn, "v1.mp4")
    task = make_task(Video(id="a b:c*é", url=cdn.url("v1.mp4")), task_id="t 1")
    async with downloader() as d:
        path = await d.download(task, f"{tmp_path}{os.sep}new{os.sep}")
    assert path == (tmp_path / "new").resolve() / "t_1-a_b_c__.mp4"
    assert path.read_bytes() == data


async def test_absolute_folder_and_file_destinations(cdn: FakeCdn, tmp_path: Path) -> None:
    video, data = add(cdn, "v1.mp4")
    folder = (tmp_path / "abs").resolve()
    folder.mkdir()
    async with downloader() as d:
        in_folder = await d.download(make_task(video), folder)
        as_file = await d.download(make_task(video), tmp_path / "deep" / "er" / "out.mp4")
    assert in_folder.parent == folder
    assert in_folder.is_relative_to(folder)
    assert as_file == (tmp_path / "deep" / "er" / "out.mp4").resolve()
    assert in_folder.read_bytes() == as_file.read_bytes() == data


async def test_watermarked_variant(cdn: FakeCdn, tmp_path: Path) -> None:
    plain, _ = add(cdn, "v1.mp4")
    _, marked = add(cdn, "v1-wm.mp4")
    video = Video(id="v1", url=plain.url, watermark_url=cdn.url("v1-wm.mp4"))
    async with downloader() as d:
        path = await d.download(make_task(video), tmp_path, watermark=True)
        assert path.name == "123-v1-wm.mp4"
        assert path.read_bytes() == marked
        with pytest.raises(DownloadError, match="no watermarked variant"):
            await d.download(make_task(plain), tmp_path, watermark=True)


async def test_task_not_succeeded_or_without_videos(tmp_path: Path) -> None:
    video = Video(id="v1", url="http://127.0.0.1:9/never")
    async with downloader() as d:
        with pytest.raises(DownloadError, match="has not succeeded"):
            await d.download(make_task(video, status=TaskStatus.PROCESSING), tmp_path)
        with pytest.raises(DownloadError, match="lists no videos"):
            await d.download(make_task(), tmp_path)
        with pytest.raises(DownloadError, match="index 1 is out of range"):
            await d.download(make_task(video), tmp_path, index=1)
        with pytest.raises(DownloadError, match="has not succeeded"):
            await d.download_all(make_task(video, status=TaskStatus.FAILED), tmp_path)


async def test_download_all_is_bounded_and_ordered(cdn: FakeCdn, tmp_path: Path) -> None:
    pairs = [add(cdn, f"v{i}.mp4", size=40_000) for i in range(5)]
    cdn.delay = 0.01
    async with downloader(max_concurrent=2) as d:
        paths = await d.download_all(make_task(*(video for video, _ in pairs)), tmp_path)
    assert [path.name for path in paths] == [f"123-v{i}.mp4" for i in range(5)]
    assert [path.read_bytes() for path in paths] == [data for _, data in pairs]
    assert 1 <= cdn.peak <= 2


async def test_download_all_reports_failures_after_the_rest(cdn: FakeCdn, tmp_path: Path) -> None:
    good, _ = add(cdn, "good.mp4")
    bad, _ = add(cdn, "bad.mp4")
    cdn.faults["bad.mp4"] = [400]
    async with downloader() as d:
        with pytest.raises(DownloadError, match="HTTP 400"):
            await d.download_all(make_task(bad, good), tmp_path)
    assert (tmp_path / "123-good.mp4").exists()


async def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    task = make_task(Video(id="v1", url=f"http://127.0.0.1:1/v/v1.mp4?token={SECRET}"))
    clock = NoWait()
    async with downloader(clock=clock) as d:
        with pytest.raises(DownloadError) as caught:
            await d.download(task, tmp_path)
    assert "after 4 attempts" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert len(clock.sleeps) == 3


async def test_closed_downloader_refuses_work(cdn: FakeCdn, tmp_path: Path) -> None:
    video, _ = add(cdn, "v1.mp4")
    d = downloader()
    await d.aclose()
    await d.aclose()
    with pytest.raises(DownloadError, match="closed"):
        await d.download(make_task(video), tmp_path)
