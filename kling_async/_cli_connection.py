"""The CLI's connection options (keys, base URL, provider), given before or after a sub-command."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from .client import ENV_BASE_URL, KlingClient
from .errors import ConfigurationError
from .limiter import RateLimit
from .providers import COMETAPI, KLING, KLING_STANDARD, Provider, local_emulator
from .retry import RetryPolicy
from .scheduler import PollPolicy

__all__ = ["Connection", "cli_words", "connection_from", "connection_options"]

_F = TypeVar("_F", bound=Callable[..., Any])

# The library's errors name Python arguments; on the command line, name the options instead.
_CLI_WORDS = (
    ("pass api_key=...", "pass --api-key"),
    ("access_key and secret_key", "--access-key and --secret-key"),
    ("base_url", "--base-url"),
    ("max_active_tasks", "--max-active"),
)
# The emulator is local: poll and retry on its compressed time scale, not the real API's.
_EMULATOR_POLL = PollPolicy(first_delay=0.1, min_interval=0.1, max_interval=1.0)
_EMULATOR_RETRY = RetryPolicy(base=0.1, cap=1.0)


@attrs.frozen
class Connection:
    """The connection options of one command line; empty ones fall back to the environment."""

    api_key: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    base_url: str | None = None
    provider: str | None = None

    def merged(self, other: Connection) -> Connection:
        """These options, with *other*'s (given after the sub-command) taking precedence."""
        return Connection(
            **{
                field.name: getattr(other, field.name) or getattr(self, field.name)
                for field in attrs.fields(Connection)
            }
        )

    def repeatable(self) -> str:
        """The options to give another command for the same API: never a key or a secret."""
        parts = [f"--provider {shlex.quote(self.provider)}"] if self.provider else []
        if self.base_url:
            parts.append(f"--base-url {shlex.quote(self.base_url)}")
        return " ".join(parts)

    def resolve(self) -> tuple[Provider, str | None]:
        """The provider, and the base URL to hand to the client (``None``: the provider's)."""
        name = self.provider or "cometapi"
        if name == "emulator":
            base = self.base_url or os.environ.get(ENV_BASE_URL)
            if not base:
                raise click.UsageError(
                    f"--provider emulator needs --base-url (or ${ENV_BASE_URL}): the URL the "
                    "emulator printed"
                )
            if not base.startswith(("http://", "https://")):
                raise click.UsageError(f"--base-url must start with http:// or https://: {base}")
            return local_emulator(base), None
        named = {"kling": KLING, "kling-standard": KLING_STANDARD}
        return named.get(name, COMETAPI), self.base_url

    def client(self, *, max_active: int | None = None, rate: float | None = None) -> KlingClient:
        """A client for these options; bad or missing credentials are usage errors."""
        provider, base_url = self.resolve()
        options: dict[str, Any] = {}
        if rate is not None:
            options["rate"] = RateLimit(rate, burst=max(1, int(rate)))
        if provider.name == "emulator":
            options.update(poll=_EMULATOR_POLL, retry=_EMULATOR_RETRY)
        try:
            return KlingClient(
                api_key=self.api_key,
                access_key=self.access_key,
                secret_key=self.secret_key,
                provider=provider,
                base_url=base_url,
                max_active_tasks=max_active,
                **options,
            )
        except ConfigurationError as exc:
            message = cli_words(str(exc))
            if provider.name == "emulator" and "no credentials" in message:
                message += (
                    "; the emulator accepts the key that `kling-async emulator` prints "
                    "(test-key unless it was given another)"
                )
            raise click.UsageError(message) from None


def cli_words(message: str) -> str:
    """*message* with the library's argument names replaced by the CLI's option names."""
    for python, option in _CLI_WORDS:
        message = message.replace(python, option)
    return message


def connection_options(function: _F) -> _F:
    """Add the connection options to a click command (or the group)."""
    options = [
        click.option("--api-key", help="CometAPI or Kling API key (default: $COMETAPI_KEY)."),
        click.option("--access-key", help="Kling access key (default: $KLING_ACCESS_KEY)."),
        click.option("--secret-key", help="Kling secret key (default: $KLING_SECRET_KEY)."),
        click.option("--base-url", help=f"Another API host (default: ${ENV_BASE_URL})."),
        click.option(
            "--provider",
            type=click.Choice(["cometapi", "kling", "kling-standard", "emulator"]),
            help="Which API: cometapi (default), kling, kling-standard (Kling's new-standard "
            "API), or emulator (needs --base-url).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def connection_from(ctx: click.Context, **given: Any) -> Connection:
    """The options given to the sub-command, over those given to the group before it."""
    outer = ctx.find_object(Connection) or Connection()
    return outer.merged(Connection(**given))
