"""The layer diagram in docs/concepts.md and the import contract in pyproject.toml agree.

``lint-imports`` (run by ``make check``) enforces ``[tool.importlinter]``; the mermaid flowchart
under "Layers" in the concepts page draws it. These tests keep the two naming the same modules
in the same layers, and every module of the package placed in exactly one layer, so that a new
module is put somewhere on purpose.
"""

from __future__ import annotations

import pkgutil
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kling_async

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10, where mypy, coverage and build bring tomli along
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONCEPTS = ROOT / "docs" / "concepts.md"

# The diagram's outer boxes, top to bottom: one per layer of the "layers" contract.
TIERS = ["apps", "facade", "services", "core", "domain", "base"]

_MERMAID = re.compile(r"^```mermaid\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
_SUBGRAPH = re.compile(r"^subgraph\s+(?P<id>\w+)")
_NODE = re.compile(r"^\w+$")


@cache
def _importlinter() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        config: dict[str, Any] = tomllib.load(file)["tool"]["importlinter"]
    return config


def _contract(contract_id: str) -> dict[str, Any]:
    contracts = {contract["id"]: contract for contract in _importlinter()["contracts"]}
    return contracts[contract_id]


def _short(modules: list[str]) -> set[str]:
    """Package-relative names of the kling_async modules among *modules*."""
    return {name.removeprefix("kling_async.") for name in modules if name.startswith("kling_async")}


def _layers() -> list[set[str]]:
    """The "layers" contract, top layer first, each as a set of module names."""
    return [
        {name.strip() for name in re.split(r"[|:]", layer)}
        for layer in _contract("layers")["layers"]
    ]


@cache
def _diagram() -> tuple[list[str], dict[str, set[str]]]:
    """The flowchart's top-level boxes in order, and the modules drawn in every box.

    A box holds the modules of the boxes nested in it too.
    """
    text = CONCEPTS.read_text(encoding="utf-8")
    assert "\n## Layers\n" in text, "docs/concepts.md has no Layers section"
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    found = _MERMAID.search(section)
    assert found is not None, "the Layers section of docs/concepts.md has no mermaid block"
    order: list[str] = []
    boxes: dict[str, set[str]] = {}
    open_boxes: list[str] = []
    for raw in found["body"].splitlines():
        line = raw.strip()
        subgraph = _SUBGRAPH.match(line)
        if subgraph:
            if not open_boxes:
                order.append(subgraph["id"])
            open_boxes.append(subgraph["id"])
            boxes[subgraph["id"]] = set()
        elif line == "end":
            open_boxes.pop()
        elif open_boxes and _NODE.match(line):
            for box in open_boxes:
                boxes[box].add(line)
    assert not open_boxes, f"unclosed subgraphs: {open_boxes}"
    return order, boxes


def test_the_diagram_draws_the_layers_in_order() -> None:
    """Each outer box of the diagram holds exactly the modules of one layer, top to bottom."""
    order, boxes = _diagram()
    assert order == TIERS
    layers = _layers()
    assert len(layers) == len(TIERS)
    for tier, layer in zip(TIERS, layers, strict=True):
        assert boxes[tier] == layer, f"box {tier!r} and its layer differ: {boxes[tier] ^ layer}"


def test_the_engine_and_the_api_boxes_match_their_contracts() -> None:
    """The two inner boxes are the two sides of the forbidden contracts that keep them apart."""
    _, boxes = _diagram()
    engine_no_http = _contract("engine-no-http")
    api_no_engine = _contract("api-no-engine")
    assert boxes["engine"] == _short(engine_no_http["source_modules"])
    assert boxes["engine"] == _short(api_no_engine["forbidden_modules"])
    assert boxes["api"] == _short(api_no_engine["source_modules"])
    assert boxes["api"] == _short(engine_no_http["forbidden_modules"])
    assert boxes["engine"] | boxes["api"] == boxes["core"]
    # The HTTP libraries themselves, which only an external-package graph can see.
    assert {"aiohttp", "yarl"} <= set(engine_no_http["forbidden_modules"])
    assert _importlinter()["include_external_packages"] is True


def test_the_apps_box_is_the_apps_contract() -> None:
    """The applications that must go through the client are the ones drawn on top."""
    _, boxes = _diagram()
    assert boxes["apps"] == _short(_contract("apps-through-client")["source_modules"])


def test_every_module_is_in_exactly_one_layer() -> None:
    """A new module of the package has to be placed in a layer (and drawn) on purpose."""
    modules = {info.name for info in pkgutil.iter_modules(kling_async.__path__)}
    placed = [name for layer in _layers() for name in layer]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    unplaced = modules - set(placed)
    assert not unplaced, (
        f"place {sorted(unplaced)} in a layer of pyproject.toml's [tool.importlinter] and in the "
        "diagram of docs/concepts.md"
    )
    assert set(placed) - modules == set(), "a layer names a module that does not exist"
