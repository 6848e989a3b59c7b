"""Each documented error code maps to its class; the tree is what the docstring draws."""

from __future__ import annotations

import pytest

import kling_async as kling
from kling_async.errors import error_for_response
from kling_async.retry import is_transient

CODE_TABLE = [
    (401, 1000, kling.AuthenticationError),
    (401, 1001, kling.AuthenticationError),
    (401, 1002, kling.AuthenticationError),
    (401, 1003, kling.AuthenticationError),
    (401, 1004, kling.AuthenticationError),
    (429, 1100, kling.AccountError),
    (429, 1101, kling.AccountError),
    (429, 1102, kling.AccountError),
    (403, 1103, kling.PermissionDeniedError),
    (429, 1104, kling.AccountError),  # "non-retryable: 1100-1104", not in the table itself
    (400, 1200, kling.BadRequestError),
    (400, 1201, kling.BadRequestError),
    (404, 1202, kling.BadRequestError),
    (404, 1203, kling.NotFoundError),
    (400, 1300, kling.ContentPolicyError),
    (400, 1301, kling.ContentPolicyError),
    (429, 1302, kling.RateLimitError),
    (429, 1303, kling.ConcurrencyLimitError),
    (429, 1304, kling.PermissionDeniedError),
    (500, 5000, kling.ServerError),
    (503, 5001, kling.ServerError),
    (504, 5002, kling.ServerError),
]


@pytest.mark.parametrize(("status", "code", "cls"), CODE_TABLE)
def test_code_table(status: int, code: int, cls: type[kling.APIError]) -> None:
    """The body code decides the class, whatever the HTTP status."""
    error = error_for_response(status=status, code=code, message="m", request_id="r-1")
    assert type(error) is cls
    assert (error.status, error.code, error.request_id) == (status, code, "r-1")
    assert "request_id r-1" in str(error)
    if code in range(1100, 1105):  # the reference: never retried
        assert not is_transient(error)


def test_status_decides_without_code() -> None:
    """CometAPI's envelope has no numeric code: the HTTP status decides."""
    assert type(error_for_response(status=401, code="", message="m")) is kling.AuthenticationError
    assert type(error_for_response(status=429, code=None, message="m")) is kling.RateLimitError
    assert type(error_for_response(status=503, code=None, message="m")) is kling.ServerError
    assert (
        type(error_for_response(status=403, code=None, message="m")) is kling.PermissionDeniedError
    )
    assert type(error_for_response(status=400, code=None, message="m")) is kling.BadRequestError
    assert (
        type(error_for_response(status=500, code="invalid_request", message="m"))
        is kling.BadRequestError
    )


def test_everything_is_a_kling_error() -> None:
    """Every public exception class derives from KlingError."""
    classes = [getattr(kling, name) for name in kling.__all__ if name.endswith("Error")]
    assert classes
    for cls in classes:
        assert issubclass(cls, kling.KlingError), cls


def test_bad_request_is_invalid_request() -> None:
    """Server-side parameter errors share a base with client-side validation errors."""
    assert issubclass(kling.BadRequestError, kling.InvalidRequestError)
    assert issubclass(kling.ValidationError, kling.InvalidRequestError)
    assert issubclass(kling.ConcurrencyLimitError, kling.RateLimitError)
