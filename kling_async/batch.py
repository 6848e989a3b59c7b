"""Resumable batches: submit many requests, track them, download the results, survive crashes.

A :class:`Batch` keeps a :class:`~kling_async.journal.Journal` so that it never loses paid work
and never pays twice, even when the process is killed at any instant:

* the intent (with a stable ``external_task_id``) is recorded *before* the create request leaves;
* the server's task id is recorded right after the answer;
* on a re-run, an entry with a task id is polled again instead of submitted; an entry without one
  (killed between intent and answer, so a task may exist) is first looked up by its
  ``external_task_id``, and submitted again only when the provider's "not found" can be trusted;
* an entry already downloaded, whose file is still on disk, is skipped.

Submissions run concurrently (bounded) while a :meth:`KlingClient.watch` stream tracks the tasks
already created, so downloads begin while later prompts are still being submitted.

Example::

    async with KlingClient() as client, await SqliteJournal.open("out/.journal") as journal:
        batch = Batch(client, journal, Path("out"))
        result = await batch.run([("cat", TextToVideo(prompt="A cat")), ...])
        print(result.succeeded, result.failed, result.uncertain)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from . import wire
from .client import KlingClient, new_external_task_id
from .download import safe_stem
from .errors import (
    AccountError,
    APIConnectionError,
    APIError,
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
    SubmitUncertainError,
    ValidationError,
    WaitTimeoutError,
)
from .journal import Journal, JournalEntry
from .kinds import kind_for_request
from .models import Task, TaskRequest
from .slots import SlotPool
from .watch import Watcher

__all__ = ["Batch", "BatchResult", "EntryCallback", "file_name_for_key"]

logger = logging.getLogger("kling_async.batch")

EntryCallback = Callable[[JournalEntry], None]
"""Called with an entry each time the batch learns or changes it (progress displays)."""

_T = TypeVar("_T")
_READ_RETRIES = 3
_TRANSIENT = (ResponseParseError, APIConnectionError, ServerError, RateLimitError)
_MAX_STEM = 120
# Errors after which every further request would fail the same way: stop the batch instead of
# recording hundreds of identical failures (the journal keeps everything for a re-run).
_FATAL = (AuthenticationError, AccountError, PermissionDeniedError)


def file_name_for_key(key: str) -> str:
    """The file name a batch downloads *key*'s video to: ``<key>.mp4``, made safe.

    A key that is not already a plain name gets a short hash of itself appended, so that two
    different keys never share a file (``a/b`` and ``a_b`` differ).

    Examples:
        >>> file_name_for_key("line-0001")
        'line-0001.mp4'
    """
    stem = safe_stem(key, _MAX_STEM)
    if stem != key or not stem:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]
        stem = f"{stem or 'item'}-{digest}"
    return f"{stem}.mp4"


def _request_json(request: TaskRequest) -> str:
    return json.dumps(wire.request_body(request), sort_keys=True, separators=(",", ":"))


def _file_ok(path: str | None) -> bool:
    if not path:
        return False
    try:
        return Path(path).stat().st_size > 0
    except OSError:
        return False


@attrs.frozen
class BatchResult:
    """How a batch run ended.

    Attributes:
        entries: the final journal entry of every item, in input order.
        succeeded: items whose video is on disk (or that succeeded, when not downloading).
        failed: items whose task failed, or whose create the server refused.
        uncertain: items whose create may or may not have made a task; a re-run looks them up.
        incomplete: items still running, or succeeded but not yet downloaded (a timeout or a
            download error); a re-run continues them.
        files: the downloaded files, in input order.
        timed_out: the batch's ``timeout`` passed before every task finished.
    """

    entries: tuple[JournalEntry, ...]
    succeeded: int
    failed: int
    uncertain: int
    incomplete: int
    files: tuple[Path, ...]
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """``True`` when every item succeeded (and was downloaded)."""
        return self.failed == 0 and self.uncertain == 0 and self.incomplete == 0


class Batch:
    """Run many requests through one client, durably.

    Args:
        client: the client to submit and poll with (its slots and rate limit apply).
        journal: where progress is recorded; reuse the same journal to resume.
        out_dir: where videos go, as ``<key>.mp4`` (see :func:`file_name_for_key`).
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
        # Submissions this batch has let through to client.submit that may not hold their
        # slot yet (see _wait_for_room).
        self._reserved = 0
        self._room = anyio.Event()

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
        for key, request in items:
            if not key:
                raise ConfigurationError("batch keys must be non-empty strings")
            if key in seen:
                raise ConfigurationError(f"duplicate batch key {key!r}")
            try:
                self._client.limits.check(request)
            except ValidationError as exc:
                raise ConfigurationError(f"item {key!r}: {exc}") from exc
            seen[key] = _request_json(request)
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
        """
        items = list(items)
        request_json = self._check(items)
        known = {entry.key: entry for entry in await self._journal.entries()}
        changed = [
            key for key, _ in items if key in known and known[key].request_json != request_json[key]
        ]
        if changed:
            shown = ", ".join(repr(key) for key in changed[:5])
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            raise ConfigurationError(
                f"the journal already has {shown}{more} with a different request; the input "
                "changed since that run: use a new journal (or output folder) for new inputs"
            )
        await anyio.to_thread.run_sync(lambda: self._out_dir.mkdir(parents=True, exist_ok=True))
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
                    self._signal_room()
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
            except _FATAL as exc:
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
        if entry.status == "downloaded" and _file_ok(entry.file_path):
            return
        if entry.task_id is not None:
            if entry.status == "failed":
                return  # finished: re-running it would pay again
            await self._reattach(entry, watcher)
            return
        await self._recover(entry, request, watcher)

    async def _read(self, fetch: Callable[[str, str], Awaitable[_T]], ident: str, kind: str) -> _T:
        """A read (task or external-id look-up), tried again after transient failures.

        The client retries HTTP-level failures itself, but not an answer it cannot read (an
        HTML error page with status 200); a read is safe to repeat, and a look-up that gives up
        too early leaves an entry uncertain until the next run.
        """
        retries = 0
        while True:
            try:
                return await fetch(ident, kind)
            except _TRANSIENT as exc:  # noqa: PERF203 - a network retry, not a hot loop
                if retries >= _READ_RETRIES:
                    raise
                delay = self._client.retry.delay(retries, getattr(exc, "retry_after", None))
                logger.info("reading %s failed (%s); retrying in %.2fs", ident, exc, delay)
                retries += 1
                await self._client.clock.sleep(delay)

    async def _reattach(self, entry: JournalEntry, watcher: Watcher) -> None:
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
            logger.warning("cannot fetch task %s (%s): %s", entry.task_id, entry.key, exc)
            self._change(entry.key, error=f"fetch failed: {exc}")
            return
        self._track(entry.key, task, watcher, adopt=True)

    async def _recover(self, entry: JournalEntry, request: TaskRequest, watcher: Watcher) -> None:
        """An entry without task id: find the task its create may have made, or create it."""
        try:
            found = await self._read(
                self._client.find_by_external_id, entry.external_task_id, entry.kind
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
            logger.info("adopting task %s for %s (created by an earlier run)", found.id, entry.key)
            await self._record_created(entry.key, found)
            self._track(entry.key, found, watcher, adopt=True)
        elif self._client.provider.trust_not_found or entry.status == "failed":
            await self._create(entry, request, watcher)
        else:
            await self._record_status(
                entry.key,
                "uncertain",
                f"the provider {self._client.provider.name!r} found no task with external id "
                f"{entry.external_task_id!r}, but cannot prove none exists",
            )

    async def _submit(self, request: TaskRequest, ext_id: str) -> Task:
        await self._wait_for_room()
        try:
            return await self._client.submit(request, external_task_id=ext_id)
        finally:
            self._reserved -= 1
            self._signal_room()

    async def _create(self, entry: JournalEntry, request: TaskRequest, watcher: Watcher) -> None:
        key, ext_id = entry.key, entry.external_task_id
        for attempt in range(2):
            try:
                task = await self._submit(request, ext_id)
            except SubmitUncertainError as exc:
                await self._record_status(key, "uncertain", str(exc))
                return
            except _FATAL:
                raise
            except BadRequestError as exc:
                if "external_task_id" not in exc.message:
                    await self._record_status(key, "failed", f"create refused: {exc}")
                    return
                # The id is taken: an earlier attempt did create the task.
                failure: KlingError = exc
            except APIConnectionError as exc:
                if not exc.maybe_sent:
                    await self._record_status(key, "failed", f"create not sent: {exc}")
                    return
                failure = exc
            except APIError as exc:
                # Definite refusals (rate limit or server errors the client already retried and
                # judged unambiguous): nothing was created; a re-run sends it again.
                await self._record_status(key, "failed", f"create refused: {exc}")
                return
            except KlingError as exc:
                # An unreadable answer (ResponseParseError) after the server may have created
                # the task: as ambiguous as a dropped connection.
                failure = exc
            else:
                await self._record_created(key, task)
                self._track(key, task, watcher, adopt=False)
                return
            try:
                found = await self._read(self._client.find_by_external_id, ext_id, entry.kind)
            except KlingError as exc:
                if isinstance(exc, _FATAL):
                    raise
                await self._record_status(
                    key, "uncertain", f"create failed ({failure}) and the look-up failed ({exc})"
                )
                return
            if found is not None:
                await self._record_created(key, found)
                self._track(key, found, watcher, adopt=True)
                return
            if not self._client.provider.trust_not_found or attempt == 1:
                await self._record_status(key, "uncertain", f"create failed: {failure}")
                return
            logger.info("create of %s failed (%s) and made no task; sending it again", key, failure)

    def _track(self, key: str, task: Task, watcher: Watcher, *, adopt: bool) -> None:
        self._keys_by_task[task.id] = key
        if adopt:
            # Created by an earlier run (or found after an unreadable answer): it holds one of
            # the account's slots until the client sees it finish.
            self._client.adopt(task)
        try:
            watcher.add(task)
        except RuntimeError:
            # The watcher closed at the batch deadline; the journal keeps the task for a re-run.
            logger.info("not tracking %s (%s): the batch deadline passed", task.id, key)

    def _signal_room(self) -> None:
        self._room.set()
        self._room = anyio.Event()

    async def _wait_for_room(self) -> None:
        """Wait until a submission would get a task slot at once.

        A submitter waiting inside ``client.submit`` refreshes the client's active tasks itself
        (it cannot know that this batch's watcher polls them already); many such waiters would
        spend the rate limit on duplicate polls. So the batch lets a submission through only
        when the pool has room, counting those let through but not yet answered.
        """
        slots = self._client.slots
        if not isinstance(slots, SlotPool):
            return
        while True:
            limit = slots.limit
            if limit is None or (slots.in_use + self._reserved < limit and not slots.waiting):
                self._reserved += 1
                return
            # Woken when a task finishes or a submission is answered; the timeout is a safety
            # net for slots freed elsewhere (another user of the same client).
            with anyio.move_on_after(self._client.poll_policy.min_interval):
                await self._room.wait()

    async def _finished(self, task: Task, group: anyio.abc.TaskGroup) -> None:
        key = self._keys_by_task.get(task.id)
        if key is None:  # pragma: no cover - the watcher only yields tasks we added
            return
        if task.succeeded:
            await self._record_status(key, "succeed")
            if self._download:
                group.start_soon(self._fetch_video, key, task)
        else:
            reason = task.status_msg or task.raw_status or "failed"
            await self._record_status(key, "failed", reason)

    async def _fetch_video(self, key: str, task: Task) -> None:
        dest = self._out_dir / file_name_for_key(key)
        try:
            path = await self._client.download(task, dest, watermark=self._watermark)
        except DownloadError as exc:
            # Stays "succeed": the next run downloads it again (resuming the .part file).
            await self._record_status(key, "succeed", f"download failed: {exc}")
            return
        with anyio.CancelScope(shield=True):
            await self._journal.record_download(key, str(path))
        self._change(key, status="downloaded", file_path=str(path), error=None)

    async def _result(self, items: list[tuple[str, TaskRequest]], timed_out: bool) -> BatchResult:
        stored = {entry.key: entry for entry in await self._journal.entries()}
        entries = tuple(stored[key] for key, _ in items if key in stored)
        succeeded = failed = uncertain = 0
        files: list[Path] = []
        for entry in entries:
            if entry.status == "downloaded":
                succeeded += 1
                if entry.file_path:
                    files.append(Path(entry.file_path))
            elif entry.status == "succeed" and not self._download:
                succeeded += 1
            elif entry.status == "failed":
                failed += 1
            elif entry.status == "uncertain":
                uncertain += 1
        incomplete = len(items) - succeeded - failed - uncertain
        return BatchResult(
            entries=entries,
            succeeded=succeeded,
            failed=failed,
            uncertain=uncertain,
            incomplete=incomplete,
            files=tuple(files),
            timed_out=timed_out,
        )
