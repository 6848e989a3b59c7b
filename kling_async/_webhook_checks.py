"""What a callback body must pass before the receiver believes it: depth, JSON, task shape, replay.

Each check answers with a reason a sender may read (``WebhookReceiver`` turns it into a 400) or
with the parsed task; none of them knows about HTTP, tokens or watchers.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict

from . import wire
from .errors import APIError, ResponseParseError
from .kinds import TEXT_TO_VIDEO
from .models import Task

__all__ = ["ReplayWindow", "nesting_exceeds", "parse_callback"]

# The receiver's logger: operators filter on the public module's name.
logger = logging.getLogger("kling_async.webhooks")

# Only the bytes that open, close or quote something matter for the depth; an escape inside a
# string is matched whole, so an escaped quote never ends the string early.
_JSON_STRUCTURE = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether *body*, read as JSON, nests arrays and objects deeper than *limit*.

    Brackets inside strings do not count. Malformed JSON may give any answer here; the parser
    refuses it next.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot be deeper than the brackets it has
    depth = 0
    in_string = False
    for match in _JSON_STRUCTURE.finditer(body):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string:
            continue
        elif token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def parse_callback(body: bytes, *, signed: bool, max_depth: int) -> Task | str:
    """The task a callback *body* describes, or why it is refused (never raises).

    Args:
        body: the raw body.
        signed: whether its signature was verified (a signed task must carry its results).
        max_depth: the deepest JSON nesting accepted.
    """
    if nesting_exceeds(body, max_depth):
        return f"JSON nested deeper than {max_depth} levels"
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "body is not JSON"
    try:
        # An unsigned callback is only a hint that a GET confirms, so its results may be
        # missing; a signed one is believed as it is and must carry them.
        return wire.parse_task(data, TEXT_TO_VIDEO, where="callback", require_result=signed)
    except (ResponseParseError, APIError) as exc:
        return f"not a task object: {exc.args[0]}"
    except Exception as exc:  # noqa: BLE001 - handle() promises an answer for any body
        # A parser bug must cost the sender a 400, not the server a 500; the type is logged
        # so that it can be fixed.
        logger.error("callback parser failed on a body (%s)", type(exc).__name__)
        return "not a task object"


class ReplayWindow:
    """The signed message ids seen recently, oldest first."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()

    def replayed(self, msg_id: str, *, now: float, keep: float) -> bool:
        """Whether *msg_id* was seen in the last *keep* seconds; remembers it if not."""
        horizon = now - keep
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        if msg_id in self._seen:
            return True
        self._seen[msg_id] = now
        return False
