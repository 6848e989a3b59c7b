"""One of many workers on a shared batch: claim items, run them, renew the leases, repeat.

Start a [`BatchWorker`][kling_async.worker.BatchWorker] on as many hosts (or as many times on one host) as you like, all
with the same input and the same [`PostgresJournal`][kling_async.journal_postgres.PostgresJournal] batch.
Each worker repeatedly claims a chunk of open items (``FOR UPDATE SKIP LOCKED``, so two workers
never claim the same item), runs the chunk through an ordinary [`Batch`][kling_async.batch.Batch]
(create with the intent recorded first, poll, download) while a background task renews the
chunk's leases, then releases them. A worker killed at any instant stops renewing; when its
leases run out the other workers claim its items, and ``Batch``'s recovery takes over: items with
a task id are polled, items whose create was ambiguous are looked up by ``external_task_id``
before anything is sent again. Downloads are claimed with their item, so one worker downloads
each result (into the shared output folder, or its own, with the path in the journal).

A worker stops when no item is left that any worker may still claim.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread

from .batch import Batch, BatchResult, EntryCallback, _listed
from .client import KlingClient
from .clock import Clock, SystemClock
from .errors import ConfigurationError, LeaseLostError
from .journal_postgres import PostgresJournal
from .kinds import kind_for_request
from .models import TaskRequest

__all__ = ["BatchWorker"]

logger = logging.getLogger("kling_async.worker")


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside *exc*, unwrapping task groups' exception groups."""
    # Duck-typed: the builtin group on 3.11+, the backport anyio raises on 3.10.
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple):
        return [leaf for item in inner for leaf in _leaves(item)]
    return [exc]


def _lease_lost(exc: BaseException) -> LeaseLostError | None:
    """The [`LeaseLostError`][kling_async.errors.LeaseLostError] inside *exc* (possibly an exception group), if any."""
    return next((leaf for leaf in _leaves(exc) if isinstance(leaf, LeaseLostError)), None)


class BatchWorker:
    """Work on a batch shared by many workers through a PostgreSQL journal.

    Args:
        client: the client to submit, poll and download with.
        journal: the batch's journal ([`PostgresJournal.open`][kling_async.journal_postgres.PostgresJournal.open]).
        out_dir: where videos go, as ``<key>.mp4``; shared by the workers or one per worker.
        chunk: items claimed at a time (and so run together by one ``Batch``).
        lanes: chunks this worker runs at once, so a chunk's slowest task does not idle it.
        lease: seconds a claim lasts without renewal; a dead worker's items wait this long.
        max_claims: claims of one item before it is left for a person to look at.
        download: download each succeeded task's video.
        watermark: download the watermarked variant.
        timeout: overall seconds; unfinished items stay open in the journal.
        concurrency: submissions in flight at once, per chunk.
        on_entry: called with each entry as this worker loads or changes it.
        idle_interval: seconds between looks while every open item is leased by others
            (default: a fifth of *lease*, at most 1 s).
        clock: where the worker waits (lease renewals, idle looks) and measures *timeout*;
            [`SystemClock`][kling_async.clock.SystemClock] when omitted.

    Raises:
        ConfigurationError: a bad *chunk*, *lanes*, *lease* or *max_claims*.
    """

    def __init__(
        self,
        client: KlingClient,
        journal: PostgresJournal,
        out_dir: Path,
        *,
        chunk: int = 16,
        lanes: int = 2,
        lease: float = 30.0,
        max_claims: int = 5,
        download: bool = True,
        watermark: bool = False,
        timeout: float | None = None,
        concurrency: int = 16,
        on_entry: EntryCallback | None = None,
        idle_interval: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        for name, value in (("chunk", chunk), ("lanes", lanes), ("max_claims", max_claims)):
            if value < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {value}")
        if lease <= 0:
            raise ConfigurationError(f"lease must be positive, got {lease}")
        self._client = client
        self._journal = journal
        self._out_dir = Path(out_dir)
        self._chunk = chunk
        self._lanes = lanes
        self._lease = lease
        self._max_claims = max_claims
        self._download = download
        self._watermark = watermark
        self._timeout = timeout
        self._concurrency = concurrency
        self._on_entry = on_entry
        self._clock: Clock = clock if clock is not None else SystemClock()
        # A look is one cheap COUNT; looking often lets a worker exit soon after the batch ends.
        self._idle = idle_interval if idle_interval is not None else min(lease / 5, 1.0)
        self._deadline = float("inf")
        self._wake = anyio.Event()
        self.chunks_done = 0
        """Chunks this worker has run to the end (for logs and tests)."""
        self.leases_lost = 0
        """Chunks cut short because another worker took them over."""

    def _batch(self, journal: PostgresJournal, timeout: float | None) -> Batch:
        return Batch(
            self._client,
            journal,
            self._out_dir,
            download=self._download,
            watermark=self._watermark,
            timeout=timeout,
            concurrency=self._concurrency,
            on_entry=self._on_entry,
        )

    async def run(self, items: Sequence[tuple[str, TaskRequest]]) -> BatchResult:
        """Add *items* to the batch (once, whichever worker is first), then work until done.

        Returns:
            The whole batch's outcome (every worker's items), as the journal has it.

        Raises:
            ConfigurationError: a bad item (checked before anything is sent), an item already in
                the batch with another request, or the batch holds items not in *items* (every
                worker must run with the same input).
            JournalUnavailableError: the database stayed unreachable.
        """
        items = _listed(items)
        whole = self._batch(self._journal, None)
        # The same checks as a single-process batch, before the first network call.
        request_json = whole._check(items)  # Batch's own validation, reused
        await self._journal.seed(
            [(key, kind_for_request(request).name, request_json[key]) for key, request in items]
        )
        await anyio.to_thread.run_sync(lambda: self._out_dir.mkdir(parents=True, exist_ok=True))
        requests = dict(items)
        self._deadline = (
            self._clock.now() + self._timeout if self._timeout is not None else float("inf")
        )
        self._wake = anyio.Event()
        try:
            async with anyio.create_task_group() as group:
                for _ in range(self._lanes):
                    group.start_soon(self._lane, requests)
        except Exception as exc:  # noqa: BLE001 - re-raised, unwrapped
            # The first lane's error ended the others: report it alone, as a plain Batch would.
            raise _leaves(exc)[0] from None
        timed_out = self._clock.now() >= self._deadline
        return await whole._result(items, timed_out)  # Batch's own summary

    async def _lane(self, requests: dict[str, TaskRequest]) -> None:
        while self._clock.now() < self._deadline:
            keys = await self._journal.claim(
                self._chunk,
                lease=self._lease,
                max_claims=self._max_claims,
                downloads=self._download,
            )
            if keys:
                await self._work(keys, requests)
                continue
            open_items = await self._journal.open_items(
                max_claims=self._max_claims, downloads=self._download
            )
            if open_items == 0:
                return
            # Everything open is leased by live workers (or by dead ones whose leases have not
            # run out yet): look again soon, to adopt what a dead worker leaves, or as soon as a
            # sibling lane gives its chunk back.
            with self._clock.deadline(min(self._idle, self._deadline - self._clock.now())):
                await self._wake.wait()

    async def _work(self, keys: list[str], requests: dict[str, TaskRequest]) -> None:
        """Run one claimed chunk to its end, renewing its leases meanwhile."""
        try:
            foreign = [key for key in keys if key not in requests]
            if foreign:
                raise ConfigurationError(
                    f"batch {self._journal.batch!r} has inputs this worker was not given "
                    f"({', '.join(repr(key) for key in foreign[:3])}); start every worker of a "
                    "batch with the same input"
                )
            remaining = self._deadline - self._clock.now()
            batch = self._batch(
                self._journal.only(keys), remaining if remaining != float("inf") else None
            )
            finished = False
            with anyio.CancelScope() as chunk_scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._keep_leases, keys, chunk_scope)
                    try:
                        await batch.run([(key, requests[key]) for key in keys])
                        finished = True
                    except Exception as exc:
                        lost = _lease_lost(exc)
                        if lost is None:
                            raise
                        self._note_lost(str(lost))
                    group.cancel_scope.cancel()
            if finished and not chunk_scope.cancelled_caught:
                self.chunks_done += 1
        finally:
            await self._journal.release(keys)
            self._wake.set()
            self._wake = anyio.Event()

    def _note_lost(self, why: str) -> None:
        self.leases_lost += 1
        # Expected after a long stall (or a partition from the database): the other worker
        # carries on from the journal, so this chunk is simply dropped here.
        logger.warning("worker %s gives up a chunk: %s", self._journal.owner, why)

    async def _keep_leases(self, keys: list[str], chunk_scope: anyio.CancelScope) -> None:
        wanted = set(keys)
        while True:
            await self._clock.sleep(self._lease / 3)
            held = await self._journal.renew(keys, lease=self._lease)
            if held != wanted:
                lost = sorted(wanted - held)
                self._note_lost(f"{len(lost)} lease(s) taken over, e.g. {lost[0]!r}")
                chunk_scope.cancel()
                return
