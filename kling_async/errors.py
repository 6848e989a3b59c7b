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
    │   └── ServerError             5000-5002 / HTTP 5xx; retried
    ├── APIConnectionError          no usable answer: connection refused, reset or dropped
    │   └── APITimeoutError         the request timed out
    ├── PartialSubmitError          some of many submissions failed; the created tasks are kept
    ├── SubmitUncertainError        a create failed ambiguously and the client could not tell
    │                               whether a task was created (carries external_task_id)
    ├── ResponseParseError          the server's answer could not be understood
    ├── TaskError
    │   ├── TaskFailedError         the task finished with status ``failed`` (.task)
    │   └── WaitTimeoutError        the deadline passed before the task(s) finished (.pending)
    ├── DownloadError               a result could not be downloaded and verified
    └── WebhookVerificationError    a signed callback's signature is bad, missing or stale

Foreign exceptions (aiohttp, cattrs, json) are translated into this tree in exactly one place each:
the transport for aiohttp, :mod:`kling_async.wire` for parsing. No exception text ever contains the
API key: messages are built from server-provided text, field names and ids only.
"""

from __future__ import annotations

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
    "InvalidRequestError",
    "KlingError",
    "NotFoundError",
    "PartialSubmitError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseParseError",
    "ServerError",
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
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
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
    """

    def __init__(self, message: str, *, external_task_id: str, kind: str) -> None:
        self.external_task_id = external_task_id
        self.kind = kind
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
        super().__init__(
            f"{len(self.errors)} of {len(self.tasks) + len(self.errors)} submissions failed "
            f"(first: request {first_index}: {first}); {len(self.tasks)} tasks were created"
        )


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


class TaskError(KlingError):
    """Something went wrong with a task after it was created."""


class TaskFailedError(TaskError):
    """The task ended with status ``failed``.

    Attributes:
        task: the failed :class:`~kling_async.Task`; ``task.status_msg`` says why.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        reason = task.status_msg or "no reason given"
        super().__init__(f"task {task.id} ({task.kind.name}) failed: {reason}")


class WaitTimeoutError(TaskError, TimeoutError):
    """The deadline passed before the task(s) finished.

    The tasks keep running on the server; their ids are in :attr:`pending` so you can wait again.

    Attributes:
        pending: the tasks still unfinished, as last seen.
    """

    def __init__(self, message: str, pending: Sequence[Task] = ()) -> None:
        self.pending = tuple(pending)
        super().__init__(message)


class DownloadError(KlingError):
    """A result file could not be downloaded and verified."""


class WebhookVerificationError(KlingError):
    """A signed callback failed Standard-Webhooks verification (bad, missing or stale)."""


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
    """Build the most specific :class:`APIError` for an error answer.

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
