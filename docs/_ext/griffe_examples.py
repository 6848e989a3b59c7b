"""A griffe extension for this site: read ``Example:`` sections as Google ``Examples:``.

The library's docstrings write ``Example:`` (singular) above doctest lines. Griffe's Google parser
only knows ``Examples:``, and renders ``Example:`` as an admonition whose ``>>>`` lines become
Markdown text. This extension renames the heading when docstrings are loaded, so the examples
render as code. It changes nothing in the library itself.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` headings to ``Examples:`` in every loaded docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite *obj*'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
