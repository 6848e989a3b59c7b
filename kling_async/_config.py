"""Where a client's provider and credentials come from: arguments first, then the environment."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from . import _fields
from .auth import AccessKeyAuth, ApiKeyAuth, Auth
from .errors import ConfigurationError
from .providers import COMETAPI, KLING, KLING_STANDARD, Provider
from .standard import ApiStyle

if TYPE_CHECKING:
    from .webhooks import WebhookReceiver

__all__ = ["build_auth", "check_options", "provider_named", "resolve_provider"]

_ENV_API_KEY = "COMETAPI_KEY"
_ENV_ACCESS_KEY = "KLING_ACCESS_KEY"
_ENV_SECRET_KEY = "KLING_SECRET_KEY"  # noqa: S105 - a variable name, not a secret


def provider_named(name: str) -> Provider:
    """The provider called *name* (``"cometapi"``, ``"kling"`` or ``"kling-standard"``)."""
    providers = {"cometapi": COMETAPI, "kling": KLING, "kling-standard": KLING_STANDARD}
    try:
        return providers[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown provider {name!r}; use 'cometapi', 'kling', 'kling-standard' or a "
            "Provider instance"
        ) from None


def build_auth(
    provider: Provider, api_key: str | None, access_key: str | None, secret_key: str | None
) -> Auth:
    """The credentials given, or else those in the environment (``$COMETAPI_KEY``, or
    ``$KLING_ACCESS_KEY`` with ``$KLING_SECRET_KEY``)."""
    if api_key is not None:
        return ApiKeyAuth(api_key)
    if access_key is not None or secret_key is not None:
        if not (access_key and secret_key):
            raise ConfigurationError("access_key and secret_key must be given together")
        return _access_key_auth(provider, access_key, secret_key)
    env_key = os.environ.get(_ENV_API_KEY)
    if env_key:
        return ApiKeyAuth(env_key)
    env_access, env_secret = os.environ.get(_ENV_ACCESS_KEY), os.environ.get(_ENV_SECRET_KEY)
    if env_access and env_secret:
        return _access_key_auth(provider, env_access, env_secret)
    raise ConfigurationError(
        f"no credentials for provider {provider.name!r}: pass api_key=..., or set "
        f"${_ENV_API_KEY} (or ${_ENV_ACCESS_KEY} and ${_ENV_SECRET_KEY} for Kling's own API)"
    )


def _access_key_auth(provider: Provider, access_key: str, secret_key: str) -> Auth:
    if provider.api_style is ApiStyle.STANDARD:
        # Kling: the new-standard API is "API Key only"; a JWT would meet 401s on every call.
        raise ConfigurationError(
            f"provider {provider.name!r} uses Kling's new-standard API, which accepts an API key "
            "only: pass api_key=... (or use the legacy provider 'kling' with access keys)"
        )
    return AccessKeyAuth(access_key, secret_key)


def resolve_provider(
    provider: Provider | Literal["cometapi", "kling", "kling-standard"], base_url: str | None
) -> Provider:
    """The provider named or given, moved to *base_url* when one is set."""
    resolved = provider_named(provider) if isinstance(provider, str) else provider
    if base_url is None:
        return resolved
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"base_url must start with http:// or https://: {base_url!r}")
    try:
        host = urlsplit(base_url).hostname
    except ValueError as exc:  # an unclosed IPv6 bracket, a port that is no number
        raise ConfigurationError(f"base_url is not a URL ({exc}): {base_url!r}") from None
    if not host:
        raise ConfigurationError(f"base_url names no host: {base_url!r}")
    return resolved.with_base_url(base_url)


def check_options(
    *,
    max_active_tasks: int | None,
    timeout: float,
    model_name: str | None,
    webhook: WebhookReceiver | None,
) -> None:
    """Refuse a client option that could only fail later, on the first request."""
    if max_active_tasks is not None and max_active_tasks < 1:
        raise ConfigurationError("max_active_tasks must be at least 1")
    _fields.check_seconds("timeout", timeout, zero=False, optional=False, what=" for each request")
    if model_name is not None and (not isinstance(model_name, str) or not model_name.strip()):
        raise ConfigurationError(f"model_name must be a model's name, got {model_name!r}")
    if webhook is not None:
        if not webhook.public_url:
            raise ConfigurationError(
                "KlingClient(webhook=...) needs a receiver with public_url: the externally "
                "reachable URL of its callback route, which the client sends as callback_url"
            )
        webhook.callback_url()  # a public_url that is not http(s) fails here, not on submit
