"""How a CLI command runs its coroutine: library errors become messages and exit codes."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from ._cli_connection import Connection, cli_words
from .errors import (
    APIConnectionError,
    ConfigurationError,
    JournalLockedError,
    KlingError,
    StorageError,
)
from .journal_postgres import is_postgres_url, redact_url

# The EXIT_* codes below are public through kling_async.cli, which lists them.
__all__ = ["rerun_command", "run", "stdout_console"]

_T = TypeVar("_T")

EXIT_OK = 0
"""Everything succeeded."""
EXIT_FAILED = 1
"""A task failed, is uncertain or unfinished, or the server refused."""
EXIT_USAGE = 2
"""Bad usage or input; nothing was submitted."""
EXIT_STORAGE = 3
"""A file could not be written (disk full, file-size limit, unwritable location)."""
EXIT_JOURNAL_BUSY = 4
"""Another run holds the journal."""


def stdout_console() -> Console:
    """A console on stdout: plain text when it is not a terminal."""
    stream = sys.stdout
    if getattr(stream, "isatty", lambda: False)():
        return Console(file=stream)
    # Piped or captured: plain text, no ANSI codes, and wide enough that ids are not cut.
    return Console(file=stream, force_terminal=False, no_color=True, width=200)


def _resume_hint() -> str:
    return "interrupted; run the same command again to resume"


def run(
    coroutine: Coroutine[Any, Any, _T],
    *,
    on_interrupt: Callable[[], str] = _resume_hint,
    rerun: str | None = None,
) -> _T:
    """Run *coroutine*, turning library errors into clear messages and exit codes.

    *on_interrupt* says what Ctrl-C leaves behind; the default suits the journaled commands.
    *rerun* is the command that continues the work (a batch), shown after a disk error.
    """
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        click.echo(on_interrupt(), err=True)
        raise SystemExit(130) from None
    except ConfigurationError as exc:
        raise click.UsageError(cli_words(str(exc))) from None
    except StorageError as exc:
        click.echo(_storage_message(exc, rerun), err=True)
        raise SystemExit(EXIT_STORAGE) from None
    except JournalLockedError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_JOURNAL_BUSY) from None
    except APIConnectionError as exc:
        hint = "" if exc.maybe_sent else "; is the server running, and is --base-url right?"
        click.echo(f"error: {exc}{hint}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except KlingError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_FAILED) from None


def _storage_message(error: StorageError, rerun: str | None) -> str:
    """One line: what could not be written, why, and how to continue."""
    text = f"error: {error}"
    if rerun:
        text += (
            "; the journal keeps everything done so far: free some space or fix the location, "
            f"then run again: {rerun}"
        )
    return text


def rerun_command(
    connection: Connection, prompts: Path, out_dir: Path, options: Mapping[str, Any]
) -> str:
    """The ``kling-async batch`` command that continues this run; never with a key in it."""
    args = ["kling-async", "batch", str(prompts), "--out", str(out_dir)]
    for flag, value in options.items():
        if value is not None:
            # A database URL's password never reaches the screen (nor a shell history).
            args += [flag, redact_url(value) if is_postgres_url(str(value)) else str(value)]
    if connection.provider:
        args += ["--provider", connection.provider]
    if connection.base_url:
        args += ["--base-url", connection.base_url]
    command = shlex.join(args)
    if connection.api_key or connection.access_key or connection.secret_key:
        command += " (with your keys)"
    return command
