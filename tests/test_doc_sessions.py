"""Shell sessions in the docs run as shown: every ```` ```console ```` block.

A block is a list of ``$ command`` lines, each followed by the output it shows; ``...`` stands
for what differs between runs (doctest's ELLIPSIS). Commands run through ``sh`` in a fresh
folder, with this interpreter's ``kling-async`` first on ``PATH``. On a page with a block titled
``terminal 1`` whose command starts the emulator, that command runs in the background (on a
free port) for the page's other blocks, and ``http://127.0.0.1:8765`` in them means its URL.
"""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_docs import ALL_BLOCKS, Block

DOC_URL = "http://127.0.0.1:8765"
CONSOLE = [block for block in ALL_BLOCKS if block.language == "console"]
PAGES = sorted({block.path for block in CONSOLE})


def _steps(block: Block) -> list[tuple[str, str]]:
    """``(command, expected output)`` for each ``$`` line of *block*."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"{block.id}: output before the first command"
            steps[-1][1].append(line)
    return [(command, "".join(f"{line}\n" for line in shown)) for command, shown in steps]


def _matches(expected: str, actual: str) -> bool:
    return doctest.OutputChecker().check_output(expected, actual, doctest.ELLIPSIS)


def _environment() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KLING_", "COMETAPI_", "COVERAGE"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _start_emulator(
    block: Block, cwd: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[str], str]:
    ((command, shown),) = _steps(block)
    assert command.startswith("kling-async emulator"), block.id
    process = subprocess.Popen(  # noqa: S602 - our own documented command
        f"exec {command} --port 0",
        shell=True,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in shown.splitlines()]
    url = lines[0].strip()
    printed = "".join(lines).replace(url, DOC_URL)
    assert _matches(shown, printed), f"{block.id}: expected\n{shown}\ngot\n{printed}"
    return process, url


@pytest.mark.parametrize("page", PAGES, ids=[str(page.name) for page in PAGES])
def test_console_sessions_run_as_shown(page: Path, tmp_path: Path) -> None:
    shell = _environment()
    blocks = [block for block in CONSOLE if block.path == page]
    background = [block for block in blocks if 'title="terminal 1"' in block.info]
    process = None
    url = DOC_URL
    try:
        if background:
            process, url = _start_emulator(background[0], tmp_path, shell)
        for block in blocks:
            if block in background:
                continue
            for command, shown in _steps(block):
                done = subprocess.run(  # noqa: S602 - our own documented commands
                    command.replace(DOC_URL, url),
                    shell=True,
                    cwd=tmp_path,
                    env=shell,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert done.returncode == 0, f"{block.id}: {command}\n{done.stdout}{done.stderr}"
                assert _matches(shown, done.stdout), (
                    f"{block.id}: {command}\nexpected\n{shown}\ngot\n{done.stdout}"
                )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=20)
            if process.stdout is not None:
                process.stdout.close()


def test_the_cli_guide_has_a_session() -> None:
    assert any(block.path.name == "cli.md" for block in CONSOLE)
    assert all(_steps(block) for block in CONSOLE)
