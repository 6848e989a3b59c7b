"""The event hub: fan-out, a failing sink, sinks that remove themselves."""

from __future__ import annotations

import logging

import pytest

from kling_async.events import Event, EventHub, RateLimited


def test_hub_fans_out_in_order_and_survives_a_failing_sink(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every sink sees every event in the order added; one that raises is logged, not fatal."""
    seen: list[tuple[str, Event]] = []

    def broken(event: Event) -> None:
        raise RuntimeError("sink bug")

    hub = EventHub(lambda event: seen.append(("first", event)))
    hub.add(broken)
    hub.add(lambda event: seen.append(("last", event)))
    event = RateLimited(delay=1.0, rate=2.0)
    with caplog.at_level(logging.ERROR, logger="kling_async"):
        hub(event)
    assert seen == [("first", event), ("last", event)]
    assert "sink bug" in caplog.text
    assert len(hub) == 3


def test_a_sink_may_remove_itself_while_an_event_is_sent() -> None:
    """A progress bar that is done unsubscribes mid-send; the others still get that event."""
    hub = EventHub()
    calls: list[str] = []

    def once(event: Event) -> None:
        calls.append("once")
        hub.remove(once)

    hub.add(once)
    hub.add(lambda event: calls.append("always"))
    hub(RateLimited(delay=1.0, rate=2.0))
    hub(RateLimited(delay=1.0, rate=2.0))
    assert calls == ["once", "always", "always"]
    hub.remove(once)  # removing one that is gone is ignored
    assert len(hub) == 1
