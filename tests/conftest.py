"""Shared fixtures: a real emulator on 127.0.0.1 and a client pointed at it."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import hypothesis
import pytest

import kling_async as kling
from kling_async.testing import FakeKlingServer, Timeline

from . import cli_support

API_KEY = "sk-test-0123456789abcdef"

FAST_RETRY = kling.RetryPolicy(base=0.01, cap=0.05, jitter=0.0)
FAST_POLL = kling.PollPolicy(first_delay=0.02, min_interval=0.02, max_interval=0.1)


@pytest.fixture
async def server() -> AsyncIterator[FakeKlingServer]:
    """An emulator whose tasks finish in about 0.15 s."""
    async with FakeKlingServer(
        api_key=API_KEY, timeline=Timeline(queue_seconds=0.05, processing_seconds=0.1)
    ) as running:
        yield running


def client_for(server: FakeKlingServer, **options: Any) -> kling.KlingClient:
    """A client for *server* with fast retries and polling; *options* override or add."""
    settings: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "timeout": 5.0}
    settings.update(options)
    return kling.KlingClient(api_key=API_KEY, provider=kling.local_emulator(server.url), **settings)


@pytest.fixture
async def client(server: FakeKlingServer) -> AsyncIterator[kling.KlingClient]:
    """A client for the emulator with fast retries and polling."""
    async with client_for(server) as running:
        yield running


@pytest.fixture(autouse=True)
def _restore_library_log_level() -> Iterator[None]:
    """The CLI quiets the package logger in-process; later tests must see every record."""
    logger = logging.getLogger("kling_async")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Finalise each test's garbage before the next starts.

    A socket or file left unclosed surfaces as a ResourceWarning only when the garbage collector
    finalises it; collecting here makes it fail the test that leaked it, not a later one.
    """
    yield
    gc.collect()


@pytest.fixture
def emulator() -> Iterator[FakeKlingServer]:
    """For the command-line tests: an emulator on its own thread (the CLI runs its own loop),
    whose tasks finish in about 0.15 s (change its timeline to slow it down)."""
    threaded = cli_support.ThreadedEmulator(
        api_key=cli_support.API_KEY,
        timeline=Timeline(queue_seconds=0.05, processing_seconds=0.1),
    )
    try:
        yield threaded.start()
    finally:
        threaded.stop()


# Property-based tests are bounded and derandomised: the same examples on every run, so CI is
# stable; no deadline, because timing on a shared machine is not what they test.
hypothesis.settings.register_profile(
    "kling", derandomize=True, max_examples=150, deadline=None, database=None
)
# A longer, random search for a developer hunting bugs: KLING_HYPOTHESIS_PROFILE=deep.
hypothesis.settings.register_profile("deep", max_examples=5000, deadline=None, database=None)
hypothesis.settings.load_profile(os.environ.get("KLING_HYPOTHESIS_PROFILE", "kling"))
