"""Every task kind end to end against the emulator: create, query, typed results, download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import kling_async as kling
from kling_async import requests as req
from kling_async.lipsync import AdvancedLipSync, LipSync, lip_sync
from kling_async.media import Audio, Image
from kling_async.multielements import ElementEdit, MultiElements, edit_elements
from kling_async.testing import FakeKlingServer

IMAGE = "https://cdn.test/person.png"

REQUESTS: dict[str, Any] = {
    "text2video": kling.TextToVideo(prompt="A beach at sunset"),
    "image2video": kling.ImageToVideo(image=IMAGE, prompt="It waves"),
    "multi-image2video": req.MultiImageToVideo(
        model_name="kling-v1-6", image_list=[{"image": IMAGE}, {"image": IMAGE}], prompt="walk"
    ),
    "effects": req.VideoEffects(effect_scene="hug", input={"images": [IMAGE, IMAGE]}),
    "omni-video": req.OmniVideo(
        model_name="kling-video-o1",
        prompt="<<<image_1>>> dances",
        image_list=[{"image_url": IMAGE}],
    ),
    "avatar": req.AvatarImageToVideo(image=IMAGE, audio_id="a-1"),
    "advanced-lip-sync": AdvancedLipSync(
        session_id="session-0123456789abcdef",
        face_choose=[{"face_id": "0", "audio_id": "a-1", "sound_end_time": 3000}],
    ),
    "lip-sync": req.LegacyLipSync(
        input={"video_id": "v-1", "mode": "text2video", "text": "Hello", "voice_id": "voice-1"}
    ),
    "multi-elements": MultiElements(
        session_id="session-0123456789abcdef",
        edit_mode="removal",
        prompt="Remove the selected object from <<<video_1>>>",
    ),
    "image-generation": req.ImageGeneration(prompt="A red fox", n=3, aspect_ratio="4:3"),
    "virtual-try-on": req.VirtualTryOn(human_image=IMAGE, cloth_image=IMAGE),
    "text-to-audio": req.TextToAudio(prompt="Rain on a tin roof", duration=4),
    "video-to-audio": req.VideoToAudio(video_id="v-1", bgm_prompt="calm piano"),
    "video-extend": req.VideoExtend(video_id="v-1", prompt="keep walking"),
    "motion-control": req.MotionControl(
        model_name="kling-v2-6",
        image_url=IMAGE,
        video_url="https://cdn.test/dance.mp4",
        character_orientation="video",
        mode="std",
    ),
    "image-expand": req.ImageExpand(image=IMAGE, up_expansion_ratio=0.5),
    "omni-image": req.OmniImage(prompt="A poster", image_list=[{"image": IMAGE}], n=2),
    "multi-image2image": req.MultiImageToImage(
        prompt="Together", subject_image_list=[{"image": IMAGE}]
    ),
}

_MAGIC = {".png": b"\x89PNG", ".mp3": b"ID3", ".mp4": b"\x00\x00\x00"}


def test_every_kind_has_a_request_here() -> None:
    """A new kind in the table must be added to this end-to-end test."""
    assert set(REQUESTS) == set(kling.KINDS)
    for name, request in REQUESTS.items():
        assert kling.KINDS[name].request_type is type(request)


@pytest.mark.parametrize("name", sorted(REQUESTS))
async def test_kind_round_trip(
    name: str, client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """Created at its own path, queried there, results typed by kind, each file downloaded."""
    kind = kling.KINDS[name]
    task = await client.submit(REQUESTS[name])
    assert task.kind is kind
    assert server.tasks[task.id].kind.path == kind.path
    done = await client.wait(task, timeout=30)
    assert done.succeeded
    assert any(record.path.endswith(f"/{kind.path}/{task.id}") for record in server.requests), (
        "queried at its own path"
    )
    expected = {"videos": ".mp4", "images": ".png", "audios": ".mp3"}[kind.results]
    assert done.results
    assert {result.suffix for result in done.results} == {expected}
    if kind.results == "images":
        assert all(isinstance(item, Image) for item in done.images)
        assert not done.videos
    elif kind.results == "audios":
        assert all(isinstance(item, Audio) for item in done.audios)
        assert all(item.url_wav and item.watermark_url is None for item in done.audios)
    else:
        assert not done.images
        assert not done.audios
    paths = [
        await client.download(done, tmp_path, index=index) for index in range(len(done.results))
    ]
    assert [path.suffix for path in paths] == [expected] * len(done.results)
    assert all(path.read_bytes().startswith(_MAGIC[expected]) for path in paths)
    assert len({path.read_bytes() for path in paths}) == len(paths)  # distinct files


async def test_image_count_follows_n(client: kling.KlingClient, tmp_path: Path) -> None:
    """n images asked, n images listed and downloaded, named by index."""
    done = await client.wait(await client.submit(REQUESTS["image-generation"]), timeout=30)
    assert [image.id for image in done.images] == ["0", "1", "2"]
    path = await client.download(done, tmp_path / "two.png", index=2, watermark=True)
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_relaxed_rule_reaches_the_server_which_words_its_refusal(
    client: kling.KlingClient,
) -> None:
    """multi-image2video is kling-v1-6 only: refused before sending, and, relaxed, by the
    emulator (1201) in the API's words."""
    wrong = req.MultiImageToVideo(
        model_name="kling-v3", image_list=[{"image": IMAGE}], prompt="walk"
    )
    with pytest.raises(kling.model_rules.ModelRuleError, match="model-kind"):
        await client.submit(wrong)
    relaxed = req.MultiImageToVideo(
        model_name="kling-v3",
        image_list=[{"image": IMAGE}],
        prompt="walk",
        relax_rules={"model-kind"},
    )
    with pytest.raises(kling.BadRequestError, match="not supported") as info:
        await client.submit(relaxed)
    assert info.value.code == 1201


@pytest.mark.parametrize(
    ("name", "body", "words"),
    [
        (
            "effects",
            {"effect_scene": "hug", "input": {"image": IMAGE, "images": [IMAGE]}},
            "exactly one",
        ),
        ("effects", {"effect_scene": "hug"}, "input"),
        ("omni-video", {"model_name": "kling-v1", "prompt": "x"}, "model_name"),
        ("image-generation", {"prompt": "x", "n": 10}, "n:"),
        ("image-generation", {"prompt": "x", "image_fidelity": 2}, "image_fidelity"),
        ("virtual-try-on", {"human_image": IMAGE}, "cloth_image"),
        ("video-to-audio", {}, "video_id/video_url"),
        ("multi-image2video", {"image_list": "a.png", "prompt": "x"}, "image_list"),
        ("omni-video", {"prompt": "x", "video_list": [{}, {}]}, "video_list"),
        ("motion-control", {"image_url": IMAGE, "video_url": "v.mp4"}, "character_orientation"),
        ("advanced-lip-sync", {"session_id": "forged", "face_choose": [{}]}, "session_id"),
        ("multi-elements", {"session_id": "session-1", "prompt": "x"}, "edit_mode"),
        (
            "multi-elements",
            {"session_id": "session-1", "prompt": "x", "edit_mode": "removal", "image_list": [{}]},
            "image_list",
        ),
        (
            "multi-elements",
            {"session_id": "session-1", "prompt": "x", "edit_mode": "swap"},
            "image_list",
        ),
        (
            "advanced-lip-sync",
            {"session_id": "session-1", "face_choose": [{"face_id": "7"}]},
            "face not found",
        ),
        (
            "advanced-lip-sync",
            {"session_id": "session-1", "face_choose": [{"face_id": "0", "audio_id": "a"}]},
            "2000 ms",
        ),
    ],
)
async def test_emulator_checks_each_kind(
    name: str, body: dict[str, Any], words: str, server: FakeKlingServer
) -> None:
    """The emulator refuses bad bodies on its own (1201), so it can catch client mistakes."""
    import aiohttp

    kind = kling.KINDS[name]
    url = kling.local_emulator(server.url).url(kind.path)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"Authorization": f"Bearer {server.api_key}"}) as resp,
    ):
        answer = await resp.json()
    assert answer["code"] == 1201
    assert words in answer["message"]


async def test_lip_sync_is_one_call(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """identify-face then advanced-lip-sync, the session carried over; the result downloads."""
    task = await lip_sync(
        client, LipSync(video_id="v-1", sound_file="https://cdn.test/hi.mp3", sound_end_time=2500)
    )
    assert task.kind is kling.KINDS["advanced-lip-sync"]
    paths = [record.path for record in server.requests if record.site == "api"]
    assert paths[0].endswith("/videos/identify-face")
    assert paths[1].endswith("/videos/advanced-lip-sync")
    body = server.tasks[task.id].body
    assert body["session_id"].startswith("session-")
    assert body["face_choose"] == [
        {
            "face_id": "0",
            "sound_file": "https://cdn.test/hi.mp3",
            "sound_start_time": 0,
            "sound_end_time": 2500,
            "sound_insert_time": 0,
        }
    ]
    done = await client.wait(task, timeout=30)
    assert (await client.download(done, tmp_path)).suffix == ".mp4"


async def test_lip_sync_refuses_before_and_between_requests(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A short clip or two sounds: nothing sent. A face that is not there: no task created."""
    with pytest.raises(kling.ValidationError, match="shorter than 2000 ms"):
        LipSync(video_id="v", audio_id="a", sound_start_time=1000, sound_end_time=2999)
    with pytest.raises(kling.ValidationError, match="exactly one of audio_id, sound_file"):
        LipSync(video_id="v", audio_id="a", sound_file="f", sound_end_time=3000)
    with pytest.raises(kling.ValidationError, match="exactly one of video_id, video_url"):
        LipSync(audio_id="a", sound_end_time=3000)
    with pytest.raises(kling.ValidationError, match="sound_end_time: is required"):
        LipSync(video_id="v", audio_id="a")
    assert server.requests == []
    with pytest.raises(kling.InvalidRequestError, match="1 face"):
        await lip_sync(
            client, LipSync(video_id="v", audio_id="a", sound_end_time=3000, face_index=1)
        )
    assert server.tasks == {}


@pytest.mark.parametrize(
    "answer",
    [None, [], {"session_id": "s"}, {"session_id": "", "face_data": []}, {"face_data": []}],
)
def test_unreadable_identify_face_answer(answer: object) -> None:
    """An identify-face answer without a session or faces is a ResponseParseError."""
    from kling_async.lipsync import _face_ids

    with pytest.raises(kling.ResponseParseError, match="identify-face"):
        _face_ids(answer)


async def test_identify_face_needs_one_video(server: FakeKlingServer) -> None:
    """The emulator's identify-face refuses a body with both (or neither) video fields."""
    import aiohttp

    url = kling.local_emulator(server.url).url("videos/identify-face")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            json={"video_id": "a", "video_url": "b"},
            headers={"Authorization": f"Bearer {server.api_key}"},
        ) as resp,
    ):
        answer = await resp.json()
    assert (resp.status, answer["code"]) == (400, 1201)


async def test_element_edit_is_one_call(client: kling.KlingClient, server: FakeKlingServer) -> None:
    """init-selection, one add-selection per marked frame, then the task, in one session."""
    task = await edit_elements(
        client,
        ElementEdit(
            video_url="https://cdn.test/clip.mp4",
            edit_mode="swap",
            prompt="Swap <<<video_1>>>'s hat for <<<image_1>>>",
            selections=[
                {"frame_index": 0, "points": [{"x": 0.5, "y": 0.25}]},
                {"frame_index": 30, "points": [{"x": 0.5, "y": 0.3}, {"x": 0.55, "y": 0.3}]},
            ],
            image_list=[{"image": IMAGE}],
            duration="05",
        ),
    )
    assert task.kind is kling.KINDS["multi-elements"]
    paths = [record.path.rsplit("/", 1)[-1] for record in server.requests if record.site == "api"]
    assert paths == ["init-selection", "add-selection", "add-selection", "multi-elements"]
    body = server.tasks[task.id].body
    assert body["session_id"].startswith("session-")
    assert (body["edit_mode"], body["duration"]) == ("swap", "5")
    assert body["image_list"] == [{"image": IMAGE}]
    assert (await client.wait(task, timeout=30)).succeeded


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"edit_mode": "swap", "image_list": [{"image": IMAGE}]}, "selections"),
        ({"edit_mode": "addition"}, "image_list"),
        (
            {
                "edit_mode": "removal",
                "selections": [{"frame_index": 0, "points": [{"x": 0, "y": 0}]}],
                "image_list": [{"image": IMAGE}],
            },
            "image_list",
        ),
        (
            {
                "edit_mode": "removal",
                "selections": [{"frame_index": 0, "points": [{"x": 1.5, "y": 0}]}],
            },
            "selections[0].points[0].x",
        ),
        (
            {"edit_mode": "removal", "selections": [{"frame_index": 0, "points": []}]},
            "selections[0].points",
        ),
        ({"edit_mode": "erase"}, "edit_mode"),
        ({"edit_mode": None}, "edit_mode"),
        (
            {"edit_mode": "addition", "image_list": [{"image": IMAGE}], "video_url": "u"},
            "video_id/video_url",
        ),
    ],
)
def test_element_edit_refuses_before_any_request(fields: dict[str, Any], field: str) -> None:
    """Marks, images and mode are checked together before the session is opened."""
    with pytest.raises(kling.ValidationError) as info:
        ElementEdit(**{"video_id": "v", "prompt": "edit", **fields})
    assert info.value.field == field


async def test_element_edit_stops_when_a_mark_is_refused(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """The emulator refuses a frame beyond the video (1201): no task is created."""
    edit = ElementEdit(
        video_id="v",
        edit_mode="removal",
        prompt="Remove it",
        selections=[{"frame_index": 999, "points": [{"x": 0.5, "y": 0.5}]}],
    )
    with pytest.raises(kling.BadRequestError, match="frame_index"):
        await edit_elements(client, edit)
    assert server.tasks == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"session_id": "x", "frame_index": 0, "points": [{"x": 0, "y": 0}]}, "session_id"),
        ({"session_id": "session-1", "frame_index": True, "points": []}, "frame_index"),
        ({"session_id": "session-1", "frame_index": 0, "points": [{"x": 2, "y": 0}]}, "points.x"),
        ({"session_id": "session-1", "frame_index": 0}, "points"),
    ],
)
def test_emulator_add_selection_checks(body: dict[str, Any], words: str) -> None:
    """The emulator's add-selection step checks session, frame and points on its own."""
    from kling_async.testing._kinds import InvalidParameterError, add_selection

    with pytest.raises(InvalidParameterError, match=words):
        add_selection(body)


async def test_a_batch_saves_each_kind_with_its_suffix(
    client: kling.KlingClient, tmp_path: Path
) -> None:
    """One batch mixing a video, an image and an audio task: <key>.mp4, .png and .mp3."""
    from kling_async.batch import Batch
    from kling_async.journal import InMemoryJournal

    items = [
        ("video", REQUESTS["text2video"]),
        ("image", REQUESTS["image-generation"]),
        ("sound", REQUESTS["text-to-audio"]),
    ]
    async with InMemoryJournal() as journal:
        result = await Batch(client, journal, tmp_path).run(items)
    assert result.ok
    assert [path.name for path in result.files] == ["video.mp4", "image.png", "sound.mp3"]
    assert result.files[1].read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("sync", "says"),
    [
        (
            {"mode": "text2video", "text": "Hi", "voice_id": "v"},
            "exactly one of video_id, video_url",
        ),
        ({"video_id": "v-1"}, "mode"),
        ({"video_id": "v-1", "mode": "text2video", "voice_id": "v"}, "text"),
        ({"video_id": "v-1", "mode": "text2video", "text": "x" * 121, "voice_id": "v"}, "120"),
        ({"video_id": "v-1", "mode": "audio2video"}, "audio_type"),
        ({"video_id": "v-1", "mode": "audio2video", "audio_type": "url"}, "audio_url"),
        ({"video_id": "v-1", "mode": "sing"}, "mode"),
        (
            {
                "video_url": "https://cdn.test/v.mp4",
                "mode": "text2video",
                "text": "Hi",
                "voice_id": "v",
                "voice_speed": 3,
            },
            "voice_speed",
        ),
    ],
)
def test_the_old_lip_sync_is_checked_before_sending(sync: dict[str, Any], says: str) -> None:
    """kling-api.md §1.2: a video, then a text in a voice or a sound of the named type; the
    error names the field inside ``input``."""
    with pytest.raises(kling.ValidationError) as info:
        req.LegacyLipSync(input=sync)
    assert info.value.field.startswith("input.")
    assert says in info.value.field or says in info.value.reason


def test_the_old_lip_sync_body_nests_its_fields_in_input() -> None:
    body = kling.wire.request_body(
        req.LegacyLipSync(
            input={
                "video_url": "https://cdn.test/v.mp4",
                "mode": "audio2video",
                "audio_type": "url",
                "audio_url": "https://cdn.test/a.mp3",
            },
            external_task_id="e-1",
        )
    )
    assert body == {
        "input": {
            "video_url": "https://cdn.test/v.mp4",
            "mode": "audio2video",
            "audio_type": "url",
            "audio_url": "https://cdn.test/a.mp3",
        },
        "external_task_id": "e-1",
    }
