"""The PostgreSQL journal's schema: forward migrations, and every statement it runs.

Kept apart from [`kling_async.journal_postgres`][kling_async.journal_postgres] so the SQL reads as one piece. Statements are
assembled from constant fragments only; every value travels as a query parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

__all__ = [
    "FINISHED",
    "MIGRATIONS",
    "PG_SCHEMA_VERSION",
    "SQL_BATCHES",
    "SQL_CHANGED",
    "SQL_CLAIM",
    "SQL_COUNTS",
    "SQL_CREATED",
    "SQL_DOWNLOAD",
    "SQL_ENTRIES",
    "SQL_ENTRIES_OF",
    "SQL_EXISTS",
    "SQL_FAILURES",
    "SQL_GET",
    "SQL_INTENT",
    "SQL_OPEN",
    "SQL_PROGRESS",
    "SQL_RELEASE",
    "SQL_RENEW",
    "SQL_SEED",
    "SQL_STATUS",
    "migrate",
]

# Forward migrations, applied in order; a database records each version it has applied. Never
# edit a released step: add the next one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE kling_batch_items (
                batch TEXT NOT NULL,
                key TEXT NOT NULL,
                seq BIGSERIAL NOT NULL,
                external_task_id TEXT,
                kind TEXT NOT NULL,
                request_json TEXT NOT NULL,
                task_id TEXT,
                status TEXT NOT NULL CHECK (status IN (
                    'queued', 'pending', 'created', 'succeed', 'failed', 'uncertain', 'downloaded'
                )),
                file_path TEXT,
                error TEXT,
                updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (batch, key)
            )""",
            "CREATE INDEX kling_batch_items_external ON kling_batch_items (batch, external_task_id)",
        ),
    ),
    (
        2,
        (
            # Leases for many workers, and what the status view needs for throughput.
            """ALTER TABLE kling_batch_items
                ADD COLUMN lease_owner TEXT,
                ADD COLUMN lease_until TIMESTAMPTZ,
                ADD COLUMN claims INTEGER NOT NULL DEFAULT 0,
                ADD COLUMN worker TEXT,
                ADD COLUMN finished_at DOUBLE PRECISION""",
            "CREATE INDEX kling_batch_items_open ON kling_batch_items (batch, status, seq)",
        ),
    ),
)

PG_SCHEMA_VERSION = MIGRATIONS[-1][0]
"""The schema version this module writes (and migrates older databases to)."""

# Any fixed number: every kling_async process serialises its schema changes on it.
_MIGRATION_LOCK = 0x6B6C696E67
FINISHED = ("downloaded", "failed")
# A row whose work is not done: claimable when its lease is free. 'failed' without a task id is a
# refused create, which a later claim sends again (bounded by max_claims).
# A finished task not downloaded yet is open only for workers that download.
_OPEN_ROW = (
    "(status IN ('queued', 'pending', 'created', 'uncertain') "
    "OR (status = 'succeed' AND %(downloads)s) OR (status = 'failed' AND task_id IS NULL))"
)
_COLUMNS = (
    "key, external_task_id, kind, request_json, task_id, status, file_path, error, updated_at"
)
_MINE = "(lease_owner IS NULL OR lease_owner = %(owner)s)"

SQL_SEED = (
    "INSERT INTO kling_batch_items (batch, key, kind, request_json, status, updated_at) "
    "VALUES (%s, %s, %s, %s, 'queued', %s) ON CONFLICT (batch, key) DO NOTHING"
)
SQL_CHANGED = (
    "SELECT key, request_json FROM kling_batch_items WHERE batch = %s AND key = ANY(%s) "
    "AND request_json <> (%s::jsonb ->> key)"
)
# One statement: an unseeded key (a single process, no claims) is inserted; a seeded one is
# updated, keeping its first external_task_id (that is what may have left), unless another
# worker holds it (then nothing is returned).
SQL_INTENT = (
    "INSERT INTO kling_batch_items AS item (batch, key, external_task_id, kind, request_json, "
    "status, worker, updated_at) VALUES (%(batch)s, %(key)s, %(ext)s, %(kind)s, "
    "%(request_json)s, 'pending', %(owner)s, %(now)s) ON CONFLICT (batch, key) DO UPDATE SET "
    "external_task_id = COALESCE(item.external_task_id, EXCLUDED.external_task_id), "
    "status = CASE WHEN item.status = 'queued' THEN 'pending' ELSE item.status END, "
    "worker = EXCLUDED.worker, updated_at = EXCLUDED.updated_at "
    "WHERE item.lease_owner IS NULL OR item.lease_owner = %(owner)s "
    f"RETURNING {_COLUMNS}"
)
SQL_CREATED = (
    "UPDATE kling_batch_items SET task_id = %(task_id)s, status = 'created', error = NULL, "
    "worker = %(owner)s, updated_at = %(now)s "
    f"WHERE batch = %(batch)s AND key = %(key)s AND {_MINE}"
)
SQL_STATUS = (
    "UPDATE kling_batch_items SET status = %(status)s, error = %(error)s, updated_at = %(now)s, "
    "finished_at = CASE WHEN %(status)s IN ('downloaded', 'failed') THEN %(now)s END "
    f"WHERE batch = %(batch)s AND key = %(key)s AND {_MINE}"
)
SQL_DOWNLOAD = (
    "UPDATE kling_batch_items SET file_path = %(path)s, status = 'downloaded', error = NULL, "
    "worker = %(owner)s, updated_at = %(now)s, finished_at = %(now)s "
    f"WHERE batch = %(batch)s AND key = %(key)s AND {_MINE}"
)
SQL_EXISTS = "SELECT lease_owner FROM kling_batch_items WHERE batch = %s AND key = %s"
SQL_ENTRIES = (
    f"SELECT {_COLUMNS} FROM kling_batch_items WHERE batch = %s AND status <> 'queued' ORDER BY seq"
)
SQL_ENTRIES_OF = (
    f"SELECT {_COLUMNS} FROM kling_batch_items WHERE batch = %s AND status <> 'queued' "
    "AND key = ANY(%s) ORDER BY seq"
)
SQL_GET = (
    f"SELECT {_COLUMNS} FROM kling_batch_items WHERE batch = %s AND key = %s AND status <> 'queued'"
)
SQL_CLAIM = (
    "WITH picked AS (SELECT key FROM kling_batch_items "
    "WHERE batch = %(batch)s AND (lease_until IS NULL OR lease_until < now()) "
    f"AND claims < %(max_claims)s AND {_OPEN_ROW} "
    "ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "UPDATE kling_batch_items AS item SET lease_owner = %(owner)s, "
    "lease_until = now() + make_interval(secs => %(ttl)s), claims = item.claims + 1 "
    "FROM picked WHERE item.batch = %(batch)s AND item.key = picked.key "
    "RETURNING item.key, item.seq"
)
SQL_RENEW = (
    "UPDATE kling_batch_items SET lease_until = now() + make_interval(secs => %(ttl)s) "
    "WHERE batch = %(batch)s AND key = ANY(%(keys)s) AND lease_owner = %(owner)s RETURNING key"
)
SQL_RELEASE = (
    "UPDATE kling_batch_items SET lease_owner = NULL, lease_until = NULL "
    "WHERE batch = %(batch)s AND key = ANY(%(keys)s) AND lease_owner = %(owner)s"
)
SQL_OPEN = (
    f"SELECT COUNT(*) FROM kling_batch_items WHERE batch = %(batch)s AND {_OPEN_ROW} "
    "AND claims < %(max_claims)s"
)
SQL_BATCHES = "SELECT DISTINCT batch FROM kling_batch_items ORDER BY batch"
SQL_COUNTS = "SELECT status, COUNT(*) FROM kling_batch_items WHERE batch = %s GROUP BY status"
SQL_PROGRESS = (
    "SELECT COUNT(*) FILTER (WHERE lease_until > now()), "
    "COUNT(DISTINCT lease_owner) FILTER (WHERE lease_until > now()), "
    "MIN(finished_at), MAX(finished_at), "
    "COUNT(*) FILTER (WHERE finished_at >= %s) "
    "FROM kling_batch_items WHERE batch = %s"
)
SQL_FAILURES = (
    "SELECT status, COALESCE(error, ''), COUNT(*) FROM kling_batch_items "
    "WHERE batch = %s AND status IN ('failed', 'uncertain') "
    "GROUP BY status, COALESCE(error, '') ORDER BY COUNT(*) DESC, 2 LIMIT %s"
)


async def migrate(conn: AsyncConnection[TupleRow]) -> None:
    """Create or migrate the schema, one transaction, serialised across processes."""
    async with conn.transaction():
        await _migrate_locked(conn)


async def _migrate_locked(conn: AsyncConnection[TupleRow]) -> None:
    # The lock lasts until the transaction ends: a second process waits, then finds the work done.
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS kling_schema_version ("
        "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    row = await (await conn.execute("SELECT MAX(version) FROM kling_schema_version")).fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > PG_SCHEMA_VERSION:
        raise ConfigurationError(
            f"the journal database has schema version {current}; this kling_async reads up to "
            f"{PG_SCHEMA_VERSION}: upgrade kling_async"
        )
    for version, statements in MIGRATIONS:
        if version <= current:
            continue
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("INSERT INTO kling_schema_version (version) VALUES (%s)", (version,))
