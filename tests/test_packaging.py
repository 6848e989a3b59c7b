"""The wheel a user builds from a clone installs into a fresh venv and runs ``kling-async demo``.

It all works without a package registry: the wheel is built without build isolation (hatchling
comes from the dev extra), installed with ``--no-deps --no-index``, and the fresh venv finds
the dependencies through a path file naming this interpreter's site-packages. That path is
appended after the venv's own, and its ``.pth`` files (the editable install of the checkout)
are not processed, so ``kling_async`` itself can only come from the wheel.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter and tools
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``python -m build --wheel`` makes from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, ".", cwd=ROOT)
    (built,) = out.glob("kling_async-*.whl")
    return built


def test_the_wheel_carries_the_license_types_and_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    assert "kling_async/py.typed" in names
    assert "kling_async/sync.py" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not any(name.startswith(("tests/", "docs/", "benchmarks/")) for name in names)
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.10"
    classifiers = metadata.get_all("Classifier") or []
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    requires = metadata.get_all("Requires-Dist") or []
    # The console script needs them; see pyproject.toml for why they are not an extra.
    assert any(line.startswith("click") for line in requires)
    assert any(line.startswith("rich") for line in requires)


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    site = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "kling_async_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=tmp_path)

    # No coverage hooks or source-tree paths from this process in the child's environment.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COVERAGE", "PYTHON", "KLING_", "COMETAPI"))
    }
    where = _run(
        python, "-c", "import kling_async; print(kling_async.__file__)", cwd=tmp_path, env=env
    )
    assert Path(where.strip()).is_relative_to(site)

    out = tmp_path / "videos"
    shown = _run(
        bindir / "kling-async", "demo", "--count", "3", "--out", out, cwd=tmp_path, env=env
    )
    assert "emulator on http://127.0.0.1:" in shown
    assert "unfinished; files in" in shown
    assert list(out.glob("*.mp4"))
