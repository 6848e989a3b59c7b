"""The docs' SVG of the batch progress display can be made again (scripts/record_batch_progress.py)."""

from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    path = ROOT / "scripts" / "record_batch_progress.py"
    spec = importlib.util.spec_from_file_location("record_batch_progress", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recording_shows_the_finished_bar_and_the_summary(tmp_path: Path) -> None:
    svg = tmp_path / "batch.svg"
    assert _script().main(["--out", str(svg)]) == 0
    source = svg.read_text(encoding="utf-8")
    assert source.startswith("<svg")
    # What a reader sees: the text of the SVG without its markup.
    shown = html.unescape(re.sub(r"<[^>]+>", "", source)).replace("\xa0", " ")
    assert "failed clip-06: content risk control" in shown
    assert "12/12" in shown
    assert "ETA 0:00:00" in shown
    assert "created 12 · finished 12 · downloaded 11 · failed 1" in shown
    assert "Batch summary" in shown
    assert "11 succeeded, 1 failed, 0 uncertain, 0 unfinished; files in videos" in shown


def test_the_docs_carry_a_recording() -> None:
    svg = ROOT / "docs" / "assets" / "batch-progress.svg"
    assert svg.read_text(encoding="utf-8").startswith("<svg")
    assert "assets/batch-progress.svg" in (ROOT / "docs" / "guides" / "cli.md").read_text()
