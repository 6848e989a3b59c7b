# Everything bootstraps .venv itself: a fresh clone needs only python3 and the package registries.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install check test demo bench clean docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# lint-imports checks the import layers of pyproject.toml's [tool.importlinter] (docs/concepts.md
# draws them); --no-cache leaves no cache directory in the tree.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict kling_async
	$(BIN)/lint-imports --no-cache

test: check
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report

# make demo DEMO_ARGS="--dialect new-api" runs it against the emulated new-api gateway.
DEMO_ARGS ?=

demo: $(STAMP)
	$(BIN)/kling-async demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
