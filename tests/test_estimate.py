"""The estimate before a run: memory per GPU term by term, the fit check that refuses a run before anything is
created or rented, the work of a dataset, time and cost.

The arithmetic (estimate.py) is tested on the seed's exact shape, whose counts test_shapes.py pins against the
published model; the commands run as a user runs them: `estimate` with the training stack in-process (the training
venv) and through the training image on the engine, `start --on --dry-run` with SkyPilot's own catalog (pinned).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import need

from chatlike_runner import estimate as est
from chatlike_runner import fit
from chatlike_runner.plan import build_plan

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "configs" / "llama-3.1-8b-qlora.yml"
CATALOG = Path(__file__).parent / "skypilot_catalog"
TRAIN_VENV = Path(os.environ.get("CHATLIKE_TRAIN_PYTHON", REPO / ".venv-train" / "bin" / "python")).parent
DIGEST = "registry.example/chatlike/train@sha256:" + "a" * 64
OFFLINE = {"HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1"}

# Llama 3.1 8B with the seed's adapter (r=64 on every linear layer, DoRA, embed_tokens and lm_head saved): the counts
# `chatlike-train shapes` gives, pinned in test_shapes.py.
SEED_FACTS = {
    "model": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
              "tie_word_embeddings": False},
    "parameters": {"total": 8_030_261_248, "embed": 525_336_576, "lm_head": 525_336_576, "linear": 6_979_321_856,
                   "linear_bias": 0, "other": 266_240, "lora": 167_772_160, "dora": 1_376_256,
                   "saved": 1_050_673_152, "trainable_other": 0, "trainable": 1_219_821_568},
}


def _seed(**changes) -> dict:
    return {**yaml.safe_load(SEED.read_text()), **changes}


def _memory(raw: dict, gpu: str, count: int) -> est.Memory:
    return est.memory(SEED_FACTS, est.Recipe.of(raw, count, SEED.parent), est.gpu(gpu), count)


def test_the_seed_on_one_3090_with_micro_batch_8_does_not_fit_and_on_one_h100_it_does():
    raw = _seed(micro_batch_size=8)
    small, large = _memory(raw, "RTX3090", 1), _memory(raw, "H100", 1)
    assert small.over and small.verdict == "does not fit"
    assert large.fits and large.verdict == "fits"
    # The logits of 8 x 4,096 tokens over a 128,256 vocabulary dominate: 10 bytes each.
    assert small.biggest(1)[0].name == "logits and loss"
    assert small.biggest(1)[0].bytes == 8 * 4096 * 128256 * 10
    fixes = est.fixes(SEED_FACTS, est.Recipe.of(raw, 1, SEED.parent), est.gpu("RTX3090"), 1)
    # No one change is enough on one 24 GB card: the first ones together are named.
    assert fixes == ["micro_batch_size: 1 with gradient_accumulation_steps: 16 (the same batch) and Liger's fused "
                     f"linear cross-entropy (plugins: [axolotl.integrations.liger.LigerPlugin], "
                     f"liger_fused_linear_cross_entropy: true): {fixes[0].rsplit(': ', 1)[1]}"]


def test_each_term_is_its_formula():
    m = _memory(_seed(), "RTX3090", 2)
    items = {item.name: item.bytes for item in m.items}
    p = SEED_FACTS["parameters"]
    trainable = p["trainable"]
    assert items["base weights, 4-bit NF4"] == pytest.approx(p["linear"] * (0.5 + (1 + 4 / 256) / 64))
    assert items["base weights, unquantized"] == (p["embed"] + p["lm_head"] + p["other"]) * 2
    assert items["modules_to_save copies"] == p["saved"] * 2
    assert items["adapter: LoRA + DoRA"] == (p["lora"] + p["dora"]) * 2  # DeepSpeed casts to bf16
    assert items["master weights (fp32)"] == trainable * 4 / 2
    assert items["optimizer states (ZeRO-2: / 2)"] == trainable * 2 / 2  # 8-bit Adam, partitioned
    assert items["gradients (ZeRO-2)"] == trainable * 2 / 2 + 2 * 500_000_000 * 2  # overlap_comm: two buckets
    kept = items["activations: checkpointed layer inputs"]
    assert kept == 32 * 4096 * 4096 * 2
    assert items["activations: one layer recomputed"] == 4096 * (
        (12 + 6 + 18 + 12) * 4096 + (6 + 8) * 1024 + (8 + 3 + 8) * 14336)
    # The peak: what is held, plus the largest of the loss and a layer's recompute (each beside the checkpointed
    # inputs) and the optimizer step, which never coexist; then the allocator's margin.
    held = sum(item.bytes for item in m.items if item.phase is None and item.name != "allocator margin")
    moment = max(kept + items["activations: one layer recomputed"] + items["a dequantized layer"],
                 kept + items["logits and loss"], items["gradients, fp32 partition at the step"])
    assert m.total == pytest.approx((held + moment) * 1.1)


def test_the_seeds_own_set_up_fits_two_3090s_with_zero2_and_zero1_sits_at_the_edge():
    # The seed's author: ZeRO-1 ran out of memory on 2x RTX 3090, ZeRO-2 fit (no figures published).
    zero2 = _memory(_seed(), "RTX3090", 2)
    zero1 = est.memory(SEED_FACTS, replace(est.Recipe.of(_seed(), 2, SEED.parent), zero=1), est.gpu("RTX3090"), 2)
    # The estimate agrees in order: ZeRO-2 fits with about 1.3 GiB to spare; ZeRO-1, which keeps every bf16 gradient
    # on each GPU, lands within 0.1 GiB of the 24 GiB, where fragmentation decides.
    assert zero2.fits and 22 * est.GIB < zero2.total < 23 * est.GIB
    assert zero1.total - zero2.total == pytest.approx(SEED_FACTS["parameters"]["trainable"] * 2 / 2 * 1.1)
    assert 23.8 * est.GIB < zero1.total <= 24 * est.GIB
    # One GPU runs without DeepSpeed: no masters, no partitions; the saved embedding's Adam states are 32-bit.
    single = _memory(_seed(), "RTX3090", 1)
    assert not any(item.name.startswith("master") for item in single.items)
    optimizer = next(item for item in single.items if item.name.startswith("optimizer"))
    assert optimizer.bytes == SEED_FACTS["parameters"]["trainable"] * 2 + 525_336_576 * 6


def test_fused_cross_entropy_and_a_shorter_sequence_shrink_what_they_should():
    plain = _memory(_seed(), "RTX3090", 2)
    fused = _memory(_seed(liger_fused_linear_cross_entropy=True), "RTX3090", 2)
    name = {item.name: item for item in fused.items}
    assert "logits and loss" not in name and name["logits and loss (fused linear cross-entropy)"].bytes < 2.2 * est.GIB
    assert fused.fits and fused.total < plain.total - 2 * est.GIB
    shorter = _memory(_seed(sequence_len=2048), "RTX3090", 2)
    assert shorter.fits
    logits = {item.name: item.bytes for item in shorter.items}["logits and loss"]
    assert logits == 2048 * 128256 * 10


def test_the_work_of_a_dataset():
    facts = {**SEED_FACTS, "tokens": {"conversations": 1000, "tokens": 1_000_000, "squares": 1_000_000_000,
                                      "counted": "counted"}}
    recipe = est.Recipe.of(_seed(val_share=0), 2, SEED.parent)
    work = est.work(facts, replace(recipe, val_share=0.0), 2)
    sequences = -(-1_000_000 // int(4096 * est.PACKING_EFFICIENCY) )
    assert work.sequences in (sequences, sequences + 1)  # ceil of tokens / (4,096 x 0.97)
    assert work.steps == 4 * -(-work.sequences // (1 * 2 * 2))  # micro-batch 1, accumulation 2, 2 GPUs, 4 epochs
    # Padded to 4,096, every sequence costs its full length; with checkpointing, 6 FLOPs per multiplied weight
    # per token, 2 more for each trainable one that multiplies (LoRA, lm_head's copy), and attention.
    p = SEED_FACTS["parameters"]
    processed = work.sequences * 4096
    per_token = 6 * (p["total"] - p["embed"] + p["lora"]) + 2 * (p["lora"] + p["lm_head"])
    attention = 4 * 32 * 2 * 4096 * 1_000_000_000
    assert work.flops == pytest.approx(4 * (processed * per_token + attention))
    low, high = est.hours(work.flops, est.gpu("RTX3090"), 2)
    assert high / low == pytest.approx(est.MFU[1] / est.MFU[0])
    assert low == pytest.approx(work.flops / (2 * 71e12 * est.MFU[1]) / 3600)


@pytest.mark.parametrize("name,memory,expected", [
    ("NVIDIA GeForce RTX 3090", 24.0, ("RTX3090", 71)),
    ("NVIDIA H100 80GB HBM3", 79.6, ("H100", 989)),
    ("NVIDIA RTX A6000", 47.99, ("A6000", 154.8)),
    ("NVIDIA L40S", 44.99, ("L40S", 362)),
    ("NVIDIA A100-SXM4-80GB", 80.0, ("A100", 312)),
    ("Some Future GPU", 96.0, ("Some Future GPU", None)),
])
def test_gpu_types_are_read_from_nvidia_smi_names_with_the_memory_it_reports(name, memory, expected):
    found = est.gpu(name, memory)
    assert (found.name, found.tflops) == expected and found.memory_gib == memory
    assert fit.local_gpu([f"0, {name}, {memory * 1024:.0f} MiB, 580.1", f"1, {name}, {memory * 1024:.0f} MiB, 580.1"])[1] == 2


def _train_venv() -> Path:
    if not (TRAIN_VENV / "chatlike-runner").exists():
        need(f"the training venv {TRAIN_VENV} lacks chatlike-runner (make train-venv)")
    return TRAIN_VENV


def _dataset(folder: Path, conversations: int = 40) -> Path:
    path = folder / "train.jsonl"
    line = {"messages": [{"role": "user", "content": "are you coming tonight? " * 8},
                         {"role": "assistant", "content": "yes, around nine, I'll bring the cake " * 6}]}
    path.write_text("".join(json.dumps(line) + "\n" for _ in range(conversations)), encoding="utf-8")
    return path


def test_estimate_in_process_prints_every_term_the_verdict_the_work_and_its_sources(tmp_path):
    venv = _train_venv()
    data = _dataset(tmp_path)
    result = subprocess.run([str(venv / "chatlike-runner"), "estimate", str(SEED), "--gpu", "RTX3090:2",
                             "--data", str(data)], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, **OFFLINE, "HOME": str(tmp_path), "PATH": f"{venv}:{os.environ['PATH']}"},
                            timeout=300)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "llama: 8,030,261,248 parameters" in text and "trainable 1,219,821,568" in text
    assert "memory per GPU, 2x RTX3090 (24 GiB each), DeepSpeed ZeRO-2:" in text
    for term in ("base weights, 4-bit NF4", "base weights, unquantized", "adapter: LoRA + DoRA", "modules_to_save copies",
                 "gradients (ZeRO-2)", "master weights (fp32)", "optimizer states", "activations: checkpointed layer inputs",
                 "activations: one layer recomputed", "logits and loss", "CUDA context", "allocator margin"):
        assert term in text, term
    assert "total 22.7 GiB of 24: fits (1.3 GiB spare)" in text
    assert "Rajbhandari et al. 2020" in text and "bitsandbytes NF4" in text
    assert "work: 40 conversations" in text and "approximated, no tokenizer in the model cache" in text
    assert "optimizer steps (4 epochs)" in text
    assert "at 25%-45% MFU" in text and "NVIDIA-ampere-GA102" in text


def test_estimate_through_the_training_image_prices_it_at_the_catalogs_price(cli, workdir, cpu_image):
    shutil.copytree(CATALOG / "v8", Path(os.environ["HOME"]) / ".sky" / "catalogs" / "v8")
    data = _dataset(workdir, 400)
    result = cli("estimate", str(SEED), "--data", str(data), "--on", "runpod", "--json", "--image", cpu_image,
                 env=OFFLINE, check=True)
    found = json.loads(result.stdout)
    assert found["parameters"]["trainable"] == 1_219_821_568  # counted in the image, as in-process
    assert found["gpu"] == {"type": "RTX3090", "count": 2, "memory_gib": 24.0, "peak_tflops": 71,
                            "source": est.GPUS["rtx3090"].source}
    assert found["offer"]["hourly_price_usd"] == 1.0 and found["offer"]["instance_type"] == "2x_RTX3090_SECURE"
    assert found["work"]["conversations"] == 400 and found["work"]["steps"] > 0
    low, high = found["hours"]
    assert found["cost_usd"] == pytest.approx([low * 1.0, high * 1.0])
    assert found["memory"]["fits"] is True and found["memory"]["total_gib"] == pytest.approx(22.7, abs=0.05)
    printed = cli("estimate", str(SEED), "--data", str(data), "--on", "runpod", "--image", cpu_image, env=OFFLINE,
                  check=True)
    assert "cost: $" in printed.stdout and "at $1.00/h (runpod 2x_RTX3090_SECURE in CA, SkyPilot's catalog)" in printed.stdout


def test_estimate_without_gpus_or_a_known_type_says_what_to_pass(cli, workdir):
    result = cli("estimate", str(SEED), "--gpu", "TPU9000:1")
    assert result.returncode == 2 and "chatlike knows the memory of RTX3090" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_start_on_refuses_a_run_that_cannot_fit_before_anything_is_rented(cli, workdir, cpu_image):
    shutil.copytree(CATALOG / "v8", Path(os.environ["HOME"]) / ".sky" / "catalogs" / "v8")
    config = workdir / "seed-mb8.yml"
    config.write_text(SEED.read_text().replace("micro_batch_size: 1", "micro_batch_size: 8"))
    refused = cli("start", str(config), "--data", "data/train.jsonl", "--image", DIGEST, "--on", "runpod", "--gpu",
                  "RTX3090:1", "--dry-run", env=OFFLINE)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith("chatlike-runner: the run does not fit: about ")
    assert "against 1x RTX3090's 24 GiB (biggest: logits and loss 39.1 GiB, activations" in line
    assert "it would fit with micro_batch_size: 1 with gradient_accumulation_steps: 16 (the same batch) and Liger's" in line
    assert "--no-fit-check starts anyway" in line
    assert not list(workdir.glob("outputs/*")), "nothing is written for a refused run"
    fits = cli("start", str(config), "--data", "data/train.jsonl", "--image", DIGEST, "--on", "runpod", "--gpu",
               "A100-80GB:1", "--dry-run", env=OFFLINE, check=True)
    assert "against 1x A100-80GB's 80 GiB: it fits" in " ".join(fits.stdout.split())
    anyway = cli("start", str(config), "--data", "data/train.jsonl", "--image", DIGEST, "--on", "runpod", "--gpu",
                 "RTX3090:1", "--dry-run", "--no-fit-check", env=OFFLINE, check=True)
    assert "does not fit" not in anyway.stdout + anyway.stderr and "checked offline" in anyway.stdout


def test_the_local_fit_check_reads_the_gpus_preflight_saw(workdir, docker_client, cpu_image, monkeypatch):
    # No GPU here: the nvidia-smi lines preflight would have read are given; the counting runs for real in the
    # image on the engine, as `start` runs it.
    from chatlike_runner.engine import Engine
    from chatlike_runner.core.errors import ChatlikeError

    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    config = workdir / "seed-mb8.yml"
    config.write_text(SEED.read_text().replace("micro_batch_size: 1", "micro_batch_size: 8"))
    plan = build_plan(config, data=workdir / "data" / "train.jsonl", image=cpu_image, gpus="all")
    engine = Engine.connect(None)
    with pytest.raises(ChatlikeError, match=r"against 2x RTX3090's 24 GiB"):
        list(fit.check_here(plan, ["0, NVIDIA GeForce RTX 3090, 24576 MiB, 580.1"] * 2, cpu_image, engine))
    notes = list(fit.check_here(plan, ["0, NVIDIA H100 80GB HBM3, 81559 MiB, 580.1"], cpu_image, engine))
    assert "estimated 69.9 GiB per GPU against 1x H100's 79.6 GiB: it fits" in notes[0].text
    assert list(fit.check_here(replace(plan, fit_check=False), ["0, NVIDIA GeForce RTX 3090, 24576 MiB, 1"], cpu_image,
                               engine)) == []
    assert list(fit.check_here(plan, [], cpu_image, engine)) == []  # a CPU run: nothing to fit
    unknown = list(fit.check_here(plan, ["0, NVIDIA Some GPU, [N/A], 580.1"], cpu_image, engine))
    assert unknown[0].warning and "the memory estimate was skipped: nvidia-smi gave no memory" in unknown[0].text


def test_without_the_configs_dataset_the_work_is_the_bundled_examples_and_said_so(tmp_path):
    venv = _train_venv()
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "seed.yml"  # reads ../data/train.jsonl: not there
    config.write_text(SEED.read_text())
    result = subprocess.run([str(venv / "chatlike-runner"), "estimate", str(config), "--gpu", "RTX3090:2", "--json"],
                            capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **OFFLINE, "HOME": str(tmp_path)},
                            timeout=300)
    assert result.returncode == 0, result.stderr
    work = json.loads(result.stdout)["work"]
    assert work["conversations"] > 100 and work["steps"] > 0
    assert work["dataset_note"].startswith("the config's dataset is not there yet: the work below is the bundled example")
    assert not (tmp_path / "data").exists(), "nothing is written where the config reads its dataset"
    assert json.loads(result.stdout)["memory"]["zero_stage"] == 2  # configs/deepspeed/zero2.json, found in the checkout


@pytest.mark.parametrize("key,value", [("micro_batch_size", "eight"), ("sequence_len", -1), ("num_epochs", [4]),
                                       ("gradient_accumulation_steps", True)])
def test_a_config_value_of_the_wrong_kind_is_one_line_naming_it(key, value):
    from chatlike_runner.core.errors import ChatlikeError

    with pytest.raises(ChatlikeError, match=rf"^the config's {key}: .* is not a (whole )?number of 0 or more; fix it"):
        est.Recipe.of(_seed(**{key: value}), 1, SEED.parent)
