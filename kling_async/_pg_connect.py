"""How the PostgreSQL journal reaches its database: URLs, the pool, and calls through restarts.

``journal_postgres.PostgresJournal`` decides what to read and write; this module only gets a
connection to it, says why when it cannot, and never shows a password.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from .errors import ConfigurationError, JournalError, JournalUnavailableError

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

__all__ = [
    "call_reconnecting",
    "first_contact",
    "new_pool",
    "open_pool",
    "is_postgres_url",
    "redact_url",
]

_T = TypeVar("_T")


def is_postgres_url(text: str) -> bool:
    """Whether *text* names a PostgreSQL journal (``postgresql://`` or ``postgres://``)."""
    return text.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """*url* without its password, for messages and logs.

    Examples:
        >>> redact_url("postgresql://kling:s3cret@db:5432/jobs")
        'postgresql://kling:***@db:5432/jobs'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{location}"


def new_pool(
    url: str, *, max_connections: int, reconnect_timeout: float
) -> AsyncConnectionPool[AsyncConnection[TupleRow]]:
    """A pool for *url*, not yet open.

    Raises:
        ConfigurationError: the ``postgres`` extra is not installed.
    """
    try:
        from psycopg_pool import AsyncConnectionPool
    except ImportError as exc:
        raise ConfigurationError(
            "the PostgreSQL journal needs the postgres extra: pip install 'kling-async[postgres]'"
        ) from exc
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_connections,
        open=False,
        # Autocommit: a one-statement call is one round trip (and one commit); calls of
        # several statements open a transaction themselves. A connection broken by a server
        # restart fails its call, is discarded by the pool, and the call is tried again.
        kwargs={"autocommit": True},
        timeout=reconnect_timeout,
        reconnect_timeout=reconnect_timeout,
        name="kling-journal",
    )


async def open_pool(
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]], url: str, seconds: float
) -> None:
    """Open *pool*, waiting up to *seconds* for its first connection.

    Raises:
        JournalUnavailableError: no connection in time.
    """
    from psycopg_pool import PoolTimeout

    try:
        await pool.open(wait=True, timeout=seconds)
    except PoolTimeout as exc:
        raise JournalUnavailableError(
            f"cannot connect to the journal database {redact_url(url)!r} in {seconds:g}s"
        ) from exc


async def first_contact(url: str, seconds: float) -> None:
    """Connect once, retrying for *seconds*, to report *why* a database is unreachable.

    The pool only says that it timed out; a direct attempt says "connection refused",
    "password authentication failed" or "database does not exist".
    """
    import psycopg

    deadline = anyio.current_time() + seconds
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=max(int(seconds), 2))
        except psycopg.OperationalError as exc:  # noqa: PERF203 - a reconnect loop, not hot
            if anyio.current_time() + 0.5 > deadline:
                reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "?"
                raise JournalUnavailableError(
                    f"cannot connect to the journal database {redact_url(url)!r}: {reason}"
                ) from exc
            await anyio.sleep(0.5)
        else:
            await conn.close()
            return


async def call_reconnecting(
    pool: AsyncConnectionPool[AsyncConnection[TupleRow]],
    url: str,
    reconnect_timeout: float,
    operation: Callable[[AsyncConnection[TupleRow]], Awaitable[_T]],
) -> _T:
    """Run *operation* on a connection of *pool*, reconnecting through server restarts.

    Raises:
        JournalUnavailableError: the database stayed unreachable for *reconnect_timeout*.
        JournalError: the database refused the operation (trying again would not help).
    """
    import psycopg
    from psycopg_pool import PoolTimeout

    deadline = anyio.current_time() + reconnect_timeout
    delay = 0.05
    while True:
        try:
            async with pool.connection() as conn:
                return await operation(conn)
        except (psycopg.OperationalError, PoolTimeout, OSError) as exc:
            if anyio.current_time() + delay > deadline:
                raise JournalUnavailableError(
                    f"the journal database {redact_url(url)!r} is unreachable: "
                    f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                ) from exc
        except psycopg.Error as exc:
            # Not a lost connection (permissions, a full disk): trying again will not help.
            raise JournalError(
                f"the journal database {redact_url(url)!r} refused the journal: "
                f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from exc
        await anyio.sleep(delay)
        delay = min(delay * 2, 1.0)
