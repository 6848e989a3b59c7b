"""``client.as_completed``: submit as slots free, yield as tasks finish, against the emulator."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

import kling_async as kling
from kling_async.events import ConcurrencyLimited, Event, TaskPolled, TaskSubmitted
from kling_async.testing import FakeKlingServer, FakeTask, Faults, Timeline, Validation

from .conftest import API_KEY, FAST_RETRY

SLOTS = 4


def _client(server: FakeKlingServer, **options: object) -> kling.KlingClient:
    return kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        max_active_tasks=SLOTS,
        poll=kling.PollPolicy(first_delay=0.05, min_interval=0.05, max_interval=0.2),
        **options,  # type: ignore[arg-type]
    )


async def _drain(results: kling.AsCompleted, into: list[kling.Task]) -> None:
    """Collect what *results* yields as it comes: the end of the iteration may raise."""
    async for task in results:
        into.append(task)  # noqa: PERF401 - a comprehension would lose them when the end raises


async def test_every_task_once_in_completion_order_while_later_ones_wait_for_slots() -> None:
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.2, jitter=0.5, seed=5)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, max_active_tasks=SLOTS) as server,
        _client(server) as client,
    ):
        order: list[str] = []
        seen: Counter[str] = Counter()

        def note(event: Event) -> None:
            seen[type(event).__name__] += 1
            if isinstance(event, TaskSubmitted):
                order.append("submitted")

        client.events.add(note)
        requests = [kling.TextToVideo(prompt=f"prompt {i}") for i in range(14)]
        yielded: list[kling.Task] = []
        with anyio.fail_after(60):
            async with client.as_completed(requests) as results:
                async for task in results:
                    order.append("yielded")
                    yielded.append(task)
                assert results.pending == ()
                assert {task.id for task in results.created} == {task.id for task in yielded}

    assert len(yielded) == 14
    assert len({task.id for task in yielded}) == 14
    assert all(task.is_finished for task in yielded)
    assert len(server.tasks) == 14  # none created twice
    # Results came while later requests were still waiting for a slot.
    assert order.index("yielded") < len(order) - 1 - order[::-1].index("submitted")
    assert seen[ConcurrencyLimited.__name__] == 0  # the slots were known: no 1303
    assert seen[TaskPolled.__name__] > 0


async def test_failed_submissions_end_iteration_after_every_created_task() -> None:
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05, seed=1)
    async with (
        FakeKlingServer(
            api_key=API_KEY, timeline=timeline, validation=Validation(prompt_max=12)
        ) as server,
        _client(server) as client,
    ):
        requests = [
            kling.TextToVideo(prompt="short"),
            kling.TextToVideo(prompt="far too long for this server"),
            kling.TextToVideo(prompt="short too"),
        ]
        yielded: list[kling.Task] = []

        async def collect() -> None:
            async with client.as_completed(requests, concurrency=1) as results:
                await _drain(results, yielded)

        with anyio.fail_after(30), pytest.raises(kling.PartialSubmitError) as caught:
            await collect()
    assert len(yielded) == 2
    assert [index for index, _ in caught.value.errors] == [1]
    assert {task.id for task in caught.value.tasks} == {task.id for task in yielded}
    assert len(server.tasks) == 2


async def test_every_request_is_checked_before_the_first_is_sent() -> None:
    async with (
        FakeKlingServer(api_key=API_KEY) as server,
        _client(server, limits=kling.RequestLimits(prompt_max=10)) as client,
    ):
        requests = [kling.TextToVideo(prompt="fine"), kling.TextToVideo(prompt="x" * 11)]
        with pytest.raises(kling.ValidationError, match="prompt"):
            client.as_completed(requests)
        assert len(server.tasks) == 0


async def test_leaving_early_sends_no_more_creates() -> None:
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05, seed=2)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, max_active_tasks=SLOTS) as server,
        _client(server) as client,
    ):
        requests = [kling.TextToVideo(prompt=f"prompt {i}") for i in range(20)]
        with anyio.fail_after(30):
            async with client.as_completed(requests, concurrency=2) as results:
                async for _task in results:
                    break
        created = len(server.tasks)
        await anyio.sleep(0.3)
        assert len(server.tasks) == created < 20
        assert {task.id for task in results.created} == set(server.tasks)


async def test_iterating_outside_the_block_is_a_clear_error() -> None:
    async with FakeKlingServer(api_key=API_KEY) as server, _client(server) as client:
        results = client.as_completed([kling.TextToVideo(prompt="fine")])
        with pytest.raises(kling.ConfigurationError, match="inside the block"):
            await results.__anext__()
        assert len(server.tasks) == 0


async def test_creates_cut_off_by_leaving_early_are_named_for_look_up() -> None:
    """No task is lost by leaving early: every task the server made is either in ``created``
    or named (by external_task_id) in ``unsettled``, and can be looked up."""
    timeline = Timeline(queue_seconds=1.0, processing_seconds=1.0, seed=3)
    faults = Faults(create_answer_delay=0.5)  # recorded at once, answered half a second later
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, faults=faults) as server,
        _client(server) as client,
    ):
        requests = [kling.TextToVideo(prompt=f"prompt {i}") for i in range(6)]
        with anyio.fail_after(30):
            async with client.as_completed(requests, concurrency=3) as results:
                await anyio.sleep(0.2)  # three creates sent, none answered yet
        assert results.created == ()
        assert len(results.unsettled) == 3
        made = {task.external_task_id for task in server.tasks.values()}
        assert made == set(results.unsettled)
        for external_id in results.unsettled:
            found = await client.find_by_external_id(external_id)
            assert found is not None
        assert len(server.tasks) == 3  # nothing more was sent after leaving


async def test_a_task_timeout_ends_iteration_and_the_failed_submissions_stay_readable() -> None:
    def length(task: FakeTask) -> float:
        return 30.0 if "slow" in str(task.body.get("prompt")) else 0.05

    timeline = Timeline(queue_seconds=0.0, processing_seconds=length)
    async with (
        FakeKlingServer(
            api_key=API_KEY, timeline=timeline, validation=Validation(prompt_max=12)
        ) as server,
        _client(server) as client,
    ):
        requests = [
            kling.TextToVideo(prompt="quick"),
            kling.TextToVideo(prompt="far too long for this server"),
            kling.TextToVideo(prompt="slow"),
        ]
        yielded: list[kling.Task] = []
        with anyio.fail_after(30):
            async with client.as_completed(requests, concurrency=1, task_timeout=0.5) as results:
                with pytest.raises(kling.WaitTimeoutError) as caught:
                    await _drain(results, yielded)
    # The timeout won; the failed submission is still there to read.
    assert [index for index, _ in results.errors] == [1]
    assert isinstance(results.errors[0][1], kling.InvalidRequestError)
    assert [task.id for task in yielded] != []
    assert [task.id for task in caught.value.pending] != []
