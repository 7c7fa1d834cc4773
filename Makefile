# Two commands work on a fresh machine: `make demo` (set up, run the main job) and
# `make test` (set up, run the test suite). Both create .venv on first use; `make test` also
# creates .venv-bare, where lstmkit is installed as a layer user installs it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BARE := .venv-bare
SOURCES := pyproject.toml $(shell find src -name '*.py')

.PHONY: setup demo test clean

setup: $(VENV)/.installed-dev

# torch==2.13.0 first, so that the `torch>=2.4` of pyproject.toml is already satisfied and pip
# does not fetch a newer CUDA build.
$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	touch $@

# lstmkit (editable) with one extra: dev for the tests, tasks for the demo.
$(VENV)/.installed-%: pyproject.toml $(VENV)/.created
	$(BIN)/pip install --quiet -e '.[$*]'
	touch $@

# The core alone (`pip install .`, no extra), plus pytest to run tests/test_bare_install.py.
# Reinstalled when a source changes; build/ goes first so that no deleted module lingers.
$(BARE)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(BARE)
	$(BARE)/bin/pip install --quiet torch==2.13.0
	rm -rf build
	$(BARE)/bin/pip install --quiet . 'pytest>=8'
	touch $@

demo: $(VENV)/.installed-tasks
	$(BIN)/lstmkit demo

# The suite in .venv, spread over the cores (pytest-xdist), then the bare-install tests in
# .venv-bare (no conftest: it needs hypothesis), where none of them may skip for want of a bare install.
test: setup $(BARE)/.installed
	$(BIN)/python -m pytest -q -n auto
	LSTMKIT_BARE_INSTALL=1 $(BARE)/bin/python -m pytest -q --noconftest tests/test_bare_install.py

clean:
	rm -rf $(VENV) $(BARE) build .pytest_cache .hypothesis src/*.egg-info
