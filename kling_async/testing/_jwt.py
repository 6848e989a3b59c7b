"""HS256 JSON Web Tokens, signed and verified with the standard library only.

The emulator must check the tokens a client signs for Kling's AccessKey/SecretKey scheme
(kling-api.md §7.3) without sharing the client's code, so it carries its own implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["JwtRejectedError", "encode_jwt", "verify_jwt"]


class JwtRejectedError(Exception):
    """A token was refused; [`code`][kling_async.testing.JwtRejectedError.code] is the Kling error code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    # JWTs drop the base64 padding; restore it so the stdlib decoder accepts the segment.
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(
    access_key: str,
    secret_key: str,
    *,
    now: float | None = None,
    lifetime: float = 1800.0,
    not_before_skew: float = 5.0,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign a Kling-style HS256 token: ``iss`` = *access_key*, ``exp`` and ``nbf`` around *now*.

    *claims* override or extend the payload (e.g. ``{"exp": 0}`` for an expired token).
    """
    issued = time.time() if now is None else now
    payload: dict[str, Any] = {
        "iss": access_key,
        "exp": int(issued + lifetime),
        "nbf": int(issued - not_before_skew),
    }
    if claims:
        payload.update(claims)
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        _b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    )
    signature = hmac.new(secret_key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url_encode(signature)


def verify_jwt(
    token: str, secrets: Mapping[str, str], *, now: float, leeway: float = 0.0
) -> dict[str, Any]:
    """Check *token* against ``secrets`` (access key → secret key) at wall time *now*.

    Return the payload, or raise [`JwtRejectedError`][kling_async.testing.JwtRejectedError] with code 1002 (malformed, unknown issuer,
    bad signature), 1003 (``nbf`` in the future) or 1004 (``exp`` passed).
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtRejectedError(1002, "Authorization is invalid")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except ValueError:
        raise JwtRejectedError(1002, "Authorization is invalid") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise JwtRejectedError(1002, "Authorization is invalid")
    if not isinstance(payload, dict):
        raise JwtRejectedError(1002, "Authorization is invalid")
    issuer = payload.get("iss")
    secret = secrets.get(issuer) if isinstance(issuer, str) else None
    if secret is None:
        raise JwtRejectedError(1002, "Authorization is invalid")
    expected = hmac.new(
        secret.encode(), (parts[0] + "." + parts[1]).encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, signature):
        raise JwtRejectedError(1002, "Authorization is invalid")
    exp = payload.get("exp")
    nbf = payload.get("nbf")
    for claim in (exp, nbf):
        if claim is not None and (isinstance(claim, bool) or not isinstance(claim, int | float)):
            raise JwtRejectedError(1002, "Authorization is invalid")
    if exp is not None and now >= exp + leeway:
        raise JwtRejectedError(1004, "Authorization has expired")
    if nbf is not None and now < nbf - leeway:
        raise JwtRejectedError(1003, "Authorization is not yet valid")
    return payload
