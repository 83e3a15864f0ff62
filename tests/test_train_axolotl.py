"""chatlike-train with real Axolotl on CPU: a tiny local model, no downloads (uses the .venv-train venv)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import cpu_precision

REPO = Path(__file__).parents[1]
TRAIN_PYTHON = Path(os.environ.get("CHATLIKE_TRAIN_PYTHON", REPO / ".venv-train" / "bin" / "python"))
OFFLINE = {"HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}
BAR = re.compile(rb"(\d+)/(\d+) \[")
LINES = ["hi how are you?", "fine thanks, and you?", "see you at 8", "did you see the match?", "ciao! come stai?",
         "running late, sorry", "no worries, take your time", "send me the photos", "the meeting moved to monday"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, **OFFLINE, "HF_HOME": str(home / "hf"), "CUDA_VISIBLE_DEVICES": ""}


def chatlike_train(home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(TRAIN_PYTHON), "-m", "chatlike_runner.train", *args], cwd=home, env=_env(home),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A folder with a tiny model, data/train.jsonl (as `prepare` writes it) and the CPU smoke config pointing at both."""
    if not TRAIN_PYTHON.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the training venv {TRAIN_PYTHON} is missing (make train-venv)")
        pytest.skip(f"no training venv at {TRAIN_PYTHON} (make train-venv)")
    home = tmp_path_factory.mktemp("train")
    made = chatlike_train(home, "tiny-model", str(home / "tiny-model"))
    assert made.returncode == 0, made.stderr
    rng = random.Random(0)
    (home / "data").mkdir()
    with open(home / "data" / "train.jsonl", "w", encoding="utf-8") as data:
        for _ in range(48):
            turns = [{"role": "system", "content": "You chat like Marco."}]
            for _ in range(rng.randint(1, 3)):
                turns += [{"role": "user", "content": rng.choice(LINES)}, {"role": "assistant", "content": rng.choice(LINES)}]
            data.write(json.dumps({"messages": turns}) + "\n")
    return home


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill a run that is still going: chatlike-train and the trainer it started in its own session."""
    if process.poll() is not None:
        return
    for task in Path(f"/proc/{process.pid}/task").glob("*/children"):
        for child in task.read_text().split():
            os.killpg(int(child), signal.SIGKILL)
    process.kill()
    process.wait()


def smoke_config(home: Path, name: str, **overrides) -> Path:
    """configs/cpu-smoke.yml as shipped, with the tiny model, this home's outputs and the given overrides."""
    config = yaml.safe_load((REPO / "configs" / "cpu-smoke.yml").read_text())
    config.update(base_model=str(home / "tiny-model"), output_dir=str(home / "outputs" / name), **overrides)
    (home / "configs").mkdir(exist_ok=True)
    path = home / "configs" / f"{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_validate_accepts_the_smoke_config_and_reports_lengths(home):
    done = chatlike_train(home, "validate", str(smoke_config(home, "ok")))
    assert done.returncode == 0, done.stderr
    assert "passes AxolotlInputConfig" in done.stdout
    assert re.search(r"48 conversations; tokens median \d+, p95 \d+, max \d+; sequence_len 256; 0 longer", done.stdout)


def test_validate_rejects_a_misspelled_key_in_one_line(home):
    config = smoke_config(home, "typo", learning_rte=0.001)
    done = chatlike_train(home, "validate", str(config))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "chatlike-train: unknown config key learning_rte (did you mean learning_rate?): "
        "Axolotl ignores unknown keys silently; fix the spelling"
    ]


def test_validate_rejects_over_long_samples_in_one_line(home):
    long = home / "data" / "long.jsonl"
    turns = [[{"role": "user", "content": "hi " * n}, {"role": "assistant", "content": "ok"}] for n in (5, 400, 5, 600)]
    long.write_text("".join(json.dumps({"messages": t}) + "\n" for t in turns))
    config = smoke_config(home, "long", datasets=[{"path": "../data/long.jsonl", "type": "chat_template"}])
    done = chatlike_train(home, "validate", str(config))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"chatlike-train: dataset {long}: 4 conversations;")
    assert "sequence_len 256; 2 longer (over sequence_len: lines 2, 4): Axolotl would drop them" in line


def test_the_production_config_passes_axolotls_schema_with_no_unknown_keys(home):
    script = ("import sys, yaml; from chatlike_runner.train.validate import check_schema, quiet\n"
              "with quiet(): name = check_schema(yaml.safe_load(open(sys.argv[1])))\nprint(name)")
    done = subprocess.run([str(TRAIN_PYTHON), "-c", script, str(REPO / "configs" / "llama-3.1-8b-qlora.yml")],
                          env=_env(home), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "AxolotlInputConfig", done.stderr


def test_the_kernel_cache_layout_validate_reads_is_huggingface_hubs(home):
    """The image's kernels cache as the kernels library fills it (snapshot_download, repo_type "kernel")."""
    from test_train_units import KERNEL_FOLDER

    script = ("from huggingface_hub.file_download import repo_folder_name\n"
              "print(repo_folder_name(repo_id='kernels-community/flash-attn2', repo_type='kernel'))")
    done = subprocess.run([str(TRAIN_PYTHON), "-c", script], env=_env(home), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == KERNEL_FOLDER, done.stderr


def test_run_trains_the_tiny_model_and_writes_adapter_log_and_manifest_and_no_step_more_when_run_again(home):
    """A second run of a config whose run reached its last step (stopped during the final save, say) has nothing to
    resume: the Trainer's loop would otherwise train one step more (checkpoint-11 of 10)."""
    config = smoke_config(home, "run")
    done = chatlike_train(home, "run", str(config))
    assert done.returncode == 0, done.stdout[-3000:]
    out = home / "outputs" / "run"
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    assert json.loads((out / "adapter_config.json").read_text())["use_dora"] is True
    assert re.search(r"\{'loss': '?[0-9.]+'?,", done.stdout) and "10/10 [" in done.stdout
    log = (out / "logs" / "train.log").read_text()
    assert "no GPU: training on CPU" in log and "'loss'" in log
    manifest = json.loads((out / "train-manifest.json").read_text())
    assert manifest["exit_code"] == 0 and manifest["stopped_by"] is None and manifest["ended"]
    assert manifest["gpus"]["count"] == 0 and manifest["packages"]["axolotl"] == "0.19.0"
    # Written by the trainer itself: bf16: auto on a CPU trains in fp32, or bf16 where the CPU has AMX, never in fp16
    # (Axolotl's own rule, which has no fast CPU kernels).
    mixed = cpu_precision()
    assert manifest["precision"] == {"mixed": mixed, "tf32": False,
                                     "model_dtype": "bfloat16" if mixed == "bf16" else "float32"}
    assert manifest["torch"]["version"].startswith("2.13.0") and len(manifest["pip_freeze_sha256"]) == 64
    assert [d["path"] for d in manifest["datasets"]] == [str(home / "data" / "train.jsonl")]

    (out / "adapter_model.safetensors").unlink()  # as if the stop came during the final save
    again = chatlike_train(home, "run", str(config))
    assert again.returncode == 0, again.stdout[-3000:]
    assert "training already reached its last step (checkpoint-10): nothing to resume" in again.stdout
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-5"]
    final = (out / "checkpoint-10" / "adapter_model.safetensors").read_bytes()
    assert (out / "adapter_model.safetensors").read_bytes() == final
    manifest = json.loads((out / "train-manifest.json").read_text())
    assert manifest["exit_code"] == 0 and manifest["stopped_by"] is None and manifest["stopped_at_step"] is None


def test_sigterm_saves_a_checkpoint_and_a_later_run_resumes_from_it(home):
    out = home / "outputs" / "stop"
    config = smoke_config(home, "stop", max_steps=400, save_steps=1000)
    process = subprocess.Popen([str(TRAIN_PYTHON), "-m", "chatlike_runner.train", "run", str(config)], cwd=home,
                               env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    try:
        while not any(int(step) >= 3 for step, total in BAR.findall(seen) if total == b"400"):
            chunk = os.read(process.stdout.fileno(), 1 << 16)
            assert chunk, seen[-3000:].decode(errors="replace")
            seen += chunk
        process.send_signal(signal.SIGTERM)
        seen += process.communicate(timeout=120)[0]
    finally:
        _kill_tree(process)
    assert process.returncode == 143, seen[-3000:].decode(errors="replace")
    manifest = json.loads((out / "train-manifest.json").read_text())
    assert manifest["stopped_by"] == "SIGTERM" and manifest["exit_code"] == 143
    assert manifest["stopped_at_step"] == int(manifest["latest_checkpoint"].removeprefix("checkpoint-"))
    stopped_at = int(manifest["latest_checkpoint"].removeprefix("checkpoint-"))
    assert 3 <= stopped_at < 400
    assert (out / manifest["latest_checkpoint"] / "optimizer.pt").exists()

    resumed = chatlike_train(home, "run", str(smoke_config(home, "stop", max_steps=stopped_at + 3, save_steps=1000)))
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resume from checkpoint at {out}/checkpoint-{stopped_at}" in resumed.stdout
    state = json.loads((out / f"checkpoint-{stopped_at + 3}" / "trainer_state.json").read_text())
    assert state["global_step"] == stopped_at + 3
    assert len([entry for entry in state["log_history"] if "loss" in entry]) == stopped_at + 3


def test_eval_tokenizes_and_masks_exactly_as_axolotl_trained(home):
    """eval's input ids and labels (your turns only) are those of Axolotl's own preprocessed training set."""
    prepared = home / "prepared-for-eval"
    config = smoke_config(home, "tokens", dataset_prepared_path=str(prepared))
    done = subprocess.run([str(TRAIN_PYTHON), "-m", "axolotl.cli.preprocess", str(config)], cwd=config.parent, env=_env(home),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    script = (
        "import json, sys\nfrom pathlib import Path\nfrom datasets import load_from_disk\n"
        "from axolotl.loaders import load_tokenizer\nfrom chatlike_runner.train.tuned import axolotl_config, tokenized\n"
        "cfg = axolotl_config(Path(sys.argv[1]))\nrows = [json.loads(line) for line in open(sys.argv[2])]\n"
        "ours, too_long = tokenized(cfg, load_tokenizer(cfg), rows)\n"
        "(folder,) = [p for p in Path(sys.argv[3]).iterdir() if p.is_dir()]\n"
        "theirs = [(r['input_ids'], r['labels']) for r in load_from_disk(str(folder))]\n"
        "print(json.dumps({'ours': sorted(ours), 'theirs': sorted(theirs), 'too_long': too_long}))\n"
    )
    done = subprocess.run([str(TRAIN_PYTHON), "-c", script, str(config), str(home / "data" / "train.jsonl"), str(prepared)],
                          cwd=home, env=_env(home), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["ours"]) == 48 and result["too_long"] == 0
    assert result["ours"] == result["theirs"]
    assert all(any(label != -100 for label in labels) for _, labels in result["ours"])


def test_export_refuses_a_volume_too_small_for_the_merged_model(home):
    """The merged model, its f16 GGUF and the result must fit where the export writes, else one line, early."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but mounting a small tmpfs needs root")
        pytest.skip("mounting a small tmpfs needs root")
    small = home / "small-volume"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    script = ("import sys, torch\nfrom types import SimpleNamespace\nfrom pathlib import Path\n"
              "from chatlike_runner.train.gguf import need_space\nfrom chatlike_runner.train.errors import TrainError\n"
              "model = torch.nn.Linear(1000, 1000)\n"
              "try:\n    need_space(SimpleNamespace(model=model), Path(sys.argv[1]), 'q8_0')\nexcept TrainError as e:\n"
              "    print(e.format_message())\n")
    try:
        done = subprocess.run([str(TRAIN_PYTHON), "-c", script, str(small)], env=_env(home), capture_output=True,
                              text=True, timeout=120)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ("exporting needs about 7.7 MB free where the Docker host keeps its volumes (the "
                                   "merged model, its f16 GGUF and the q8_0 file); 1.0 MB are: free some space there")


def test_a_config_that_asks_for_bf16_trains_in_it_on_a_cpu(home):
    """transformers refuses bf16 without a GPU unless told the run is on the CPU: chatlike's plugin tells it (the
    path `bf16: auto` takes on a CPU with AMX, taken here on any CPU by asking for bf16 itself)."""
    config = smoke_config(home, "bf16", max_steps=2, save_steps=1000, bf16=True, load_in_4bit=False, adapter="lora",
                          optimizer="adamw_torch")
    done = chatlike_train(home, "run", str(config))
    assert done.returncode == 0, done.stdout[-3000:]
    manifest = json.loads((home / "outputs" / "bf16" / "train-manifest.json").read_text())
    assert manifest["precision"]["mixed"] == "bf16" and manifest["precision"]["model_dtype"] == "bfloat16"


REFUSED = [
    ({"train_on_inputs": True}, "train_on_inputs: true trains the model on the other people's messages too"),
    ({"datasets": [{"path": "../data/train.jsonl", "type": "chat_template", "roles_to_train": ["assistant", "user"]}]},
     "datasets[0].roles_to_train: user trains the model on the other people's turns too"),
    ({"datasets": [{"path": "../data/train.jsonl", "type": "chat_template", "train_on_eot": "none"}]},
     "datasets[0].train_on_eot: none never trains the token that ends your reply"),
    ({"eot_tokens": ["<|im_end|>"]}, "eot_tokens: <|im_end|> is not in the chat template (llama3), so Axolotl would not "
                                     "train it and the model would never learn to end a reply; set eot_tokens to the "
                                     "token the template ends a turn with (<|eot_id|> ends a turn in it)"),
    ({"chat_template": "chatml"}, "chat_template: chatml writes <|im_start|>, <|im_end|>, which the tokenizer of"),
]


def test_validate_refuses_what_would_not_train_a_model_that_chats_like_you(home):
    """Each in words, in one process (Axolotl imported once)."""
    configs = [str(smoke_config(home, f"recipe-{number}", **change)) for number, (change, _) in enumerate(REFUSED)]
    script = ("import sys\nfrom pathlib import Path\nfrom chatlike_runner.train.errors import TrainError\n"
              "from chatlike_runner.train.validate import validate\nfor path in sys.argv[1:]:\n"
              "    try:\n        validate(Path(path))\n        print('accepted')\n"
              "    except TrainError as exc:\n        print(exc.format_message().replace('\\n', ' '))\n")
    done = subprocess.run([str(TRAIN_PYTHON), "-c", script, *configs], cwd=home, env=_env(home), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout.strip().splitlines()[-len(REFUSED):]
    for (_, expected), line in zip(REFUSED, said):
        assert expected in line, line
