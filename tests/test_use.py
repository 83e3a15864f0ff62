"""Using a trained run: `eval`, `chat` and `export` on a real CPU smoke run (real Axolotl, the tiny model) in the
CPU image. The persona measures of `eval` and its report in a browser: test_persona.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from chatlike_runner.build import export_tag

from conftest import runner_cmd, started_run

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[1]


def run_cli(project: Path, *args: str, timeout: float = 900, stdin: str | None = None,
            home: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(runner_cmd(*args), cwd=project, capture_output=True, text=True, timeout=timeout, input=stdin,
                          env={**os.environ, "HOME": str(home or project)})


PAIRS = [("hey, are you coming tonight?", "yes! at 8"), ("did you see the match?", "what a goal"),
         ("can you send the photos?", "sure, one sec"), ("running late, sorry", "no worries"),
         ("ciao! come stai?", "tutto bene"), ("the meeting moved to monday", "thanks for the heads up"),
         ("want to grab lunch?", "sounds good"), ("where are you?", "almost there"), ("happy birthday!", "thank you!!"),
         ("did you feed the cat?", "yes, twice"), ("movie tonight?", "count me in"), ("good night", "night :)")]


def conversations() -> list[str]:
    """Twelve short chats as `prepare` writes them (a system prompt, you as the assistant), four with two turns."""
    rows = []
    for i, (question, answer) in enumerate(PAIRS):
        messages = [{"role": "system", "content": "You chat like Robin."}, {"role": "user", "content": question},
                    {"role": "assistant", "content": answer}]
        if i % 3 == 0:
            question, answer = PAIRS[(i + 1) % len(PAIRS)]
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append(json.dumps({"messages": messages}))
    return rows


def overfit(project: Path, steps: int) -> str:
    """Train the smoke config on PROJECT/data/train.jsonl for `steps` steps at a high learning rate, in the CPU
    image; returns the finished run's id."""
    config = yaml.safe_load((ROOT / "configs" / "cpu-smoke.yml").read_text())
    config.update(max_steps=steps, learning_rate=0.005, save_steps=1000)
    (project / "configs").mkdir()
    (project / "configs" / "overfit.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_cli(project, "start", "--smoke", "configs/overfit.yml", "--data", "data/train.jsonl")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    run_id = started_run(result.stdout)
    assert f"next: `chatlike-runner eval {run_id}`" in result.stdout
    return run_id


@pytest.fixture(scope="module")
def trained(cpu_image, tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A finished CPU smoke run that over-fits on purpose (40 steps at a high learning rate, on few short
    conversations): its held-out set is its training set, and it has learnt to end its replies."""
    project = tmp_path_factory.mktemp("use")
    rows = conversations()
    (project / "data").mkdir()
    (project / "data" / "train.jsonl").write_text("\n".join(rows * 6) + "\n")
    (project / "data" / "heldout.jsonl").write_text("\n".join(rows) + "\n")
    run_id = overfit(project, 40)
    yield project, run_id
    run_cli(project, "rm", run_id)  # its container and volumes: a finished run stays on the engine until removed


def test_eval_bad_input_is_one_line_and_leaves_nothing(trained, leftovers):
    project, run_id = trained
    cases = [
        (("eval", "20000101-000000-0000"), "no finished run '20000101-000000-0000'"),
        (("eval", run_id), "eval already exists; pass --force"),
        (("eval", run_id, "--force", "--heldout", "empty.jsonl"), "is empty: no held-out conversation to use"),
        (("eval", run_id, "--force", "--heldout", "missing.jsonl"), "does not exist"),
    ]
    (project / "empty.jsonl").write_text("\n")
    (project / "outputs" / run_id / "eval").mkdir(exist_ok=True)
    for args, message in cases:
        result = run_cli(project, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    unfinished = project / "outputs" / "20261130-000000-beef"
    shutil.copytree(project / "outputs" / run_id, unfinished, ignore=shutil.ignore_patterns("adapter_*"))
    manifest = json.loads((unfinished / "manifest.json").read_text())
    (unfinished / "manifest.json").write_text(json.dumps({**manifest, "run_id": unfinished.name}))
    result = run_cli(project, "eval", unfinished.name)
    assert result.returncode == 2 and "has no adapter" in result.stderr, result.stderr
    assert leftovers() == []


def test_ctrl_c_during_eval_leaves_no_container_or_volume(trained, leftovers):
    project, run_id = trained
    process = subprocess.Popen(runner_cmd("eval", run_id, "--force"), cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "HOME": str(project)})
    seen = ""
    deadline = time.monotonic() + 120
    while "eval of run" not in seen:
        assert time.monotonic() < deadline and process.poll() is None, seen
        seen += process.stdout.readline()
    process.send_signal(signal.SIGINT)
    output = seen + process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "eval interrupted; nothing was written" in output and "Traceback" not in output
    assert leftovers() == []
    assert not list((project / "outputs" / run_id).glob(".eval.*")), "no half-written eval folder"


TURNS = "hey, are you coming tonight?\nok see you\n\nwhat are you doing?\n"


def test_chat_piped_answers_each_line_with_one_line_that_ends_at_eot(trained, leftovers):
    project, run_id = trained
    result = run_cli(project, "chat", run_id, "--temperature", "0", stdin=TURNS)
    assert result.returncode == 0, result.stderr
    replies = result.stdout.splitlines()
    assert len(replies) == 3 and all(reply.strip() for reply in replies), result.stdout
    assert "cut at --max-new-tokens" not in result.stderr, "every reply ended at <|eot_id|>, not at the token limit"
    assert f"chatting with run {run_id}" in result.stderr and "loading the model" in result.stderr
    again = run_cli(project, "chat", run_id[:15], "--temperature", "0", stdin=TURNS)
    assert again.stdout == result.stdout, "greedy replies are the same every time"
    assert leftovers() == []


def test_chat_in_a_terminal_streams_replies_and_takes_commands(trained, leftovers):
    import pexpect  # a test dependency ([test] extra): missing, the test fails rather than skips
    project, run_id = trained
    child = pexpect.spawn(runner_cmd("chat", run_id, "--temperature", "0")[0], runner_cmd("chat", run_id, "--temperature", "0")[1:],
                          cwd=str(project), env={**os.environ, "HOME": str(project)}, encoding="utf-8", timeout=180)
    try:
        child.expect("you> ")
        child.sendline("hey, are you coming tonight?")
        child.expect("run> ")
        child.expect("you> ")
        child.sendline("/base")
        child.expect("base> ")
        child.expect("you> ")
        child.sendline("/system You are Marco.")
        child.expect("system prompt: You are Marco.")
        child.expect("you> ")
        child.sendline("/reset")
        child.expect("conversation reset")
        child.expect("you> ")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert leftovers() == []


def test_chat_over_ssh(trained, ssh_host, workdir, leftovers):
    project, run_id = trained
    url, known_host, ssh_dir = ssh_host
    (ssh_dir / "known_hosts").write_text(known_host)
    result = run_cli(project, "chat", run_id, "--temperature", "0", "--host", url, stdin="hello there\n",
                     home=Path(os.environ["HOME"]))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and f"on {url}" in result.stderr
    assert leftovers() == []


GGUF_FACTS = """
import json, sys
from gguf import GGUFReader
from llama_cpp import Llama
path = sys.argv[1]
reader = GGUFReader(path)
def field(name):
    f = reader.fields[name]
    return f.contents()
llm = Llama(model_path=path, n_ctx=256, verbose=False)
# A 10-step tiny model may well end at once: the end tokens are kept out, so that generating is what is checked.
ends = {int(llm.token_eos()): -100.0, int(field("tokenizer.ggml.eot_token_id")): -100.0}
out = llm.create_completion(prompt="hi", max_tokens=8, temperature=0.0, logit_bias=ends)
print(json.dumps({"template": field("tokenizer.chat_template"), "eot": field("tokenizer.ggml.eot_token_id"),
                  "eot_text": llm.detokenize([field("tokenizer.ggml.eot_token_id")], special=True).decode(),
                  "generated": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"]}))
"""


def gguf_facts(docker_client, image: str, export: Path, gguf: str) -> dict:
    """What gguf-py and llama.cpp, in the image, read from the exported file (independently of export's own checks)."""
    output = docker_client.containers.run(
        image, ["python", "-c", GGUF_FACTS, f"/export/{gguf}"], entrypoint=[], remove=True, network_mode="none",
        environment={"PYTHONPATH": "/opt/llama.cpp/gguf-py"}, volumes={str(export): {"bind": "/export", "mode": "ro"}},
    )
    return json.loads(output.decode().strip().splitlines()[-1])


def without_export_image(docker_client, export_image: str) -> str:
    """Remove `export_image` and the tag its build left on the training image, so that the next export builds it
    again; returns its name."""
    for tag in (export_image, f"{export_image}-base"):
        if docker_client.images.list(name=tag):
            docker_client.images.remove(tag)
    return export_image


def test_export_writes_a_gguf_llama_cpp_loads_with_training_s_template(trained, cpu_image, docker_client, leftovers):
    """The first export of a run on an image builds its export image (llama.cpp on top of it), once, and later ones
    reuse it (test_preview.py's export, first in a test run, builds it; f16 and greedy replies are tested there, on
    a real model)."""
    project, run_id = trained
    quant = "q8_0"
    export_image = export_tag(docker_client.images.get(cpu_image).id)
    existed = bool(docker_client.images.list(name=export_image))
    result = run_cli(project, "export", run_id, "--gguf", quant, "--name", "marco", "--force")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    announced = f"export needs llama.cpp, which chatlike/train:cpu leaves out: building {export_image} on it, once"
    assert (announced in result.stdout) is not existed, result.stdout[-3000:]
    export = project / "outputs" / run_id / "export"
    gguf = export / f"marco.{quant}.gguf"
    assert sorted(p.name for p in export.iterdir()) == sorted(["Modelfile", "README.md", "check.json", gguf.name])
    checks = json.loads((export / "check.json").read_text())
    assert checks["prompts"]["compared"] >= 10 and checks["prompts"]["equal"] == checks["prompts"]["compared"]
    assert checks["eot_token"]["text"] == "<|eot_id|>" and "<|start_header_id|>" in checks["chat_template"]
    manifest = json.loads((project / "outputs" / run_id / "manifest.json").read_text())
    exported_in = docker_client.images.get(manifest["exports"][-1]["image_id"])
    assert exported_in.labels["org.chatlike.llama-cpp-python"], "export ran in an image without llama.cpp"
    facts = gguf_facts(docker_client, exported_in.id, export, gguf.name)
    assert facts["template"] == checks["chat_template"] and facts["eot_text"] == "<|eot_id|>"
    assert facts["tokens"] > 0, "llama.cpp generated nothing"
    assert exported_in.tags == [export_image] and exported_in.labels["org.chatlike.export-of"] == \
        docker_client.images.get(cpu_image).id
    modelfile = (export / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{gguf.name}\n") and 'PARAMETER stop "<|eot_id|>"' in modelfile
    assert "<|start_header_id|>{{ .Role }}<|end_header_id|>" in modelfile
    assert 'SYSTEM """You chat like Robin."""' in modelfile, "training had a system prompt"
    assert "ollama create marco -f Modelfile" in (export / "README.md").read_text()
    assert "ollama create marco -f Modelfile" in result.stdout
    assert manifest["exports"][-1]["path"] == f"export/{gguf.name}"
    assert leftovers() == []


def test_export_over_ssh_adds_llama_cpp_on_that_engine(trained, cpu_image, docker_client, ssh_host, leftovers):
    """Over ssh://, the export image is built on the engine the export runs on, by the docker CLI through the same
    ssh (here a loopback sshd in front of this engine; BuildKit's cache keeps the build short)."""
    project, run_id = trained
    url, known_host, ssh_dir = ssh_host
    (ssh_dir / "known_hosts").write_text(known_host)
    export_image = without_export_image(docker_client, export_tag(docker_client.images.get(cpu_image).id))
    result = run_cli(project, "export", run_id, "--gguf", "f16", "--name", "marco", "--force", "--host", url,
                     home=Path(os.environ["HOME"]))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"building {export_image} on it, once" in result.stdout and f"started on {url}" in result.stdout
    assert "system dial-stdio" in (ssh_dir / "client-calls").read_text(), "the build did not go through ssh"
    assert docker_client.images.get(export_image).labels["org.chatlike.llama-cpp-python"]
    assert (project / "outputs" / run_id / "export" / "marco.f16.gguf").is_file()
    assert leftovers() == []


def test_a_missing_base_model_is_one_line(trained, leftovers):
    project, run_id = trained
    broken = project / "outputs" / "20261130-000000-base"
    shutil.copytree(project / "outputs" / run_id, broken, ignore=shutil.ignore_patterns("eval", "export", "checkpoint-*"))
    config = yaml.safe_load((broken / "train-config.yml").read_text())
    (broken / "train-config.yml").write_text(yaml.safe_dump({**config, "base_model": "/opt/chatlike/no-such-model"}))
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "run_id": broken.name}))
    result = run_cli(project, "eval", broken.name)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"chatlike-runner: the eval of run {broken.name} failed")
    assert "cannot load the base model /opt/chatlike/no-such-model" in result.stderr and "HF_TOKEN" in result.stderr
    assert not (broken / "eval").exists() and leftovers() == []
