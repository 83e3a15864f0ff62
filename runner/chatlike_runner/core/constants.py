"""Names and paths shared by the runner and the training image."""

import re
from pathlib import Path

# The images a run uses unless --image says otherwise (built by `chatlike-runner build`).
DEFAULT_IMAGE = "chatlike/train:latest"
CPU_IMAGE = "chatlike/train:cpu"
# A training image with llama.cpp added, for `export`: built on first use as chatlike/train-export:<image id, 12>.
EXPORT_IMAGE = "chatlike/train-export"

# The repository's configs/, next to the package in a checkout (where the Makefile installs it).
CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SMOKE_CONFIG = CONFIGS / "cpu-smoke.yml"
PREVIEW_CONFIG = CONFIGS / "cpu-preview.yml"

# Inside the container.
INPUT_DIR = "/chatlike/input"
OUTPUT_DIR = "/chatlike/output"
CACHE_DIR = "/chatlike/cache"
CONFIG_NAME = "config.yml"
ORIGINAL_CONFIG_NAME = "config.original.yml"
INPUT_SUMS = "SHA256SUMS"  # sha256 of every staged file, written last into the input volume
RUN_INPUTS = "inputs"  # in a run's folder at home: its configs as staged, and their SHA256SUMS
JOB_RUN_DIR = "run"  # a job's input volume: the run's published folder, and the held-out set
JOB_HELDOUT = "data/heldout.jsonl"
JOB_TRAINING = "data/training"  # the run's training data, for eval's authorship and memorization
RUN_MANIFEST = "manifest.json"  # a published run's own record (the runner's; train-manifest.json is the trainer's)
TRAIN_MANIFEST = "train-manifest.json"  # the trainer's record, in the run's outputs

# How a run stands: created, running, stopped, or ended on its own (its outputs will not change any more).
ENDED = ("succeeded", "failed", "oom")

# Docker objects carry these labels so the runner finds its own and nothing else.
LABEL_RUN = "org.chatlike.run"
LABEL_ROLE = "org.chatlike.role"
LABEL_PLAN = "org.chatlike.plan"
LABEL_CACHE = "org.chatlike.cache"
LABEL_MIN_DRIVER = "org.chatlike.min-driver"  # on the training image: the oldest NVIDIA driver its CUDA runs on
LABEL_LLAMA_CPP = "org.chatlike.llama-cpp-python"  # on an image `export` can run in: llama.cpp's version
ROLE_TRAIN = "train"
ROLE_PROBE = "gpu-probe"
ROLE_VALIDATE = "validate"
ROLE_EVAL = "eval"
ROLE_CHAT = "chat"
ROLE_EXPORT = "export"
ROLE_COPY = "copy"  # copies a run's outputs home for a user who may not read the engine's volume folders
JOB_KINDS = (ROLE_EVAL, ROLE_EXPORT)  # each writes OUT/<run-id>/<kind>/

# The training image's unprivileged user: every container the runner starts runs as it (the image itself
# starts as root, for rented boxes' own setup, and `chatlike-train run` drops to it).
IMAGE_USER = "chatlike"

# One model cache per Docker host, shared by every run, so a base model downloads once.
CACHE_VOLUME = "chatlike-hf-cache"

# Passed to the container by name when set in the runner's environment; never printed or saved.
SECRET_NAMES = ("HF_TOKEN", "WANDB_API_KEY")

# Other variables passed by --env whose values are hidden in logs like the secrets above.
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

# Always set for training: private chats, so no telemetry; caches on the cache volume.
TRAINING_ENV = {
    "HF_HOME": f"{CACHE_DIR}/huggingface",
    "AXOLOTL_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYTHONUNBUFFERED": "1",
}
# A container the runner creates also gets what the NVIDIA runtime reads when it creates one (a rented box's
# job starts in a container that already exists: there it would do nothing).
CONTAINER_ENV = {**TRAINING_ENV, "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}

# `chatlike-train` starts a line that refuses to train on the machine it was given (a rented box's driver, its
# inputs) with this; the runner shows that line as the run's one-line error.
REFUSED = "chatlike-train: refused: "

# The exit code after Ctrl-C (128 + SIGINT), as a shell gives it.
INTERRUPTED_EXIT = 130

# Seconds between SIGTERM and SIGKILL when a run is stopped: long enough to save a checkpoint.
STOP_TIMEOUT = 120

# Preflight refuses to start when the output folder has less free space than this.
MIN_FREE_BYTES = 1 << 30
