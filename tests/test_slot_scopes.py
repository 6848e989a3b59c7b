"""Task slots per resource pack and model, and ``n`` images holding ``n`` slots, over HTTP.

The emulator counts the same way (``FakeKlingServer(slots_per_model=..., max_active_tasks=...)``)
and answers 1303 beyond it, so a client that counted wrongly would meet 1303s here.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import kling_async as kling
import kling_async.slots
from kling_async.testing import FakeKlingServer, Timeline

from .conftest import API_KEY, FAST_POLL, FAST_RETRY

LONG = Timeline(queue_seconds=0.05, processing_seconds=0.6)


def client_for(server: FakeKlingServer, **options: Any) -> kling.KlingClient:
    return kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        poll=FAST_POLL,
        **options,
    )


async def test_n_images_hold_n_slots() -> None:
    """3 + 2 images on 4 slots: the second request waits for the first instead of a 1303."""
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=LONG, max_active_tasks=4) as server,
        client_for(server, max_active_tasks=4) as client,
    ):
        first = await client.submit(kling.ImageGeneration(prompt="a", n=3))
        assert client.slots.in_use == 3
        with anyio.move_on_after(0.3):
            await client.submit(kling.ImageGeneration(prompt="b", n=2))
            pytest.fail("the second request should wait for slots")
        assert len(server.tasks) == 1
        second = await client.submit(kling.ImageGeneration(prompt="b", n=2))
        assert second.id != first.id
    assert server.stats.codes[1303] == 0


async def test_slots_per_model_run_models_side_by_side() -> None:
    """One slot per model: kling-v3 and kling-v2-6 run together; a second kling-v3 waits."""
    async with (
        FakeKlingServer(
            api_key=API_KEY, timeline=LONG, max_active_tasks=1, slots_per_model=True
        ) as server,
        client_for(server, max_active_tasks=1, slots_per_model=True) as client,
    ):
        with anyio.fail_after(0.5):
            await client.text_to_video("a", model_name="kling-v3")
            await client.text_to_video("b", model_name="kling-v2-6")
            await client.submit(kling.ImageGeneration(prompt="c"))  # the image pack's own pool
        with anyio.move_on_after(0.2):
            await client.text_to_video("d", model_name="kling-v3")
            pytest.fail("a second kling-v3 task should wait for the first")
        assert len(server.tasks) == 3
        await client.text_to_video("d", model_name="kling-v3")
        assert len(server.tasks) == 4
    assert server.stats.codes[1303] == 0


async def test_one_pool_by_default_meets_the_per_model_server_safely() -> None:
    """Without slots_per_model the client never holds more than one task of any model."""
    async with (
        FakeKlingServer(
            api_key=API_KEY, timeline=LONG, max_active_tasks=1, slots_per_model=True
        ) as server,
        client_for(server, max_active_tasks=1) as client,
    ):
        await client.text_to_video("a", model_name="kling-v3")
        with anyio.move_on_after(0.2):
            await client.text_to_video("b", model_name="kling-v2-6")
            pytest.fail("one pool: the second task waits")
    assert server.stats.codes[1303] == 0


async def test_more_images_than_slots_is_refused_before_sending() -> None:
    async with (
        FakeKlingServer(api_key=API_KEY) as server,
        client_for(server, max_active_tasks=2) as client,
    ):
        with pytest.raises(kling.ValidationError, match="3 task slots"):
            await client.submit(kling.ImageGeneration(prompt="x", n=3))
    assert server.requests_to("api") == []


def test_slots_per_model_cannot_split_a_custom_pool() -> None:
    with pytest.raises(kling.ConfigurationError, match="custom slots="):
        kling.KlingClient(api_key=API_KEY, slots_per_model=True, slots=kling.slots.SlotPool(2))


async def test_two_weighted_requests_take_turns_instead_of_deadlocking() -> None:
    """Two requests of 3 images on 4 slots: one waits for the other, none holds part forever."""
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=LONG, max_active_tasks=4) as server,
        client_for(server, max_active_tasks=4) as client,
    ):
        with anyio.fail_after(5):
            tasks = await client.submit_many(
                [kling.ImageGeneration(prompt="a", n=3), kling.ImageGeneration(prompt="b", n=3)]
            )
        assert len(tasks) == 2
    assert server.stats.codes[1303] == 0


async def test_a_1303_shrinks_the_pool_by_every_slot_the_create_held() -> None:
    pool = kling.slots.SlotPool(10)
    held = [await pool.acquire() for _ in range(5)]
    await pool.on_concurrency_limited(held=3)  # two tasks run; the create held three
    assert pool.limit == 2
    for lease in held:
        await pool.release(lease)
