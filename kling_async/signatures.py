"""Standard-Webhooks signatures for Kling callbacks (kling-api.md §5.4).

Kling's own API can sign callbacks with the console's webhook secret: three headers,
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of
"id.timestamp.body">``, several space-separated during a secret rotation). This module signs and
verifies them; [`WebhookReceiver`][kling_async.webhooks.WebhookReceiver] uses it when given a
``signing_secret``.

Examples:
    >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    >>> body = b'{"task_id": "1", "task_status": "succeed"}'
    >>> headers = {
    ...     "webhook-id": "msg_1",
    ...     "webhook-timestamp": "1700000000",
    ...     "webhook-signature": sign_payload(secret, "msg_1", 1700000000, body),
    ... }
    >>> verify_signature(secret, headers, body, now=1700000010)
    'msg_1'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from .errors import ConfigurationError, WebhookVerificationError

__all__ = [
    "SIGNATURE_HEADERS",
    "SIGNATURE_TOLERANCE",
    "carries_signature",
    "sign_payload",
    "signing_key",
    "verify_signature",
]

SIGNATURE_TOLERANCE = 300.0
"""Seconds a signed callback's ``webhook-timestamp`` may differ from now (Standard Webhooks)."""

SIGNATURE_HEADERS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature"})
"""The Standard Webhooks headers (lower case) a signed callback carries."""

_SECRET_PREFIX = "whsec_"  # noqa: S105 - a documented prefix, not a secret


def signing_key(secret: str) -> bytes:
    """Decode a signing secret (``whsec_<base64>`` or bare base64) into the HMAC key.

    Raises:
        ConfigurationError: the secret is not base64.
    """
    raw = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            "a webhook signing secret must be base64 text (optionally prefixed 'whsec_')"
        ) from None
    if len(key) < _MIN_KEY_BYTES:
        # An empty secret (an unset environment variable read as "") signs with an empty key:
        # anybody could forge callbacks that the receiver would then call verified.
        raise ConfigurationError(
            f"a webhook signing secret must hold at least {_MIN_KEY_BYTES} bytes of key "
            f"(this one holds {len(key)}); copy the whole secret from the console"
        )
    return key


_MIN_KEY_BYTES = 16


def _signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())


def sign_payload(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value Standard Webhooks would send.

    Useful to test a receiver, or to forward callbacks internally with a signature.

    Args:
        secret: the signing secret, ``whsec_<base64>`` or bare base64.
        msg_id: the ``webhook-id`` header.
        timestamp: the ``webhook-timestamp`` header (unix seconds).
        body: the exact body bytes.

    Returns:
        ``"v1,<base64>"``.

    Raises:
        ConfigurationError: the secret is not base64.
    """
    return "v1," + _signature(signing_key(secret), msg_id, str(timestamp), body).decode()


def carries_signature(headers: Mapping[str, str]) -> bool:
    """Whether *headers* hold any of [`SIGNATURE_HEADERS`][kling_async.signatures.SIGNATURE_HEADERS] (then they must verify)."""
    return any(name.lower() in SIGNATURE_HEADERS for name in headers)


def verify_signature(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE,
) -> str:
    """Check a Standard-Webhooks signature (kling-api.md §5.4).

    Args:
        secret: the signing secret, or several during a rotation (any one may match).
        headers: the request headers; names are matched case-insensitively.
        body: the raw body, exactly as received.
        now: the current unix time; ``time.time`` when omitted.
        tolerance: how many seconds ``webhook-timestamp`` may be off.

    Returns:
        the ``webhook-id``, for replay detection.

    Raises:
        WebhookVerificationError: a header is missing, the timestamp is stale, or no
            signature matches.
        ConfigurationError: a secret is not base64.
    """
    keys = [signing_key(item) for item in ([secret] if isinstance(secret, str) else secret)]
    lower = {name.lower(): value for name, value in headers.items()}
    msg_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    offered = lower.get("webhook-signature", "")
    if not (msg_id and stamp and offered):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    candidates = [
        value.encode()
        for version, _, value in (entry.partition(",") for entry in offered.split())
        if version == "v1" and value
    ]
    for key in keys:
        expected = _signature(key, msg_id, stamp, body)
        # Compare against every candidate (no early exit) so timing says nothing about which.
        matched = [hmac.compare_digest(expected, candidate) for candidate in candidates]
        if any(matched):
            return msg_id
    raise WebhookVerificationError("no webhook-signature entry matches")
