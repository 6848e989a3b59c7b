"""Resumable batches: submit many requests, track them, download the results, survive crashes.

A [`Batch`][kling_async.batch.Batch] keeps a [`Journal`][kling_async.journal.Journal] so that it never loses paid work
and never pays twice, even when the process is killed at any instant:

* the intent (with a stable ``external_task_id``) is recorded *before* the create request leaves;
* the server's task id is recorded right after the answer;
* on a re-run, an entry with a task id is polled again instead of submitted; an entry without one
  (killed between intent and answer, so a task may exist) is first looked up by its
  ``external_task_id``, and submitted again only when the provider's "not found" can be trusted;
* an entry already downloaded, whose file is still on disk, is skipped.

Submissions run concurrently (bounded) while a [`KlingClient.watch`][kling_async.client.KlingClient.watch] stream tracks the tasks
already created, so downloads begin while later prompts are still being submitted.

Example::

    async with KlingClient() as client, await SqliteJournal.open("out/.journal") as journal:
        batch = Batch(client, journal, Path("out"))
        result = await batch.run([("cat", TextToVideo(prompt="A cat")), ...])
        print(result.succeeded, result.failed, result.uncertain)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from . import _fields
from ._batch_files import file_name_for_key, file_ok, prepare_folder
from ._batch_result import BatchResult
from ._batch_room import Room
from ._create import Created, CreateOutcome, Uncertain, canonical_json, id_taken
from ._urls import same_request_json
from .client import KlingClient, new_external_task_id
from .errors import (
    AccountError,
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    KlingError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    ServerError,
    StorageError,
    SubmitUncertainError,
    ValidationError,
    WaitTimeoutError,
)
from .journal import Journal, JournalEntry
from .kinds import kind_for_request
from .logfields import id_fields, task_fields
from .models import Task, TaskRequest
from .watch import Watcher

__all__ = ["Batch", "BatchResult", "EntryCallback", "file_name_for_key"]

logger = logging.getLogger("kling_async.batch")

EntryCallback = Callable[[JournalEntry], None]
"""Called with an entry each time the batch learns or changes it (progress displays)."""

_T = TypeVar("_T")
_READ_RETRIES = 3
_TRANSIENT = (ResponseParseError, APIConnectionError, ServerError, RateLimitError)
# Errors after which every further request would fail the same way: stop the batch instead of
# recording hundreds of identical failures (the journal keeps everything for a re-run).
_FATAL = (AuthenticationError, AccountError, PermissionDeniedError)
# And errors of the local disk: the next write would fail too. The journal holds every write
# that returned, so a re-run continues where this one stopped.
_STOP = (*_FATAL, StorageError)


def _refusal(error: KlingError) -> str:
    """How the journal words a create that made nothing (a re-run sends it again)."""
    if isinstance(error, APIConnectionError) and not error.maybe_sent:
        return f"create not sent: {error}"
    return f"create refused: {error}"


class Batch:
    """Run many requests through one client, durably.

    Args:
        client: the client to submit and poll with (its slots and rate limit apply).
        journal: where progress is recorded; reuse the same journal to resume.
        out_dir: where videos go, as ``<key>.mp4`` (see [`file_name_for_key`][kling_async.batch.file_name_for_key]).
        download: download each succeeded task's video.
        watermark: download the watermarked variant.
        timeout: overall seconds to wait for tasks; unfinished ones stay in the journal.
        concurrency: submissions (and look-ups) in flight at once.
        on_entry: called with each entry as it is loaded or changes (for progress displays).

    Raises:
        ConfigurationError: *concurrency* is below 1.
    """

    def __init__(
        self,
        client: KlingClient,
        journal: Journal,
        out_dir: Path,
        *,
        download: bool = True,
        watermark: bool = False,
        timeout: float | None = None,
        concurrency: int = 16,
        on_entry: EntryCallback | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        self._client = client
        self._journal = journal
        self._out_dir = Path(out_dir)
        self._download = download
        self._watermark = watermark
        self._timeout = timeout
        self._concurrency = concurrency
        self._on_entry = on_entry
        self._entries: dict[str, JournalEntry] = {}
        self._keys_by_task: dict[str, str] = {}
        self._fatal: BaseException | None = None
        self._room = Room(client.slots, client.clock, lambda: client.poll_policy.min_interval)

    # -- bookkeeping -------------------------------------------------------------------------

    def _note(self, entry: JournalEntry) -> None:
        self._entries[entry.key] = entry
        if self._on_entry is not None:
            try:
                self._on_entry(entry)
            except Exception:  # a broken display must not cost a batch
                logger.exception("batch entry callback failed for %s", entry.key)

    def _change(self, key: str, **changes: Any) -> None:
        self._note(attrs.evolve(self._entries[key], **changes))

    async def _record_created(self, key: str, task: Task) -> None:
        # Shielded: a cancellation arriving right after the create was answered must not lose
        # the task id (the re-run would have to look it up).
        with anyio.CancelScope(shield=True):
            await self._journal.record_created(key, task.id)
        self._change(key, task_id=task.id, status="created", error=None)

    async def _record_status(self, key: str, status: str, error: str | None = None) -> None:
        with anyio.CancelScope(shield=True):
            await self._journal.record_status(key, status, error=error)
        self._change(key, status=status, error=error)

    # -- running -----------------------------------------------------------------------------

    def _check(self, items: Sequence[tuple[str, TaskRequest]]) -> dict[str, str]:
        """Validate every item before anything is sent; return key → request JSON."""
        seen: dict[str, str] = {}
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise ConfigurationError(
                    f"a batch takes (key, request) pairs, got {type(item).__name__}: "
                    "pass [(key, request), ...] with a stable key per input"
                )
            key, request = item
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"batch keys must be non-empty strings, got {key!r}")
            if key in seen:
                raise ConfigurationError(f"duplicate batch key {key!r}")
            try:
                self._client.check_request(request)
            except ValidationError as exc:
                raise ConfigurationError(f"item {key!r}: {exc}") from exc
            seen[key] = canonical_json(request)
        return seen

    async def run(self, items: Sequence[tuple[str, TaskRequest]]) -> BatchResult:
        """Submit, track and download every item; resume whatever the journal already knows.

        Args:
            items: ``(key, request)`` pairs; keys are stable names of the inputs (the journal and
                the file names use them).

        Returns:
            The outcome per item. Failed and uncertain items are reported, not raised.

        Raises:
            ConfigurationError: a duplicate or empty key, a request over the client's limits, or a
                journal entry whose recorded request differs from the one given now (the input
                changed; use another journal). Nothing is sent in these cases.
            AuthenticationError: the credentials were refused (also account and permission
                errors); the journal keeps everything done so far.
            StorageError: the output folder or the journal could not be written (a full disk, a
                file-size limit, a read-only location): checked before the first create, and
                the batch stops at the first such error later; the journal keeps everything
                recorded before it.
        """
        items = _listed(items)
        request_json = self._check(items)
        known = {entry.key: entry for entry in await self._journal.entries()}
        changed = [
            key
            for key, _ in items
            if key in known and not same_request_json(known[key].request_json, request_json[key])
        ]
        if changed:
            shown = ", ".join(repr(key) for key in changed[:5])
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            raise ConfigurationError(
                f"the journal already has {shown}{more} with a different request; the input "
                "changed since that run: use a new journal (or output folder) for new inputs"
            )
        await anyio.to_thread.run_sync(prepare_folder, self._out_dir)
        for key, _ in items:
            if key in known:
                self._note(known[key])
        self._fatal = None
        timed_out = await self._run(items, known, request_json)
        if self._fatal is not None:
            raise self._fatal
        return await self._result(items, timed_out)

    async def _run(
        self,
        items: list[tuple[str, TaskRequest]],
        known: dict[str, JournalEntry],
        request_json: dict[str, str],
    ) -> bool:
        timed_out = False
        async with (
            self._client.watch(timeout=self._timeout) as watcher,
            anyio.create_task_group() as group,
        ):
            group.start_soon(self._feed, items, known, request_json, watcher, group)
            try:
                async for task in watcher:
                    self._room.signal()
                    await self._finished(task, group)
            except WaitTimeoutError as exc:
                logger.warning("batch timed out with %d task(s) unfinished", len(exc.pending))
                timed_out = True
                group.cancel_scope.cancel()
            except KlingError as exc:
                # The watcher stops on errors that polling longer cannot fix (a task the
                # server does not know, refused credentials).
                self._fatal = exc
                group.cancel_scope.cancel()
        return timed_out

    def _stop(self, exc: BaseException, group: anyio.abc.TaskGroup) -> None:
        if self._fatal is None:
            self._fatal = exc
        group.cancel_scope.cancel()

    async def _feed(
        self,
        items: list[tuple[str, TaskRequest]],
        known: dict[str, JournalEntry],
        request_json: dict[str, str],
        watcher: Watcher,
        group: anyio.abc.TaskGroup,
    ) -> None:
        """Start one worker per item, at most ``concurrency`` at once; then close the stream."""
        gate = anyio.Semaphore(self._concurrency)

        async def one(key: str, request: TaskRequest) -> None:
            try:
                await self._item(key, request, known.get(key), request_json[key], watcher)
            except _STOP as exc:
                self._stop(exc, group)
            finally:
                gate.release()

        async with anyio.create_task_group() as workers:
            for key, request in items:
                # Acquired here and released by the worker: a bounded number of coroutines,
                # started in input order.
                await gate.acquire()
                workers.start_soon(one, key, request)
        watcher.close()

    async def _item(
        self,
        key: str,
        request: TaskRequest,
        entry: JournalEntry | None,
        request_json: str,
        watcher: Watcher,
    ) -> None:
        kind = kind_for_request(request)
        if entry is None:
            ext_id = request.external_task_id or new_external_task_id()
            # The intent is durable before the create leaves: after a crash the re-run knows
            # which external_task_id to look for.
            entry = await self._journal.record_intent(
                key, external_task_id=ext_id, kind=kind.name, request_json=request_json
            )
            self._note(entry)
            if entry.task_id is None and entry.status == "pending":
                await self._create(entry, request, watcher)
                return
        if entry.status == "downloaded" and file_ok(entry.file_path):
            return
        if entry.task_id is not None:
            if entry.status == "failed":
                return  # finished: re-running it would pay again
            await self._reattach(entry, request, watcher)
            return
        await self._recover(entry, request, watcher)

    async def _read(self, fetch: Callable[[str, str], Awaitable[_T]], ident: str, kind: str) -> _T:
        """A read (task or external-id look-up), tried again after transient failures.

        The client retries HTTP-level failures itself, but not an answer it cannot read (an
        HTML error page with status 200); a read is safe to repeat, and a look-up that gives up
        too early leaves an entry uncertain until the next run.
        """

        def transient(error: BaseException, retries: int) -> bool:
            return isinstance(error, _TRANSIENT) and retries < _READ_RETRIES

        def log(error: BaseException, attempt: int, delay: float) -> None:
            logger.info("reading %s failed (%s); retrying in %.2fs", ident, error, delay)

        client = self._client
        async for attempt in client.retry.attempts(
            client.clock, should_retry=transient, on_retry=log
        ):
            with attempt:
                return await fetch(ident, kind)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def _reattach(self, entry: JournalEntry, request: TaskRequest, watcher: Watcher) -> None:
        """Fetch a task the journal knows by id and track it again."""
        assert entry.task_id is not None  # noqa: S101 - checked by the caller
        try:
            task = await self._read(self._client.get_task, entry.task_id, entry.kind)
        except NotFoundError as exc:
            await self._record_status(entry.key, "failed", f"the server no longer knows it: {exc}")
            return
        except KlingError as exc:
            if isinstance(exc, _FATAL):
                raise
            # Still recorded as created: the next run tries again.
            logger.warning(
                "cannot fetch task %s (%s): %s",
                entry.task_id,
                entry.key,
                exc,
                extra=id_fields(entry.task_id, entry.kind, entry.external_task_id),
            )
            self._change(entry.key, error=f"fetch failed: {exc}")
            return
        await self._track(entry.key, task, watcher, adopt=request)

    async def _recover(self, entry: JournalEntry, request: TaskRequest, watcher: Watcher) -> None:
        """An entry without task id: find the task its create may have made, or create it."""
        try:
            found, absent = await self._read(
                self._client.find_created, entry.external_task_id, entry.kind
            )
        except SubmitUncertainError as exc:
            # No look-up form. A create the server refused outright made nothing: safe to send.
            if entry.status == "failed":
                await self._create(entry, request, watcher)
            else:
                await self._record_status(entry.key, "uncertain", str(exc))
            return
        except KlingError as exc:
            if isinstance(exc, _FATAL):
                raise
            await self._record_status(entry.key, "uncertain", f"look-up failed: {exc}")
            return
        if found is not None:
            logger.info(
                "adopting task %s for %s (created by an earlier run)",
                found.id,
                entry.key,
                extra=task_fields(found),
            )
            await self._record_created(entry.key, found)
            await self._track(entry.key, found, watcher, adopt=request)
        elif absent or entry.status == "failed":
            await self._create(entry, request, watcher)
        else:
            await self._record_status(
                entry.key,
                "uncertain",
                f"the provider {self._client.provider.name!r} found no task with external id "
                f"{entry.external_task_id!r}, but cannot prove none exists",
            )

    async def _submit(self, request: TaskRequest, ext_id: str) -> CreateOutcome:
        async with self._room.enter():
            return await self._client._submit_outcome(request, external_task_id=ext_id)

    async def _create(self, entry: JournalEntry, request: TaskRequest, watcher: Watcher) -> None:
        key, ext_id = entry.key, entry.external_task_id
        for attempt in range(2):
            outcome = await self._submit(request, ext_id)
            if isinstance(outcome, Created):
                await self._record_created(key, outcome.task)
                # The client counts it against the slots already, found by look-up or not.
                await self._track(key, outcome.task, watcher, adopt=None)
                return
            if isinstance(outcome, Uncertain):
                await self._record_status(key, "uncertain", str(outcome.error))
                return
            failure = outcome.error
            if isinstance(failure, _FATAL):
                raise failure
            if not (isinstance(failure, BadRequestError) and id_taken(failure)):
                await self._record_status(key, "failed", _refusal(failure))
                return
            # The id is taken: an earlier run (or the caller) did create the task.
            try:
                found, absent = await self._read(self._client.find_created, ext_id, entry.kind)
            except KlingError as exc:
                if isinstance(exc, _FATAL):
                    raise
                await self._record_status(
                    key, "uncertain", f"create failed ({failure}) and the look-up failed ({exc})"
                )
                return
            if found is not None:
                await self._record_created(key, found)
                await self._track(key, found, watcher, adopt=request)
                return
            if not absent or attempt == 1:
                await self._record_status(key, "uncertain", f"create failed: {failure}")
                return
            logger.info("create of %s failed (%s) and made no task; sending it again", key, failure)

    async def _track(
        self, key: str, task: Task, watcher: Watcher, *, adopt: TaskRequest | None
    ) -> None:
        """Watch *task*; *adopt* is its request when the client does not count it yet."""
        self._keys_by_task[task.id] = key
        if adopt is not None:
            # Created by an earlier run (or found after an unreadable answer): it holds the
            # account's slots until the client sees it finish.
            await self._client.adopt(task, adopt)
        try:
            watcher.add(task)
        except RuntimeError:
            # The watcher closed at the batch deadline; the journal keeps the task for a re-run.
            logger.info(
                "not tracking %s (%s): the batch deadline passed",
                task.id,
                key,
                extra=task_fields(task),
            )

    async def _finished(self, task: Task, group: anyio.abc.TaskGroup) -> None:
        key = self._keys_by_task.get(task.id)
        if key is None:  # pragma: no cover - the watcher only yields tasks we added
            return
        if task.succeeded:
            await self._record_status(key, "succeed")
            if self._download:
                group.start_soon(self._fetch_video, key, task, group)
        else:
            reason = task.status_msg or task.raw_status or "failed"
            await self._record_status(key, "failed", reason)

    async def _fetch_video(self, key: str, task: Task, group: anyio.abc.TaskGroup) -> None:
        # The first result: a task's video, image or sound track (image tasks with n > 1 keep
        # the others in task.images, for the caller to fetch).
        suffix = task.results[0].suffix if task.results else ".mp4"
        dest = self._out_dir / file_name_for_key(key, suffix)
        try:
            try:
                path = await self._client.download(task, dest, watermark=self._watermark)
            except DownloadError as exc:
                # Stays "succeed": the next run downloads it again (resuming the .part file).
                await self._record_status(key, "succeed", f"download failed: {exc}")
                return
            with anyio.CancelScope(shield=True):
                await self._journal.record_download(key, str(path))
        except StorageError as exc:
            # The entry stays "succeed" in the journal: the re-run downloads it.
            self._stop(exc, group)
            return
        self._change(key, status="downloaded", file_path=str(path), error=None)

    async def _result(self, items: list[tuple[str, TaskRequest]], timed_out: bool) -> BatchResult:
        stored = {entry.key: entry for entry in await self._journal.entries()}
        entries = tuple(stored[key] for key, _ in items if key in stored)
        return BatchResult.tally(
            entries, len(items), downloading=self._download, timed_out=timed_out
        )


def _listed(items: object) -> list[tuple[str, TaskRequest]]:
    return _fields.listed(items, "a batch takes a list of (key, request) pairs")
