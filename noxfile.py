"""The test suite on every supported Python: ``nox`` (or ``nox -p 3.10`` for one of them).

``make test`` stays the full gate (lint, types, coverage) on the default interpreter; these
sessions run plain pytest, one interpreter after another, because the machines have two cores.
With ``CI=true`` a missing interpreter is an error, not a skip (see ``.ci/run``).
"""

from __future__ import annotations

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Install the package with its dev extra and run the tests."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
