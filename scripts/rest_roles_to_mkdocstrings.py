"""Turn reST roles in kling_async's docstrings into mkdocstrings cross-references.

``python scripts/rest_roles_to_mkdocstrings.py [TARGET ...]`` (needs the ``docs`` extra, for
griffe), from the repository root, then ``make docs``. Each ``:class:`Name``` (``:meth:``,
``:func:``, ``:data:``, ``:attr:``, ``:mod:``, ``:exc:``...) inside a docstring is resolved as
Python would, from the scope of the object the docstring belongs to, and becomes
``[`Name`][kling_async.module.Name]`` (a leading ``~`` keeps only the last part as the text).
Names outside the package, private ones, and the TARGETs given (those ``mkdocs build --strict``
reports as not rendered) become plain code instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

import griffe

ROLE = re.compile(r":(class|meth|func|data|attr|mod|exc|obj|const):`([^`]+)`")
PACKAGE = "kling_async"
_LOOKUP_ERRORS = (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError)


class Resolver:
    """Finds the object a role names, from the docstring it appears in."""

    def __init__(self, package: griffe.Module) -> None:
        self.package = package

    def lookup(self, path: str) -> griffe.Object | None:
        """The object at the dotted *path* (aliases followed), or ``None``."""
        if path == PACKAGE:
            return self.package
        if not path.startswith(f"{PACKAGE}."):
            return None
        try:
            found = self.package[path[len(PACKAGE) + 1 :]]
            return found.final_target if isinstance(found, griffe.Alias) else found
        except _LOOKUP_ERRORS:
            return None

    def resolve(self, scope: griffe.Object, role: str, name: str) -> str | None:
        """The public path *name* refers to from *scope*, or ``None`` when it is not ours."""
        base = self._member_of_class(scope, name) if role in ("meth", "attr") else None
        if base is None:
            base = self._by_scope(scope, name)
        if base is None:
            return None
        target = self.lookup(base)
        return None if target is None else self._public(target.canonical_path)

    @staticmethod
    def _member_of_class(scope: griffe.Object, name: str) -> str | None:
        if "." in name:
            return None
        owner: griffe.Object | None = scope
        while owner is not None and not owner.is_class:
            if owner.is_module:
                return None
            owner = owner.parent
        if owner is not None and name in owner.all_members:
            return f"{owner.path}.{name}"
        return None

    def _by_scope(self, scope: griffe.Object, name: str) -> str | None:
        if name.startswith(PACKAGE):
            return name
        first, _, rest = name.partition(".")
        current: griffe.Object | None = scope
        while current is not None:
            try:
                base = current.resolve(first)
            except griffe.NameResolutionError:
                current = current.parent
                continue
            return f"{base}.{rest}" if rest else base
        if first in self.package.members:
            return f"{PACKAGE}.{name}"
        return None

    def _public(self, canonical: str) -> str:
        """*canonical* through a public module that re-exports it, when it lives in a private one."""
        parts = canonical.split(".")
        private = [index for index, part in enumerate(parts) if index and part.startswith("_")]
        if not private:
            return canonical
        tail = parts[private[0] + 1 :]
        for head in (parts[: private[0]], [PACKAGE]):
            candidate = ".".join(head + tail)
            found = self.lookup(candidate)
            if tail and found is not None and found.canonical_path == canonical:
                return candidate
        return canonical


def docstring_spans(package: griffe.Module) -> dict[Path, list[tuple[int, int, griffe.Object]]]:
    """``(first line, last line, owner)`` of every docstring, by file."""
    spans: dict[Path, list[tuple[int, int, griffe.Object]]] = {}

    def walk(obj: griffe.Object) -> None:
        docstring = obj.docstring
        if docstring is not None and docstring.lineno and docstring.endlineno and obj.filepath:
            where = Path(str(obj.filepath)).resolve()
            spans.setdefault(where, []).append((docstring.lineno, docstring.endlineno, obj))
        for member in obj.members.values():
            if not isinstance(member, griffe.Alias):
                walk(member)

    walk(package)
    return spans


def convert(root: Path, not_rendered: set[str]) -> tuple[int, int]:
    """Rewrite the package's files under *root*; return (links made, plain code made)."""
    package = griffe.load(PACKAGE, search_paths=[str(root)])
    if not isinstance(package, griffe.Module):
        raise TypeError(f"{PACKAGE} is not a module")
    resolver = Resolver(package)
    spans = docstring_spans(package)
    linked = plain = 0
    for path in sorted((root / PACKAGE).rglob("*.py")):
        lines = path.read_text(encoding="utf-8").split("\n")
        mine = spans.get(path.resolve(), [])
        changed = False
        for index, line in enumerate(lines):
            owners = [span for span in mine if span[0] <= index + 1 <= span[1]]
            if not owners or not ROLE.search(line):
                continue
            owner = min(owners, key=lambda span: span[1] - span[0])[2]
            rewritten: list[str] = []
            last = 0
            for match in ROLE.finditer(line):
                role, raw = match.group(1), match.group(2)
                name = raw.lstrip("~")
                text = name.rsplit(".", 1)[-1] if raw.startswith("~") else name
                target = resolver.resolve(owner, role, name)
                hidden = target is None or any(p.startswith("_") for p in target.split(".")[1:])
                rewritten.append(line[last : match.start()])
                if hidden or target in not_rendered:
                    rewritten.append(f"``{text}``")
                    plain += 1
                else:
                    rewritten.append(f"[`{text}`][{target}]")
                    linked += 1
                last = match.end()
            rewritten.append(line[last:])
            lines[index] = "".join(rewritten)
            changed = True
        if changed:
            path.write_text("\n".join(lines), encoding="utf-8")
    return linked, plain


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    targets = set(sys.argv[1:] if argv is None else argv)
    linked, plain = convert(Path.cwd(), targets)
    print(f"{linked} links, {plain} plain code")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
