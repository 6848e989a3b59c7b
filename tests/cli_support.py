"""What the command-line tests share: an emulator on its own thread, and a clean invocation.

The ``emulator`` fixture built on it is in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from click.testing import CliRunner, Result

from kling_async.cli import cli
from kling_async.testing import FakeKlingServer

API_KEY = "sk-cli-test-0123456789abcdef"
CLEAN_ENV: dict[str, str | None] = {
    "COMETAPI_KEY": None,
    "KLING_ACCESS_KEY": None,
    "KLING_SECRET_KEY": None,
    "KLING_BASE_URL": None,
}


class ThreadedEmulator:
    """A FakeKlingServer on its own event loop in a thread, so CliRunner can call asyncio.run."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: FakeKlingServer | None = None

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def start(self) -> FakeKlingServer:
        self._thread.start()

        async def start() -> FakeKlingServer:
            server = FakeKlingServer(**self._options)
            await server.start()
            return server

        self.server = self._call(start())
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self._call(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def invoke(args: list[str], **env: str | None) -> Result:
    """Run ``kling-async *args*`` in-process with no credentials from the real environment."""
    return CliRunner().invoke(cli, args, env={**CLEAN_ENV, **env}, catch_exceptions=False)
