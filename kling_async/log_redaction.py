"""A logging filter that keeps callback tokens out of web servers' access logs.

The callback URL carries the receiver's secret as ``?token=...``
([`TOKEN_PARAM`][kling_async.webhooks.TOKEN_PARAM]), and access logs print request paths with their
query: ``POST /kling/callback?token=... HTTP/1.1`` 200. [`TokenRedactingFilter`][kling_async.log_redaction.TokenRedactingFilter] rewrites
such records before any handler formats them::

    from kling_async.log_redaction import redact_access_logs

    redact_access_logs()  # uvicorn.access and aiohttp.access

It redacts the token in the message, in its arguments (uvicorn passes the path as one) and in
string attributes added through ``extra`` (aiohttp's ``first_request_line``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from ._urls import HIDDEN
from .webhooks import TOKEN_PARAM

__all__ = ["ACCESS_LOGGERS", "REDACTED", "TokenRedactingFilter", "redact_access_logs"]

ACCESS_LOGGERS: tuple[str, ...] = ("uvicorn.access", "aiohttp.access")
"""The access loggers of uvicorn and ``aiohttp.web``."""

REDACTED = HIDDEN
"""What a token is replaced with."""

# Attributes every LogRecord has: only those added through ``extra`` may hold a request line.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class TokenRedactingFilter(logging.Filter):
    """Replaces the value of the ``token`` query parameter (or others) in log records.

    It never drops a record: [`filter`][kling_async.log_redaction.TokenRedactingFilter.filter] always returns ``True``.

    Args:
        params: the query parameters whose values are secret.
    """

    def __init__(self, params: Iterable[str] = (TOKEN_PARAM,)) -> None:
        super().__init__()
        names = "|".join(re.escape(name) for name in params)
        # The value ends where a URL's query value does, or at quotes and spaces that end
        # the path in a log line.
        self._pattern = re.compile(rf"([?&;](?:{names})=)[^&;#\s\"'<>]*")
        self._names = tuple(f"{name}=" for name in params)

    def redact(self, text: str) -> str:
        """*text* with every secret parameter's value replaced by [`REDACTED`][kling_async.log_redaction.REDACTED]."""
        if not any(name in text for name in self._names):
            return text
        return self._pattern.sub(rf"\g<1>{REDACTED}", text)

    def _value(self, value: Any) -> Any:
        return self.redact(value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact *record* in place; keep it."""
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._value(value) for key, value in record.args.items()}
        for name, value in vars(record).items():
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


def redact_access_logs(
    loggers: Iterable[str] = ACCESS_LOGGERS, *, params: Iterable[str] = (TOKEN_PARAM,)
) -> TokenRedactingFilter:
    """Add one [`TokenRedactingFilter`][kling_async.log_redaction.TokenRedactingFilter] to each named logger (idempotent per logger).

    A filter on a logger sees the records logged to that logger itself, which is how uvicorn
    and aiohttp write their access lines.

    Args:
        loggers: logger names; uvicorn's and aiohttp's access loggers by default.
        params: the secret query parameters.

    Returns:
        the filter, e.g. to add to handlers as well.
    """
    redactor = TokenRedactingFilter(params)
    for name in loggers:
        logger = logging.getLogger(name)
        for existing in list(logger.filters):
            if isinstance(existing, TokenRedactingFilter):
                logger.removeFilter(existing)
        logger.addFilter(redactor)
    return redactor
