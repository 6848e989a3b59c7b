"""The access-log filter: callback tokens never reach uvicorn's or aiohttp's access lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import anyio
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kling_async.log_redaction import REDACTED, TokenRedactingFilter, redact_access_logs
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.webhooks import WebhookReceiver, aiohttp_handler

from .conftest import API_KEY
from .test_fastapi_example import TOKEN, serving


class Captured(logging.Handler):
    """Keeps each record's final message, as a handler would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.lines.extend(
            str(value) for name, value in vars(record).items() if name == "first_request_line"
        )


@pytest.fixture
def access_log() -> Iterator[tuple[logging.Logger, Captured]]:
    """uvicorn's access logger and a capturing handler for it; restored afterwards.

    The test adds the handler once uvicorn has configured its logging (which drops handlers).
    """
    logger = logging.getLogger("uvicorn.access")
    level, filters = logger.level, list(logger.filters)
    handler = Captured()
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.filters[:] = filters


def test_filter_redacts_messages_arguments_and_extras() -> None:
    """uvicorn passes the path as an argument, aiohttp formats it into the message and extras."""
    redactor = TokenRedactingFilter()
    uvicorn_style = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", "/kling/callback?a=1&token=s3cret-tok&b=2", "1.1", 200),
        None,
    )
    assert redactor.filter(uvicorn_style)
    assert uvicorn_style.getMessage() == (
        f'127.0.0.1:5 - "POST /kling/callback?a=1&token={REDACTED}&b=2 HTTP/1.1" 200'
    )
    aiohttp_style = logging.LogRecord(
        "aiohttp.access",
        logging.INFO,
        __file__,
        1,
        '127.0.0.1 "POST /cb?token=s3cret-tok HTTP/1.1" 200 2',
        None,
        None,
    )
    aiohttp_style.first_request_line = "POST /cb?token=s3cret-tok HTTP/1.1"
    redactor.filter(aiohttp_style)
    assert "s3cret" not in aiohttp_style.getMessage()
    assert "s3cret" not in aiohttp_style.first_request_line
    # Other parameters that merely end in "token" are left alone; nothing else is touched.
    assert redactor.redact("/x?csrftoken=keep&n=1") == "/x?csrftoken=keep&n=1"
    assert redactor.redact("no query here") == "no query here"
    named = TokenRedactingFilter(params=["sig"])
    assert named.redact("/v.mp4?sig=abc&x=1") == f"/v.mp4?sig={REDACTED}&x=1"


def test_redact_access_logs_installs_one_filter_per_logger() -> None:
    """Calling it twice leaves one filter on each access logger."""
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "aiohttp.access")]
    saved = [list(logger.filters) for logger in loggers]
    try:
        redact_access_logs()
        redactor = redact_access_logs()
        for logger in loggers:
            mine = [f for f in logger.filters if isinstance(f, TokenRedactingFilter)]
            assert mine == [redactor]
    finally:
        for logger, filters in zip(loggers, saved, strict=True):
            logger.filters[:] = filters


async def test_fastapi_example_access_log_hides_the_callback_token(
    access_log: tuple[logging.Logger, Captured],
) -> None:
    """The example served by uvicorn: its access line shows the path, not the token."""
    logger, captured = access_log
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.1)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as kling_server,
        serving(kling_server) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        logger.setLevel(logging.INFO)  # the fixture serves at log_level="warning"
        logger.addHandler(captured)
        answer = await http.post(f"/kling/callback?token={TOKEN}", content=b"{}")
        assert answer.status_code == 400
        with anyio.fail_after(5):
            # uvicorn logs after answering; a logging handler offers no event to await.
            while not any("/kling/callback" in line for line in captured.lines):  # noqa: ASYNC110
                await anyio.sleep(0.01)
    lines = [line for line in captured.lines if "/kling/callback" in line]
    assert lines
    assert all(TOKEN not in line and f"token={REDACTED}" in line for line in lines)


async def test_aiohttp_access_log_hides_the_callback_token() -> None:
    """aiohttp.web's access logger, with the filter installed, never prints the token."""
    logger = logging.getLogger("aiohttp.access")
    level, filters = logger.level, list(logger.filters)
    captured = Captured()
    logger.addHandler(captured)
    logger.setLevel(logging.INFO)
    try:
        redact_access_logs(["aiohttp.access"])
        receiver = WebhookReceiver(token=TOKEN)
        app = web.Application()
        app.router.add_post("/cb", aiohttp_handler(receiver))
        async with TestClient(TestServer(app)) as http:
            answer = await http.post(f"/cb?token={TOKEN}", data=b"{}")
            assert answer.status == 400
    finally:
        logger.removeHandler(captured)
        logger.setLevel(level)
        logger.filters[:] = filters
    assert any("/cb?token=" in line for line in captured.lines)
    assert all(TOKEN not in line for line in captured.lines)
