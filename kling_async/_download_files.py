"""Which video a download fetches, where it goes on disk, and the file operations that keep it whole.

Each file is written to ``<name>.part`` beside its final name, locked against a second writer,
flushed to stable storage and only then renamed over the final name. These functions block, so
the downloader runs them in a worker thread.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import sys
from pathlib import Path
from typing import IO

import anyio
import anyio.to_thread
import attrs

from .errors import DownloadError, StorageError
from .models import Result, Task

__all__ = [
    "Target",
    "check_destination",
    "discard",
    "finish",
    "open_part",
    "part_size",
    "pick_video",
    "resolve",
    "safe_stem",
]

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
# Most file systems cap a name at 255 bytes; keep room for the ".part" suffix.
_MAX_NAME = 200


@attrs.define
class Target:
    """Where one video goes, and what has been learnt about it across attempts."""

    final: Path
    part: Path
    # A strong ETag or Last-Modified of the bytes already in ``part``, sent as If-Range so that
    # a changed file is fetched whole instead of being spliced onto stale bytes.
    validator: str | None = None


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


def _file_name(task: Task, video: Result, watermark: bool) -> str:
    _check_id("task id", task.id)
    _check_id("video id", video.id)
    stem = safe_stem(f"{task.id}-{video.id}{'-wm' if watermark else ''}") or "video"
    return f"{stem}{video.suffix}"


def _resolve_target(
    task: Task, video: Result, dest: str | os.PathLike[str], watermark: bool, *, folder: bool
) -> Target:
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
    part = final.with_name(final.name + ".part")
    for existing in (final, part):
        _refuse_special(existing)
    return Target(final=final, part=part)


def _refuse_special(path: Path) -> None:
    """Refuse *path* if it exists and is neither a regular file nor a symlink.

    The rename would replace a device or a pipe (``-o /dev/null`` as root) with the video, and
    writing the part file into one would block or go nowhere.
    """
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # a file in the way is the caller's to word
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise StorageError(
            os.fspath(path), "it exists and is not a regular file", action="will not replace"
        )


async def resolve(
    task: Task, video: Result, dest: str | os.PathLike[str], watermark: bool, *, folder: bool
) -> Target:
    """Where *video* of *task* goes: in the folder *dest* (or *dest* itself, a file path).

    Missing folders are created (in a worker thread); a file in the way is a
    [`StorageError`][kling_async.errors.StorageError], a name that would leave the folder a
    [`DownloadError`][kling_async.errors.DownloadError].
    """
    try:
        return await anyio.to_thread.run_sync(
            functools.partial(_resolve_target, task, video, dest, watermark, folder=folder)
        )
    except FileExistsError as exc:
        # mkdir met a file where a folder must be: "File exists" would not say which.
        raise StorageError(
            os.fspath(dest), f"{exc.filename} is a file, not a folder", action="cannot create"
        ) from None
    except OSError as exc:
        raise StorageError.from_os_error(os.fspath(dest), exc, action="cannot create") from None


def _check_destination(dest: str | os.PathLike[str]) -> None:
    text = os.fspath(dest)
    path = Path(text)
    folder = text.endswith((os.sep, os.altsep or os.sep)) or path.is_dir()
    if not folder:
        _refuse_special(path)
    # The nearest folder that exists is where the missing ones would be made.
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(text, f"{existing} is a file, not a folder", action="cannot create")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(text, f"{existing} is not writable", action="cannot write")


async def check_destination(dest: str | os.PathLike[str]) -> None:
    """Refuse, before anything is paid for, a destination a download could not write to.

    What [`resolve`][kling_async._download_files.resolve] would meet later, checked without
    creating anything: a folder in the way is a file, a folder cannot be written, or the file
    named is a device or a pipe.

    Raises:
        StorageError: naming the path and the reason.
        TypeError: *dest* is not a path.
    """
    try:
        await anyio.to_thread.run_sync(_check_destination, dest)
    except OSError as exc:
        raise StorageError.from_os_error(os.fspath(dest), exc, action="cannot write") from None


def open_part(part: Path, offset: int) -> IO[bytes]:
    """Open *part* for writing from *offset* (cut to it), locked against any other writer."""
    # A symlink planted at the .part name would make us write through it; drop it instead.
    if part.is_symlink():
        part.unlink()
    # Opened without truncating, and locked before anything is cut: another process may be
    # writing this very file.
    fd = os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    handle = os.fdopen(fd, "r+b")
    try:
        _lock_part(handle, part)
        handle.truncate(offset)
        handle.seek(offset)
    except BaseException:
        handle.close()
        raise
    return handle


def _lock_part(handle: IO[bytes], part: Path) -> None:
    """Refuse a ``.part`` file that another download (in any process) is writing.

    The lock lives as long as the handle: closing it, or the process dying, releases it.
    """
    if sys.platform == "win32":  # pragma: no cover - the tests run on POSIX
        return
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DownloadError(
            f"{part} is being written by another download (another process?); "
            "two downloads never share a file"
        ) from None


def part_size(part: Path) -> int:
    """The bytes already in *part* (0 when it is missing, or a symlink that will be dropped)."""
    try:
        if part.is_symlink():
            return 0
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def discard(part: Path) -> None:
    """Delete *part*: what it holds cannot be resumed from."""
    part.unlink(missing_ok=True)


def finish(handle: IO[bytes], part: Path, final: Path) -> None:
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


def pick_video(task: Task, index: int, watermark: bool, video_id: str | None) -> Result:
    """The video to fetch; after a refresh, the one with the same id when it is still there."""
    if not task.succeeded:
        state = task.raw_status or task.status.value
        raise DownloadError(
            f"task {task.id} has not succeeded (status {state}); only a succeeded task has videos"
        )
    if not task.results:
        raise DownloadError(f"task {task.id} succeeded but lists no videos")
    video: Result | None = None
    if video_id is not None:
        video = next((v for v in task.results if v.id == video_id), None)
    if video is None:
        if not 0 <= index < len(task.results):
            raise DownloadError(
                f"task {task.id} has {len(task.results)} video(s); index {index} is out of range"
            )
        video = task.results[index]
    if watermark and not video.watermark_url:
        raise DownloadError(f"task {task.id}: video {video.id} has no watermarked variant")
    if not (video.watermark_url if watermark else video.url):
        raise DownloadError(f"task {task.id}: video {video.id} has no URL")
    return video
