"""kling_async.sync.KlingClient: the blocking facade, against the emulator on its own thread."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

import kling_async as kling
from kling_async.sync import KlingClient
from kling_async.testing import FakeKlingServer, Timeline

from .cli_support import API_KEY
from .conftest import FAST_POLL, FAST_RETRY


def _client(server: FakeKlingServer) -> KlingClient:
    return KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        poll=FAST_POLL,
    )


def test_generate_in_one_blocking_call(emulator: FakeKlingServer, tmp_path: Path) -> None:
    with _client(emulator) as client:
        path = client.generate("A beach at sunset", to=f"{tmp_path}/out/")
    assert path.parent == tmp_path / "out"
    assert path.read_bytes()[4:8] == b"ftyp"


def test_the_same_verbs_as_the_async_client(emulator: FakeKlingServer, tmp_path: Path) -> None:
    with _client(emulator) as client:
        task = client.text_to_video("a cat", external_task_id="sync-1")
        assert client.find_by_external_id("sync-1") == task
        assert client.get_task(task.id).id == task.id
        done = client.wait(task, timeout=30)
        assert done.succeeded
        assert client.download(done, tmp_path / "cat.mp4") == tmp_path / "cat.mp4"
        image = client.image_to_video("https://example.test/cat.png", "it waves")
        assert image.kind is kling.IMAGE_TO_VIDEO
        submitted = client.submit(kling.TextToVideo(prompt="a dog"))
        assert submitted.id in {listed.id for listed in client.list_tasks()}
        assert client.aio.provider.name == "emulator"
        assert repr(client).startswith("sync.KlingClient(")


def test_watch_yields_in_completion_order(emulator: FakeKlingServer) -> None:
    with _client(emulator) as client:
        tasks = client.submit_many(kling.TextToVideo(prompt=f"clip {n}") for n in range(3))
        finished = list(client.watch(tasks, timeout=30))
    assert sorted(task.id for task in finished) == sorted(task.id for task in tasks)
    assert all(task.succeeded for task in finished)


def test_as_completed_submits_and_yields_every_task(emulator: FakeKlingServer) -> None:
    with _client(emulator) as client:
        requests = [kling.TextToVideo(prompt=f"clip {n}") for n in range(4)]
        finished = list(client.as_completed(requests, concurrency=2))
    assert len({task.id for task in finished}) == 4
    assert {task.id for task in finished} == set(emulator.tasks)
    assert all(task.succeeded for task in finished)


def test_leaving_an_as_completed_block_stops_submitting(emulator: FakeKlingServer) -> None:
    emulator.timeline = Timeline(queue_seconds=0.0, processing_seconds=0.05)
    with KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(emulator.url),
        retry=FAST_RETRY,
        poll=FAST_POLL,
        max_active_tasks=1,
    ) as client:
        requests = [kling.TextToVideo(prompt=f"clip {n}") for n in range(8)]
        with client.as_completed(requests) as results:
            for _task in results:
                break
        time.sleep(0.3)  # a create cut off on the wire may still land: it is unsettled
        made = len(emulator.tasks)
        # One slot: the finished first task, and at most the create its slot let go on the wire.
        assert made <= 2
        time.sleep(0.3)
        assert len(emulator.tasks) == made  # nothing more was sent after the block
        ours = {task.id for task in results.created}
        assert ours <= set(emulator.tasks)
        # Every task the server made is one the stream knows, or one it says it cannot rule out.
        assert len(ours) + len(results.unsettled) >= made
        assert results.errors == ()


def test_closing_the_client_stops_a_stream_left_running(emulator: FakeKlingServer) -> None:
    emulator.timeline = Timeline(queue_seconds=0.0, processing_seconds=0.05)
    client = KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(emulator.url),
        retry=FAST_RETRY,
        poll=FAST_POLL,
        max_active_tasks=1,
    )
    results = client.as_completed(kling.TextToVideo(prompt=f"clip {n}") for n in range(8))
    next(results)  # then left running, as a `break` leaves it
    client.close()
    made = len(emulator.tasks)
    time.sleep(0.3)
    assert len(emulator.tasks) == made < 8


def test_as_completed_checks_every_request_at_the_call(emulator: FakeKlingServer) -> None:
    with _client(emulator) as client:
        too_long = kling.TextToVideo(prompt="x" * 3000)
        with pytest.raises(kling.ValidationError, match="prompt"):
            client.as_completed([kling.TextToVideo(prompt="fine"), too_long])
    assert len(emulator.tasks) == 0


def test_watch_raises_the_timeout_after_what_finished(emulator: FakeKlingServer) -> None:
    emulator.timeline = Timeline(queue_seconds=3600, processing_seconds=3600)
    with _client(emulator) as client:
        task = client.text_to_video("slow")
        with pytest.raises(kling.WaitTimeoutError):
            list(client.watch([task], timeout=0.2))


def test_errors_arrive_as_the_async_client_raises_them(emulator: FakeKlingServer) -> None:
    with _client(emulator) as client, pytest.raises(kling.TaskFailedError):
        client.generate("FAIL on purpose")


def test_works_where_an_event_loop_is_already_running(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """As in a notebook cell: a blocking call from inside a running loop still works."""

    async def cell() -> Path:
        with _client(emulator) as client:
            return client.generate("a cat", to=tmp_path)

    assert asyncio.run(cell()).parent == tmp_path


def test_closing_stops_the_thread_and_later_calls_are_refused(emulator: FakeKlingServer) -> None:
    before = threading.active_count()
    client = _client(emulator)
    assert threading.active_count() == before + 1
    client.close()
    client.close()  # twice is fine
    assert threading.active_count() == before
    with pytest.raises(kling.ConfigurationError, match="closed"):
        client.get_task("t1")
    with pytest.raises(kling.ConfigurationError, match="closed"):
        client.__enter__()
    with pytest.raises(kling.ConfigurationError, match="closed"):
        next(iter(client.watch([])))


def test_bad_arguments_fail_at_once_and_leave_no_thread() -> None:
    before = threading.active_count()
    with pytest.raises(kling.ConfigurationError, match="base_url"):
        KlingClient(api_key="k", base_url="ftp://nowhere")
    assert threading.active_count() == before


def test_one_request_where_a_list_belongs_is_a_configuration_error(
    emulator: FakeKlingServer,
) -> None:
    """``submit_many(request)``, ``as_completed(request)`` and ``watch(task)`` say how to call
    them (they raised ``TypeError: ... is not iterable``), before anything is sent."""
    request = kling.TextToVideo(prompt="one")
    task = kling.Task(id="t1", kind=kling.TEXT_TO_VIDEO, status=kling.TaskStatus.SUBMITTED)
    with _client(emulator) as client:
        with pytest.raises(kling.ConfigurationError, match=r"submit_many\(\[request\]\)"):
            client.submit_many(request)  # type: ignore[arg-type]
        with pytest.raises(kling.ConfigurationError, match=r"as_completed\(\[request\]\)"):
            client.as_completed(request)  # type: ignore[arg-type]
        with pytest.raises(kling.ConfigurationError, match=r"watch\(\[task\]\)"):
            client.watch(task)  # type: ignore[arg-type]
        with pytest.raises(kling.ConfigurationError, match="takes a list of requests"):
            client.submit_many(5)  # type: ignore[arg-type]
    assert emulator.tasks == {}
