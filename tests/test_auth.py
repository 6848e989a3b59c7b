"""JWT signing and caching, and that secrets never show themselves."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

import kling_async as kling
from kling_async.auth import AccessKeyAuth, ApiKeyAuth, Secret


class StepClock:
    def __init__(self, now: float) -> None:
        self.value = now

    def now(self) -> float:
        return self.value

    async def sleep(self, seconds: float) -> None:
        self.value += seconds


def decode(token: str, secret: str) -> dict[str, object]:
    head, body, sig = token.split(".")
    expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "==") == expected
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "HS256", "typ": "JWT"}
    payload: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=="))
    return payload


def test_jwt_claims_and_signature() -> None:
    """The token is HS256 over {iss, exp, nbf} with Kling's documented offsets."""
    clock = StepClock(1_800_000_000.0)
    auth = AccessKeyAuth("ak-1", "sk-1", wall_clock=clock)
    header = auth.header()
    assert header.startswith("Bearer ")
    assert decode(header.removeprefix("Bearer "), "sk-1") == {
        "iss": "ak-1",
        "exp": 1_800_001_800,
        "nbf": 1_799_999_995,
    }


def test_jwt_cached_then_resigned_before_expiry() -> None:
    """One token is reused until a minute before expiry, then re-signed."""
    clock = StepClock(1_000.0)
    auth = AccessKeyAuth("ak", "sk", ttl=1800, refresh_margin=60, wall_clock=clock)
    first = auth.header()
    clock.value += 1700
    assert auth.header() == first
    clock.value += 50
    assert auth.header() != first
    assert auth.signed == 2
    auth.invalidate()
    auth.header()
    assert auth.signed == 3


def test_secrets_are_redacted() -> None:
    """Neither repr nor str shows a key."""
    assert "sk-secret" not in repr(Secret("sk-secret"))
    assert "sk-secret" not in str(Secret("sk-secret"))
    assert "sk-secret" not in repr(ApiKeyAuth("sk-secret"))
    assert "sk-secret" not in repr(AccessKeyAuth("ak", "sk-secret"))
    client = kling.KlingClient(api_key="sk-secret")
    assert "sk-secret" not in repr(client)
    assert "sk-secret" not in repr(vars(client))


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("zq9-key\nX-Injected: 1", "line breaks"),
        ("zq9-k\rey", "line breaks"),
        ("zq9-k\x00ey", "line breaks"),
        ("zq9 key", "line breaks"),
        ("zq9-k\u00e9y", "line breaks"),
        ("Bearer zq9-key", "'Bearer ' prefix"),
    ],
)
def test_a_mangled_key_is_refused_up_front_without_showing_it(key: str, match: str) -> None:
    """A key with a line break, a NUL, a space or a 'Bearer ' prefix fails at construction
    with a ConfigurationError that does not show it, not as aiohttp's error on the first
    request (or a 401 after a round trip)."""
    with pytest.raises(kling.ConfigurationError, match=match) as caught:
        kling.KlingClient(api_key=key)
    assert "zq9" not in str(caught.value)
    assert "zq9" not in repr(caught.value)
