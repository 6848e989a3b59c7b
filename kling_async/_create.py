"""The create protocol: one request makes at most one task, and never an unseen second one.

A create is the one paid request, and the one that must not be repeated blindly: a timeout or a
dropped connection after sending says nothing about whether the task exists. The protocol:

* holds a task slot for the request, and gives it back (re-queueing) when the server answers
  1303 (too many tasks in flight on the account): a 1303 definitely created nothing;
* after an *ambiguous* failure (sent, no readable answer; a 5xx), looks the task up by its
  ``external_task_id`` before anything else, and only a "none" that Kling itself gave
  (code 1203) licenses sending again;
* answers with a small result, [`Created`][kling_async._create.Created],
  [`Refused`][kling_async._create.Refused] or [`Uncertain`][kling_async._create.Uncertain], that
  the client's ``submit`` raises from and that ``Batch`` records in its journal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from . import wire
from ._by_ids import find_by_external_ids
from ._slot_scope import SlotHold, slot_scope, slot_weight
from ._urls import journal_json
from .clock import Clock
from .errors import (
    APIConnectionError,
    APIError,
    BadRequestError,
    ConcurrencyLimitError,
    KlingError,
    NotFoundError,
    RateLimitError,
    ResponseParseError,
    ServerError,
    SubmitUncertainError,
)
from .events import Event, Retrying
from .logfields import task_fields
from .models import Task, TaskKind, TaskRequest
from .providers import ExternalIdLookup, Provider
from .retry import RetryPolicy
from .standard import create_path, standard_body

_TRANSIENT = (APIConnectionError, ServerError, RateLimitError, ResponseParseError)
"""Failures after which the create may be tried again (once the look-up allows)."""

__all__ = [
    "CreateOutcome",
    "CreateProtocol",
    "Created",
    "Refused",
    "Uncertain",
    "canonical_json",
    "id_taken",
]

logger = logging.getLogger("kling_async.client")


_Call = Callable[..., Awaitable[Any]]
"""The request pipeline's ``call(method, path, *, json=, params=, retry=)``."""


@attrs.frozen
class Created:
    """The task exists: the create's answer, or the look-up after an ambiguous failure.

    Attributes:
        task: the task.
        hold: the task slots it holds (the caller binds them to the task).
        found: ``True`` when the task was found by look-up, not read from the create's answer.
    """

    task: Task
    hold: SlotHold
    found: bool = False


@attrs.frozen
class Refused:
    """No task was created: the server refused the request, or proved that none exists.

    Attributes:
        error: why (the server's answer, or the last transient failure).
    """

    error: KlingError


@attrs.frozen
class Uncertain:
    """A task may exist and the client could not find out; sending again might pay twice.

    Attributes:
        error: the error ``submit`` raises, with the external id to look for later.
    """

    error: SubmitUncertainError


CreateOutcome = Created | Refused | Uncertain
"""What one create came to."""


class CreateProtocol:
    """Create tasks for one client (strictly private: use ``KlingClient.submit`` or ``Batch``).

    Args:
        call: the request pipeline's ``call``.
        provider: how external ids are looked up and whether its "not found" is trusted.
        retry: the retry policy (and ``max_concurrency_wait``).
        clock: where waits happen.
        acquire_hold: waits for ``(scope, weight)`` slots (the client's, which refreshes tasks
            while it waits).
        per_model: whether each resource pack and model has its own pool (``slot_scope``).
        emit: the client's event sink.
    """

    def __init__(
        self,
        *,
        call: _Call,
        provider: Provider,
        retry: RetryPolicy,
        clock: Clock,
        acquire_hold: Callable[[str, int], Awaitable[SlotHold]],
        per_model: bool,
        emit: Callable[[Event], None],
    ) -> None:
        self._call = call
        self.provider = provider
        self._retry = retry
        self._clock = clock
        self._acquire_hold = acquire_hold
        self.per_model = per_model
        self._emit = emit

    async def create(self, kind: TaskKind, body: dict[str, Any], ext_id: str) -> CreateOutcome:
        """Create one task from a ready request *body* carrying *ext_id*.

        A [`Created`][kling_async._create.Created] outcome hands its slots to the caller; any
        other outcome has released them.
        """
        scope = slot_scope(kind, body, per_model=self.per_model)
        weight = slot_weight(body)
        path, standard = kind.path, self.provider.is_standard(kind.name)
        if standard:
            # Translated before a slot is taken: a request the new API cannot express fails
            # here, naming the field, with nothing sent.
            path, body = create_path(kind.name, body), standard_body(body)
        hold = await self._acquire_hold(scope, weight)
        state = _Creating(kind, body, ext_id, hold, path, standard, scope, weight)
        try:
            outcome = await self._create(state)
        except BaseException:
            await state.hold.release()
            raise
        if not isinstance(outcome, Created):
            await state.hold.release()
        return outcome

    async def _create(self, state: _Creating) -> CreateOutcome:
        """Send the create until it is answered, retrying transient failures (not 1303s:
        those re-queue inside each attempt)."""
        kind = state.kind
        policy = self._retry

        def retryable(error: BaseException, retries: int) -> bool:
            return isinstance(error, _TRANSIENT) and policy.should_retry(error, retries)

        def on_retry(error: BaseException, attempt: int, delay: float) -> None:
            self._emit(
                Retrying(operation=f"POST {state.path}", attempt=attempt, delay=delay, error=error)
            )

        try:
            async for attempt in policy.attempts(
                self._clock, should_retry=retryable, on_retry=on_retry
            ):
                with attempt:
                    return await self._attempt(state, attempt.retries_done)
        except _TRANSIENT as error:
            # Out of retries: a create that may have landed is looked up one last time.
            if not (_ambiguous(error) or state.maybe_created):
                return Refused(error)
            found = await self.lookup_after_ambiguous(kind, state.ext_id, state.answer)
            if found is not None:
                return _found(found, state.hold)
            message = f"create failed ({error}) and retries are exhausted"
            return Uncertain(_uncertain(message, state.ext_id, kind, state.answer, error))
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def _attempt(self, state: _Creating, retries: int) -> CreateOutcome:
        """One attempt: its answer, or a transient error raised for the retry loop to judge."""
        kind, ext_id = state.kind, state.ext_id
        try:
            data = await self._post(state)
            return Created(_parse_created(data, kind), state.hold)
        except ConcurrencyLimitError as exc:
            return Refused(exc)  # re-queued until max_concurrency_wait passed
        except BadRequestError as exc:
            if state.maybe_created and id_taken(exc):
                # Our earlier attempt did land: the id is taken by the task we created.
                found = await self.lookup_after_ambiguous(kind, ext_id, state.answer)
                if found is not None:
                    return _found(found, state.hold)
                # The look-up said "none", and the server says the id is in use: the task
                # exists where the look-up cannot see it. Refusing would lose a paid task.
                message = "create landed earlier (the server says its external id is taken)"
                return Uncertain(
                    _uncertain(
                        f"{message} but no look-up finds it", ext_id, kind, state.answer, exc
                    )
                )
            return Refused(exc)
        except _TRANSIENT as exc:
            if isinstance(exc, ResponseParseError) and exc.excerpt:
                # The server accepted the create (2xx) in words we cannot read: keep them.
                state.answer = exc.excerpt
            if _ambiguous(exc) and self._retry.should_retry(exc, retries):
                # Look before sending again: the failed attempt may have made the task.
                state.maybe_created = True
                found = await self.lookup_after_ambiguous(kind, ext_id, state.answer)
                if isinstance(found, Task):
                    logger.info(
                        "create of %s was ambiguous; adopted task %s",
                        ext_id,
                        found.id,
                        extra=task_fields(found),
                    )
                if found is not None:
                    return _found(found, state.hold)
            raise
        except APIError as exc:
            return Refused(exc)

    async def _post(self, state: _Creating) -> Any:
        """Send the create, re-queueing after each 1303 until a slot and the server agree."""
        requeues = 0
        first_1303: float | None = None
        while True:
            try:
                return await self._call(
                    "POST", state.path, json=state.body, retry=False, standard=state.standard
                )
            except ConcurrencyLimitError as exc:  # noqa: PERF203 - a re-queue, not a hot loop
                # Definitely not created; someone else holds slots on this account.
                first_1303 = self._clock.now() if first_1303 is None else first_1303
                requeued = await self._requeue(exc, requeues, first_1303, state)
                if requeued is None:
                    raise
                state.hold = requeued
                requeues += 1

    async def _requeue(
        self, exc: ConcurrencyLimitError, retries: int, first_1303: float, state: _Creating
    ) -> SlotHold | None:
        """Give the slots back after a 1303 and wait for others; ``None`` once the cap passed."""
        # Shrink first, while this submission still holds its slot: a slot released into the
        # old limit would go straight to the next waiter, to meet a 1303 of its own.
        held = len(state.hold.leases)
        if held == 1:  # the one-slot call every pool has always taken
            await state.hold.pool.on_concurrency_limited()
        else:
            await state.hold.pool.on_concurrency_limited(held=held)
        limit = self._retry.max_concurrency_wait
        if limit is not None and self._clock.now() - first_1303 >= limit:
            return None
        # Released twice does nothing: create() may release it again on the way out.
        await state.hold.release()
        await self._clock.sleep(self._retry.concurrency_delay(min(retries, 4), exc.retry_after))
        # The slot limit just shrank to what is running: waiting for a slot is part of the
        # wait that the cap bounds.
        remaining = None if limit is None else max(0.0, first_1303 + limit - self._clock.now())
        with self._clock.deadline(remaining):
            return await self._acquire_hold(state.scope, state.weight)
        return None

    async def lookup_after_ambiguous(
        self, kind: TaskKind, ext_id: str, answer: str | None = None
    ) -> Task | Uncertain | None:
        """Find the task an ambiguous create may have made.

        Returns the task, ``None`` when none can exist (Kling's own "not found" on a provider
        whose "not found" is trusted), or an [`Uncertain`][kling_async._create.Uncertain]
        outcome.
        """
        try:
            found, absent = await self.find_created(ext_id, kind)
        except (APIError, APIConnectionError, ResponseParseError) as exc:
            message = f"create may have succeeded and the look-up failed ({exc})"
            return Uncertain(_uncertain(message, ext_id, kind, answer, exc))
        except SubmitUncertainError as exc:
            return Uncertain(exc)
        if found is None and not absent:
            return Uncertain(
                _uncertain(
                    f"create may have succeeded; provider {self.provider.name!r} cannot confirm "
                    "that no task exists",
                    ext_id,
                    kind,
                    answer,
                    None,
                )
            )
        return found

    async def find_created(self, ext_id: str, kind: TaskKind) -> tuple[Task | None, bool]:
        """The task made with *ext_id*, and whether none can exist for sure.

        Raises:
            SubmitUncertainError: the provider has no look-up form configured.
        """
        found, proven = await self.find_external(ext_id, kind)
        return found, found is None and proven and self.provider.trust_not_found

    async def find_external(self, ext_id: str, kind: TaskKind) -> tuple[Task | None, bool]:
        """The task, and whether a "none" came from Kling itself (its 1203), not a gateway.

        A gateway's own "task_not_exist" only says that *it* knows no task by that id: new-api,
        for one, cannot look tasks up by external id at all.

        Raises:
            SubmitUncertainError: the provider has no look-up form configured.
        """
        if self.provider.is_standard(kind.name):
            found = await find_by_external_ids(self._call, ext_id, kind)
            if found is not None:
                return found, True
            # Whether /tasks also shows tasks made on the legacy paths (a journal written
            # before the switch to the new API) is unconfirmed: ask there too before a "none"
            # may license sending again.
        lookup = self.provider.external_lookup
        if lookup is ExternalIdLookup.NONE:
            raise SubmitUncertainError(
                "this provider has no external-id look-up",
                external_task_id=ext_id,
                kind=kind.name,
            )
        forms = _EVERY_FORM if lookup is ExternalIdLookup.EVERY else (lookup,)
        proven = True
        failure: KlingError | None = None
        for form in forms:
            try:
                found, said_none = await self._look_up(form, ext_id, kind)
            except (APIError, APIConnectionError, ResponseParseError) as exc:
                if len(forms) == 1:
                    raise
                # A form this server does not serve may answer anything: the next may find it.
                failure, proven = exc, False
                continue
            if found is not None:
                return found, True
            proven = proven and said_none
        if failure is not None and not proven:
            raise failure
        return None, proven

    async def _look_up(
        self, form: ExternalIdLookup, ext_id: str, kind: TaskKind
    ) -> tuple[Task | None, bool]:
        """One look-up form's answer: the task, and whether its "none" came from Kling itself."""
        params: dict[str, str] | None = None
        if form is ExternalIdLookup.QUERY:
            path, params = kind.path, {"external_task_id": ext_id}
        else:
            path = f"{kind.path}/{ext_id}"
            if form is ExternalIdLookup.FLAG:
                params = {"external_task_id": "true"}
        try:
            data = await self._call("GET", path, params=params)
        except NotFoundError as exc:
            return None, isinstance(exc.code, int)
        if isinstance(data, list):
            # Strict: a match left out would read as "never created", paid for twice.
            tasks = wire.parse_task_list(data, kind, where=f"GET {path}", strict=True)
            matches = [task for task in tasks if task.external_task_id == ext_id]
            return (matches[0] if matches else None), True
        task = wire.parse_task(data, kind, where=f"GET {path}")
        if task.external_task_id not in (None, ext_id):
            # The id slot read as a task id of someone else's task: not the one we made.
            return None, False
        return task, True


_EVERY_FORM = (ExternalIdLookup.PATH, ExternalIdLookup.FLAG, ExternalIdLookup.QUERY)
"""The forms ``ExternalIdLookup.EVERY`` tries, in order: public clients use all three."""


def canonical_json(request: TaskRequest) -> str:
    """The request's create body as a journal keeps and compares it between runs (canonical
    JSON, the callback URL's token hidden: see [`journal_json`][kling_async._urls.journal_json])."""
    return journal_json(wire.request_body(request))


def id_taken(error: BadRequestError) -> bool:
    """Whether the server refused a create because its ``external_task_id`` is in use."""
    return "external_task_id" in error.message


def _found(found: Task | Uncertain, hold: SlotHold) -> Created | Uncertain:
    return found if isinstance(found, Uncertain) else Created(found, hold, found=True)


class _Creating:
    """One create on its way: what is sent, the slots it holds, and what it learnt so far."""

    __slots__ = (
        "answer",
        "body",
        "ext_id",
        "hold",
        "kind",
        "maybe_created",
        "path",
        "scope",
        "standard",
        "weight",
    )

    def __init__(
        self,
        kind: TaskKind,
        body: dict[str, Any],
        ext_id: str,
        hold: SlotHold,
        path: str,
        standard: bool,
        scope: str,
        weight: int,
    ) -> None:
        self.kind = kind
        self.body = body
        self.path = path
        self.standard = standard
        self.ext_id = ext_id
        # Replaced while a 1303 re-queues the create.
        self.hold = hold
        self.scope = scope
        self.weight = weight
        self.maybe_created = False
        # An accepted create's unreadable answer, kept for the uncertain error.
        self.answer: str | None = None


def _uncertain(
    message: str, ext_id: str, kind: TaskKind, answer: str | None, cause: BaseException | None
) -> SubmitUncertainError:
    error = SubmitUncertainError(message, external_task_id=ext_id, kind=kind.name, response=answer)
    # As ``raise ... from cause`` would: the chain shows what failed.
    error.__cause__ = cause
    return error


def _ambiguous(error: KlingError) -> bool:
    """Whether a failed create may nevertheless have created a task."""
    if isinstance(error, APIConnectionError):
        return error.maybe_sent
    if isinstance(error, ResponseParseError):
        # The server answered, so it saw the request; the answer just cannot be read.
        return True
    # A 5xx came from a server that may have recorded the task before failing; a 429 did not.
    return isinstance(error, ServerError)


def _parse_created(data: Any, kind: TaskKind) -> Task:
    """Read a create's answer; an unreadable one keeps its text for the uncertain error.

    An answer with the new task's id and no status (the new-standard API's create answer is
    not shown in full) is a task just submitted.
    """
    try:
        if (
            isinstance(data, dict)
            and any(data.get(key) not in (None, "") for key in ("task_id", "id"))
            and not any(key in data for key in ("task_status", "status", "data"))
        ):
            where = f"POST {kind.path}"
            task = wire.parse_task({**data, "task_status": "submitted"}, kind, where=where)
            return attrs.evolve(task, raw=dict(data))
        return wire.parse_task(data, kind, where=f"POST {kind.path}")
    except ResponseParseError as exc:
        if not exc.excerpt:
            exc.excerpt = json.dumps(data, default=str)[:500]
        raise
