"""``client.account_costs()`` and ``kling-async account``: Kling's resource packs, QPS <= 1."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import kling_async as kling
from kling_async import wire
from kling_async.testing import FakeKlingServer, Timeline

from .cli_support import API_KEY, invoke
from .conftest import FAST_POLL, FAST_RETRY

FAST = Timeline(queue_seconds=0.02, processing_seconds=0.05)


def client_for(server: FakeKlingServer) -> kling.KlingClient:
    return kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(server.url), retry=FAST_RETRY, poll=FAST_POLL
    )


async def test_packs_are_read_and_used_up_by_succeeded_tasks() -> None:
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=FAST, resource_pack_units=50) as server,
        client_for(server) as client,
    ):
        before = await client.account_costs()
        task = await client.text_to_video("a cat", mode="pro")
        await client.wait(task, timeout=10)
        after = await client.account_costs()
        again = await client.account_costs()  # at once: within the second Kling allows one
    (pack,) = before.packs
    assert pack.total == 50
    assert pack.remaining == 50
    assert pack.status == "online"
    assert pack.expires_at is not None
    assert pack.purchased_at is not None
    assert pack.expires_at > pack.purchased_at
    assert after.remaining == 48  # pro doubles the units of a 5 s video
    assert again.remaining == 48
    # Kling asks for one query a second at most and the emulator answers a faster one with 1302:
    # none was met, so the client spaced the two queries itself.
    queries = [r for r in server.requests_to("api") if r.path == "/account/costs"]
    assert len(queries) == 3
    assert all(r.query["start_time"].isdigit() and r.query["end_time"].isdigit() for r in queries)
    assert server.stats.codes[1302] == 0


async def test_the_window_is_sent_in_milliseconds() -> None:
    end = datetime(2026, 11, 30, tzinfo=timezone.utc)
    async with (
        FakeKlingServer(api_key=API_KEY) as server,
        client_for(server) as client,
    ):
        await client.account_costs(start=end - timedelta(days=1), end=end)
        with pytest.raises(kling.ConfigurationError, match="start"):
            await client.account_costs(start=end, end=end - timedelta(days=1))
    (query,) = [r for r in server.requests_to("api") if r.path == "/account/costs"]
    assert query.query == {
        "start_time": str(int(end.timestamp() * 1000) - 86_400_000),
        "end_time": str(int(end.timestamp() * 1000)),
    }


async def test_cometapi_has_no_account_endpoint_and_nothing_is_sent() -> None:
    async with (
        FakeKlingServer(api_key=API_KEY) as server,
        kling.KlingClient(api_key=API_KEY, provider="cometapi", base_url=server.url) as client,
    ):
        with pytest.raises(kling.ConfigurationError, match="no account endpoint"):
            await client.account_costs()
    assert server.requests_to("api") == []


def test_a_malformed_answer_names_the_field() -> None:
    bad = {"resource_pack_subscribe_infos": [{"remaining_quantity": "lots"}]}
    with pytest.raises(kling.ResponseParseError, match="malformed resource pack"):
        wire.parse_account_costs(bad, where="GET account/costs")
    with pytest.raises(kling.ResponseParseError, match="list of objects"):
        wire.parse_account_costs({"resource_pack_subscribe_infos": "none"})
    empty = wire.parse_account_costs({"code": 0, "msg": ""})
    assert empty.packs == ()
    assert empty.remaining == 0


def test_the_account_command_prints_one_line_per_pack(emulator: FakeKlingServer) -> None:
    connect = ["--provider", "emulator", "--base-url", emulator.url, "--api-key", API_KEY]
    result = invoke(["account", *connect])
    assert result.exit_code == 0, result.output
    assert "Video Generation - 1000 units: 1000 of 1000 left (online, until " in result.output


def test_the_account_command_on_cometapi_is_one_line(emulator: FakeKlingServer) -> None:
    connect = ["--provider", "cometapi", "--base-url", emulator.url, "--api-key", API_KEY]
    result = invoke(["account", *connect])
    assert result.exit_code == 2
    assert "no account endpoint" in result.output
    assert "Traceback" not in result.output
