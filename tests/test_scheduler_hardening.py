"""Scheduler and list-polling regressions from issue 14.7, on virtual time."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from kling_async import _listing as listing_module
from kling_async.errors import APIConnectionError, ServerError
from kling_async.models import Task
from kling_async.scheduler import PartialBatchError, PollPolicy, PollScheduler
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.testing.clock import FakeClock

from .conftest import client_for
from .test_scheduler import FakeServer, make_task

LIST_POLICY = PollPolicy(
    first_delay=5,
    min_interval=5,
    max_interval=30,
    list_interval=5,
    backoff=1.5,
    jitter=0,
    expected=None,  # the age-based schedule these regressions were written against
)


async def test_a_partial_list_answer_is_used_and_only_the_rest_is_retried() -> None:
    """Regression: a list round whose page 2 failed discarded page 1's answers."""
    clock = FakeClock()
    server = FakeServer(clock, {"a": 4.0, "b": 4.0})
    rounds: list[float] = []

    async def flaky_list(tasks: Sequence[Task]) -> Sequence[Task]:
        rounds.append(clock.now())
        if len(rounds) == 1:
            # Page 1 showed "a" finished; page 2, which would have shown "b", failed.
            raise PartialBatchError([server.state("a")], APIConnectionError("page 2 dropped"))
        return [server.state(task.id) for task in tasks]

    scheduler = PollScheduler(server.fetch, batch_fetch=flaky_list, clock=clock, policy=LIST_POLICY)
    finished: list[tuple[float, str]] = []
    async with clock.autojump(), anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        scheduler.add(make_task("a"))
        scheduler.add(make_task("b"))
        scheduler.close()
        finished.extend([(clock.now(), task.id) async for task in scheduler])
    # "a" came from the partial answer of the first round; "b" was retried after min_interval
    # (a failed check), not abandoned to per-task polling as if the list did not know it.
    assert finished == [(5.0, "a"), (10.0, "b")]
    assert rounds == [5.0]
    assert server.fetches["b"] == 1  # alone now: its own GET, at the retry time


async def test_the_last_task_under_list_polling_keeps_the_list_pace() -> None:
    """Regression: once the others finished, a lone task fell back to per-task back-off and
    was seen up to max_interval late (33 s in the field)."""
    clock = FakeClock()
    server = FakeServer(clock, {"a": 12.0, "b": 100.0})
    scheduler = PollScheduler(
        server.fetch, batch_fetch=server.batch_fetch, clock=clock, policy=LIST_POLICY
    )
    finished: dict[str, float] = {}
    async with clock.autojump(), anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        scheduler.add(make_task("a"))
        scheduler.add(make_task("b"))
        scheduler.close()
        async for task in scheduler:
            finished[task.id] = clock.now()
    assert finished["a"] == 15.0
    assert finished["b"] == 100.0  # checked every 5 s: at 95, then 100
    times = server.fetch_times["b"]
    assert [round(later - earlier, 6) for earlier, later in itertools.pairwise(times)] == [5.0] * (
        len(times) - 1
    )


async def test_a_task_never_listed_still_backs_off_alone() -> None:
    """Only a task that was list-checked keeps the list pace: a lone task from the start
    (one wait()) backs off as before."""
    clock = FakeClock()
    server = FakeServer(clock, {"solo": 200.0})
    scheduler = PollScheduler(
        server.fetch, batch_fetch=server.batch_fetch, clock=clock, policy=LIST_POLICY
    )
    async with clock.autojump(), anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        scheduler.add(make_task("solo"))
        scheduler.close()
        assert [task.id async for task in scheduler] == ["solo"]
    times = server.fetch_times["solo"]
    assert max(later - earlier for earlier, later in itertools.pairwise(times)) == 30.0
    assert not server.batch_sizes


async def test_client_list_round_keeps_the_pages_it_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's list check raises PartialBatchError with page 1 when page 2 fails."""
    monkeypatch.setattr(listing_module, "LIST_PAGE_SIZE", 2)
    timeline = Timeline(queue_seconds=30, processing_seconds=30)
    async with (
        FakeKlingServer(api_key="sk-test-0123456789abcdef", timeline=timeline) as server,
        client_for(server) as client,
    ):
        tasks = [await client.text_to_video(f"prompt {index}") for index in range(5)]
        real_list = client.list_tasks

        async def page_two_fails(*args: Any, page: int = 1, **kwargs: Any) -> list[Task]:
            if page == 2:
                raise ServerError("page 2 failed", status=503)
            return await real_list(*args, page=page, **kwargs)

        monkeypatch.setattr(client, "list_tasks", page_two_fails)
        with pytest.raises(PartialBatchError) as caught:
            await client._batch_fetch(tasks)
        assert len(caught.value.tasks) == 2
        assert {task.id for task in caught.value.tasks} <= {task.id for task in tasks}
        assert isinstance(caught.value.error, ServerError)

        async def page_one_fails(*args: Any, page: int = 1, **kwargs: Any) -> list[Task]:
            raise ServerError("page 1 failed", status=503)

        monkeypatch.setattr(client, "list_tasks", page_one_fails)
        with pytest.raises(ServerError):  # nothing read: the plain error
            await client._batch_fetch(tasks)
