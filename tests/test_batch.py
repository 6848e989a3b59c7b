"""Batch against the in-process emulator: outcomes, files, re-runs and crash recovery."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import kling_async as kling
from kling_async.batch import Batch, file_name_for_key
from kling_async.journal import InMemoryJournal, JournalEntry, SqliteJournal
from kling_async.testing import FakeKlingServer, Timeline

from .conftest import API_KEY, FAST_POLL, FAST_RETRY


def _items(*prompts: str) -> list[tuple[str, kling.TaskRequest]]:
    return [(f"item-{n}", kling.TextToVideo(prompt=prompt)) for n, prompt in enumerate(prompts)]


def _is_mp4(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 8 and data[4:8] == b"ftyp"


async def test_all_succeed_and_files_exist(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """Every item is created once, finishes, and lands on disk as <key>.mp4."""
    seen: list[JournalEntry] = []
    async with InMemoryJournal() as journal:
        batch = Batch(client, journal, tmp_path / "out", on_entry=seen.append)
        result = await batch.run(_items("a cat", "a dog", "a bird", "a fish"))
    assert result.ok
    assert (result.succeeded, result.failed, result.uncertain, result.incomplete) == (4, 0, 0, 0)
    assert [entry.status for entry in result.entries] == ["downloaded"] * 4
    assert [path.name for path in result.files] == [f"item-{n}.mp4" for n in range(4)]
    assert all(_is_mp4(path) for path in result.files)
    assert server.stats.routes["create"] == 4
    assert sorted(server.create_counts.values()) == [1, 1, 1, 1]
    assert {entry.status for entry in seen} >= {"pending", "created", "succeed", "downloaded"}
    # Every slot taken by the batch was given back.
    assert client.slots.in_use == 0


async def test_failed_prompt_is_recorded(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A prompt the server fails is recorded failed with its reason; the others succeed."""
    async with InMemoryJournal() as journal:
        result = await Batch(client, journal, tmp_path).run(_items("fine", "please FAIL", "ok"))
    assert (result.succeeded, result.failed) == (2, 1)
    assert not result.ok
    failed = result.entries[1]
    assert failed.status == "failed"
    assert failed.task_id is not None
    assert failed.error == "content risk control"
    assert not (tmp_path / "item-1.mp4").exists()


async def test_rerun_of_finished_batch_submits_nothing(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A second run over a finished journal sends no create and downloads nothing again."""
    items = _items("one", "two", "please FAIL")
    async with await SqliteJournal.open(tmp_path / "journal.sqlite3") as journal:
        first = await Batch(client, journal, tmp_path).run(items)
    creates = server.stats.routes["create"]
    downloads = len(server.requests_to("cdn"))
    async with await SqliteJournal.open(tmp_path / "journal.sqlite3") as journal:
        second = await Batch(client, journal, tmp_path).run(items)
    assert server.stats.routes["create"] == creates == 3
    assert len(server.requests_to("cdn")) == downloads
    assert [e.status for e in second.entries] == [e.status for e in first.entries]
    assert (second.succeeded, second.failed) == (2, 1)


async def test_rerun_downloads_again_when_file_is_gone(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A downloaded entry whose file vanished is fetched again, never submitted again."""
    items = _items("one")
    async with InMemoryJournal() as journal:
        first = await Batch(client, journal, tmp_path).run(items)
        first.files[0].unlink()
        second = await Batch(client, journal, tmp_path).run(items)
    assert second.ok
    assert _is_mp4(second.files[0])
    assert server.stats.routes["create"] == 1


async def test_changed_input_is_refused(client: kling.KlingClient, tmp_path: Path) -> None:
    """A key whose request changed since the journal recorded it stops the run before sending."""
    async with InMemoryJournal() as journal:
        await Batch(client, journal, tmp_path).run(_items("one"))
        with pytest.raises(kling.ConfigurationError, match="different request"):
            await Batch(client, journal, tmp_path).run(_items("another"))


async def test_invalid_item_is_refused_before_sending(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """Limits are checked for every item first; nothing is sent when one is over."""
    items = [*_items("fine"), ("long", kling.TextToVideo(prompt="x" * 501))]
    async with InMemoryJournal() as journal:
        with pytest.raises(kling.ConfigurationError, match=r"'long'.*prompt"):
            await Batch(client, journal, tmp_path).run(items)
        assert await journal.entries() == []
    assert server.requests == []


async def test_resume_after_crash_between_intent_and_answer(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    """The create landed but its answer was lost: uncertain first, then adopted, never resent."""
    untrusting = attrs.evolve(kling.local_emulator(server.url), trust_not_found=False)
    items = _items("lost answer")
    journal_path = tmp_path / "journal.sqlite3"
    server.faults.next_create("drop_after_create")
    # No retry budget: the dropped answer is looked up at once. The look-up itself fails too
    # (another injected fault), so the client cannot tell whether the task exists.
    server.faults.next_query("503")
    async with (
        kling.KlingClient(
            api_key=API_KEY,
            provider=untrusting,
            retry=attrs.evolve(FAST_RETRY, max_retries=0),
            poll=FAST_POLL,
        ) as client,
        await SqliteJournal.open(journal_path) as journal,
    ):
        first = await Batch(client, journal, tmp_path).run(items)
    entry = first.entries[0]
    assert entry.status == "uncertain"
    assert entry.task_id is None
    assert first.uncertain == 1
    assert not first.ok
    assert server.create_counts[entry.external_task_id] == 1

    async with (
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=FAST_POLL,
        ) as client,
        await SqliteJournal.open(journal_path) as journal,
    ):
        second = await Batch(client, journal, tmp_path).run(items)
        assert client.slots.in_use == 0
    again = second.entries[0]
    assert second.ok
    assert again.external_task_id == entry.external_task_id
    assert again.task_id == server.task_by_external_id(entry.external_task_id).task_id  # type: ignore[union-attr]
    assert server.create_counts[entry.external_task_id] == 1
    assert server.stats.routes["create"] == 1
    assert _is_mp4(second.files[0])


async def test_resume_pending_intent_is_adopted(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """Killed after the create reached the server but before the answer was journaled."""
    request = kling.TextToVideo(prompt="killed mid-flight")
    async with InMemoryJournal() as journal:
        entry = await journal.record_intent(
            "k1",
            external_task_id="ext-k1",
            kind="text2video",
            request_json='{"duration":"5","prompt":"killed mid-flight"}',
        )
        # The create the crashed process sent, answered to nobody.
        await client.submit(request, external_task_id=entry.external_task_id)
        creates = server.stats.routes["create"]
        result = await Batch(client, journal, tmp_path).run([("k1", request)])
    assert result.ok
    assert server.stats.routes["create"] == creates
    assert server.create_counts["ext-k1"] == 1


async def test_resume_pending_intent_never_sent_is_submitted(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """Killed after the intent but before the create left: the trusted look-up says none."""
    request = kling.TextToVideo(prompt="never sent")
    async with InMemoryJournal() as journal:
        await journal.record_intent(
            "k1",
            external_task_id="ext-never",
            kind="text2video",
            request_json='{"duration":"5","prompt":"never sent"}',
        )
        result = await Batch(client, journal, tmp_path).run([("k1", request)])
    assert result.ok
    assert server.create_counts["ext-never"] == 1


async def test_adopted_running_tasks_hold_slots(server: FakeKlingServer, tmp_path: Path) -> None:
    """Tasks still running from an earlier run count against max_active_tasks, then free up."""
    items = _items("a", "b", "c")
    async with (
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=FAST_POLL,
            max_active_tasks=2,
        ) as client,
        InMemoryJournal() as journal,
    ):
        for key, request in items[:2]:
            entry = await journal.record_intent(
                key,
                external_task_id=f"ext-{key}",
                kind="text2video",
                request_json=f'{{"duration":"5","prompt":"{request.prompt}"}}',
            )
            task = await client.submit(request, external_task_id=entry.external_task_id)
            await journal.record_created(key, task.id)
    # A new client (a new process): its pool starts empty.
    async with (
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=FAST_POLL,
            max_active_tasks=2,
        ) as client,
    ):
        result = await Batch(client, journal, tmp_path).run(items)
        assert client.slots.in_use == 0
    assert result.ok
    assert server.stats.routes["create"] == 3


def test_file_names_are_safe_and_distinct() -> None:
    """Keys become plain file names; keys that clean up alike still get distinct files."""
    assert file_name_for_key("line-0001") == "line-0001.mp4"
    assert "/" not in file_name_for_key("../etc/passwd")
    assert not file_name_for_key("../x").startswith(".")
    assert file_name_for_key("a/b") != file_name_for_key("a_b")


async def test_timeout_leaves_tasks_for_a_rerun(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """At the batch deadline unfinished tasks stay journaled; the next run picks them up."""
    server.timeline = Timeline(queue_seconds=3600, processing_seconds=3600)
    items = _items("slow one", "slow two")
    async with InMemoryJournal() as journal:
        first = await Batch(client, journal, tmp_path, timeout=0.3).run(items)
        assert first.timed_out
        assert (first.incomplete, first.succeeded) == (2, 0)
        assert [entry.status for entry in first.entries] == ["created", "created"]
        for entry in first.entries:
            assert entry.task_id is not None
            server.set_status(entry.task_id, "succeed")
        second = await Batch(client, journal, tmp_path).run(items)
    assert second.ok
    assert not second.timed_out
    assert server.stats.routes["create"] == 2


async def test_the_journal_keeps_no_callback_token_and_a_new_token_is_no_new_input(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """A request carrying a receiver's callback URL by hand: the journal file holds the URL
    with its token hidden, and a rerun with another receiver's token resumes, not refuses."""

    def items(receiver: kling.WebhookReceiver) -> list[tuple[str, kling.TaskRequest]]:
        url = receiver.callback_url("http://127.0.0.1:9/hook")
        return [("k", kling.TextToVideo(prompt="a cat", callback_url=url))]

    first, second = (kling.WebhookReceiver() for _ in range(2))
    journal_path = tmp_path / "batch.journal"
    for receiver in (first, second):
        async with await SqliteJournal.open(journal_path) as journal:
            result = await Batch(client, journal, tmp_path / "out").run(items(receiver))
        assert result.ok
    tokens = [r.callback_url("http://h/").rsplit("=", 1)[1].encode() for r in (first, second)]
    assert _files_holding(tmp_path, tokens) == []
    assert _files_holding(tmp_path, [b"token=<redacted>"]) != []
    assert server.stats.routes["create"] == 1


def _files_holding(folder: Path, needles: list[bytes]) -> list[Path]:
    """The files directly in *folder* (the journal and its WAL) holding any of *needles*."""
    return [
        path
        for path in folder.iterdir()
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    ]


async def test_a_request_with_a_token_of_its_own_resumes(
    client: kling.KlingClient, tmp_path: Path
) -> None:
    """Only a callback URL's token is hidden: a signed image URL's ``token=`` is part of the
    request, kept as it is, and the same input runs again over the same journal."""
    image = "https://cdn.test/cat.png?token=abc"
    items: list[tuple[str, kling.TaskRequest]] = [("k", kling.ImageToVideo(image=image))]
    for _ in range(2):
        async with await SqliteJournal.open(tmp_path / "batch.journal") as journal:
            result = await Batch(client, journal, tmp_path / "out").run(items)
        assert result.ok
        assert image in result.entries[0].request_json
