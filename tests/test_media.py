"""Image and audio results are read from every answer shape, and junk in them is skipped."""

from __future__ import annotations

from typing import Any

import pytest

from kling_async.media import Audio, Image, audios_in, images_in

URL = "https://cdn.test/r"


@pytest.mark.parametrize(
    "raw",
    [
        {"task_result": {"images": [{"index": 0, "url": URL, "watermark_url": URL + "-wm"}]}},
        {
            "data": {
                "data": {
                    "task_result": {
                        "images": [{"index": 0, "url": URL, "watermark_url": URL + "-wm"}]
                    }
                }
            }
        },
        {
            "outputs": [
                {"type": "image", "id": 0, "url": URL, "watermark_url": URL + "-wm"},
                {"type": "video", "url": URL},
            ]
        },
    ],
)
def test_images_from_every_shape(raw: dict[str, Any]) -> None:
    """Legacy, gateway-wrapped (twice) and new-standard answers."""
    assert images_in(raw) == (Image(id="0", url=URL, watermark_url=URL + "-wm"),)


def test_junk_entries_are_skipped() -> None:
    """Entries that are not objects or have no http(s) URL are not results."""
    raw = {
        "task_result": {
            "images": ["Succeed", {}, {"url": "ftp://x"}, {"url": URL}],
            "audios": [{"url_mp3": ""}, {"url_wav": URL, "duration_mp3": "x"}],
        }
    }
    assert images_in(raw) == (Image(id="2", url=URL),)  # position among the objects
    assert audios_in(raw) == (Audio(id="1", url=URL, url_wav=URL, duration=None),)
    assert images_in({"task_result": {"images": "Succeed"}}) == ()
    assert audios_in({"data": "nothing"}) == ()
    assert images_in({"data": {"data": {"data": {"data": {"data": {}}}}}}) == ()


def test_audio_urls_and_durations() -> None:
    """MP3 first, WAV beside it; durations as numbers; booleans are not durations."""
    raw = {
        "task_result": {
            "audios": [
                {
                    "id": "a",
                    "url_mp3": URL + ".mp3",
                    "url_wav": URL + ".wav",
                    "duration_mp3": "4.5",
                },
                {"id": "b", "url": URL, "duration": True},
                {"id": "c", "url": URL, "duration": 3},
            ]
        }
    }
    first, second, third = audios_in(raw)
    assert (first.url, first.url_wav, first.duration) == (URL + ".mp3", URL + ".wav", 4.5)
    assert (second.duration, third.duration, third.watermark_url) == (None, 3.0, None)
