"""client.image_to_video() and client.generate(): the one-call paths peer SDKs have."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import anyio
import pytest

import kling_async as kling
from kling_async.testing import FakeKlingServer


async def test_image_to_video_with_a_url(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    task = await client.image_to_video("https://example.test/cat.png", "The cat waves")
    assert task.kind is kling.IMAGE_TO_VIDEO
    body = server.tasks[task.id].body
    assert (body["image"], body["prompt"]) == ("https://example.test/cat.png", "The cat waves")


async def test_image_to_video_reads_a_local_file_as_base64(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    picture = tmp_path / "cat.png"
    # A PNG signature and a size header (640x480): enough for the client's checks.
    header = struct.pack(">I4sIIBBBBB", 13, b"IHDR", 640, 480, 8, 2, 0, 0, 0)
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + header)
    task = await client.image_to_video(picture, mode="pro")
    body = server.tasks[task.id].body
    assert base64.b64decode(body["image"]) == picture.read_bytes()
    assert body["mode"] == "pro"


async def test_image_to_video_validates_before_sending(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    with pytest.raises(kling.ValidationError):
        await client.image_to_video("data:image/png;base64,AAAA")
    assert server.requests == []


async def test_generate_saves_into_a_new_folder(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    path = await client.generate("A beach at sunset", to=f"{tmp_path / 'out'}/", mode="std")
    assert path.parent == tmp_path / "out"
    assert path.read_bytes()[4:8] == b"ftyp"
    (task,) = server.tasks.values()
    assert task.body["mode"] == "std"


async def test_generate_takes_a_ready_request_and_a_file_name(
    client: kling.KlingClient, tmp_path: Path
) -> None:
    request = kling.ImageToVideo(image="https://example.test/cat.png")
    path = await client.generate(request, to=tmp_path / "cat.mp4")
    assert path == tmp_path / "cat.mp4"
    assert path.stat().st_size > 0
    with pytest.raises(kling.ConfigurationError, match="no extra fields"):
        await client.generate(request, to=tmp_path, mode="pro")


async def test_generate_raises_when_the_task_fails(
    client: kling.KlingClient, tmp_path: Path
) -> None:
    with pytest.raises(kling.TaskFailedError):
        await client.generate("FAIL on purpose", to=tmp_path)
    assert not [path async for path in anyio.Path(tmp_path).iterdir()]
