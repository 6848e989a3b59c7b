"""The client behind new-api's Kling relay: every gateway answer of issue 17, end to end.

The emulator's ``dialect="new-api"`` answers as the relay does (bare create answer, TaskDto with
the whole upstream envelope inside, relayed upstream errors, lagging statuses); the client talks
to it as plain CometAPI (``COMETAPI.with_base_url``), with no setting for the dialect.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import kling_async as kling
from kling_async.batch import Batch
from kling_async.journal import SqliteJournal
from kling_async.testing import FakeKlingServer, Faults, Timeline, Validation
from kling_async.testing._newapi import SATURATED
from kling_async.webhooks import TOKEN_PARAM, WebhookReceiver

from .conftest import API_KEY, FAST_POLL, FAST_RETRY

FAST = Timeline(queue_seconds=0.05, processing_seconds=0.1)


def gateway(**options: Any) -> FakeKlingServer:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "timeline": FAST,
        "dialect": "new-api",
        "gateway_poll_interval": 0.05,
    }
    settings.update(options)
    return FakeKlingServer(**settings)


def comet_client(server: FakeKlingServer, **options: Any) -> kling.KlingClient:
    """CometAPI as a user configures it, pointed at the gateway: nothing dialect-specific."""
    settings: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "timeout": 5.0}
    settings.update(options)
    return kling.KlingClient(
        api_key=API_KEY, provider=kling.COMETAPI.with_base_url(server.url), **settings
    )


@pytest.fixture
async def relay() -> AsyncIterator[FakeKlingServer]:
    async with gateway() as running:
        yield running


async def test_bare_create_answer_is_a_created_task(relay: FakeKlingServer) -> None:
    """Row 1: ``{"id": "task_…", "object": "video", "status": "queued"}`` is a task, not a fault."""
    async with comet_client(relay) as client:
        task = await client.text_to_video("a lighthouse")
    assert task.id.startswith("task_")
    assert task.status is kling.TaskStatus.SUBMITTED
    assert task.external_task_id is not None
    assert sum(relay.create_counts.values()) == 1
    # The model and the aspect ratio are named explicitly, so the gateway cannot pick them.
    (stored,) = relay.tasks.values()
    assert stored.body["model_name"] == kling.providers.DEFAULT_VIDEO_MODEL
    assert stored.body["aspect_ratio"] == "16:9"


async def test_wrapped_success_has_its_videos_and_downloads(
    relay: FakeKlingServer, tmp_path: Path
) -> None:
    """Row 2: the videos sit at data.data.data.task_result; the external id comes back too."""
    async with comet_client(relay) as client:
        task = await client.text_to_video("a lighthouse", external_task_id="mine-1")
        done = await client.wait(task, timeout=30)
        path = await client.download(done, tmp_path)
    assert done.succeeded
    assert done.id == task.id  # still the gateway's id, which is what it answers queries for
    (stored,) = relay.tasks.values()
    assert done.upstream_id == stored.task_id
    assert done.external_task_id == "mine-1"
    assert done.progress == 100
    assert done.videos[0].url.startswith(relay.cdn_url)
    assert path.read_bytes() == relay.video_bytes(stored.task_id)


async def test_statuses_lag_behind_the_upstream() -> None:
    """The gateway polls its upstream: its first answers say NOT_START, read as submitted."""
    async with gateway(gateway_poll_interval=60.0) as server, comet_client(server) as client:
        task = await client.text_to_video("slow gateway")
        server.timeline = Timeline(queue_seconds=0, processing_seconds=0)
        again = await client.get_task(task)
    assert again.status is kling.TaskStatus.SUBMITTED
    assert again.raw["status"] == "NOT_START"
    assert again.progress == 0


async def test_failure_reads_the_reason(relay: FakeKlingServer) -> None:
    async with comet_client(relay) as client:
        task = await client.text_to_video("please FAIL")
        with pytest.raises(kling.TaskFailedError, match="content risk control"):
            await client.wait(task, timeout=30)


async def test_relayed_upstream_error_recovers_klings_code() -> None:
    """Row 3: ``fail_to_fetch_task`` with the upstream JSON as a string: Kling's 1201 is back."""
    async with (
        gateway(validation=Validation(prompt_max=5)) as server,
        comet_client(server) as client,
    ):
        with pytest.raises(kling.BadRequestError) as caught:
            await client.text_to_video("far too long for this upstream")
    assert caught.value.code == 1201
    assert caught.value.request_id  # the upstream's request id, for support
    assert not server.create_counts


async def test_relayed_server_error_is_retried_as_one() -> None:
    async with (
        gateway(faults=Faults(rate=1.0, kinds=("500",), routes=("query",))) as server,
        comet_client(server, retry=attrs.evolve(FAST_RETRY, max_retries=1)) as client,
    ):
        task = await client.text_to_video("x")
        with pytest.raises(kling.ServerError) as caught:
            await client.get_task(task)
    assert caught.value.code == 5000


async def test_saturation_feeds_the_slots_not_the_rate() -> None:
    """Row 4: new-api's fixed 429 message is a capacity signal: creates wait, the rate stays."""
    async with gateway(max_active_tasks=2) as server, comet_client(server) as client:
        tasks = await client.submit_many(kling.TextToVideo(prompt=f"p{i}") for i in range(5))
        async with client.watch(tasks, timeout=60) as results:
            finished = [task async for task in results]
        stats = client.limiter.stats  # type: ignore[attr-defined]
    assert len(finished) == 5
    assert all(task.succeeded for task in finished)
    assert server.stats.codes[1303] >= 1  # the upstream did refuse...
    assert stats.decreases == 0
    assert stats.cooldowns == 0
    assert sorted(server.create_counts.values()) == [1] * 5


async def test_saturation_is_a_typed_capacity_error() -> None:
    async with gateway(max_active_tasks=1) as server:
        retry = attrs.evolve(FAST_RETRY, max_concurrency_wait=0.2)
        async with comet_client(server, retry=retry) as client:
            server.timeline = Timeline(queue_seconds=60, processing_seconds=60)
            await client.text_to_video("holds the only slot")
            with pytest.raises(kling.GatewaySaturatedError) as caught:
                await client.text_to_video("waits, then gives up")
    assert SATURATED in caught.value.message
    assert isinstance(caught.value, kling.ConcurrencyLimitError)


async def test_upstream_200_with_error_code_is_a_bad_request() -> None:
    """Row 5: an upstream 200 carrying code != 0 comes back as 400 ``task_failed``."""
    async with (
        gateway(upstream_200_errors=True, validation=Validation(prompt_max=5)) as server,
        comet_client(server) as client,
    ):
        with pytest.raises(kling.BadRequestError) as caught:
            await client.text_to_video("far too long")
    assert caught.value.code == "task_failed"
    assert "prompt" in caught.value.message


async def test_unknown_task_is_not_found(relay: FakeKlingServer) -> None:
    """Row 6: ``task_not_exist`` is not-found, so an external-id look-up can answer "none"."""
    async with comet_client(relay) as client:
        with pytest.raises(kling.NotFoundError):
            await client.get_task("task_0123456789abcdef0123456789abcdef")
        assert await client.find_by_external_id("never-sent") is None


async def test_missing_model_name_says_how_to_set_the_default(relay: FakeKlingServer) -> None:
    """Row 7: with no default model the gateway refuses, and the error says what to do."""
    provider = attrs.evolve(kling.COMETAPI.with_base_url(relay.url), default_model=None)
    async with kling.KlingClient(api_key=API_KEY, provider=provider, retry=FAST_RETRY) as client:
        with pytest.raises(kling.BadRequestError, match=r"KlingClient\(model_name="):
            await client.text_to_video("no model")
        task = await client.text_to_video("named", model_name="kling-v2-5-turbo")
    assert task.id.startswith("task_")


async def test_client_default_model_and_request_override(relay: FakeKlingServer) -> None:
    async with comet_client(relay, model_name="kling-v3") as client:
        await client.text_to_video("client default", external_task_id="a")
        await client.text_to_video(
            "own model", model_name="kling-v2-1-master", external_task_id="b"
        )
    assert relay.task_by_external_id("a").body["model_name"] == "kling-v3"  # type: ignore[union-attr]
    assert relay.task_by_external_id("b").body["model_name"] == "kling-v2-1-master"  # type: ignore[union-attr]


async def test_unreadable_accepted_create_is_uncertain_not_lost() -> None:
    """A 2xx create answer that cannot be read: kept, looked up, reported as maybe created."""
    faults = Faults(rate=1.0, kinds=("malformed_text",), routes=("create",))
    async with gateway(faults=faults) as server, comet_client(server) as client:
        with pytest.raises(kling.PartialSubmitError) as caught:
            await client.submit_many([kling.TextToVideo(prompt="a"), kling.TextToVideo(prompt="b")])
    error = caught.value
    assert len(error.uncertain) == 2
    assert "may have been" in str(error)
    assert all(item.response and "upstream hiccup" in item.response for item in error.uncertain)
    assert sum(server.create_counts.values()) == 2  # created (and billed) once each, not again


async def test_watch_many_tasks(relay: FakeKlingServer) -> None:
    async with comet_client(relay) as client:
        tasks = await client.submit_many(kling.TextToVideo(prompt=f"t{i}") for i in range(20))
        async with client.watch(tasks, timeout=60) as results:
            finished = [task async for task in results]
    assert {task.id for task in finished} == {task.id for task in tasks}
    assert all(task.succeeded and task.videos for task in finished)


async def test_batch_runs_and_resumes(tmp_path: Path) -> None:
    """A stopped batch resumes by polling the gateway's ids: nothing is created twice."""
    items = [(f"k{i}", kling.TextToVideo(prompt=f"clip {i}")) for i in range(6)]
    async with (
        gateway(timeline=Timeline(queue_seconds=0.5, processing_seconds=0.5)) as server,
        comet_client(server) as client,
    ):
        async with await SqliteJournal.open(tmp_path / "j.sqlite3") as journal:
            first = await Batch(client, journal, tmp_path / "out", timeout=0.3).run(items)
        async with await SqliteJournal.open(tmp_path / "j.sqlite3") as journal:
            second = await Batch(client, journal, tmp_path / "out").run(items)
    assert first.incomplete == 6
    assert all(entry.task_id and entry.task_id.startswith("task_") for entry in first.entries)
    assert second.succeeded == 6
    assert sorted(server.create_counts.values()) == [1] * 6
    assert len(list((tmp_path / "out").glob("*.mp4"))) == 6


async def test_callbacks_with_upstream_ids_reach_the_gateway_task() -> None:
    """The upstream posts callbacks with its own task id; they still reach our task."""
    receiver = WebhookReceiver(token="t" * 32, public_url="http://127.0.0.1:9/kling/callback")
    sink = _Sink()
    async with (
        gateway(gateway_poll_interval=0.01) as server,
        comet_client(server, webhook=receiver) as client,
    ):
        task = await client.text_to_video("hooked")
        assert client.expects_callback(task)
        receiver.expect(sink, task)
        for _ in range(200):  # the gateway learns the upstream's id at its first poll
            seen = await client.get_task(task)
            if seen.upstream_id is not None:
                break
            await anyio.sleep(0.01)
    # A final callback naming only the upstream id (no external id) is routed, not ignored.
    body = json.dumps(
        {
            "task_id": seen.upstream_id,
            "task_status": "succeed",
            "task_result": {"videos": [{"id": "v", "url": "https://cdn.test/v.mp4"}]},
        }
    ).encode()
    assert await receiver.handle({}, {TOKEN_PARAM: "t" * 32}, body) == (200, "ok")
    assert receiver.stats.ignored == 0
    assert sink.polled == [task.id]


class _Sink:
    def __init__(self) -> None:
        self.polled: list[str] = []

    def add(self, task: kling.Task, *, has_callback: bool = False) -> None: ...

    def update(self, task: kling.Task) -> None: ...

    def poll_soon(self, task_id: str) -> None:
        self.polled.append(task_id)


def test_readme_example_runs_unchanged_against_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's emulator example, with only the emulator switched to new-api's dialect.

    Its provider claims a list route that the gateway does not have: the client notices the
    404 and checks tasks one by one instead of failing.
    """
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index(
        "```python\nimport asyncio\n\nimport kling_async as kling\nfrom kling_async.testing"
    )
    code = readme[start + len("```python\n") : readme.index("```", start + 10)]
    assert "FakeKlingServer() as server" in code
    code = code.replace(
        "FakeKlingServer() as server",
        'FakeKlingServer(dialect="new-api", gateway_poll_interval=0.1) as server',
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})  # noqa: S102 - our README
    (video,) = (tmp_path / "out").glob("*.mp4")
    assert video.stat().st_size > 0


async def test_a_gateways_not_found_never_licenses_a_second_create() -> None:
    """Even a provider that trusts "not found" does not re-send after the gateway's own one.

    new-api cannot look tasks up by external id: its ``task_not_exist`` proves nothing, so a
    create whose answer was lost stays uncertain instead of being paid for twice.
    """
    faults = Faults(rate=1.0, kinds=("drop_after_create",), routes=("create",))
    async with gateway(faults=faults) as server:
        provider = kling.local_emulator(server.url)  # trust_not_found=True
        async with kling.KlingClient(
            api_key=API_KEY, provider=provider, retry=FAST_RETRY, poll=FAST_POLL
        ) as client:
            with pytest.raises(kling.SubmitUncertainError):
                await client.text_to_video("lost answer")
            found, absent = await client.find_created("never-sent")
    assert found is None
    assert absent is False
    assert sorted(server.create_counts.values()) == [1]


async def test_klings_own_not_found_is_proof_where_trusted(server: FakeKlingServer) -> None:
    async with kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(server.url), retry=FAST_RETRY
    ) as client:
        assert await client.find_created("never-sent") == (None, True)
