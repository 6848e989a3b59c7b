"""Batch error and resume paths: what the journal keeps when creates, look-ups or downloads fail."""

from __future__ import annotations

import json
import logging
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import attrs
import pytest

import kling_async as kling
from kling_async import wire
from kling_async.batch import Batch
from kling_async.client import DEFAULT_RATE
from kling_async.journal import InMemoryJournal, JournalEntry
from kling_async.slots import SlotLease, hold_slot
from kling_async.testing import FakeKlingServer, Timeline, Validation

from .conftest import API_KEY, FAST_POLL, FAST_RETRY

# No retries inside the client: one injected fault is one failed call.
NO_RETRY = attrs.evolve(FAST_RETRY, max_retries=0)


def _items(*prompts: str) -> list[tuple[str, kling.TaskRequest]]:
    return [(f"item-{n}", kling.TextToVideo(prompt=prompt)) for n, prompt in enumerate(prompts)]


def _client(
    server: FakeKlingServer,
    *,
    api_key: str = API_KEY,
    retry: kling.RetryPolicy = FAST_RETRY,
    provider: kling.Provider | None = None,
    url: str | None = None,
    rate: kling.RateLimit | None = DEFAULT_RATE,
) -> kling.KlingClient:
    return kling.KlingClient(
        api_key=api_key,
        provider=provider or kling.local_emulator(url or server.url),
        retry=retry,
        poll=FAST_POLL,
        timeout=5.0,
        rate=rate,
    )


def _request_json(prompt: str) -> str:
    """The journal's form of ``TextToVideo(prompt=prompt)``, as a batch would record it."""
    body = wire.request_body(kling.TextToVideo(prompt=prompt))
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


async def _intent(journal: InMemoryJournal, key: str, prompt: str) -> JournalEntry:
    """An entry as left by a run killed after recording its intent, before the create left."""
    return await journal.record_intent(
        key, external_task_id=f"ext-{key}", kind="text2video", request_json=_request_json(prompt)
    )


def _mp4s(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.mp4"))


# -- refused before anything is sent ----------------------------------------------------------


async def test_concurrency_below_one_is_refused(client: kling.KlingClient, tmp_path: Path) -> None:
    """A batch that could never submit anything is a configuration error up front."""
    async with InMemoryJournal() as journal:
        with pytest.raises(kling.ConfigurationError, match="concurrency must be at least 1, got 0"):
            Batch(client, journal, tmp_path, concurrency=0)


@pytest.mark.parametrize(
    ("keys", "message"),
    [(["a", ""], "keys must be non-empty"), (["a", "b", "a"], "duplicate batch key 'a'")],
)
async def test_bad_keys_are_refused_before_sending(
    client: kling.KlingClient,
    server: FakeKlingServer,
    tmp_path: Path,
    keys: list[str],
    message: str,
) -> None:
    """Empty or repeated keys would share a journal entry and a file: nothing is sent."""
    items = [(key, kling.TextToVideo(prompt=f"prompt {n}")) for n, key in enumerate(keys)]
    async with InMemoryJournal() as journal:
        with pytest.raises(kling.ConfigurationError, match=message):
            await Batch(client, journal, tmp_path).run(items)
        assert await journal.entries() == []
    assert server.requests == []


async def test_broken_progress_callback_does_not_cost_the_batch(
    client: kling.KlingClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A display whose callback raises is logged; every video is still made and journaled."""

    def broken(entry: JournalEntry) -> None:
        raise RuntimeError(f"display broke on {entry.status}")

    async with InMemoryJournal() as journal:
        with caplog.at_level(logging.ERROR, logger="kling_async.batch"):
            result = await Batch(client, journal, tmp_path, on_entry=broken).run(_items("a", "b"))
    assert result.ok
    assert _mp4s(tmp_path) == ["item-0.mp4", "item-1.mp4"]
    messages = [record.getMessage() for record in caplog.records]
    assert "batch entry callback failed for item-0" in messages
    assert all(record.exc_info is not None for record in caplog.records)


# -- credentials refused: stop, keep everything ---------------------------------------------


async def test_refused_credentials_stop_the_batch_and_keep_the_intents(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """A wrong key raises instead of marking items failed; the re-run reuses the same ids."""
    items = _items("a", "b", "c")
    async with InMemoryJournal() as journal:
        async with _client(server, api_key="sk-wrong-key-0000000000") as wrong:
            with pytest.raises(kling.AuthenticationError):
                await Batch(wrong, journal, tmp_path).run(items)
        intents = await journal.entries()
        assert intents, "the intent is recorded before the create is sent"
        assert {(entry.status, entry.task_id) for entry in intents} == {("pending", None)}
        assert server.create_counts == {}

        async with _client(server) as right:
            result = await Batch(right, journal, tmp_path).run(items)
    assert result.ok
    assert sorted(server.create_counts.values()) == [1, 1, 1]
    by_key = {entry.key: entry for entry in result.entries}
    for intent in intents:
        assert by_key[intent.key].external_task_id == intent.external_task_id


async def test_credentials_revoked_while_polling_stop_the_batch(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """A 401 while watching stops the run; the task id is journaled and the re-run polls it."""
    server.timeline = Timeline(queue_seconds=0.2, processing_seconds=0.2)

    def revoke_once_created(entry: JournalEntry) -> None:
        if entry.status == "created":
            server.api_key = "sk-rotated-0000000000000"

    items = _items("one")
    async with InMemoryJournal() as journal:
        async with _client(server) as client:
            batch = Batch(client, journal, tmp_path, on_entry=revoke_once_created)
            with pytest.raises(kling.AuthenticationError):
                await batch.run(items)
        (entry,) = await journal.entries()
        assert entry.status == "created"
        assert entry.task_id is not None

        server.api_key = API_KEY
        async with _client(server) as client:
            result = await Batch(client, journal, tmp_path).run(items)
    assert result.ok
    assert result.entries[0].task_id == entry.task_id
    assert server.stats.routes["create"] == 1


@pytest.mark.parametrize("created", [False, True], ids=["look-up", "re-fetch"])
async def test_refused_credentials_on_resume_stop_the_batch(
    server: FakeKlingServer, tmp_path: Path, created: bool
) -> None:
    """Resuming with a wrong key raises; the entry is left exactly as it was for the next run."""
    async with InMemoryJournal() as journal:
        entry = await _intent(journal, "k", "resumed")
        if created:
            async with _client(server) as client:
                task = await client.submit(kling.TextToVideo(prompt="resumed"))
            await journal.record_created("k", task.id)
        before = await journal.entries()
        async with _client(server, api_key="sk-wrong-key-0000000000") as wrong:
            with pytest.raises(kling.AuthenticationError):
                await Batch(wrong, journal, tmp_path).run(
                    [("k", kling.TextToVideo(prompt="resumed"))]
                )
        after = await journal.entries()
    assert [(e.status, e.task_id, e.error) for e in after] == [
        (e.status, e.task_id, e.error) for e in before
    ]
    assert server.create_attempts[entry.external_task_id] == 0


# -- resuming entries without a task id ------------------------------------------------------


async def test_unreadable_look_up_answers_are_read_again(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A look-up answer whose task cannot be read is read again; then the item is created once."""
    async with InMemoryJournal() as journal:
        entry = await _intent(journal, "k", "after a crash")
        server.faults.next_query("malformed_types", times=2)
        result = await Batch(client, journal, tmp_path).run(
            [("k", kling.TextToVideo(prompt="after a crash"))]
        )
    assert result.ok
    assert server.stats.faults["malformed_types"] == 2
    assert server.create_counts[entry.external_task_id] == 1


async def test_look_up_that_keeps_failing_leaves_the_item_uncertain(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """After the look-up's retries the item is uncertain, not sent; a later run sends it once."""
    request = kling.TextToVideo(prompt="after a crash")
    async with InMemoryJournal() as journal:
        entry = await _intent(journal, "k", "after a crash")
        server.faults.next_query("malformed_types", times=4)  # the first read and 3 retries
        first = await Batch(client, journal, tmp_path).run([("k", request)])
        (uncertain,) = first.entries
        assert uncertain.status == "uncertain"
        assert uncertain.error is not None
        assert uncertain.error.startswith("look-up failed: ")
        assert (first.uncertain, first.ok) == (1, False)
        assert server.create_attempts[entry.external_task_id] == 0

        second = await Batch(client, journal, tmp_path).run([("k", request)])
    assert second.ok
    assert server.create_counts[entry.external_task_id] == 1


async def test_untrusted_not_found_is_not_proof_enough_to_send(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """With a provider whose "not found" may lie, an interrupted create stays uncertain."""
    provider = attrs.evolve(kling.local_emulator(server.url), trust_not_found=False)
    async with InMemoryJournal() as journal, _client(server, provider=provider) as client:
        entry = await _intent(journal, "k", "maybe sent")
        result = await Batch(client, journal, tmp_path).run(
            [("k", kling.TextToVideo(prompt="maybe sent"))]
        )
    (after,) = result.entries
    assert after.status == "uncertain"
    assert after.error == (
        "the provider 'emulator' found no task with external id 'ext-k', but cannot prove none "
        "exists"
    )
    assert server.create_attempts[entry.external_task_id] == 0


async def test_without_a_look_up_form_only_refused_creates_are_sent_again(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """No external-id look-up: an interrupted create is uncertain; a refused one is resent."""
    provider = attrs.evolve(
        kling.local_emulator(server.url), external_lookup=kling.ExternalIdLookup.NONE
    )
    async with InMemoryJournal() as journal, _client(server, provider=provider) as client:
        interrupted = await _intent(journal, "interrupted", "maybe sent")
        refused = await _intent(journal, "refused", "was refused")
        await journal.record_status("refused", "failed", error="create refused: busy")
        result = await Batch(client, journal, tmp_path).run(
            [
                ("interrupted", kling.TextToVideo(prompt="maybe sent")),
                ("refused", kling.TextToVideo(prompt="was refused")),
            ]
        )
    by_key = {entry.key: entry for entry in result.entries}
    assert by_key["interrupted"].status == "uncertain"
    assert "no external-id look-up" in (by_key["interrupted"].error or "")
    assert by_key["refused"].status == "downloaded"
    assert server.create_attempts[interrupted.external_task_id] == 0
    assert server.create_counts[refused.external_task_id] == 1
    assert (result.succeeded, result.uncertain) == (1, 1)


# -- resuming entries with a task id ---------------------------------------------------------


async def test_task_the_server_no_longer_knows_is_failed_not_resubmitted(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A journaled task id the server answers 404 for is failed; paying again is left to you."""
    async with InMemoryJournal() as journal:
        await _intent(journal, "k", "forgotten")
        await journal.record_created("k", "812345678901234567")
        result = await Batch(client, journal, tmp_path).run(
            [("k", kling.TextToVideo(prompt="forgotten"))]
        )
    (entry,) = result.entries
    assert entry.status == "failed"
    assert (entry.error or "").startswith("the server no longer knows it: ")
    assert result.failed == 1
    assert server.stats.routes["create"] == 0


async def test_failed_re_fetch_keeps_the_task_for_the_next_run(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """Server errors while re-fetching a journaled task leave it created; the next run ends it."""
    request = kling.TextToVideo(prompt="resumed")
    async with InMemoryJournal() as journal, _client(server, retry=NO_RETRY) as client:
        await _intent(journal, "k", "resumed")
        task = await client.submit(request)
        await journal.record_created("k", task.id)
        server.faults.next_query("503", times=4)  # the first read and 3 retries
        first = await Batch(client, journal, tmp_path).run([("k", request)])
        (entry,) = first.entries
        assert (entry.status, entry.task_id) == ("created", task.id)
        assert (first.incomplete, first.failed, first.ok) == (1, 0, False)
        assert _mp4s(tmp_path) == []

        second = await Batch(client, journal, tmp_path).run([("k", request)])
    assert second.ok
    assert _mp4s(tmp_path) == ["k.mp4"]
    assert server.stats.routes["create"] == 1


# -- creates that fail -----------------------------------------------------------------------


async def test_create_the_server_refuses_is_failed_with_its_reason(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A 400 for the request itself is final: failed with the server's words, never resent."""
    server.validation = Validation(durations=("5",))
    items = [
        ("short", kling.TextToVideo(prompt="fine", duration="5")),
        ("long", kling.TextToVideo(prompt="too long here", duration="10")),
    ]
    async with InMemoryJournal() as journal:
        result = await Batch(client, journal, tmp_path).run(items)
    short, long = result.entries
    assert short.status == "downloaded"
    assert (long.status, long.task_id) == ("failed", None)
    assert (long.error or "").startswith("create refused: duration: allowed values: 5")
    assert server.create_attempts[long.external_task_id] == 1
    assert (result.succeeded, result.failed) == (1, 1)


async def test_rate_limited_create_is_failed_and_sent_by_the_next_run(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """A 429 that outlasts the retries created nothing: failed now, created once on re-run."""
    server.rate_limit_routes = ("create",)
    server.rate_limit = 0.001
    server.rate_burst = 0.5  # never a whole token: every create is refused
    items = _items("busy")
    # No client-side rate limiter: its shared cool-down after a 429 would last a whole second.
    unpaced = _client(server, retry=NO_RETRY, rate=None)
    async with InMemoryJournal() as journal, unpaced as client:
        first = await Batch(client, journal, tmp_path).run(items)
        (entry,) = first.entries
        assert (entry.status, entry.task_id) == ("failed", None)
        assert (entry.error or "").startswith("create refused: Request too fast")
        assert server.create_counts == {}

        server.rate_limit = None
        second = await Batch(client, journal, tmp_path).run(items)
    assert second.ok
    assert second.entries[0].external_task_id == entry.external_task_id
    assert server.create_counts[entry.external_task_id] == 1


async def test_create_that_never_left_is_failed_and_sent_by_the_next_run(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """Connection refused means nothing reached a server: failed, and safe to send on re-run."""
    async with FakeKlingServer(api_key=API_KEY) as gone:
        dead_url = gone.url
    items = _items("offline")
    async with InMemoryJournal() as journal:
        async with _client(server, url=dead_url, retry=NO_RETRY) as offline:
            first = await Batch(offline, journal, tmp_path).run(items)
        (entry,) = first.entries
        assert (entry.status, entry.task_id) == ("failed", None)
        assert (entry.error or "").startswith("create not sent: ")

        async with _client(server) as online:
            second = await Batch(online, journal, tmp_path).run(items)
    assert second.ok
    assert server.create_counts[entry.external_task_id] == 1


async def test_external_id_already_taken_adopts_the_existing_task(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """The server says the request's own external id exists: the batch adopts that task."""
    request = kling.TextToVideo(prompt="mine", external_task_id="my-own-id")
    existing = await client.submit(request)
    async with InMemoryJournal() as journal:
        result = await Batch(client, journal, tmp_path).run([("k", request)])
    assert result.ok
    assert result.entries[0].task_id == existing.id
    assert server.create_counts["my-own-id"] == 1
    assert server.create_attempts["my-own-id"] == 2
    assert client.slots.in_use == 0


async def test_taken_external_id_that_cannot_be_found_is_sent_at_most_twice(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """An id the server calls taken but cannot show: one more try, then uncertain, no loop."""
    # Another kind's task holds the id; text2video look-ups cannot see it.
    await client.submit(
        kling.ImageToVideo(image="https://example.test/cat.png", external_task_id="shared-id")
    )
    request = kling.TextToVideo(prompt="text", external_task_id="shared-id")
    async with InMemoryJournal() as journal:
        result = await Batch(client, journal, tmp_path).run([("k", request)])
    (entry,) = result.entries
    assert (entry.status, entry.task_id) == ("uncertain", None)
    assert (entry.error or "").startswith("create failed: external_task_id already exists")
    assert server.create_attempts["shared-id"] == 3  # the image task, then two text creates
    assert server.create_counts["shared-id"] == 1


async def test_taken_external_id_with_a_failing_look_up_is_uncertain(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """The id is taken and the look-up fails too: uncertain, naming both failures."""
    request = kling.TextToVideo(prompt="mine", external_task_id="my-own-id")
    async with InMemoryJournal() as journal, _client(server, retry=NO_RETRY) as client:
        await client.submit(request)
        server.faults.next_query("503", times=4)  # the first read and 3 retries
        result = await Batch(client, journal, tmp_path).run([("k", request)])
    (entry,) = result.entries
    assert (entry.status, entry.task_id) == ("uncertain", None)
    error = entry.error or ""
    assert error.startswith("create failed (external_task_id already exists")
    assert "and the look-up failed (Server temporarily unavailable" in error
    assert server.create_counts["my-own-id"] == 1


# -- downloads -------------------------------------------------------------------------------


async def test_without_downloads_succeeded_tasks_count_and_nothing_is_fetched(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """download=False: succeeded tasks are the result; no file, no CDN request."""
    async with InMemoryJournal() as journal:
        result = await Batch(client, journal, tmp_path, download=False).run(
            _items("a", "b", "please FAIL")
        )
    assert [entry.status for entry in result.entries] == ["succeed", "succeed", "failed"]
    assert (result.succeeded, result.failed, result.incomplete) == (2, 1, 0)
    assert result.files == ()
    assert server.requests_to("cdn") == []
    assert _mp4s(tmp_path) == []


async def test_failed_download_is_retried_by_the_next_run_without_a_new_task(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """The task stays succeed with the download error; the re-run only downloads."""
    items = _items("a")
    async with InMemoryJournal() as journal, _client(server, retry=NO_RETRY) as client:
        server.faults.next_download("500")
        first = await Batch(client, journal, tmp_path).run(items)
        (entry,) = first.entries
        assert entry.status == "succeed"
        assert (entry.error or "").startswith("download failed: ")
        assert (first.succeeded, first.incomplete, first.ok) == (0, 1, False)
        assert _mp4s(tmp_path) == []

        second = await Batch(client, journal, tmp_path).run(items)
    assert second.ok
    assert [path.name for path in second.files] == ["item-0.mp4"]
    assert server.stats.routes["create"] == 1


# -- deadlines and custom slots --------------------------------------------------------------


async def test_create_answered_after_the_deadline_is_kept_for_the_next_run(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A task created after the batch deadline is not tracked, but journaled and resumed."""
    server.faults.next_create("slow", seconds=0.4)  # answered well after the 0.1 s deadline
    items = _items("slow answer")
    async with InMemoryJournal() as journal:
        first = await Batch(client, journal, tmp_path, timeout=0.1).run(items)
        assert (first.incomplete, first.ok) == (1, False)
        (entry,) = first.entries
        assert server.create_counts[entry.external_task_id] == 1

        second = await Batch(client, journal, tmp_path).run(items)
    created = server.task_by_external_id(entry.external_task_id)
    assert created is not None
    assert second.ok
    assert second.entries[0].task_id == created.task_id
    assert server.create_counts[entry.external_task_id] == 1


async def test_deadline_passing_during_creates_is_reported_as_timed_out(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """BatchResult.timed_out: "the batch's timeout passed before every task finished"."""
    server.faults.next_create("slow", seconds=0.4)
    async with InMemoryJournal() as journal:
        result = await Batch(client, journal, tmp_path, timeout=0.1).run(_items("slow answer"))
    assert result.incomplete == 1
    assert result.timed_out


class _OneAtATime:
    """A user-supplied TaskSlots (not a SlotPool): one task at a time, recording the peak."""

    def __init__(self) -> None:
        self._gate = anyio.Semaphore(1)
        self.in_use = 0
        self.peak = 0
        self.limit: int | None = 1
        self.waiting = 0

    async def acquire(self) -> SlotLease:
        self.waiting += 1
        try:
            await self._gate.acquire()
        finally:
            self.waiting -= 1
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)
        return SlotLease()

    async def adopt(self) -> SlotLease:
        raise AssertionError("nothing to adopt in a fresh batch")

    async def release(self, lease: SlotLease) -> None:
        if not lease.released:
            lease.released = True
            self.in_use -= 1
            self._gate.release()

    async def on_concurrency_limited(self) -> None:
        pass

    async def bind(self, lease: SlotLease, task_id: str) -> None:
        pass

    async def release_task(self, task_id: str) -> None:
        pass

    def hold(self) -> AbstractAsyncContextManager[SlotLease]:
        return hold_slot(self)


async def test_custom_task_slots_bound_the_batch(server: FakeKlingServer, tmp_path: Path) -> None:
    """With the client's own TaskSlots the batch still never runs more tasks than it allows."""
    slots = _OneAtATime()
    async with (
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=FAST_POLL,
            slots=slots,
        ) as client,
        InMemoryJournal() as journal,
    ):
        result = await Batch(client, journal, tmp_path).run(_items("a", "b", "c"))
    assert result.ok
    assert (slots.peak, slots.in_use) == (1, 0)
    assert server.stats.routes["create"] == 3
