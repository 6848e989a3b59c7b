"""Credentials: a plain API key, or Kling's access key + secret key signed into a short JWT.

Secrets are held in [`Secret`][kling_async.auth.Secret], whose ``repr`` and ``str`` never show the value, so a
credential that ends up in a log line, a traceback or a ``repr(client)`` stays hidden.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Protocol

from .clock import Clock, SystemClock
from .errors import ConfigurationError

__all__ = ["AccessKeyAuth", "ApiKeyAuth", "Auth", "Secret"]


class Secret:
    """A string that does not show itself.

    Examples:
        >>> Secret("sk-123")
        Secret('***')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError("a credential must be a non-empty string")
        value = value.strip()
        if value[:7].lower() == "bearer ":
            raise ConfigurationError(
                "pass the key alone: the 'Bearer ' prefix is added to the header for you"
            )
        if not value.isprintable() or not value.isascii() or any(c.isspace() for c in value):
            # It would go into an HTTP header (a line break there splits the request), and no
            # issued key holds such characters: a copy-and-paste slip. The key is not shown.
            raise ConfigurationError(
                "a credential must be printable ASCII without spaces or line breaks "
                "(check for a stray newline or quote when it was copied)"
            )
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself (only for building the Authorization header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class Auth(Protocol):
    """Produces the ``Authorization`` header value for each request."""

    def header(self) -> str:
        """Return the value of the ``Authorization`` header."""
        ...

    def invalidate(self) -> None:
        """Forget any cached token (called after codes 1003/1004)."""
        ...


class ApiKeyAuth:
    """``Authorization: Bearer <api key>`` (CometAPI keys and Kling's new plain API keys)."""

    def __init__(self, api_key: str | Secret) -> None:
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        # Built once, not per request: it never changes, and the request pipeline keeps it in
        # its headers anyway (so keeping it here shows the key nowhere new; repr hides it).
        self._header = f"Bearer {self._key.reveal()}"

    def header(self) -> str:
        """Return ``Bearer <key>``."""
        return self._header

    def invalidate(self) -> None:
        """A plain key has nothing to re-sign."""

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key=***)"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(access_key: str, secret_key: str, *, issued_at: float, ttl: float) -> str:
    """Sign Kling's HS256 token: ``{"iss": access_key, "exp": now+ttl, "nbf": now-5}``."""
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"iss": access_key, "exp": int(issued_at + ttl), "nbf": int(issued_at - 5)}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    signature = hmac.new(secret_key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


class AccessKeyAuth:
    """Kling's legacy AK/SK scheme: a JWT signed with the secret key, cached and re-signed early.

    The token lives ``ttl`` seconds (1800, as in Kling's example) and is re-signed when fewer than
    ``refresh_margin`` seconds remain, so a long poll never sends an expired token. The client
    also calls [`invalidate`][kling_async.auth.AccessKeyAuth.invalidate] and retries once when the server answers 1003/1004 (clock skew).
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str | Secret,
        *,
        ttl: float = 1800.0,
        refresh_margin: float = 60.0,
        wall_clock: Clock | None = None,
    ) -> None:
        if not access_key or not access_key.strip():
            raise ConfigurationError("access_key must be a non-empty string")
        if ttl <= refresh_margin:
            raise ConfigurationError("ttl must be longer than refresh_margin")
        self._access_key = access_key.strip()
        self._secret = secret_key if isinstance(secret_key, Secret) else Secret(secret_key)
        self._ttl = ttl
        self._margin = refresh_margin
        self._clock = wall_clock or _WallClock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.signed = 0
        """How many tokens have been signed (for tests and metrics)."""

    def header(self) -> str:
        """Return ``Bearer <jwt>``, signing a new token when the cached one is close to expiry."""
        now = self._clock.now()
        if self._token is None or now >= self._expires_at - self._margin:
            self._token = sign_jwt(
                self._access_key, self._secret.reveal(), issued_at=now, ttl=self._ttl
            )
            self._expires_at = now + self._ttl
            self.signed += 1
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """Drop the cached token; the next request signs a fresh one."""
        self._token = None

    def __repr__(self) -> str:
        return f"AccessKeyAuth(access_key={self._access_key!r}, secret_key=***)"


class _WallClock(SystemClock):
    """JWT times are Unix seconds, not monotonic ones."""

    def now(self) -> float:
        return time.time()
