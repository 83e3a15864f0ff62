# chatlike: `make train` runs the main job, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The training stack (Axolotl on CPU) with the runner: the tests of chatlike-train outside the image, and the
# runner with the training stack in-process (what `pip install chatlike-runner[estimate]` gives).
TRAIN_VENV ?= .venv-train

.PHONY: runner setup train-venv image image-cpu smoke preview train test bench fuzz lock lock-check clean

# The runner alone: what `make smoke` and `make train` need, and nothing more.
$(VENV)/.runner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -e .
	touch $@

runner: $(VENV)/.runner

# The runner with the test tools and the [cloud] extra (SkyPilot): what the tests and benches need.
$(VENV)/.dev: $(VENV)/.runner
	$(BIN)/pip install -qq -e '.[test,cloud]'
	touch $@

setup: $(VENV)/.dev

$(TRAIN_VENV)/bin/axolotl:
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -qq torch==2.13.0 axolotl==0.19.0
	touch $@

$(TRAIN_VENV)/.chatlike: $(TRAIN_VENV)/bin/axolotl pyproject.toml
	$(TRAIN_VENV)/bin/pip install -qq -e .
	touch $@

train-venv: $(TRAIN_VENV)/.chatlike

# The training image, CUDA flavor (chatlike/train:latest) and CPU flavor (chatlike/train:cpu).
image: runner
	$(BIN)/chatlike-runner build --flavor cuda

image-cpu: runner
	$(BIN)/chatlike-runner build --flavor cpu

# The main job: the bundled example export (or your own data/train.jsonl), trained on every GPU (the engine and its
# NVIDIA runtime checked first, the CUDA image built when missing). On a host with no usable GPU, the CPU preview of
# the same data instead, with one line saying why.
train: runner
	test -s data/train.jsonl || $(BIN)/chatlike-runner prepare -o data
	$(BIN)/chatlike-runner start configs/llama-3.1-8b-qlora.yml --gpus all --else-preview $(TRAIN_ARGS)

# Hear your data before you rent a GPU: a real small model (SmolLM2-135M-Instruct) trained on data/train.jsonl (the
# bundled example when there is none) on the CPU, then eval's verdict. Builds the CPU image when it is missing.
preview: runner
	$(BIN)/chatlike-runner start --preview

# The same recipe on a tiny built-in model, on the CPU: no GPU, no downloads. It writes the bundled example
# to data/ when there is no dataset there, and builds the CPU image when it is missing.
smoke: runner
	$(BIN)/chatlike-runner start --smoke

test: setup train-venv
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/copy_out.py
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/start_overhead.py
	$(BIN)/python bench/round_trips.py

# `chatlike-train validate` in the CPU image against 10,000 mutated configs and dataset lines (about 3 minutes):
# the counts, and every case that ended in anything but valid or refused in words. FUZZ_SEED picks another set.
FUZZ_SEED ?= 20261205
fuzz: setup image-cpu
	$(BIN)/python bench/fuzz_validate.py --in-image chatlike/train:cpu --cases 10000 --seed $(FUZZ_SEED)

# Regenerate the hashed lock files, and check the CUDA lock against the index for linux x86_64.
lock:
	requirements/lock.sh

lock-check:
	requirements/check-cuda-lock.sh

clean:
	rm -rf $(VENV) $(TRAIN_VENV) .pytest_cache
