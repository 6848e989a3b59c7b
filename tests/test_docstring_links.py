"""Docstrings cross-reference with mkdocstrings' Markdown syntax, not reST roles.

mkdocstrings renders docstrings as Markdown, so ``:class:`Foo``` reached the API reference as
literal text. ``scripts/rest_roles_to_mkdocstrings.py`` converts any that come back (a merge,
say) into ``[`Foo`][kling_async.module.Foo]`` links.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kling_async"
ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj|const):`[^`]+`")


def test_no_rest_roles_in_the_package() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {match}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for match in ROLE.findall(line)
    ]
    assert found == [], "\n".join(found)


def test_the_pattern_finds_a_role() -> None:
    assert ROLE.findall("see :class:`~kling_async.Task` and :meth:`run`") == [
        ":class:`~kling_async.Task`",
        ":meth:`run`",
    ]
