"""Download result videos to disk: verified, resumable, atomic, and never with the API key.

Result URLs point at third-party CDNs, so :class:`Downloader` fetches them through its own
:class:`aiohttp.ClientSession`, created here with no default headers and a
:class:`aiohttp.DummyCookieJar`; the client's credentials cannot leak to the CDN because this
session has never seen them.

Each file is streamed into ``<name>.part`` in the destination folder and renamed over the final
name with :func:`os.replace` only once its size matches what the server announced, so a reader
never sees a half-written video under the final name. A ``.part`` left by an interrupted attempt
(or an earlier process) is resumed with ``Range: bytes=N-``. Expired URLs (HTTP 403, 404, 410) are
refreshed once through the ``refresh`` callable, typically :meth:`KlingClient.get_task`.

Examples:
    >>> async def main(task: Task) -> None:  # doctest: +SKIP
    ...     async with Downloader(refresh=client.get_task) as downloader:
    ...         path = await downloader.download(task, "out/")
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TypeAlias

import aiohttp
import anyio
import anyio.to_thread
import attrs
from yarl import URL

from ._closing import AsyncClosing
from .clock import Clock
from .errors import ConfigurationError, DownloadError
from .models import Task, Video
from .retry import RetryPolicy, parse_retry_after

__all__ = ["Downloader", "Refresh", "safe_stem"]

Refresh: TypeAlias = Callable[[Task], Awaitable[Task]]
"""Fetch a task again, so that its video URLs are fresh."""

_EXPIRED = frozenset({403, 404, 410})
_TRANSIENT = frozenset({408, 425, 429})
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# Most file systems cap a name at 255 bytes; keep room for the ".part" suffix.
_MAX_NAME = 200
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


class _TransientError(Exception):
    """An attempt failed in a way that the next attempt may not (internal)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


class _ExpiredError(Exception):
    """The URL answered 403, 404 or 410 (internal)."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"HTTP {status}")


@attrs.define
class _Target:
    """Where one video goes, and what has been learnt about it across attempts."""

    final: Path
    part: Path
    # A strong ETag or Last-Modified of the bytes already in ``part``, sent as If-Range so that
    # a changed file is fetched whole instead of being spliced onto stale bytes.
    validator: str | None = None


def _safe_url(url: str) -> str:
    """The URL without query or fragment: signed CDN URLs carry bearer tokens there."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<unparseable URL>"
    return str(parsed.with_query(None).with_fragment(None).with_user(None))


def _redact(text: str, url: str) -> str:
    """Remove the URL's query (and the URL itself) from a foreign exception's message."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return text.replace(url, "<URL>")
    for secret in (url, str(parsed), parsed.raw_query_string, parsed.query_string):
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _check_id(what: str, value: str) -> None:
    # Ids come from the server; one that looks like a path is refused rather than quietly
    # rewritten, because it signals a broken or hostile upstream.
    if not value or value in (".", "..") or any(c in value for c in "/\\\x00"):
        raise DownloadError(f"refusing {what} {value!r}: it is not a plain name")


def safe_stem(text: str, max_length: int = _MAX_NAME) -> str:
    """*text* as a file-name stem: only ``A-Za-z0-9._-``, no leading dot, at most *max_length*.

    Examples:
        >>> safe_stem("../etc/passwd")
        '_etc_passwd'
    """
    return _UNSAFE_CHARS.sub("_", text).lstrip(".")[:max_length]


def _file_name(task: Task, video: Video, watermark: bool) -> str:
    _check_id("task id", task.id)
    _check_id("video id", video.id)
    stem = safe_stem(f"{task.id}-{video.id}{'-wm' if watermark else ''}") or "video"
    return f"{stem}.mp4"


def _resolve_target(
    task: Task, video: Video, dest: str | os.PathLike[str], watermark: bool, *, folder: bool
) -> _Target:
    """Work out (and create) the destination; blocking, so it runs in a worker thread."""
    text = os.fspath(dest)
    path = Path(text)
    is_folder = folder or text.endswith((os.sep, os.altsep or os.sep)) or path.is_dir()
    if is_folder:
        path.mkdir(parents=True, exist_ok=True)
        root = path.resolve()
        final = root / _file_name(task, video, watermark)
        # Belt and braces behind the name check: the file must land directly in the folder.
        if final.parent != root or not final.resolve().is_relative_to(root):
            raise DownloadError(
                f"task {task.id}: video {video.id!r} would be written outside {root}"
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        final = path.parent.resolve() / path.name
    return _Target(final=final, part=final.with_name(final.name + ".part"))


def _open_part(part: Path, offset: int) -> IO[bytes]:
    # A symlink planted at the .part name would make us write through it; drop it instead.
    if part.is_symlink():
        part.unlink()
    if offset == 0:
        return part.open("wb")
    handle = part.open("r+b")
    handle.truncate(offset)
    handle.seek(offset)
    return handle


def _part_size(part: Path) -> int:
    try:
        if part.is_symlink():
            return 0
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)


def _finish(handle: IO[bytes], part: Path, final: Path) -> None:
    """Flush to stable storage, then rename: after a crash there is either no file or a whole one."""
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(part, final)
    try:
        directory = os.open(final.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - directories cannot be opened on Windows
        return
    try:
        os.fsync(directory)
    except OSError:  # pragma: no cover - some file systems refuse to fsync a directory
        pass
    finally:
        os.close(directory)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` from a Content-Range header; ``None`` where unknown."""
    if not value:
        return None, None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return first, total


def _validator(response: aiohttp.ClientResponse) -> str | None:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


class Downloader(AsyncClosing):
    """Streams result videos to disk, verified and resumable.

    Writes go through :func:`anyio.to_thread.run_sync` in blocks of about ``chunk_size`` bytes:
    a thread hop per 256 KiB costs little next to the network, and the event loop never waits on
    a slow disk (the final ``fsync`` in particular can take long).

    Args:
        refresh: fetches a task again (e.g. :meth:`KlingClient.get_task`), used once per download
            when the URL has expired (HTTP 403, 404 or 410).
        session: a session to use instead of the downloader's own (it is not closed here). It must
            not carry an ``Authorization`` header or ``auth``: result URLs are third-party links.
        retry: how often and how long to retry transient failures (connection errors, cut-off
            bodies, size mismatches, HTTP 408/425/429/5xx). Each retry resumes the ``.part`` file.
        chunk_size: bytes collected before each write to disk.
        timeout: seconds allowed per attempt (connect plus body); an attempt that times out keeps
            its bytes and the next attempt resumes after them.
        max_concurrent: downloads running at once through this downloader.
        clock: sleeps between retries; tests pass a fake one.

    Raises:
        ConfigurationError: a bad argument, or a *session* that carries credentials.
    """

    def __init__(
        self,
        *,
        refresh: Refresh | None = None,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        chunk_size: int = 256 * 1024,
        timeout: float = 300.0,
        max_concurrent: int = 4,
        clock: Clock | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be >= 1, got {chunk_size}")
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0, got {timeout}")
        if max_concurrent < 1:
            raise ConfigurationError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if session is not None:
            _check_session(session)
        self._refresh = refresh
        self._session = session
        self._owns_session = session is None
        self._retry = retry or RetryPolicy()
        self._chunk_size = chunk_size
        self._timeout = timeout
        self._max_concurrent = max_concurrent
        self._clock = clock
        self._slots = anyio.Semaphore(max_concurrent)
        # Two downloads to the same file would share one .part file; the second waits instead.
        self._path_locks: dict[Path, anyio.Lock] = {}
        self._closed = False

    async def aclose(self) -> None:
        """Close the session if the downloader created it. Safe to call twice."""
        self._closed = True
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise DownloadError("the downloader is closed")
        if self._session is None:
            # Created lazily so that it belongs to the running event loop. No default headers
            # and no cookies: nothing from the API side, or from one CDN answer, is ever replayed.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_concurrent),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def _sleep(self, seconds: float) -> None:
        if self._clock is not None:
            await self._clock.sleep(seconds)
        else:
            await anyio.sleep(seconds)

    async def download(
        self,
        task: Task,
        dest: str | os.PathLike[str],
        *,
        watermark: bool = False,
        index: int = 0,
    ) -> Path:
        """Download one video of a succeeded task.

        Args:
            task: a task that has succeeded.
            dest: a folder (an existing directory, or a path ending with a separator), where the
                file is called ``{task.id}-{video.id}.mp4`` (``-wm`` before ``.mp4`` for the
                watermarked variant), or a file path. Missing folders are created.
            watermark: fetch ``video.watermark_url`` instead of ``video.url``.
            index: which of the task's videos.

        Returns:
            The absolute path of the finished file.

        Raises:
            DownloadError: the task has not succeeded or has no such video, the name would leave
                the folder, the URL stayed expired, or retries ran out. Messages carry the task
                id and HTTP status but never the URL's query string.
        """
        video = _pick_video(task, index, watermark, None)
        target = await anyio.to_thread.run_sync(
            functools.partial(_resolve_target, task, video, dest, watermark, folder=False)
        )
        return await self._download_locked(task, video, index, target, watermark)

    async def download_all(
        self, task: Task, dest_dir: str | os.PathLike[str], *, watermark: bool = False
    ) -> list[Path]:
        """Download every video of a succeeded task into the folder *dest_dir*.

        The videos download concurrently, within ``max_concurrent``. When some fail, the others
        still finish (and stay on disk), then the first failure is raised.

        Returns:
            The finished files, in the task's video order.

        Raises:
            DownloadError: as for :meth:`download`.
        """
        if not task.succeeded:
            _pick_video(task, 0, watermark, None)  # raises the "not succeeded" error
        if not task.videos:
            raise DownloadError(f"task {task.id} has no videos to download")
        plans: list[tuple[Video, _Target]] = []
        for index in range(len(task.videos)):
            video = _pick_video(task, index, watermark, None)
            target = await anyio.to_thread.run_sync(
                functools.partial(_resolve_target, task, video, dest_dir, watermark, folder=True)
            )
            plans.append((video, target))
        results: list[Path | None] = [None] * len(plans)
        errors: list[DownloadError] = []

        async def one(position: int, video: Video, target: _Target) -> None:
            try:
                results[position] = await self._download_locked(
                    task, video, position, target, watermark
                )
            except DownloadError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as group:
            for position, (video, target) in enumerate(plans):
                group.start_soon(one, position, video, target)
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise DownloadError(f"{len(errors)} of {len(plans)} videos failed; first: {errors[0]}")
        return [path for path in results if path is not None]

    async def _download_locked(
        self, task: Task, video: Video, index: int, target: _Target, watermark: bool
    ) -> Path:
        lock = self._path_locks.setdefault(target.final, anyio.Lock())
        try:
            async with lock, self._slots:
                return await self._download(task, video, index, target, watermark)
        finally:
            if not lock.statistics().tasks_waiting and not lock.locked():
                self._path_locks.pop(target.final, None)

    async def _download(
        self, task: Task, video: Video, index: int, target: _Target, watermark: bool
    ) -> Path:
        refreshed = False
        retries = 0
        while True:
            url = video.watermark_url if watermark else video.url
            assert url is not None  # checked by _pick_video  # noqa: S101
            try:
                await self._attempt(url, target)
            except _ExpiredError as exc:
                if self._refresh is None or refreshed:
                    hint = (
                        "even after refreshing the task" if refreshed else "(no refresh callable)"
                    )
                    raise DownloadError(
                        f"task {task.id}: video {video.id} URL {_safe_url(url)} answered "
                        f"HTTP {exc.status} (expired or gone) {hint}"
                    ) from None
                refreshed = True
                task = await self._refresh_task(task, exc.status)
                video = _pick_video(task, index, watermark, video.id)
                continue
            except _TransientError as exc:
                if retries >= self._retry.max_retries:
                    raise DownloadError(
                        f"task {task.id}: video {video.id} from {_safe_url(url)} failed after "
                        f"{retries + 1} attempts: {exc.reason}"
                    ) from None
                if exc.retry_after is not None and exc.retry_after > self._retry.max_retry_after:
                    raise DownloadError(
                        f"task {task.id}: video {video.id}: server asked to wait "
                        f"{exc.retry_after:.0f}s (> max_retry_after): {exc.reason}"
                    ) from None
                await self._sleep(self._retry.delay(retries, exc.retry_after))
                retries += 1
                continue
            except DownloadError as exc:
                raise DownloadError(f"task {task.id}: video {video.id}: {exc}") from None
            return target.final

    async def _refresh_task(self, task: Task, status: int) -> Task:
        assert self._refresh is not None  # noqa: S101
        try:
            return await self._refresh(task)
        except DownloadError:
            raise
        except Exception as exc:
            raise DownloadError(
                f"task {task.id}: the video URL expired (HTTP {status}) and fetching the task "
                f"again failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _attempt(self, url: str, target: _Target) -> None:
        """One GET: append to or restart the ``.part`` file; rename it when complete.

        Raises:
            _TransientError: worth another attempt (the ``.part`` keeps whatever arrived).
            _ExpiredError: the URL answered 403, 404 or 410.
            DownloadError: a final failure.
        """
        offset = await anyio.to_thread.run_sync(_part_size, target.part)
        if offset == 0:
            target.validator = None
        # identity: Content-Length must count the bytes we store, not a compressed form.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if target.validator:
                headers["If-Range"] = target.validator
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        session = self._get_session()
        try:
            async with session.get(url, headers=headers, timeout=timeout) as response:
                await self._consume(response, url, target, offset)
        except (_TransientError, _ExpiredError, DownloadError):
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise _TransientError(f"timed out ({type(exc).__name__})") from None
        except aiohttp.InvalidURL:
            raise DownloadError(f"invalid URL {_safe_url(url)}") from None
        except aiohttp.ClientError as exc:
            raise _TransientError(f"{type(exc).__name__}: {_redact(str(exc), url)}") from None

    async def _consume(
        self, response: aiohttp.ClientResponse, url: str, target: _Target, offset: int
    ) -> None:
        status = response.status
        if status in _EXPIRED:
            raise _ExpiredError(status)
        if status in _TRANSIENT or status >= 500:
            retry_after = parse_retry_after(response.headers)
            raise _TransientError(f"HTTP {status}", retry_after=retry_after)
        if status == 416:
            # Nothing left after our offset: either the .part is already whole, or it is longer
            # than the file (stale). Only an announced total that matches lets us keep it.
            _, total = _parse_content_range(response.headers.get("Content-Range"))
            if offset and total == offset:
                handle = await anyio.to_thread.run_sync(_open_part, target.part, offset)
                await anyio.to_thread.run_sync(_finish, handle, target.part, target.final)
                return
            await anyio.to_thread.run_sync(_discard, target.part)
            raise _TransientError("HTTP 416: the partial file did not fit; starting over")
        if status == 206:
            first, total = _parse_content_range(response.headers.get("Content-Range"))
            if first != offset:
                await anyio.to_thread.run_sync(_discard, target.part)
                raise _TransientError(
                    f"HTTP 206 for bytes from {first}, not {offset}; starting over"
                )
            start = offset
        elif status == 200:
            # The server ignored the Range (or If-Range saw a changed file): start over.
            start = 0
            total = response.content_length
            target.validator = _validator(response)
        else:
            raise DownloadError(f"{_safe_url(url)} answered HTTP {status}")
        if status == 206 and total is None and response.content_length is not None:
            total = offset + response.content_length

        handle = await anyio.to_thread.run_sync(_open_part, target.part, start)
        finished = False
        try:
            written = await self._stream(response, handle, start, total)
            if total is not None and written != total:
                if written > total:
                    # More bytes than announced: the .part cannot be trusted to resume from.
                    await anyio.to_thread.run_sync(handle.close)
                    await anyio.to_thread.run_sync(_discard, target.part)
                    raise _TransientError(f"got {written} bytes but the server announced {total}")
                raise _TransientError(f"got {written} of {total} bytes")
            await anyio.to_thread.run_sync(_finish, handle, target.part, target.final)
            finished = True
        finally:
            if not finished and not handle.closed:
                # Closing flushes what arrived, so the next attempt can resume after it; shielded
                # so that a cancelled download still releases its file handle.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(handle.close)

    async def _stream(
        self, response: aiohttp.ClientResponse, handle: IO[bytes], written: int, total: int | None
    ) -> int:
        """Copy the body into *handle* in blocks of about ``chunk_size``; return the new size."""
        buffer = bytearray()
        try:
            async for chunk in response.content.iter_chunked(self._chunk_size):
                buffer += chunk
                if len(buffer) >= self._chunk_size:
                    await anyio.to_thread.run_sync(handle.write, bytes(buffer))
                    written += len(buffer)
                    buffer.clear()
                    if total is not None and written > total:
                        return written
        except (aiohttp.ClientError, asyncio.TimeoutError):
            # Keep what did arrive: the next attempt resumes after it.
            if buffer:
                await anyio.to_thread.run_sync(handle.write, bytes(buffer))
            raise
        if buffer:
            await anyio.to_thread.run_sync(handle.write, bytes(buffer))
            written += len(buffer)
        return written


def _check_session(session: aiohttp.ClientSession) -> None:
    if any(key.lower() in ("authorization", "proxy-authorization") for key in session.headers):
        raise ConfigurationError(
            "the download session must not carry an Authorization header: "
            "result URLs are third-party CDN links"
        )
    if session.auth is not None:
        raise ConfigurationError("the download session must not carry auth credentials")


def _pick_video(task: Task, index: int, watermark: bool, video_id: str | None) -> Video:
    """The video to fetch; after a refresh, the one with the same id when it is still there."""
    if not task.succeeded:
        state = task.raw_status or task.status.value
        raise DownloadError(
            f"task {task.id} has not succeeded (status {state}); only a succeeded task has videos"
        )
    if not task.videos:
        raise DownloadError(f"task {task.id} succeeded but lists no videos")
    video: Video | None = None
    if video_id is not None:
        video = next((v for v in task.videos if v.id == video_id), None)
    if video is None:
        if not 0 <= index < len(task.videos):
            raise DownloadError(
                f"task {task.id} has {len(task.videos)} video(s); index {index} is out of range"
            )
        video = task.videos[index]
    if watermark and not video.watermark_url:
        raise DownloadError(f"task {task.id}: video {video.id} has no watermarked variant")
    if not (video.watermark_url if watermark else video.url):
        raise DownloadError(f"task {task.id}: video {video.id} has no URL")
    return video
