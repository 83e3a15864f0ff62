"""Exact parameter counts of real model shapes (`chatlike-train shapes`), in the training venv: each base model is
built on the meta device from the values of its published config.json, written here, and the seed's adapter
(r=64 on every linear layer, DoRA, embed_tokens and lm_head saved) is added by Axolotl itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
TRAIN_PYTHON = Path(os.environ.get("CHATLIKE_TRAIN_PYTHON", REPO / ".venv-train" / "bin" / "python"))
SEED = REPO / "configs" / "llama-3.1-8b-qlora.yml"
OFFLINE = {"HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1"}

# The shape values of each model's config.json as published on the hub, and its parameter count as published
# (the sum of its safetensors tensors).
MODELS = {
    "meta-llama/Llama-3.1-8B": ({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
                                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                                 "vocab_size": 128256, "tie_word_embeddings": False, "rope_theta": 500000.0,
                                 "max_position_embeddings": 131072,
                                 "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 8192}},
                                8_030_261_248),
    "meta-llama/Llama-3.2-1B": ({"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
                                 "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                                 "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True},
                                1_235_814_400),
    "meta-llama/Llama-3.2-3B": ({"model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192,
                                 "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8,
                                 "head_dim": 128, "vocab_size": 128256, "tie_word_embeddings": True},
                                3_212_749_824),
    "Qwen/Qwen2.5-7B": ({"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
                         "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                         "vocab_size": 152064, "tie_word_embeddings": False}, 7_615_616_512),
}
R = 64  # the seed's lora_r


def _expected(config: dict) -> dict[str, int]:
    """The seed adapter's counts by hand: LoRA adds r x (in + out) to each of the 7 linear layers of every decoder
    layer, DoRA one magnitude per output feature, and each saved module a full copy (two, tied or not)."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    linears = [(hidden, q), (hidden, kv), (hidden, kv), (q, hidden), (hidden, inter), (hidden, inter), (inter, hidden)]
    return {"lora": R * layers * sum(i + o for i, o in linears), "dora": layers * sum(o for _, o in linears),
            "saved": 2 * config["vocab_size"] * hidden}


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[str, dict]:
    if not TRAIN_PYTHON.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the training venv {TRAIN_PYTHON} is missing (make train-venv)")
        pytest.skip(f"no training venv at {TRAIN_PYTHON} (make train-venv)")
    folder = tmp_path_factory.mktemp("shapes")
    configs = []
    for name, (config, _) in MODELS.items():
        model = folder / name
        model.mkdir(parents=True)
        (model / "config.json").write_text(json.dumps(config))
        run_config = folder / f"{name.replace('/', '-')}.yml"
        run_config.write_text(SEED.read_text().replace("base_model: NousResearch/Meta-Llama-3.1-8B",
                                                       f"base_model: {model}"))
        configs.append(str(run_config))
    # One process for all four (importing the stack takes most of the time); the command itself is tested below.
    done = subprocess.run(
        [str(TRAIN_PYTHON), "-c", "import json, sys; from chatlike_runner.train import config, shapes; "
         "from pathlib import Path; print(json.dumps([shapes.shapes(config.load(Path(p))) for p in sys.argv[1:]]))", *configs],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = dict(zip(MODELS, json.loads(done.stdout.splitlines()[-1]), strict=True))
    found["command"] = subprocess.run([str(TRAIN_PYTHON), "-m", "chatlike_runner.train", "shapes", configs[0]],
                                      capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=300)
    return found


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_counts_are_exact(measured, name):
    config, published = MODELS[name]
    counts = measured[name]["parameters"]
    assert counts["total"] == published
    assert counts["embed"] == config["vocab_size"] * config["hidden_size"]
    assert counts["lm_head"] == (0 if config["tie_word_embeddings"] else counts["embed"])
    assert counts["total"] == counts["embed"] + counts["lm_head"] + counts["linear"] + counts["linear_bias"] + counts["other"]
    assert {kind: counts[kind] for kind in ("lora", "dora", "saved")} == _expected(config)
    assert counts["trainable"] == counts["lora"] + counts["dora"] + counts["saved"]
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    biases = config["num_hidden_layers"] * head_dim * (config["num_attention_heads"] + 2 * config["num_key_value_heads"])
    assert counts["linear_bias"] == (biases if config["model_type"] == "qwen2" else 0)  # Qwen2's q, k and v have them


def test_the_seed_adds_a_billion_trainable_parameters_most_of_them_saved_embeddings(measured):
    """The issue's figures: the saved embed_tokens and lm_head copies add ~1.05 B, r=64 LoRA ~168 M, DoRA ~1.4 M."""
    counts = measured["meta-llama/Llama-3.1-8B"]["parameters"]
    assert (counts["saved"], counts["lora"], counts["dora"]) == (1_050_673_152, 167_772_160, 1_376_256)


def test_the_shapes_command_prints_them_as_json(measured):
    done = measured["command"]
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout)
    assert printed == measured["meta-llama/Llama-3.1-8B"]
    assert printed["model"] | {"torch_dtype": None} == {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
        "tie_word_embeddings": False, "torch_dtype": None, "config_json": printed["model"]["config_json"]}
    assert printed["model"]["config_json"].endswith("meta-llama/Llama-3.1-8B")  # where its config.json was read
