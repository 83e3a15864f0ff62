# chatlike: `make train` runs the main job, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test bench clean

$(BIN)/chatlike-runner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/chatlike-runner

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/copy_out.py

clean:
	rm -rf $(VENV) .pytest_cache
