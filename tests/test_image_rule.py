"""Base64 images are checked for format, size and shape before sending (rule image-format)."""

from __future__ import annotations

import base64
import re
import struct

import pytest

import kling_async as kling
from kling_async._images import MAX_BYTES, image_problem
from kling_async.model_rules import ModelRuleError


def _png(width: int, height: int) -> str:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    return base64.b64encode(
        header + struct.pack(">II", width, height) + b"\x08\x02\0\0\0" + b"\0" * 40
    ).decode()


def _jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\0" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + b"\0" * 10
    return base64.b64encode(b"\xff\xd8" + app0 + sof).decode()


def _jpeg_after_metadata(metadata: int, width: int, height: int) -> str:
    """A JPG whose frame header lies past *metadata* bytes of APP1 blocks."""
    blocks = b""
    while len(blocks) < metadata:
        blocks += b"\xff\xe1" + struct.pack(">H", 65000) + b"\0" * 64998
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + b"\0" * 10
    return base64.b64encode(b"\xff\xd8" + blocks + sof).decode()


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (_png(299, 600), "at least 300 px"),
        (_jpeg(1000, 300), "1:2.5 and 2.5:1"),
        (base64.b64encode(b"GIF89a" + b"\0" * 30).decode(), "JPG or PNG"),
        ("not base64 at all!", "neither a URL nor valid base64"),
        (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 4).decode(), "not a complete PNG"),
        (base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF").decode(), "not a complete JPG"),
    ],
)
def test_bad_base64_images_are_refused_by_rule(image: str, words: str) -> None:
    """Each problem names the field and the rule, and can be relaxed."""
    request = kling.ImageToVideo(image=image)
    with pytest.raises(ModelRuleError, match=words) as info:
        kling.RequestLimits().check(request)
    assert (info.value.rule, info.value.field) == ("image-format", "image")
    kling.RequestLimits(relax_rules=frozenset({"image-format"})).check(request)


@pytest.mark.parametrize(
    "image",
    [
        _png(300, 750),
        _jpeg(1280, 720),
        "https://cdn.test/cat.gif",
        _jpeg_after_metadata(60_000, 800, 600),
    ],
)
def test_good_or_unknowable_images_pass(image: str) -> None:
    """Good images (a JPG's size read past large metadata too) and URLs (which cannot be
    checked without fetching them) pass."""
    assert image_problem(image) is None
    kling.RequestLimits().check(kling.VirtualTryOn(human_image=_jpeg(600, 800), cloth_image=image))


def test_too_large_image() -> None:
    """More than 10 MB of image is refused without decoding it all."""
    huge = "A" * (MAX_BYTES // 3 * 4 + 8)
    assert "at most 10 MB" in (image_problem(huge) or "")


def test_a_jpg_whose_size_lies_past_its_metadata_is_still_checked() -> None:
    assert "at least 300 px" in (image_problem(_jpeg_after_metadata(60_000, 200, 900)) or "")


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("ftp://example.com/cat.png", "http(s) URL or raw base64, got a ftp:// URL"),
        ("file:///etc/passwd", "got a file:// URL"),
        ("cat.png", "looks like a file path"),
        ("./photos/cat.jpeg", "pass pathlib.Path"),
    ],
)
def test_an_image_that_is_no_http_url_nor_base64_is_refused_outright(
    image: str, words: str
) -> None:
    """Not a documentation rule to relax: the server cannot fetch these."""
    with pytest.raises(kling.ValidationError, match=re.escape(words)):
        kling.ImageToVideo(image=image)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "example.com/hook",
        "https://",
        "",
        "http://:80/hook",
        "https://@/x",
        "http://[::1",
    ],
)
def test_a_callback_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(kling.ValidationError, match=r"callback_url: must be an http\(s\) URL"):
        kling.TextToVideo(prompt="x", callback_url=url)


def test_fill_bytes_before_a_jpg_marker_are_skipped() -> None:
    """T.81 allows 0xFF fill bytes before any marker: the size behind them is still read."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\0" * 9
    sof = b"\xff\xff\xff\xc0" + struct.pack(">HBHH", 17, 8, 900, 200) + b"\0" * 10
    image = base64.b64encode(b"\xff\xd8" + app0 + sof).decode()
    assert "is 200x900 px" in (image_problem(image) or "")


def test_a_jpg_laid_out_oddly_is_left_to_the_server() -> None:
    """Not a marker where one must be: this reader cannot tell, so it does not refuse."""
    odd = base64.b64encode(b"\xff\xd8" + b"\x00" * 40).decode()
    assert image_problem(odd) is None
