"""Every exception kling_async raises, in one place.

The hierarchy::

    KlingError
    ├── ConfigurationError          bad client set-up (no API key, bad base URL); also ValueError
    ├── InvalidRequestError         the request itself is wrong; never retried
    │   ├── ValidationError         found by the client, before any network call; also ValueError
    │   └── BadRequestError         the server said so (codes 1200-1203, HTTP 400)      [APIError]
    │       ├── NotFoundError       1203 / HTTP 404: no such task or resource
    │       └── ContentPolicyError  1300 / 1301: platform or content-safety policy
    ├── APIError                    the server answered with an error (.status, .code, .request_id)
    │   ├── AuthenticationError     1000-1004 / HTTP 401
    │   ├── AccountError            1100-1102: account exception, arrears, resource pack used up
    │   ├── PermissionDeniedError   1103, 1304 / HTTP 403: model, API or IP not allowed
    │   ├── BadRequestError         (see above)
    │   ├── RateLimitError          1302 / HTTP 429: too many requests; retried with back-off
    │   │   └── ConcurrencyLimitError  1303: too many tasks in flight for the account
    │   │       └── GatewaySaturatedError  a gateway's upstream is at capacity (new-api's 429)
    │   └── ServerError             5000-5002 / HTTP 5xx; retried
    ├── APIConnectionError          no usable answer: connection refused, reset or dropped
    │   └── APITimeoutError         the request timed out
    ├── PartialSubmitError          some of many submissions failed; the created tasks are kept
    ├── SubmitUncertainError        a create failed ambiguously and the client could not tell
    │                               whether a task was created (carries external_task_id)
    ├── ResponseParseError          the server's answer could not be understood
    │   └── MissingResultError      a task reported success but carried no usable result
    ├── TaskError
    │   ├── TaskFailedError         the task finished with status ``failed`` (.task)
    │   └── WaitTimeoutError        the deadline passed before the task(s) finished (.pending)
    ├── DownloadError               a result could not be downloaded and verified
    ├── StorageError                a file could not be written: disk full, file too large,
    │                               read-only or missing location (.path, .reason)
    ├── JournalLockedError          another process is using the same journal (.path)
    ├── JournalError                the journal's database failed (PostgreSQL journal)
    │   ├── JournalUnavailableError the database stayed unreachable
    │   └── LeaseLostError          another worker took over a batch item
    ├── StoreUnavailableError       the shared store (Redis) did not answer in time; no create
    │                               was sent without its task slot
    └── WebhookVerificationError    a signed callback's signature is bad, missing or stale

Foreign exceptions (aiohttp, cattrs, json) are translated into this tree in exactly one place each:
the transport for aiohttp, ``kling_async.wire`` (with its private ``_envelope`` and
``_gateway_layers``) for parsing. No exception text ever contains the
API key: messages are built from server-provided text, field names and ids only.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Task

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AccountError",
    "AuthenticationError",
    "BadRequestError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "ContentPolicyError",
    "DownloadError",
    "GatewaySaturatedError",
    "InvalidRequestError",
    "JournalError",
    "JournalUnavailableError",
    "KlingError",
    "LeaseLostError",
    "MissingResultError",
    "NotFoundError",
    "PartialSubmitError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseParseError",
    "ServerError",
    "StorageError",
    "JournalLockedError",
    "StoreUnavailableError",
    "SubmitUncertainError",
    "TaskError",
    "TaskFailedError",
    "ValidationError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "error_for_response",
]


class KlingError(Exception):
    """Root of every exception raised by kling_async."""


class ConfigurationError(KlingError, ValueError):
    """The client is set up wrongly: a missing API key, an unknown provider, a bad URL."""


class InvalidRequestError(KlingError):
    """The request is wrong and sending it again will not help."""


class ValidationError(InvalidRequestError, ValueError):
    """A request failed client-side validation; nothing was sent.

    Attributes:
        field: the name of the offending field, as it appears on the wire (e.g. ``"prompt"``,
            ``"camera_control.config"``).
        reason: what is wrong and what is accepted, without the field name.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class APIError(KlingError):
    """The server answered, and the answer is an error.

    Attributes:
        status: the HTTP status code.
        code: Kling's business code from the body (``1303``), or a gateway's code string, or ``None``.
        message: the server's message.
        request_id: the server's request id, when it gave one; quote it to support.
        retry_after: seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        parts = [f"HTTP {status}"]
        if code is not None:
            parts.append(f"code {code}")
        text = f"{message} ({', '.join(parts)}"
        if request_id:
            text += f", request_id {request_id}"
        super().__init__(text + ")")


class AuthenticationError(APIError):
    """Credentials were missing, invalid, not yet valid or expired (1000-1004, HTTP 401)."""


class AccountError(APIError):
    """The account cannot run tasks: suspended, in arrears, or out of resource packs (1100-1102)."""


class PermissionDeniedError(APIError):
    """The key may not use this API, model or source IP (1103, 1304, HTTP 403)."""


class BadRequestError(APIError, InvalidRequestError):
    """The server rejected the request's parameters (1200-1203, HTTP 400)."""


class NotFoundError(BadRequestError):
    """The task or resource does not exist (1203, HTTP 404)."""


class ContentPolicyError(BadRequestError):
    """The prompt or input tripped a platform or content-safety policy (1300, 1301)."""


class RateLimitError(APIError):
    """Requests are coming too fast (1302, HTTP 429). The client backs off and retries."""


class ConcurrencyLimitError(RateLimitError):
    """The account has too many tasks in flight (1303). Submissions wait for a free slot."""


class GatewaySaturatedError(ConcurrencyLimitError):
    """A gateway says its upstream capacity is used up ("upstream saturated, try later").

    new-api answers every upstream 429 this way. It is about task capacity, not about how fast
    this client sends requests, so it feeds the task-slot logic like a 1303 (a create waits and
    re-queues) and never slows the shared request rate.
    """


class ServerError(APIError):
    """The server failed (5000-5002, HTTP 5xx). Retried with back-off."""


class APIConnectionError(KlingError):
    """No usable answer came back: the connection failed, was reset, or the reply was cut off.

    Attributes:
        maybe_sent: ``True`` when the request may have reached the server before the failure, so a
            create may have happened. ``False`` when the connection never opened.
    """

    def __init__(self, message: str, *, maybe_sent: bool = True) -> None:
        self.maybe_sent = maybe_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class SubmitUncertainError(KlingError):
    """A create failed ambiguously and the client could not find out whether a task exists.

    The task may or may not have been created (and billed). Look it up later by
    ``external_task_id`` before submitting the same input again.

    Attributes:
        external_task_id: the id the create carried.
        kind: the task kind's name (``"text2video"``).
        response: the start of the server's answer when it accepted the create (2xx) but the
            answer could not be read; ``None`` when no answer came back.
    """

    def __init__(
        self, message: str, *, external_task_id: str, kind: str, response: str | None = None
    ) -> None:
        self.external_task_id = external_task_id
        self.kind = kind
        self.response = response
        super().__init__(f"{message} (external_task_id {external_task_id!r}, kind {kind})")


class PartialSubmitError(KlingError):
    """Some submissions of a batch failed. The tasks that were created are not lost.

    Attributes:
        tasks: the tasks that were created, in request order.
        errors: ``(index, error)`` for each request that failed, by its position in the input.
    """

    def __init__(self, *, tasks: Sequence[Task], errors: Sequence[tuple[int, KlingError]]) -> None:
        self.tasks = tuple(tasks)
        self.errors = tuple(errors)
        first_index, first = self.errors[0]
        uncertain = sum(isinstance(error, SubmitUncertainError) for _, error in self.errors)
        created = f"{len(self.tasks)} tasks were created"
        if uncertain:
            # Never say "0 created" when the server may have created (and billed) them.
            created += (
                f" and {uncertain} may have been: look them up by external_task_id "
                "before submitting them again"
            )
        super().__init__(
            f"{len(self.errors)} of {len(self.tasks) + len(self.errors)} submissions failed "
            f"(first: request {first_index}: {first}); {created}"
        )

    @property
    def uncertain(self) -> tuple[SubmitUncertainError, ...]:
        """The failures after which a task may nevertheless exist (and be billed)."""
        return tuple(error for _, error in self.errors if isinstance(error, SubmitUncertainError))


class ResponseParseError(KlingError):
    """The server's answer could not be understood.

    Attributes:
        where: what was being read (``"GET videos/text2video/123"``).
        excerpt: the start of the body, for debugging.
    """

    def __init__(self, message: str, *, where: str = "", excerpt: str = "") -> None:
        self.where = where
        self.excerpt = excerpt
        text = f"{where}: {message}" if where else message
        if excerpt:
            text += f" (body starts: {excerpt!r})"
        super().__init__(text)


class MissingResultError(ResponseParseError):
    """A task reported success, yet its answer holds no result with a usable URL.

    Raised instead of handing back a "succeeded" task with nothing to download.

    Attributes:
        task_id: the task's id.
        raw: the parsed answer, as the server sent it.
    """

    def __init__(self, message: str, *, task_id: str, raw: object, where: str = "") -> None:
        self.task_id = task_id
        self.raw = raw
        super().__init__(f"task {task_id} succeeded but {message}", where=where)


class TaskError(KlingError):
    """Something went wrong with a task after it was created."""


class TaskFailedError(TaskError):
    """The task ended with status ``failed``.

    Attributes:
        task: the failed [`Task`][kling_async.models.Task]; ``task.status_msg`` says why.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        reason = task.status_msg or "no reason given"
        super().__init__(f"task {task.id} ({task.kind.name}) failed: {reason}")


class WaitTimeoutError(TaskError, TimeoutError):
    """The deadline passed before the task(s) finished.

    The tasks keep running on the server; their ids are in ``pending`` so you can wait again.

    Attributes:
        pending: the tasks still unfinished, as last seen.
    """

    def __init__(self, message: str, pending: Sequence[Task] = ()) -> None:
        self.pending = tuple(pending)
        super().__init__(message)


class DownloadError(KlingError):
    """A result file could not be downloaded and verified."""


class StorageError(KlingError):
    """A file could not be written or created: the disk is full (ENOSPC), a file-size limit was
    hit (EFBIG), or the location is read-only, missing or not a folder.

    Unlike [`DownloadError`][kling_async.errors.DownloadError], retrying later in the same run cannot help, so a batch stops
    at the first one; everything recorded before it stays in the journal.

    Attributes:
        path: the file or folder that could not be written.
        reason: the operating system's (or SQLite's) reason, e.g.
            ``"No space left on device (ENOSPC)"``.
    """

    def __init__(self, path: str, reason: str, *, action: str = "cannot write") -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{action} {path}: {reason}")

    @classmethod
    def from_os_error(
        cls, path: str, error: OSError, *, action: str = "cannot write"
    ) -> StorageError:
        """Build one from an ``OSError``, naming its errno (``ENOSPC``) when it has one.

        Args:
            path: the file or folder concerned (the error's own file name is not always set).
            error: what the operating system raised.
            action: what could not be done, to start the message.

        Returns:
            the error, with a reason like ``"No space left on device (ENOSPC)"``.
        """
        reason = error.strerror or str(error) or type(error).__name__
        name = errno.errorcode.get(error.errno) if error.errno is not None else None
        if name:
            reason = f"{reason} ({name})"
        return cls(path, reason, action=action)


class JournalLockedError(KlingError):
    """Another process (or another open of it in this process) is using the journal.

    Two runs on one journal would download into the same files; the second refuses to start.

    Attributes:
        path: the journal file.
    """

    def __init__(self, path: str, holder: str | None = None) -> None:
        self.path = path
        who = f"process {holder}" if holder else "another process"
        super().__init__(
            f"journal {path} is in use by {who}; wait for that run to finish (or stop it) "
            "and run again"
        )


class WebhookVerificationError(KlingError):
    """A signed callback failed Standard-Webhooks verification (bad, missing or stale)."""


class JournalError(KlingError):
    """The journal's database failed: unreachable, or it refused the journal's statements."""


class JournalUnavailableError(JournalError):
    """The journal's database stayed unreachable for longer than the journal waits to reconnect."""


class LeaseLostError(JournalError):
    """A worker's lease on a batch item ran out and another worker took the item over.

    The write was not made: the item's new owner is in charge of it now.
    """

    def __init__(self, key: str, holder: str | None) -> None:
        self.key = key
        self.holder = holder
        super().__init__(f"lost the lease on {key!r}; now held by {holder or 'nobody'}")


class StoreUnavailableError(KlingError):
    """The store shared between processes (Redis) could not be reached or did not answer.

    Raised by a task-slot acquire that waited its whole allowance for the store: the create it
    guarded was not sent. The message names the operation and the store, never a password.
    """


_CODE_CLASSES: tuple[tuple[range, type[APIError]], ...] = (
    (range(1000, 1005), AuthenticationError),
    (range(1100, 1103), AccountError),
    (range(1103, 1104), PermissionDeniedError),
    (range(1203, 1204), NotFoundError),
    (range(1200, 1203), BadRequestError),
    (range(1300, 1302), ContentPolicyError),
    (range(1302, 1303), RateLimitError),
    (range(1303, 1304), ConcurrencyLimitError),
    (range(1304, 1305), PermissionDeniedError),
    # Not in the code table, but in the reference's list of codes never to retry (1100-1104):
    # an account matter, whatever HTTP status carries it (a 429 would read as a rate limit).
    (range(1104, 1105), AccountError),
    (range(5000, 5003), ServerError),
)


def _class_for_status(status: int) -> type[APIError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return BadRequestError
    return APIError


def error_for_response(
    *,
    status: int,
    code: int | str | None,
    message: str,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """Build the most specific [`APIError`][kling_async.errors.APIError] for an error answer.

    Kling's body ``code`` decides first, because HTTP 429 covers both retryable (1302, 1303) and
    final (1100-1102, 1304) cases; the HTTP status decides when there is no numeric code
    (CometAPI's ``{"error": {...}}`` envelope).

    Examples:
        >>> type(error_for_response(status=429, code=1303, message="parallel task over limit"))
        <class 'kling_async.errors.ConcurrencyLimitError'>
    """
    cls: type[APIError] | None = None
    if isinstance(code, int):
        for codes, candidate in _CODE_CLASSES:
            if code in codes:
                cls = candidate
                break
    if cls is None:
        cls = _class_for_status(status)
        # CometAPI marks malformed requests as 500 with code "invalid_request": not retryable.
        if cls is ServerError and code == "invalid_request":
            cls = BadRequestError
    return cls(message, status=status, code=code, request_id=request_id, retry_after=retry_after)
