"""The public surface is deliberate: ``kling_async.__all__`` is pinned, documented and light.

* The exact list of top-level names is written out below, so that adding or removing one is an
  edit of this file, made on purpose (httpx and anyio keep the same kind of test).
* Every top-level name resolves, carries a docstring, and is documented in the API reference;
  every submodule's ``__all__`` names things that exist.
* ``import kling_async`` needs none of the optional extras.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

import kling_async

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kling_async"
REFERENCE = ROOT / "docs" / "reference"

SURFACE = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AccessKeyAuth",
    "AccountError",
    "ApiKeyAuth",
    "ApiStyle",
    "AsCompleted",
    "Audio",
    "AuthenticationError",
    "AvatarImageToVideo",
    "BadRequestError",
    "Batch",
    "BatchResult",
    "BatchWorker",
    "COMETAPI",
    "CameraConfig",
    "CameraControl",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "ContentPolicyError",
    "DownloadError",
    "ExternalIdLookup",
    "GatewaySaturatedError",
    "IMAGE_TO_VIDEO",
    "Image",
    "ImageExpand",
    "ImageGeneration",
    "ImageToVideo",
    "InMemoryJournal",
    "InvalidRequestError",
    "JournalLockedError",
    "KINDS",
    "KLING",
    "KLING_STANDARD",
    "KlingClient",
    "KlingError",
    "LegacyLipSync",
    "LipSyncInput",
    "MissingResultError",
    "ModelRuleError",
    "MotionControl",
    "MultiImageToImage",
    "MultiImageToVideo",
    "MultiPrompt",
    "NotFoundError",
    "OmniImage",
    "OmniVideo",
    "PartialSubmitError",
    "PermissionDeniedError",
    "PollPolicy",
    "PostgresJournal",
    "Provider",
    "RateLimit",
    "RateLimitError",
    "RequestLimits",
    "ResponseParseError",
    "RetryPolicy",
    "ServerError",
    "SqliteJournal",
    "StorageError",
    "StoreUnavailableError",
    "SubmitUncertainError",
    "TEXT_TO_VIDEO",
    "Task",
    "TaskError",
    "TaskFailedError",
    "TaskKind",
    "TaskRequest",
    "TaskStatus",
    "TextToAudio",
    "TextToVideo",
    "ValidationError",
    "Video",
    "VideoEffects",
    "VideoExtend",
    "VideoToAudio",
    "VirtualTryOn",
    "WaitTimeoutError",
    "Watcher",
    "WebhookReceiver",
    "WebhookVerificationError",
    "__version__",
    "aiohttp_handler",
    "local_emulator",
    "verify_signature",
]

# The optional extras' top-level packages: importing kling_async must not need any of them.
EXTRAS = ["opentelemetry", "psycopg", "psycopg_pool", "redis", "starlette"]


@cache
def _origins() -> dict[str, str]:
    """Each top-level name and the submodule ``kling_async/__init__.py`` imports it from."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    origins: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                origins[alias.asname or alias.name] = f"kling_async.{node.module}"
    return origins


def _has_attribute_docstring(module: str, name: str) -> bool:
    """Whether *name* is assigned at the top of *module* with a string right after it."""
    path = PACKAGE / (module.removeprefix("kling_async.").replace(".", "/") + ".py")
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for node, after in itertools.pairwise(body):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
                and bool(after.value.value.strip())
            )
    return False


def _submodules() -> list[ModuleType]:
    """Every module of the package, subpackages included, imported."""
    names = [
        info.name for info in pkgutil.walk_packages(kling_async.__path__, prefix="kling_async.")
    ]
    return [kling_async, *(importlib.import_module(name) for name in sorted(names))]


def _reference_directives() -> dict[str, set[str] | None]:
    """The ``::: path`` blocks of the reference pages, with their ``members`` if restricted."""
    directives: dict[str, set[str] | None] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        current = ""
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("::: "):
                current = line[4:].strip()
                directives[current] = None
            elif current and line.startswith(" ") and "members:" in line:
                listed = line.split("members:", 1)[1].strip().strip("[]")
                directives[current] = {item.strip() for item in listed.split(",")}
            elif line.strip() and not line.startswith(" "):
                current = ""
    return directives


def test_the_surface_is_exactly_this_list() -> None:
    """Changing the public surface means changing SURFACE above: on purpose, in review."""
    assert sorted(kling_async.__all__) == SURFACE
    assert len(set(kling_async.__all__)) == len(kling_async.__all__), "a name is listed twice"


def test_the_pinned_list_is_sorted() -> None:
    """SURFACE stays sorted, so a diff of it shows exactly the names that came or went."""
    assert sorted(SURFACE) == SURFACE


@pytest.mark.parametrize("name", [name for name in SURFACE if name != "__version__"])
def test_every_name_resolves_and_has_a_docstring(name: str) -> None:
    """A top-level name is re-exported explicitly from its module, and documented there."""
    obj = getattr(kling_async, name)
    module = _origins().get(name)
    assert module is not None, f"{name} is not imported with `from .module import {name}`"
    assert getattr(importlib.import_module(module), name) is obj
    assert name in importlib.import_module(module).__all__, f"{module}.__all__ lacks {name}"
    if inspect.isclass(obj) or inspect.isfunction(obj):
        # __doc__ itself, not inspect.getdoc: a class must not live on its base's docstring.
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    else:
        assert _has_attribute_docstring(module, name), f"{module}.{name} has no docstring"


def test_the_version_is_a_version() -> None:
    """``__version__`` comes from the installed metadata."""
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", kling_async.__version__)


def test_every_submodule_all_names_exist() -> None:
    """Every module's ``__all__`` lists names that exist, each once."""
    checked = 0
    for module in _submodules():
        exported = getattr(module, "__all__", None)
        if exported is None:
            continue
        checked += 1
        assert all(isinstance(name, str) for name in exported), module.__name__
        assert len(set(exported)) == len(exported), f"{module.__name__}.__all__ repeats a name"
        missing = [name for name in exported if not hasattr(module, name)]
        assert not missing, f"{module.__name__}.__all__ names missing attributes: {missing}"
    assert checked > 40


# Run in a fresh interpreter whose imports of the extras' packages fail, as without the extras.
_BLOCK_EXTRAS = f"""
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"blocked: {{name}}")
        return None

sys.meta_path.insert(0, Blocked())
"""


def _run_without_extras(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", _BLOCK_EXTRAS + code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_importing_the_package_needs_no_extra() -> None:
    """With every optional extra made unimportable, the package and all its names still load."""
    done = _run_without_extras(
        "import kling_async\n"
        "for name in kling_async.__all__:\n"
        "    getattr(kling_async, name)\n"
        f"print(sorted({{m.partition('.')[0] for m in sys.modules}} & set({EXTRAS!r})))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_check_for_extras_can_fail() -> None:
    """The blocker above does block: a module that needs an extra fails to import under it."""
    done = _run_without_extras("import kling_async.redis_store\n")
    assert done.returncode != 0
    assert "blocked: redis" in done.stderr


@pytest.mark.parametrize("name", [name for name in SURFACE if name != "__version__"])
def test_the_reference_documents_every_name(name: str) -> None:
    """Each top-level name is rendered by a ``:::`` block: its own, or its whole module's."""
    module = _origins()[name]
    directives = _reference_directives()
    if f"{module}.{name}" in directives:
        return
    assert module in directives, f"no reference page renders {module}.{name}"
    members = directives[module]
    assert members is None or name in members, f"{module}'s block leaves out {name}"


def test_the_reference_overview_lists_every_name() -> None:
    """The overview page names every top-level name, so it reads as the list of the surface."""
    overview = (REFERENCE / "index.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", overview))
    assert set(SURFACE) - listed == set()
