"""The documentation cannot rot: its code runs, and the library's doctests pass.

* Every fenced ```` ```python ```` block in ``README.md`` and ``docs/**/*.md`` is executed as a
  complete script (the doc examples start their own :class:`~kling_async.testing.FakeKlingServer`
  on 127.0.0.1 and end with ``asyncio.run(main())``), each in a fresh namespace and a fresh
  working directory. A block whose info string carries a ``title="..."`` (e.g. one that needs a
  real API key) is shown, not run; nothing else is skipped.
* ``doctest.testmod`` runs over every module of the ``kling_async`` package.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import kling_async

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

# An opening fence (any indentation), its info string, the body, and the matching closing fence.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


class Block:
    """One fenced code block of a Markdown file."""

    def __init__(self, path: Path, line: int, info: str, body: str) -> None:
        self.path = path
        self.line = line
        self.info = info.strip()
        self.body = body

    @property
    def language(self) -> str:
        return self.info.split(" ", 1)[0].strip("{}.").lower()

    @property
    def runnable(self) -> bool:
        return self.language == "python" and "title=" not in self.info

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """Every fenced block of *path*, with its starting line number."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        indent = match["indent"]
        lines = match["body"].splitlines()
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(path, line, match["info"], body + "\n"))
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in extract_blocks(path)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language == "python"]
RUNNABLE = [block for block in PYTHON_BLOCKS if block.runnable]


def test_the_extractor_finds_blocks() -> None:
    """The docs have code, most of it runnable, and every skipped block says why in its title."""
    assert len(RUNNABLE) > 0
    assert len(RUNNABLE) >= 10, [block.id for block in RUNNABLE]
    skipped = [block for block in PYTHON_BLOCKS if not block.runnable]
    assert all('title="' in block.info for block in skipped)


def test_extractor_handles_indentation_and_titles(tmp_path: Path) -> None:
    """Indented fences (inside admonitions) are dedented; titled blocks are not runnable."""
    page = tmp_path / "page.md"
    page.write_text(
        '!!! note\n    ```python\n    x = 1\n    ```\n\n```python title="real key"\ny = 2\n```\n'
        "```bash\nls\n```\n",
        encoding="utf-8",
    )
    blocks = extract_blocks(page)
    assert [(b.language, b.runnable, b.line) for b in blocks] == [
        ("python", True, 2),
        ("python", False, 6),
        ("bash", False, 9),
    ]
    assert blocks[0].body == "x = 1\n"


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_doc_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one block as a script, in its own folder (examples write to ``out/`` and such)."""
    monkeypatch.chdir(tmp_path)
    for name in ("COMETAPI_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    code = compile(block.body, f"{block.path}:{block.line}", "exec")
    exec(code, {"__name__": "__main__"})  # noqa: S102 - running our own documentation


def _modules() -> list[str]:
    prefix = f"{kling_async.__name__}."
    found = pkgutil.walk_packages(kling_async.__path__, prefix=prefix)
    return sorted([kling_async.__name__, *(info.name for info in found)])


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str) -> None:
    """``doctest.testmod`` over one library module; every example in a docstring must hold."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra (e.g. Starlette) that is not installed
        pytest.skip(f"{name} needs an optional dependency: {exc}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctests failed in {name}"


def test_doctests_exist() -> None:
    """The library does carry doctests (so the parametrised test above checks something)."""
    finder = doctest.DocTestFinder()
    examples = 0
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        examples += sum(len(test.examples) for test in finder.find(module))
    assert examples > 0
