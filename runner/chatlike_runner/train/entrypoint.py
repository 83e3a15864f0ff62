"""chatlike-train: the training image's entrypoint. Each command converts arguments and hands off."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import sys
import traceback
from pathlib import Path

import click

from ..core import constants as c
from . import config as cfg
from . import manifest
from .gpus import older_than, visible_gpus
from .precision import native_bf16
from .training import Nodes, exit_code, supervise, train_command

LOG_NAME = "logs/train.log"
BUG = "this is a bug in chatlike-train, not a problem with your config or data"
# Where `chatlike-train run` writes its process id: a rented box's stop (`kill -TERM`) reads it over ssh.
PID_FILE = Path("/tmp/chatlike-train.pid")
# Defaults for a run outside the image too: private chats, so no telemetry.
QUIET_ENV = {"AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}


def _say(line: str, log_path: Path) -> None:
    click.echo(f"chatlike-train: {line}")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"chatlike-train: {line}\n")


def _training_user(output_dir: Path) -> str | None:
    """Started as root (rented boxes start the image so), become the image's unprivileged user before training,
    after giving it the output folder and the model cache where a platform mounted them as root's. Returns who
    that is, or None when nothing changed (not root, or no such user: a venv outside the image)."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(os.environ.get("CHATLIKE_USER", "chatlike"))
    except KeyError:
        return None
    for folder in [output_dir] + ([Path(os.environ["HF_HOME"])] if os.environ.get("HF_HOME") else []):
        folder.mkdir(parents=True, exist_ok=True)
        if folder.stat().st_uid == 0:
            os.chown(folder, user.pw_uid, user.pw_gid)
    for path in output_dir.rglob("*"):  # a stopped run's checkpoints, uploaded as root's or with your uid
        if path.lstat().st_uid != user.pw_uid:
            os.lchown(path, user.pw_uid, user.pw_gid)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return f"{user.pw_name} (uid {user.pw_uid})"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train or check an Axolotl config inside the chatlike training image."""


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@click.option("--nodes", default=1, show_default=True, type=click.IntRange(min=1), help="Machines in this run.")
@click.option("--node-rank", default=0, show_default=True, type=click.IntRange(min=0), help="This machine's rank.")
@click.option("--main-address", help="The first machine's address (several nodes).")
@click.option("--main-port", default=29500, show_default=True, help="The first machine's rendezvous port.")
def run(config_path: Path, nodes: int, node_rank: int, main_address: str | None, main_port: int) -> None:
    """Train with CONFIG on every visible GPU (none or one: one process; N: accelerate + DeepSpeed), on this
    machine or, with --nodes, as one of several (accelerate's multi-node launch).

    Writes logs/train.log, train-config.yml (the config actually used) and train-manifest.json to the
    config's output_dir. SIGTERM saves a checkpoint and stops; a later run with
    auto_resume_from_checkpoints: true continues from it.
    """
    if nodes > 1 and (not main_address or node_rank >= nodes):
        raise click.UsageError("several nodes need --main-address and a --node-rank below --nodes")
    with contextlib.suppress(OSError):
        PID_FILE.write_text(f"{os.getpid()}\n", encoding="utf-8")
    raw = cfg.load(config_path)
    gpus = visible_gpus()
    effective = cfg.effective(raw, config_path.parent.absolute(), gpus.count, os.environ,
                              native_bf16=not gpus.count and native_bf16())
    output_dir = Path(effective["output_dir"])
    became = _training_user(output_dir)
    log_path = output_dir / LOG_NAME
    log_path.parent.mkdir(parents=True, exist_ok=True)
    effective_path = output_dir / cfg.EFFECTIVE_NAME
    effective_path.write_text(cfg.dump(effective), encoding="utf-8")

    command = train_command(effective_path, gpus.count, nodes=Nodes(nodes, node_rank, main_address, main_port))
    env = {**QUIET_ENV, **os.environ}
    if effective.get("wandb_project"):
        env.setdefault("WANDB_DIR", str(output_dir))
    started = manifest.start(config_path.absolute(), effective_path, cfg.dataset_paths(raw, config_path.parent.absolute()),
                             gpus, command, base_model=effective.get("base_model"))
    manifest.write(started, output_dir)
    finished = manifest.finished_checkpoint(output_dir) if effective.get("auto_resume_from_checkpoints") else None
    if finished is not None:
        # Resuming from the last step would train one step more (the Trainer's loop): there is nothing left to do.
        restored = manifest.restore_final(output_dir, finished)
        _say(f"training already reached its last step ({finished.name}): nothing to resume"
             + (f"; its model files restored to {output_dir}" if restored else ""), log_path)
        manifest.write(manifest.finish(started, output_dir, 0, None), output_dir)
        sys.exit(0)
    if became:
        _say(f"started as root: training as {became}", log_path)
    where = f"{gpus.count} GPU(s): {', '.join(gpus.names)}" if gpus.count else "no GPU: training on CPU"
    _say(f"{where}; running {' '.join(command)}", log_path)

    outcome = supervise(command, env, log_path, multi=gpus.count > 1 or nodes > 1)
    early = manifest.read(output_dir).get("stopped_at_step") is not None
    # A stop signal after the last step stopped nothing: the trainer finished and the run succeeded.
    stopped = outcome.signal if outcome.signal and (outcome.returncode != 0 or early) else None
    code = exit_code(outcome.returncode, stopped)
    ended = manifest.finish(started, output_dir, code, stopped.name if stopped else None)
    manifest.write(ended, output_dir)
    if stopped:
        _say(f"stopped by {stopped.name}; latest checkpoint: {ended['latest_checkpoint']}", log_path)
    elif outcome.signal:
        _say(f"got {outcome.signal.name} after the last step: training had finished", log_path)
    _say(f"exit {code}; outputs in {output_dir}", log_path)
    sys.exit(code)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False), help="Count this dataset's tokens too.")
def shapes(config_path: Path, data: Path | None) -> None:
    """Print CONFIG's model shape and exact parameter counts (base by kind, adapter by kind) as JSON: the base
    model built from its config.json on the meta device, the adapter added by Axolotl. No weights, no GPU. With
    --data, the dataset's conversations and tokens, counted with the run's tokenizer and chat template."""
    from .shapes import shapes as measure
    from .validate import quiet

    with quiet():
        found = measure(cfg.load(config_path), data)
    click.echo(json.dumps(found, indent=2))


@main.command("check-driver")
def check_driver() -> None:
    """Refuse (exit 2) a machine whose NVIDIA driver is older than this image needs (CHATLIKE_MIN_DRIVER, the
    image's org.chatlike.min-driver), or that shows no NVIDIA GPU: a rented box's run script checks first."""
    minimum = os.environ.get("CHATLIKE_MIN_DRIVER", "none")
    if not minimum.isdigit():
        click.echo("chatlike-train: this image needs no NVIDIA driver (CPU flavor)")
        return
    gpus = visible_gpus()
    if gpus.driver is None:
        click.echo(f"{c.REFUSED}this machine shows no NVIDIA GPU (nvidia-smi lists none): rent it with GPUs, or "
                   "on a Docker host pass them through (--gpus all with the NVIDIA Container Toolkit)")
        sys.exit(2)
    if older_than(gpus.driver, minimum):
        click.echo(f"{c.REFUSED}this machine's NVIDIA driver is {gpus.driver}, older than the {minimum} this image's "
                   "CUDA build needs, and chatlike has no build for older drivers: rent elsewhere (another region or "
                   "provider, such as --on lambda), or update the host's driver where it is yours")
        sys.exit(2)
    click.echo(f"chatlike-train: NVIDIA driver {gpus.driver} on {', '.join(gpus.names)}: this image needs {minimum} "
               "or newer")


@main.command("eval")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path, file_okay=False))
@click.argument("heldout", metavar="HELDOUT", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--training", type=click.Path(path_type=Path, file_okay=False),
              help="The run's training data (*.jsonl): the authorship classifier learns from it, and replies that "
                   "recite it are counted.")
@click.option("--samples", default=20, show_default=True, help="Held-out contexts to reply to, tuned and base.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap and of the sampled replies.")
@click.option("--max-new-tokens", default=128, show_default=True, help="Longest reply generated.")
@click.option("--base-model", help="Load this base model instead of the run's (a local copy of the same one).")
@click.option("--blind", default=0, show_default=True, type=click.IntRange(min=0),
              help="Then ask this many blind questions a round (JSON events out, an answer a line in).")
@click.option("--versus-base", is_flag=True, help="With --blind: a second round, tuned against base.")
def evaluate(run_dir: Path, heldout: Path, out_dir: Path, training: Path | None, samples: int, seed: int,
             max_new_tokens: int, base_model: str | None, blind: int, versus_base: bool) -> None:
    """Score HELDOUT with the run in RUN_DIR (its outputs: adapter, train-config.yml, logs) and with its base
    model; write report.json and report.html to OUT_DIR (and blind.json after a blind test)."""
    import secrets

    from . import blind as test
    from .evaluate import evaluate as run
    from .report import html, verdict
    from .tuned import load
    from .validate import quiet

    def emit(event: dict) -> None:
        sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def say(line: str) -> None:
        emit({"progress": line}) if blind else click.echo(f"chatlike-train: {line}")

    try:
        recorded = json.loads((run_dir / c.RUN_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    judged = {i for entry in recorded.get("evals") or [] for i in (entry.get("blind") or {}).get("judged", [])}
    with quiet():
        tuned = load(run_dir, base_model)
    wanted = blind * (2 if versus_base else 1) + len(judged) if blind else 0
    report = {"run_id": recorded.get("run_id") or run_dir.name, **run(
        tuned, run_dir, heldout, training=training, samples=samples, seed=seed, max_new_tokens=max_new_tokens,
        say=say, replies_wanted=wanted)}
    if blind:
        draw = secrets.randbelow(2**32)  # fresh: a later test must not draw the same order
        asked = test.questions(report["side_by_side"], judged, blind, versus_base, draw)
        say(f"replies ready: {len(asked)} blind questions")
        answered = test.ask(asked, (line for line in sys.stdin), emit)
        report["blind"] = test.result(asked, answered, draw, len(judged), replies_seed=seed)
    report["verdict"] = verdict(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    if blind:
        (out_dir / "blind.json").write_text(json.dumps(report["blind"], indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "report.html").write_text(html(report), encoding="utf-8")
    emit({"done": report["verdict"]}) if blind else click.echo(f"chatlike-train: {report['verdict']}")


@main.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--heldout", type=click.Path(path_type=Path, dir_okay=False),
              help="Conversations whose commonest system prompt (training's) the chat starts with.")
@click.option("--max-new-tokens", default=256, show_default=True, help="Longest reply.")
@click.option("--temperature", default=0.7, show_default=True, help="Sampling temperature (0: greedy).")
@click.option("--base-model", help="Load this base model instead of the run's (a local copy of the same one).")
def chat(run_dir: Path, heldout: Path | None, max_new_tokens: int, temperature: float, base_model: str | None) -> None:
    """Talk with the run in RUN_DIR over stdin (a line per turn; /reset, /system TEXT, /base) and stdout (one
    JSON event per line: ready, token, end, note); the runner's `chat` drives it attached to the container."""
    from .chatting import chat as talk
    from .chatting import training_system
    from .tuned import load
    from .validate import quiet

    with quiet():
        tuned = load(run_dir, base_model)

    def emit(event: dict) -> None:
        sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    talk(tuned, training_system(heldout), sys.stdin, emit, max_new_tokens=max_new_tokens, temperature=temperature)


@main.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path, file_okay=False))
@click.argument("heldout", metavar="HELDOUT", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--gguf", "quant", type=click.Choice(["q4_k_m", "q8_0", "f16"]), default="q4_k_m", show_default=True,
              help="GGUF type: llama.cpp's 4-bit K-quant, 8-bit, or 16-bit floats.")
@click.option("--name", default="chatlike", show_default=True, help="Model name (file name and Ollama's).")
@click.option("--base-model", help="Load this base model instead of the run's (a local copy of the same one).")
def export(run_dir: Path, heldout: Path, out_dir: Path, quant: str, name: str, base_model: str | None) -> None:
    """Merge the run in RUN_DIR into its base and write OUT_DIR/NAME.QUANT.gguf, an Ollama Modelfile and
    README.md, checked with llama.cpp against training's prompts (HELDOUT) and the merged model's logits."""
    from .gguf import export as write
    from .tuned import load
    from .validate import quiet

    with quiet():
        tuned = load(run_dir, base_model, merging=True)
    checks = write(tuned, heldout, out_dir, quant, name, lambda line: click.echo(f"chatlike-train: {line}"))
    (out_dir / "check.json").write_text(json.dumps(checks, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    click.echo(f"chatlike-train: wrote {name}.{quant}.gguf; llama.cpp builds training's prompt on "
               f"{checks['prompts']['equal']}/{checks['prompts']['compared']} held-out conversations")


@main.command("tiny-model")
@click.argument("out_dir", type=click.Path(path_type=Path))
def tiny_model(out_dir: Path) -> None:
    """Write a tiny random Llama with a Llama-3-style tokenizer to OUT_DIR (smoke runs, no downloads)."""
    from .tinymodel import make_tiny_model

    click.echo(str(make_tiny_model(out_dir)))


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
def validate(config_path: Path) -> None:
    """Check CONFIG before a run: Axolotl's schema, misspelled keys, and every dataset line with the tokenizer.
    Exit 2 when it is refused (what is wrong, in words), 1 when the check itself broke (a bug: its traceback)."""
    from .validate import validate as check

    try:
        report = check(config_path)
    except (click.ClickException, click.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        traceback.print_exc()
        click.echo(f"chatlike-train: {BUG}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}; please "
                   "report it with the traceback above", err=True)
        sys.exit(1)
    for line in report:
        click.echo(line)


@main.command()
@click.argument("source", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False, exists=True))
def copy(source: Path, dest: Path) -> None:
    """Copy the folders and regular files under SOURCE into DEST at disk speed, then print them as JSON (the
    runner's copy home, in a container of this image, for a user who may not read the engine's volumes)."""
    from ..core.unpack import copy_tree

    click.echo(json.dumps(copy_tree(source, dest)))
