"""Download result videos to disk: verified, resumable, atomic, and never with the API key.

Result URLs point at third-party CDNs, so [`Downloader`][kling_async.download.Downloader] fetches them through a
transport of its own ([`AiohttpTransport`][kling_async.transport.AiohttpTransport] over its own
``aiohttp.ClientSession``: no default headers, no cookies, no proxy settings from the
environment); the client's credentials cannot leak to the CDN because this session has never
seen them. The transport translates network failures, as it does for the API.

Each file is streamed into ``<name>.part`` in the destination folder and renamed over the final
name with ``os.replace`` only once its size matches what the server announced, so a reader
never sees a half-written video under the final name. A ``.part`` left by an interrupted attempt
(or an earlier process) is resumed with ``Range: bytes=N-``. Expired URLs (HTTP 403, 404, 410) are
refreshed once through the ``refresh`` callable, typically [`KlingClient.get_task`][kling_async.client.KlingClient.get_task].

Examples:
    >>> async def main(task: Task) -> None:  # doctest: +SKIP
    ...     async with Downloader(refresh=client.get_task) as downloader:
    ...         path = await downloader.download(task, "out/")
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeAlias

import anyio
import anyio.to_thread
from yarl import URL

from ._closing import AsyncClosing
from ._download_files import Target, discard, finish, part_size, pick_video, resolve, safe_stem

# A module global of this module, looked up at each call: a test replaces it to fill the disk.
from ._download_files import open_part as _open_part
from .clock import Clock, SystemClock
from .errors import APIConnectionError, APIError, ConfigurationError, DownloadError, StorageError
from .models import Result, Task
from .retry import RetryPolicy, parse_retry_after, retry_after_of
from .transport import AiohttpTransport, InvalidURLError, StreamedResponse

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Downloader", "Refresh", "safe_stem"]

Refresh: TypeAlias = Callable[[Task], Awaitable[Task]]
"""Fetch a task again, so that its video URLs are fresh."""

_EXPIRED = frozenset({403, 404, 410})
_TRANSIENT = frozenset({408, 425, 429})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


class _TransientError(Exception):
    """An attempt failed in a way that the next attempt may not (internal)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _RetryableStatusError(_TransientError, APIError):
    """The CDN answered a status worth another attempt, perhaps with ``Retry-After`` (internal).

    An [`APIError`][kling_async.errors.APIError], so that the one retry loop reads its
    ``Retry-After`` as it reads any other answer's.
    """

    def __init__(self, status: int, retry_after: float | None) -> None:
        reason = f"HTTP {status}"
        APIError.__init__(self, reason, status=status, retry_after=retry_after)
        self.reason = reason


class _ExpiredError(Exception):
    """The URL answered 403, 404 or 410 (internal)."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"HTTP {status}")


def _safe_url(url: str) -> str:
    """The URL without query or fragment: signed CDN URLs carry bearer tokens there."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<unparseable URL>"
    return str(parsed.with_query(None).with_fragment(None).with_user(None))


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


def _validator(response: StreamedResponse) -> str | None:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _is_transient(error: BaseException) -> bool:
    """A failure the next attempt may not meet: a retryable status, a cut, a network error."""
    if isinstance(error, InvalidURLError):
        return False
    return isinstance(error, _TransientError | APIConnectionError)


class Downloader(AsyncClosing):
    """Streams result videos to disk, verified and resumable.

    Writes go through ``anyio.to_thread.run_sync`` in blocks of about ``chunk_size`` bytes:
    a thread hop per 256 KiB costs little next to the network, and the event loop never waits on
    a slow disk (the final ``fsync`` in particular can take long).

    Args:
        refresh: fetches a task again (e.g. [`KlingClient.get_task`][kling_async.client.KlingClient.get_task]), used once per download
            when the URL has expired (HTTP 403, 404 or 410).
        session: a session to use instead of the downloader's own (it is not closed here). It must
            not carry an ``Authorization`` header or ``auth``: result URLs are third-party links.
        retry: how often and how long to retry transient failures (connection errors, cut-off
            bodies, size mismatches, HTTP 408/425/429/5xx). Each retry resumes the ``.part`` file.
        chunk_size: bytes collected before each write to disk.
        timeout: seconds allowed per attempt (connect plus body); an attempt that times out keeps
            its bytes and the next attempt resumes after them.
        max_concurrent: downloads running at once through this downloader.
        clock: where the waits between retries happen; [`SystemClock`][kling_async.clock.SystemClock]
            when omitted (tests pass a fake one).

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
        # Its own transport: this session never carries the API key, and the transport is the
        # one place that translates network failures.
        self._transport = AiohttpTransport(
            session, connection_limit=max_concurrent, connect_timeout=None
        )
        self._retry = retry or RetryPolicy()
        self._chunk_size = chunk_size
        self._timeout = timeout
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._slots = anyio.Semaphore(max_concurrent)
        # Two downloads to the same file would share one .part file; the second waits instead.
        self._path_locks: dict[Path, anyio.Lock] = {}
        self._closed = False

    async def aclose(self) -> None:
        """Close the session if the downloader created it. Safe to call twice."""
        self._closed = True
        await self._transport.aclose()

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
                watermarked variant; ``.png`` for images, ``.mp3`` for audio), or a file path.
                Missing folders are created.
            watermark: fetch ``video.watermark_url`` instead of ``video.url``.
            index: which of the task's results ([`Task.results`][kling_async.models.Task.results]: its videos, images or
                sound tracks).

        Returns:
            The absolute path of the finished file.

        Raises:
            DownloadError: the task has not succeeded or has no such video, the name would leave
                the folder, the URL stayed expired, retries ran out, or another download is
                writing the same ``.part`` file. Messages carry the task id and HTTP status but
                never the URL's query string.
            StorageError: the file could not be written (a full disk, a file-size limit, an
                unwritable folder); the ``.part`` file keeps what was written, for a resume.
        """
        video = pick_video(task, index, watermark, None)
        target = await resolve(task, video, dest, watermark, folder=False)
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
            DownloadError: as for [`download`][kling_async.download.Downloader.download].
            StorageError: as for [`download`][kling_async.download.Downloader.download].
        """
        if not task.succeeded:
            pick_video(task, 0, watermark, None)  # raises the "not succeeded" error
        if not task.results:
            raise DownloadError(f"task {task.id} has no videos to download")
        plans: list[tuple[Result, Target]] = []
        for index in range(len(task.results)):
            video = pick_video(task, index, watermark, None)
            target = await resolve(task, video, dest_dir, watermark, folder=True)
            plans.append((video, target))
        results: list[Path | None] = [None] * len(plans)
        errors: list[DownloadError] = []
        disk: list[StorageError] = []

        async def one(position: int, video: Result, target: Target) -> None:
            try:
                results[position] = await self._download_locked(
                    task, video, position, target, watermark
                )
            except DownloadError as exc:
                errors.append(exc)
            except StorageError as exc:
                disk.append(exc)

        async with anyio.create_task_group() as group:
            for position, (video, target) in enumerate(plans):
                group.start_soon(one, position, video, target)
        if disk:
            raise disk[0]  # the disk's problem outranks any one video's
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise DownloadError(f"{len(errors)} of {len(plans)} videos failed; first: {errors[0]}")
        return [path for path in results if path is not None]

    async def _download_locked(
        self, task: Task, video: Result, index: int, target: Target, watermark: bool
    ) -> Path:
        lock = self._path_locks.setdefault(target.final, anyio.Lock())
        try:
            async with lock, self._slots:
                return await self._download(task, video, index, target, watermark)
        finally:
            if not lock.statistics().tasks_waiting and not lock.locked():
                self._path_locks.pop(target.final, None)

    async def _download(
        self, task: Task, video: Result, index: int, target: Target, watermark: bool
    ) -> Path:
        refreshed = False
        retries = 0
        url = ""
        try:
            async for attempt in self._retry.attempts(self._clock, should_retry=self._may_retry):
                with attempt:
                    retries = attempt.retries_done
                    while True:
                        # pick_video made sure the URL is there.
                        url = (video.watermark_url if watermark else video.url) or ""
                        try:
                            await self._attempt(url, target)
                        except _ExpiredError as exc:
                            if self._refresh is None or refreshed:
                                hint = (
                                    "even after refreshing the task"
                                    if refreshed
                                    else "(no refresh callable)"
                                )
                                raise DownloadError(
                                    f"task {task.id}: video {video.id} URL {_safe_url(url)} "
                                    f"answered HTTP {exc.status} (expired or gone) {hint}"
                                ) from None
                            # The fresh URL is tried at once, within this attempt: a refresh
                            # is neither waited for nor counted as a retry.
                            refreshed = True
                            task = await self._refresh_task(task, exc.status)
                            video = pick_video(task, index, watermark, video.id)
                            continue
                        except DownloadError as exc:
                            raise DownloadError(
                                f"task {task.id}: video {video.id}: {exc}"
                            ) from None
                        except OSError as exc:
                            # The disk, not the network: a full disk or a size limit does not go
                            # away by trying again, so it is not a DownloadError to retry on the
                            # next run.
                            raise StorageError.from_os_error(str(target.part), exc) from None
                        return target.final
        except (_TransientError, APIConnectionError) as exc:
            reason = exc.reason if isinstance(exc, _TransientError) else str(exc)
            wait = retry_after_of(exc)
            if retries < self._retry.max_retries and wait is not None:
                message = (
                    f"task {task.id}: video {video.id}: server asked to wait "
                    f"{wait:.0f}s (> max_retry_after): {reason}"
                )
            else:
                message = (
                    f"task {task.id}: video {video.id} from {_safe_url(url)} failed after "
                    f"{retries + 1} attempts: {reason}"
                )
            raise DownloadError(message) from None
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _may_retry(self, error: BaseException, retries_done: int) -> bool:
        """Whether to try again after *error*: transient, within the budget and ``max_retry_after``."""
        if not _is_transient(error) or retries_done >= self._retry.max_retries:
            return False
        wait = retry_after_of(error)
        return wait is None or wait <= self._retry.max_retry_after

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

    async def _attempt(self, url: str, target: Target) -> None:
        """One GET: append to or restart the ``.part`` file; rename it when complete.

        Raises:
            _TransientError: worth another attempt (the ``.part`` keeps whatever arrived).
            APIConnectionError: the network failed; worth another attempt too.
            _ExpiredError: the URL answered 403, 404 or 410.
            DownloadError: a final failure.
        """
        offset = await anyio.to_thread.run_sync(part_size, target.part)
        if offset == 0:
            target.validator = None
        # identity: Content-Length must count the bytes we store, not a compressed form.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if target.validator:
                headers["If-Range"] = target.validator
        if self._closed:
            raise DownloadError("the downloader is closed")
        try:
            async with self._transport.stream(
                "GET", url, headers=headers, timeout=self._timeout
            ) as response:
                await self._consume(response, url, target, offset)
        except InvalidURLError:
            pass
        else:
            return
        raise DownloadError(f"invalid URL {_safe_url(url)}")  # outside the except: no chain

    async def _consume(
        self, response: StreamedResponse, url: str, target: Target, offset: int
    ) -> None:
        status = response.status
        if status in _EXPIRED:
            raise _ExpiredError(status)
        if status in _TRANSIENT or status >= 500:
            raise _RetryableStatusError(status, parse_retry_after(response.headers))
        if status == 416:
            # Nothing left after our offset: either the .part is already whole, or it is longer
            # than the file (stale). Only an announced total that matches lets us keep it.
            _, total = _parse_content_range(response.headers.get("Content-Range"))
            if offset and total == offset:
                handle = await anyio.to_thread.run_sync(_open_part, target.part, offset)
                await anyio.to_thread.run_sync(finish, handle, target.part, target.final)
                return
            await anyio.to_thread.run_sync(discard, target.part)
            raise _TransientError("HTTP 416: the partial file did not fit; starting over")
        if status == 206:
            first, total = _parse_content_range(response.headers.get("Content-Range"))
            if first != offset:
                await anyio.to_thread.run_sync(discard, target.part)
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
                    await anyio.to_thread.run_sync(discard, target.part)
                    raise _TransientError(f"got {written} bytes but the server announced {total}")
                raise _TransientError(f"got {written} of {total} bytes")
            await anyio.to_thread.run_sync(finish, handle, target.part, target.final)
            finished = True
        finally:
            if not finished and not handle.closed:
                # Closing flushes what arrived, so the next attempt can resume after it; shielded
                # so that a cancelled download still releases its file handle.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(handle.close)

    async def _stream(
        self, response: StreamedResponse, handle: IO[bytes], written: int, total: int | None
    ) -> int:
        """Copy the body into *handle* in blocks of about ``chunk_size``; return the new size."""
        buffer = bytearray()
        try:
            async for chunk in response.iter_chunks(self._chunk_size):
                buffer += chunk
                if len(buffer) >= self._chunk_size:
                    await anyio.to_thread.run_sync(handle.write, bytes(buffer))
                    written += len(buffer)
                    buffer.clear()
                    if total is not None and written > total:
                        return written
        except APIConnectionError:
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
