"""The Redis store against a real redis-server: shared rate, leases, 1303, fairness, outages.

Several limiters or slot pools on one account stand in for several processes here (they share
nothing but Redis); tests/test_redis_fleet.py runs real processes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

import kling_async as kling
from kling_async.errors import ConfigurationError, StoreUnavailableError
from kling_async.events import ConcurrencyLimited, Event, RateLimited
from kling_async.limiter import RateLimit
from kling_async.redis_store import RedisStore
from kling_async.slots import SlotLease
from kling_async.testing import FakeKlingServer, Timeline

from .conftest import API_KEY, FAST_POLL, FAST_RETRY
from .redis_support import RedisServer, fresh_account, requires_redis, shared_url

pytestmark = [pytest.mark.timeout(60), requires_redis]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the module (each test uses its own account, so keys never mix)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    """The Redis to test against: ``$REDIS_URL`` or the module's own server."""
    return shared_url(redis_server)


@pytest.fixture
async def store(url: str) -> AsyncIterator[RedisStore]:
    """An open store on a fresh account."""
    async with RedisStore(url, account=fresh_account(), poll_interval=0.01) as opened:
        yield opened


async def test_configuration_is_checked_and_the_password_never_shown() -> None:
    """Bad values fail before any connection; repr and messages drop the URL's password."""
    with pytest.raises(ConfigurationError):
        RedisStore("http://localhost")
    with pytest.raises(ConfigurationError):
        RedisStore("redis://localhost", account="a:b")
    with pytest.raises(ConfigurationError):
        RedisStore("redis://localhost", lease_ttl=0)
    with pytest.raises(ConfigurationError):
        RedisStore("redis://localhost", fallback_share=2)
    with pytest.raises(ConfigurationError):
        RedisStore("redis://localhost", unavailable_wait=-1)
    secret = RedisStore("redis://:hunter2-secret@127.0.0.1:1/0", account="acct")
    assert "hunter2" not in repr(secret)
    assert secret.where == "redis://127.0.0.1:1/0"
    with pytest.raises(ConfigurationError):
        secret.task_slots(0)
    assert secret.key("x") == "kling-async:{acct}:x"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": 6379}, "url must be a str"),
        ({"account": 5}, "account must be a str"),
        ({"name": 3}, "name must be a str"),
        ({"lease_ttl": "30"}, "lease_ttl must be a positive number"),
        ({"socket_timeout": float("nan")}, "socket_timeout must be a positive number"),
        ({"recovery_seconds": "30"}, "recovery_seconds must be a number"),
        ({"fallback_share": "0.5"}, "fallback_share must be in"),
    ],
)
def test_settings_of_the_wrong_kind_are_configuration_errors(
    options: dict[str, object], named: str
) -> None:
    """Text where a number belongs (an environment variable passed on as it is) is refused
    with the setting's name, not a TypeError from a comparison."""
    arguments: dict[str, Any] = {"url": "redis://localhost", **options}
    with pytest.raises(ConfigurationError, match=named):
        RedisStore(**arguments)


def test_the_process_name_is_kept() -> None:
    """The name in this process's lease ids: given, or host and pid (a loop over the checked
    settings used to overwrite it with the last setting's name)."""
    assert RedisStore("redis://localhost", name="worker-1").name == "worker-1"
    assert RedisStore("redis://localhost").name.endswith(f"-{os.getpid()}")


async def test_two_limiters_share_one_bucket(store: RedisStore) -> None:
    """Two limiters of one account (two processes) draw from one bucket: 1 + 9 sends need 9 gaps."""
    first = store.rate_limiter(RateLimit(per_second=20, burst=1))
    second = store.rate_limiter(RateLimit(per_second=20, burst=1))
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for limiter in (first, second):
            for _ in range(5):
                group.start_soon(limiter.acquire)
    # A lower bound only: ten sends at 20/s with burst 1 cannot take less than 9 intervals.
    assert time.monotonic() - started >= 9 / 20 - 0.02
    assert "RedisRateLimiter(" in repr(first)
    assert first.limit == RateLimit(per_second=20, burst=1)


async def test_a_429_in_one_process_pauses_and_slows_every_process(store: RedisStore) -> None:
    """A cool-down reported by one limiter holds the other back; the shared rate halves, then recovers."""
    seen: list[Event] = []
    limit = RateLimit(per_second=100, burst=5)
    reporter = store.rate_limiter(limit, events=seen.append)
    other = store.rate_limiter(limit)
    await other.acquire()
    assert await reporter.on_rate_limited(retry_after=0.3)
    assert await other.on_rate_limited(retry_after=0.1)  # the same event, seen again
    assert seen == [RateLimited(delay=0.3, rate=50.0)]
    started = time.monotonic()
    await other.acquire()
    assert time.monotonic() - started >= 0.25
    assert other.current_rate == 50.0
    for _ in range(25):  # 100/50 per success: 25 successes bring it back
        await other.on_success()
    assert other.current_rate == 100.0
    await other.on_success()  # at the configured rate: no Redis call needed
    assert other.current_rate == 100.0


async def test_slots_are_shared_and_waiters_are_served_in_order(store: RedisStore) -> None:
    """Two pools of one account (limit 2): the third acquirer waits; waiters go first come first served."""
    first = store.task_slots(2)
    second = store.task_slots(2)
    third = store.task_slots(2)
    held = [await first.acquire(), await second.acquire()]
    assert (first.in_use, second.in_use, first.account_in_use) == (1, 1, 1)
    order: list[str] = []

    async def wait_for_slot(name: str, slots: kling.slots.TaskSlots) -> None:
        lease = await slots.acquire()
        order.append(name)
        held.append(lease)

    async with anyio.create_task_group() as group:
        group.start_soon(wait_for_slot, "second", second)
        await anyio.sleep(0.05)  # the second pool has its place in the line
        group.start_soon(wait_for_slot, "third", third)
        await anyio.sleep(0.05)
        assert order == []
        await first.release(held[0])
        await anyio.sleep(0.1)
        assert order == ["second"]  # the earlier waiter, although "third" polls just as often
        # Released by another pool than the one that took it (a watcher in another process):
        await first.release(SlotLease(held[1].id))
        await second.renew()  # the holder learns it at its next renewal and stops renewing it
        assert held[1].released
        await second.release(held[1])  # a second release does nothing
    assert order == ["second", "third"]
    assert second.limit == 2
    assert "RedisTaskSlots(" in repr(second)


async def test_hold_releases_unless_kept(store: RedisStore) -> None:
    """``async with slots.hold()`` gives the slot back at the end, unless the lease was kept."""
    slots = store.task_slots(1)
    async with slots.hold() as lease:
        assert slots.in_use == 1
    assert lease.released
    assert slots.in_use == 0
    async with slots.hold() as kept:
        kept.keep()
    assert slots.in_use == 1
    await slots.release(kept)
    assert slots.in_use == 0


async def test_a_1303_shrinks_the_limit_for_every_process(store: RedisStore) -> None:
    """After a 1303 in one process, another process may not take the slot that limit no longer allows."""
    seen: list[Event] = []
    first = store.task_slots(4, events=seen.append)
    second = store.task_slots(4)
    held = [await first.acquire() for _ in range(3)]
    await first.on_concurrency_limited()  # the third create got 1303: two tasks run
    await first.release(held.pop())
    assert seen == [ConcurrencyLimited(limit=2)]
    assert first.limit == 2
    with anyio.move_on_after(0.2):
        await second.acquire()
        pytest.fail("the shrunk limit was not shared")
    assert second.limit == 2
    # Recovery needs recovery_seconds (30 s by default) of quiet: a release does not grow it.
    await first.release(held.pop())
    assert first.limit == 2


async def test_the_limit_recovers_after_a_quiet_period(url: str) -> None:
    """With no 1303 for recovery_seconds, each release raises the limit by one, back to the maximum."""
    async with RedisStore(url, account=fresh_account(), recovery_seconds=0.1) as store:
        slots = store.task_slots(3)
        held = [await slots.acquire() for _ in range(2)]
        await slots.on_concurrency_limited()
        assert slots.limit == 1
        await anyio.sleep(0.15)
        await slots.release(held.pop())
        assert slots.limit == 2
        await slots.release(held.pop())
        assert slots.limit == 3
        unlimited = store.task_slots(None)
        lease = await unlimited.acquire()
        await unlimited.on_concurrency_limited()
        assert unlimited.limit == 1
        await anyio.sleep(0.15)
        await unlimited.release(lease)
        assert unlimited.limit is None


async def test_leases_of_a_silent_holder_expire_and_renewed_ones_do_not(url: str) -> None:
    """A holder that stops renewing loses its slot after lease_ttl; a live one keeps it."""
    account = fresh_account()
    silent = RedisStore(url, account=account, lease_ttl=0.3)  # never opened: never renews
    live = RedisStore(url, account=account, lease_ttl=0.3, poll_interval=0.01)
    dead_slots = silent.task_slots(2)
    await dead_slots.acquire()
    async with live:
        live_slots = live.task_slots(2)
        await live_slots.acquire()
        lease = await live_slots.acquire()  # the silent holder's slot came back
        assert live_slots.in_use == 2
        await anyio.sleep(0.5)  # longer than the TTL: renewals keep both
        waiter = live.task_slots(2)
        with anyio.move_on_after(0.2):
            await waiter.acquire()
            pytest.fail("a renewed lease expired")
        await live_slots.release(lease)
        adopted = await waiter.adopt()  # counts a running task even above the limit
        assert waiter.in_use == 1
        await waiter.release(adopted)
    await silent.aclose()  # never opened: nothing to do


async def test_two_accounts_on_one_redis_do_not_mix(url: str) -> None:
    """Slots of one account never count against another's."""
    async with (
        RedisStore(url, account=fresh_account()) as one,
        RedisStore(url, account=fresh_account()) as other,
    ):
        await one.task_slots(1).acquire()
        with anyio.fail_after(2):
            await other.task_slots(1).acquire()


async def test_clients_sharing_a_store_never_see_1303_or_1302(url: str) -> None:
    """Three clients (as three processes) on one account: the emulator's limits are never hit."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.1)
    async with FakeKlingServer(
        api_key=API_KEY, timeline=timeline, max_active_tasks=3, rate_limit=60, rate_burst=5
    ) as server:
        account = fresh_account()

        async def worker(number: int) -> list[kling.Task]:
            store = RedisStore(url, account=account, poll_interval=0.01)
            async with kling.KlingClient(
                api_key=API_KEY,
                provider=kling.local_emulator(server.url),
                retry=FAST_RETRY,
                poll=FAST_POLL,
                rate=RateLimit(per_second=40, burst=2),
                max_active_tasks=3,
                shared=store,
            ) as client:
                requests = [kling.TextToVideo(prompt=f"w{number} #{i}") for i in range(6)]
                tasks = await client.submit_many(requests)
                async with client.watch(tasks, timeout=60) as results:
                    finished = [task async for task in results]
                assert client.slots.in_use == 0
                return finished

        done: list[list[kling.Task]] = []

        async def run(number: int) -> None:
            done.append(await worker(number))

        async with anyio.create_task_group() as group:
            for number in range(3):
                group.start_soon(run, number)
    assert sorted(len(tasks) for tasks in done) == [6, 6, 6]
    assert server.stats.codes[1303] == 0
    assert server.stats.codes[1302] == 0
    assert server.stats.routes["create"] == 18


async def test_redis_going_away_mid_run(caplog: pytest.LogCaptureFixture) -> None:
    """Redis stops: polling goes on at the fallback rate, creates wait and then fail typed; after a
    restart (empty) the held leases are registered again and creates go on."""
    caplog.set_level(logging.INFO, logger="kling_async")
    redis_server = RedisServer().start()
    timeline = Timeline(queue_seconds=0.05, processing_seconds=30)  # runs through the outage
    try:
        async with (
            FakeKlingServer(api_key=API_KEY, timeline=timeline, max_active_tasks=4) as server,
            kling.KlingClient(
                api_key=API_KEY,
                provider=kling.local_emulator(server.url),
                retry=FAST_RETRY,
                poll=FAST_POLL,
                max_active_tasks=4,
                shared=RedisStore(
                    redis_server.url,
                    account=fresh_account(),
                    lease_ttl=0.6,
                    unavailable_wait=0.3,
                    socket_timeout=0.2,
                ),
            ) as client,
        ):
            running = await client.text_to_video("before the outage")
            redis_server.stop()
            with pytest.raises(StoreUnavailableError, match="no task slot") as caught:
                await client.text_to_video("during the outage")
            assert redis_server.url.split("//")[1] in str(caught.value)
            assert server.stats.routes["create"] == 1  # nothing was sent without a slot
            # Polling goes on through the local fallback bucket.
            assert (await client.get_task(running)).id == running.id
            assert client.limiter.fallbacks >= 1  # type: ignore[attr-defined]
            redis_server.start()  # empty: it has forgotten every lease
            await anyio.sleep(0.5)  # a renewal registers the running task's lease again
            with redis_server.client() as look:
                leases = look.keys("*leases*")
                assert len(leases) == 1
                assert look.zcard(leases[0]) == 1
            server.timeline = Timeline(queue_seconds=0.05, processing_seconds=0.1)
            later = await client.text_to_video("after the outage")
            done = await client.wait(later, timeout=30)
            assert done.succeeded
        assert any("did not answer" in record.getMessage() for record in caplog.records)
    finally:
        redis_server.stop()


async def test_a_failed_release_is_retried_when_redis_is_back(url: str) -> None:
    """A release while Redis is away is sent again by the next renewal."""
    redis_server = RedisServer().start()
    try:
        async with RedisStore(
            redis_server.url, account=fresh_account(), lease_ttl=0.6, socket_timeout=0.2
        ) as store:
            slots = store.task_slots(1)
            lease = await slots.acquire()
            redis_server.stop()
            await slots.release(lease)  # cannot reach Redis: kept for a retry
            await slots.on_concurrency_limited()  # cannot be shared: logged, not raised
            limiter = store.rate_limiter(RateLimit(per_second=100, burst=2))
            assert await limiter.on_rate_limited(0.01)
            await limiter.on_success()
            await limiter.acquire()  # the fallback bucket
            redis_server.start()
            renewed: SlotLease = await slots.acquire()
            assert slots.in_use == 1
            await slots.release(renewed)
    finally:
        redis_server.stop()


async def test_a_client_without_a_rate_takes_only_the_slots_from_the_store(url: str) -> None:
    """``rate=None`` with a store: no pacing, shared slots; the client opens and closes the store."""
    store = RedisStore(url, account=fresh_account())
    client = kling.KlingClient(
        api_key=API_KEY, base_url="http://127.0.0.1:9", rate=None, max_active_tasks=2, shared=store
    )
    assert isinstance(client.limiter, kling.limiter.UnlimitedLimiter)
    async with client:
        assert "open=True" in repr(store)
        async with client.slots.hold():
            assert client.slots.in_use == 1
    assert "open=False" in repr(store)
    await client.aclose()  # twice: nothing more to close


async def test_a_send_that_waited_its_turn_still_obeys_a_new_cool_down(store: RedisStore) -> None:
    """A cool-down reported while a send waits for its reserved time holds that send back too."""
    limit = RateLimit(per_second=5, burst=1)
    waiting = store.rate_limiter(limit)
    reporter = store.rate_limiter(limit)
    await waiting.acquire()  # the burst: the next send is reserved 0.2 s ahead
    done = anyio.Event()

    async def send() -> None:
        await waiting.acquire()
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(send)
        await anyio.sleep(0.05)
        started = time.monotonic()
        await reporter.on_rate_limited(retry_after=0.5)
        await done.wait()
        assert time.monotonic() - started >= 0.45


def _one_slot_client(
    server: FakeKlingServer, store: RedisStore, *, slots_per_model: bool = False
) -> kling.KlingClient:
    """A client of *server* with one task slot, shared through *store*."""
    return kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        poll=FAST_POLL,
        max_active_tasks=1,
        slots_per_model=slots_per_model,
        shared=store,
    )


async def test_a_task_seen_finished_in_another_process_frees_its_slot(url: str) -> None:
    """A creates a task and never looks at it again; B sees it finish: the slot is free at once."""
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.1)
    account = fresh_account()

    def client_for(server: FakeKlingServer) -> kling.KlingClient:
        store = RedisStore(url, account=account, lease_ttl=0.6, poll_interval=0.01)
        return _one_slot_client(server, store)

    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, max_active_tasks=1) as server,
        client_for(server) as creator,
        client_for(server) as watcher,
    ):
        task = await creator.text_to_video("made by the creator")
        assert creator.slots.in_use == 1
        assert (await watcher.wait(task, timeout=10)).succeeded
        await watcher.get_task(task)  # seen again: reported once only
        with anyio.fail_after(5):  # the creator would renew its lease for ever
            await watcher.text_to_video("the watcher's own")
        await anyio.sleep(0.4)  # a renewal: the creator learns that its lease was freed
        assert creator.slots.in_use == 0
    assert server.stats.codes[1303] == 0


async def test_slots_per_model_are_shared_per_model(url: str) -> None:
    """Two clients (two processes' worth) on one account, one slot per model: kling-v3 and
    kling-v2-6 run side by side, and the second kling-v3, from the other client, waits."""
    account = fresh_account()
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.8)

    def client(server: FakeKlingServer) -> kling.KlingClient:
        store = RedisStore(url, account=account, poll_interval=0.01)
        return _one_slot_client(server, store, slots_per_model=True)

    async with (
        FakeKlingServer(
            api_key=API_KEY, timeline=timeline, max_active_tasks=1, slots_per_model=True
        ) as server,
        client(server) as first,
        client(server) as second,
    ):
        with anyio.fail_after(1.0):
            await first.text_to_video("a", model_name="kling-v3")
            await second.text_to_video("b", model_name="kling-v2-6")
        with anyio.move_on_after(0.3):
            await second.text_to_video("c", model_name="kling-v3")
            pytest.fail("the other client's kling-v3 holds the one kling-v3 slot")
        assert len(server.tasks) == 2
    assert server.stats.codes[1303] == 0


async def test_a_task_holding_several_leases_is_freed_whole_by_another_process(
    store: RedisStore,
) -> None:
    """An image task of n images binds n leases; another process that sees it finish frees all
    of them, and a 1303 shrinks by everything the rejected create held."""
    first = store.task_slots(4)
    second = store.task_slots(4)
    leases = [await first.acquire() for _ in range(3)]
    for lease in leases:
        await first.bind(lease, "task-of-3-images")
    await first.release(leases[0])  # a release by the holder forgets only its own lease
    await second.release_task("task-of-3-images")
    with anyio.fail_after(2):
        taken = [await second.acquire() for _ in range(4)]
    assert len(taken) == 4
    for lease in taken:
        await second.release(lease)
    held = [await first.acquire() for _ in range(4)]
    await first.on_concurrency_limited(held=3)  # one task runs; the create held three
    assert first.limit == 1
    for lease in held:
        await first.release(lease)
