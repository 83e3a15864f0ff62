# chatlike: `make train` runs the main job, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The training stack (Axolotl on CPU) for the tests of chatlike-train outside the image.
TRAIN_VENV ?= .venv-train

.PHONY: setup train-venv train test bench clean

$(BIN)/chatlike-runner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/chatlike-runner

$(TRAIN_VENV)/bin/axolotl:
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install --quiet torch==2.13.0 axolotl==0.19.0
	touch $@

$(TRAIN_VENV)/.chatlike: $(TRAIN_VENV)/bin/axolotl pyproject.toml
	$(TRAIN_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

train-venv: $(TRAIN_VENV)/.chatlike

# The main job: the bundled example export (or your own data/train.jsonl), trained on every GPU.
train: setup data/train.jsonl
	$(BIN)/chatlike-runner start configs/llama-3.1-8b-qlora.yml --gpus all $(TRAIN_ARGS)

data/train.jsonl:
	$(BIN)/chatlike-runner prepare -o data

test: setup train-venv
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/copy_out.py
	$(BIN)/python bench/prepare.py

clean:
	rm -rf $(VENV) $(TRAIN_VENV) .pytest_cache
