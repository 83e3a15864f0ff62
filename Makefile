# chatlike: `make train` runs the main job, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup train test bench clean

$(BIN)/chatlike-runner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/chatlike-runner

# The main job: the bundled example export (or your own data/train.jsonl), trained on every GPU.
train: setup data/train.jsonl
	$(BIN)/chatlike-runner start configs/llama-3.1-8b-qlora.yml --gpus all $(TRAIN_ARGS)

data/train.jsonl:
	$(BIN)/chatlike-runner prepare -o data

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/copy_out.py

clean:
	rm -rf $(VENV) .pytest_cache
