"""Where a batch writes: safe file names per input key, and a first check of the folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ._download_files import safe_stem
from .errors import StorageError

__all__ = ["file_name_for_key", "file_ok", "prepare_folder"]

_MAX_STEM = 120


def file_name_for_key(key: str, suffix: str = ".mp4") -> str:
    """The file name a batch downloads *key*'s result to: ``<key>.mp4``, made safe.

    *suffix* is the result's (``.png`` for an image task, ``.mp3`` for audio).

    A key that is not already a plain name gets a short hash of itself appended, so that two
    different keys never share a file (``a/b`` and ``a_b`` differ).

    Examples:
        >>> file_name_for_key("line-0001")
        'line-0001.mp4'
    """
    stem = safe_stem(key, _MAX_STEM)
    if stem != key or not stem:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]
        stem = f"{stem or 'item'}-{digest}"
    return f"{stem}{suffix}"


def prepare_folder(folder: Path) -> None:
    """Create *folder* and write a file into it, so that a bad location fails before any create."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError.from_os_error(str(folder), exc, action="cannot create") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".kling-write-test-", dir=folder)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise StorageError.from_os_error(str(folder), exc) from None


def file_ok(path: str | None) -> bool:
    if not path:
        return False
    try:
        return Path(path).stat().st_size > 0
    except OSError:
        return False
