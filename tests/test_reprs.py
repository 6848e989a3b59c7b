"""The engine's reprs show live state, like aiolimiter's, and never a secret.

A repr is what a person sees in a debugger, a log line or an assertion message: for the limiter,
the slot pool, the poll scheduler and the Redis-backed store it should answer "what is it doing
right now" without a network call.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

import kling_async as kling
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.limiter import RateLimit, TokenBucketLimiter
from kling_async.models import Task, TaskStatus
from kling_async.redis_store import RedisStore
from kling_async.scheduler import PollPolicy, PollScheduler
from kling_async.slots import SlotPool
from kling_async.testing.clock import FakeClock


def make_task(task_id: str, status: TaskStatus = TaskStatus.SUBMITTED) -> Task:
    """A text-to-video task in the given state."""
    return Task(id=task_id, kind=TEXT_TO_VIDEO, status=status, raw_status=status.value)


def scheduler_repr(
    *,
    tracked: int = 0,
    due: int = 0,
    in_flight: int = 0,
    unread: int = 0,
    running: bool = False,
    closed: bool = False,
) -> str:
    return (
        f"PollScheduler(tracked={tracked}, due={due}, in_flight={in_flight}, unread={unread}, "
        f"expired=0, running={running}, closed={closed})"
    )


async def test_the_poll_scheduler_repr_follows_its_tasks() -> None:
    """Tracked, due, in-flight and unread tasks, and the loop's state, as they change."""
    clock = FakeClock()
    answer = anyio.Event()

    async def fetch(task: Task) -> Task:
        await answer.wait()
        return make_task(task.id, TaskStatus.SUCCEED)

    scheduler = PollScheduler(
        fetch, policy=PollPolicy(first_delay=5, jitter=0, expected=None), clock=clock
    )
    assert repr(scheduler) == scheduler_repr()
    scheduler.add(make_task("a"))
    scheduler.add(make_task("b"))
    scheduler.add(make_task("c", TaskStatus.SUCCEED))  # already finished: delivered at once
    assert repr(scheduler) == scheduler_repr(tracked=2, unread=1)
    # Due now; the heap item that "a" leaves behind at t=5 is stale and not counted later.
    scheduler.poll_soon("a")
    assert repr(scheduler) == scheduler_repr(tracked=2, due=1, unread=1)
    await clock.advance(5)
    assert repr(scheduler) == scheduler_repr(tracked=2, due=2, unread=1)

    async with anyio.create_task_group() as group:
        group.start_soon(scheduler.run)
        await clock.wait_idle()
        assert repr(scheduler) == scheduler_repr(tracked=2, in_flight=2, unread=1, running=True)
        scheduler.close()
        answer.set()
    assert repr(scheduler) == scheduler_repr(unread=3, closed=True)
    assert sorted([task.id async for task in scheduler]) == ["a", "b", "c"]
    assert repr(scheduler) == scheduler_repr(closed=True)


async def test_the_limiter_repr_shows_a_cooldown() -> None:
    """After a 429 the repr shows the halved rate, the one probing token and the pause's end."""
    limiter = TokenBucketLimiter(RateLimit(per_second=2, burst=3), clock=FakeClock())
    await limiter.acquire()
    await limiter.on_rate_limited(30)
    assert repr(limiter) == (
        "TokenBucketLimiter(limit=RateLimit(per_second=2, burst=3), rate=1, tokens=1, "
        "paused_until=30, waiting=0)"
    )


async def test_the_slot_pool_repr_shows_holders_waiters_and_a_shrunk_limit() -> None:
    """Slots in use, the usable limit after a 1303, and who waits."""
    pool = SlotPool(2, clock=FakeClock())
    first = await pool.acquire()
    await pool.acquire()
    async with anyio.create_task_group() as group:
        group.start_soon(pool.acquire)
        await anyio.lowlevel.checkpoint()
        assert repr(pool) == "SlotPool(in_use=2, limit=2, max_active=2, waiting=1)"
        group.cancel_scope.cancel()
    await pool.on_concurrency_limited()
    await pool.release(first)
    assert repr(pool) == "SlotPool(in_use=1, limit=1, max_active=2, waiting=0)"


async def test_the_redis_reprs_show_local_state_and_no_password() -> None:
    """The store and its limiter and slots describe themselves without a password or a connection.

    Nothing listens on port 1: a repr that talked to Redis would fail here.
    """
    store = RedisStore("redis://:hunter2-secret@127.0.0.1:1/0", account="acct", name="worker-1")
    limiter = store.rate_limiter(RateLimit(per_second=5, burst=2))
    slots = store.task_slots(3)
    where = "'redis://127.0.0.1:1/0', account='acct'"
    assert repr(store) == f"RedisStore({where}, lease_ttl=30.0, open=False)"
    assert repr(limiter) == (
        f"RedisRateLimiter({where}, limit=RateLimit(per_second=5, burst=2), rate=5, fallbacks=0)"
    )
    assert repr(slots) == (
        f"RedisTaskSlots({where}, in_use=0, account_in_use=0, limit=3, waiting=0)"
    )
    assert not any("hunter2" in repr(thing) for thing in (store, limiter, slots))


def test_a_request_repr_hides_the_callback_token() -> None:
    """A receiver's callback URL passed by hand: its token never shows in a repr (nor a log)."""
    receiver = kling.WebhookReceiver(public_url="https://hooks.example.com/kling")
    url = receiver.callback_url()
    token = url.rsplit("token=", 1)[1]
    requests = [
        kling.TextToVideo(prompt="x", callback_url=url),
        kling.ImageGeneration(prompt="x", callback_url=url),
        kling.LegacyLipSync(
            input={"video_id": "v", "mode": "text2video", "text": "hi", "voice_id": "v"},
            callback_url=url,
        ),
    ]
    for request in requests:
        shown = repr(request)
        assert token not in shown
        assert "https://hooks.example.com/kling?token=<redacted>" in shown
        assert request.callback_url == url  # what is sent keeps it
