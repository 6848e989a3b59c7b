"""What can be told about a base64 image without sending it: format, size, dimensions.

Kling documents image inputs as JPG/JPEG/PNG, at most 10 MB, at least 300 px on each side, with
an aspect ratio between 1:2.5 and 2.5:1 (kling-api.md §1.4). A URL cannot be checked without
fetching it, so only raw base64 is; the model rule ``image-format`` reports what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

__all__ = ["MAX_BYTES", "MIN_SIDE", "image_problem"]

MAX_BYTES = 10 * 1024 * 1024
MIN_SIDE = 300
_MAX_RATIO = 2.5
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8"
# Start-of-frame markers carry the size; C4, C8 and CC are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_HEADER_CHARS = 64 * 1024  # enough base64 for any header the size can be read from


def _looks_like_url(text: str) -> bool:
    return "://" in text[:16]


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in a JPG's first frame header; ``None`` when *data* ends before one."""
    at = 2
    while at + 1 < len(data):
        if data[at] != 0xFF:
            raise _OddJpegError  # not a marker where one must be: let the server judge
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1  # a fill byte (T.81 B.1.1.2) before the marker
            continue
        if at + 9 > len(data):
            return None
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    return None


class _OddJpegError(Exception):
    """A JPG laid out in a way this reader does not follow (not necessarily a broken one)."""


def _decoded(compact: str) -> bytes | None:
    """The bytes of whole base64 quads of *compact*, or ``None`` if they are not base64."""
    try:
        return base64.b64decode(compact[: len(compact) - len(compact) % 4], validate=True)
    except (binascii.Error, ValueError):
        return None


def image_problem(text: str) -> str | None:
    """What is wrong with a base64 image, or ``None`` (also for URLs, which are not fetched)."""
    if _looks_like_url(text):
        return None
    compact = "".join(text.split())
    size = len(compact) * 3 // 4 - compact[-2:].count("=")
    if size > MAX_BYTES:
        return f"is {size / 1024 / 1024:.1f} MB; images may be at most 10 MB"
    head = compact[:_HEADER_CHARS]
    if not _BASE64.fullmatch(head):
        return "is neither a URL nor valid base64"
    data = _decoded(head)
    if data is None:
        return "is neither a URL nor valid base64"
    if data.startswith(_PNG):
        # IHDR comes first in every PNG: without it the file is cut short or not a PNG.
        dimensions = _png_size(data)
        if dimensions is None:
            return "is not a complete PNG image (no size header after its signature)"
    elif data.startswith(_JPEG):
        try:
            dimensions = _jpeg_size(data)
            if dimensions is None and len(compact) > len(head):
                # Large metadata blocks can put the frame header past the first 48 KB.
                dimensions = _jpeg_size(_decoded(compact) or b"")
        except _OddJpegError:
            return None
        if dimensions is None:
            return "is not a complete JPG image (it ends before its frame header)"
    else:
        return "must be a JPG or PNG image"
    width, height = dimensions
    if min(width, height) < MIN_SIDE:
        return f"is {width}x{height} px; each side must be at least {MIN_SIDE} px"
    if max(width, height) > _MAX_RATIO * min(width, height):
        return f"is {width}x{height} px; the aspect ratio must be between 1:2.5 and 2.5:1"
    return None
