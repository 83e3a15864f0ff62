"""chatlike-runner: the command line. It only parses, hands off and prints."""

from __future__ import annotations

import gc

gc.disable()  # the imports below are ~60k objects that live as long as the command: collecting them is wasted time

import functools
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__, build, preflight, registry, reproduce, runs, skytask
from . import trial as trials
from .core import constants as c
from .core.errors import ChatlikeError
from .events import (ChatReady, Event, Following, JobDone, Log, Note, Outcome, Progress, Pushed, Question, Said,
                     TaskReady)
from .follow import uninterruptible
from .parsing import parse_gpus
from .plan import build_plan
from .progress import Display

if TYPE_CHECKING:
    from rich.console import Console

gc.enable()
gc.freeze()  # and no later collection needs to look at them again
GPU_RUN = "chatlike-runner start configs/llama-3.1-8b-qlora.yml --gpus all"
RENTED_RUN = "chatlike-runner start configs/llama-3.1-8b-qlora.yml --on runpod"

host_option = click.option(
    "--host",
    envvar="DOCKER_HOST",
    metavar="URL",
    help="Docker engine: unix://…, tcp://… or ssh://user@box. Default: DOCKER_HOST, else the active docker context.",
)
out_option = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs"),
    show_default=True,
    callback=lambda _ctx, _param, value: value.expanduser().resolve(),
    help="Folder that receives OUT/<run-id>/.",
)


@functools.cache
def console() -> Console:
    """Where the commands print: rich's console, made when first used."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def rent_options(command):
    """--on and the choices of a rented box, shared by `start` and `reproduce`."""
    options = [
        click.option("--on", "on", type=click.Choice(skytask.PROVIDERS), help="Rent the GPUs: run on a Runpod pod or Lambda VMs through SkyPilot (pip install 'chatlike-runner[cloud]'); the image by registry digest (see `push`)."),
        click.option("--gpu", "gpu", metavar="TYPE:COUNT", help="With --on: GPUs per node.  [default: RTX3090:2 on runpod, A6000:2 on lambda]"),
        click.option("--nodes", default=1, show_default=True, help="With --on lambda: machines, joined by accelerate's multi-node launch (untested on real hardware)."),
        click.option("--spot", is_flag=True, help="With --on runpod: spot (interruptible) pricing."),
        click.option("--disk", type=int, help=f"With --on runpod: the pod's disk, in GB (a Lambda VM's is its instance type's).  [default: {skytask.DEFAULT_DISK_GB}]"),
        click.option("--keep", is_flag=True, help="With --on: leave the cluster up after the run (it keeps billing)."),
        click.option("--dry-run", is_flag=True, help="With --on: write the SkyPilot task, check it offline and print it; launch nothing."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _rented(on: str | None, gpu: str | None, nodes: int, spot: bool, disk: int | None, keep: bool,
            dry_run: bool) -> skytask.Rented | None:
    """The rented box `--on` asks for; None without --on (where its options mean nothing and are refused)."""
    if on is None:
        given = [name for name, value in (("--gpu", gpu), ("--nodes", nodes != 1), ("--spot", spot),
                                          ("--disk", disk is not None), ("--keep", keep),
                                          ("--dry-run", dry_run)) if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} only apply to rented boxes: add --on runpod or --on lambda")
        return None
    return skytask.rented(on, gpu, nodes=nodes, spot=spot, disk_gb=disk, keep=keep)


class _Chat:
    """How a chat prints: on a terminal, replies stream after `run> ` (or `base> `); piped, each reply is one
    line on stdout (newlines in it written as \\n) and everything else goes to stderr."""

    def __init__(self, piped: bool) -> None:
        self.piped = piped
        from rich.console import Console

        self.notes = Console(stderr=True, highlight=False, soft_wrap=True) if piped else console()
        self.reply: list[str] = []

    def ready(self, event: ChatReady) -> None:
        system = f"system prompt: {event.system}" if event.system else "no system prompt"
        self.notes.print(f"chatting with run {event.run_id} ({system}). {event.help}; Ctrl-D leaves.", style="dim")

    def said(self, event: Said) -> None:
        if event.end is None:
            if not self.reply and not self.piped:
                console().print("run> " if event.who == "tuned" else "base> ", style="bold", end="")
            self.reply.append(event.text)
            if not self.piped:
                console().print(event.text, end="", markup=False)
            return
        if self.piped:
            sys.stdout.write("".join(self.reply).strip().replace("\n", "\\n") + "\n")
            sys.stdout.flush()
        else:
            console().print()
        if event.end == "length":
            self.notes.print("(the reply was cut at --max-new-tokens)", style="dim")
        self.reply = []


class _Blind:
    """How a blind test prints: progress on one line (piped: on stderr), then each question; piped, a question is
    plain lines on stdout, each reply on one line (newlines written as \\n) after "1) " or "2) "."""

    ROLES = {"user": "them", "assistant": "you"}

    def __init__(self, piped: bool) -> None:
        self.piped = piped
        from rich.console import Console

        self.notes = Console(stderr=True, highlight=False, soft_wrap=True) if piped else console()
        self.status = None

    def progress(self, event: Progress) -> None:
        if self.piped:
            self.notes.print(event.text)
        elif self.status is None:
            self.status = console().status(event.text).__enter__()
        else:
            self.status.update(event.text)

    def question(self, event: Question) -> None:
        self.done()
        lines = [f"[{'you or the model' if event.round == 'you' else 'tuned or base'} {event.number}/{event.of}] "
                 f"{event.ask}"]
        lines += [f"  {self.ROLES.get(m['role'], m['role'])}: {m['content']}" for m in event.context
                  if m.get("role") != "system"]
        lines += [f"{number}) {reply}" for number, reply in enumerate(event.replies, 1)]
        if self.piped:
            sys.stdout.write("".join(line.replace("\n", "\\n") + "\n" for line in lines))
            sys.stdout.flush()
        else:
            console().print()
            console().print(lines[0], style="bold", markup=False)
            for line in lines[1:]:
                console().print(line, markup=False, style="dim" if line.startswith("  ") else None)

    def done(self) -> None:
        if self.status is not None:
            self.status.__exit__(None, None, None)
            self.status = None


def _show(events: Iterator[Event], chat: _Chat | None = None, blind: _Blind | None = None) -> None:
    """Print a command's events as they come: notes as lines, a run's log through the live display, a chat's
    replies, and the outcome last, with what to do next; exits with the run's code. A Ctrl-C the command does
    not handle itself ends it, and it removes what it had created."""
    display: Display | None = None
    try:
        for event in events:
            if isinstance(event, Log) and display is not None:
                display.show(event.text)
                continue
            if display is not None:
                display.__exit__()
                display = None
            if isinstance(event, Following):
                display = Display(console(), event.run_id).__enter__()
            elif isinstance(event, Note):
                notes = chat.notes if chat else blind.notes if blind else console()
                notes.print(event.text, style="yellow" if event.warning else None)
            elif isinstance(event, Outcome):
                _finish(event)
            elif isinstance(event, JobDone):
                if blind:
                    blind.done()
                (_eval_summary if event.kind == c.ROLE_EVAL else _export_summary)(event)
            elif isinstance(event, TaskReady):
                _task_ready(event)
            elif isinstance(event, Pushed):
                console().print(f"pushed {event.ref}", style="green")
                console().print(f"next: rented boxes launch it by this digest (recorded in {registry.state_file()}); "
                              f"on a VM with Docker: `chatlike-runner start CONFIG --image {event.ref} --host ssh://…`")
            elif isinstance(event, ChatReady) and chat:
                chat.ready(event)
            elif isinstance(event, Said) and chat:
                chat.said(event)
            elif isinstance(event, Progress) and blind:
                blind.progress(event)
            elif isinstance(event, Question) and blind:
                blind.question(event)
    except KeyboardInterrupt:
        with uninterruptible():
            events.close()  # type: ignore[attr-defined]
        raise ChatlikeError("interrupted; nothing was left on the Docker engine", c.INTERRUPTED_EXIT) from None
    finally:
        if display is not None:
            display.__exit__()
        if blind is not None:
            blind.done()


def _task_ready(ready: TaskReady) -> None:
    if not ready.dry_run:
        console().print(f"SkyPilot task {ready.path} checked: {ready.summary}")
        return
    sys.stdout.write(ready.text)
    console().print(f"checked offline against SkyPilot's schema and catalog: it would run on {ready.summary}", style="green")
    console().print(f"nothing was launched. The task and what it uploads are in {ready.path.parent}; "
                  "launch it with the same command without --dry-run")


def _typed() -> Iterator[str]:
    """Turns typed at a terminal, with line editing; Ctrl-D or Ctrl-C at the prompt ends them."""
    import readline  # noqa: F401  (input() gets line editing and history)

    while True:
        try:
            yield input("you> ")
        except (EOFError, KeyboardInterrupt):
            console().print()
            return


def _finish(outcome: Outcome) -> None:
    run_id, path = outcome.run_id, outcome.path
    if outcome.status == "running":
        console().print(f"detached. Follow it with `chatlike-runner attach {run_id}`, "
                      f"copy its outputs with `chatlike-runner fetch {run_id}`.")
    elif outcome.status == "oom":
        console().print(f"run {run_id} ran out of memory (OOM-killed); outputs in {path}. Lower micro_batch_size or "
                      "sequence_len, enable gradient_checkpointing, or raise --memory.", style="red")
    elif outcome.status == "stopped":
        console().print(f"run {run_id} stopped (exit {outcome.exit_code}); what it wrote is in {path}. "
                      f"Continue it with `chatlike-runner resume {run_id}`.", style="yellow")
    elif outcome.status == "failed":
        console().print(f"run {run_id} failed (exit {outcome.exit_code}); outputs in {path}. "
                      f"Its log: {path / 'logs' / 'container.log' if path else f'chatlike-runner logs {run_id}'}",
                      style="red")
    else:
        console().print(f"run {run_id} {outcome.status} (exit {outcome.exit_code}); outputs in {path}", style="green")
        if outcome.trial != "preview":  # its eval ran already, and said what comes next
            console().print(f"next: `chatlike-runner eval {run_id}` says whether it is you (authorship, the failures "
                            f"people hit, recited chats, held-out loss against the base; --blind: you judge it); "
                            f"`chatlike-runner chat {run_id}` talks with it")
        if outcome.trial == "smoke":
            console().print(f"then: the smoke run passed; train the real recipe on your GPUs with `{GPU_RUN}`")
        elif outcome.trial == "preview":
            console().print(f"then: the real recipe (Llama 3.1 8B) on your GPUs with `{GPU_RUN}`, or on rented ones "
                            f"with `{RENTED_RUN}`")
    sys.exit(outcome.exit_code)


def _eval_summary(done: JobDone) -> None:
    """The verdict first, then the numbers it stands on, you beside the tuned and base models."""
    from rich.table import Table

    report = done.report or {}
    console().print(report["verdict"], style="bold")
    if report.get("blind") and not report["blind"]["rounds"]:
        console().print("no blind question: every held-out context was judged in an earlier test (or reads the same "
                        "from both); prepare a larger held-out set (--heldout-share)", style="yellow")

    def pct(score: dict | None) -> str:
        if not score or score.get("share") is None:
            return "–"
        low, high = score["ci95"]
        return f"{score['share']:.0%} ({low:.0%}–{high:.0%})"

    def num(value: float | None, form: str = ".2f") -> str:
        return "–" if value is None else format(value, form)

    table = Table("", "you", "tuned", "base", box=None)
    for name, r in ((report.get("blind") or {}).get("rounds") or {}).items():
        cells = ["", pct(r), ""] if name == "you" else ["", pct(r), f"{1 - r['share']:.0%}" if r["trials"] else "–"]
        table.add_row(f"blind: {'passed for you' if name == 'you' else 'sounded more like you'} "
                      f"({r['hits']} of {r['trials']})", *cells)
    scores = (report.get("authorship") or {}).get("scores") or {}
    if scores:
        table.add_row("attributed to you (95% interval)", pct(scores["yours"]), pct(scores["tuned"]), pct(scores["base"]))
    failures = report["failures"]
    table.add_row("never ends", "", num(failures["tuned"]["never_ends"], ".0%"), num(failures["base"]["never_ends"], ".0%"))
    table.add_row("repeats a 4-gram", *(num(failures[w]["repeats_itself"], ".0%") for w in ("real", "tuned", "base")))
    table.add_row("length distance to yours", "0", num(failures["tuned"]["length_distance"]),
                  num(failures["base"]["length_distance"]))
    if failures["memorization_checked"]:
        table.add_row("recites a training reply", *(str(len(failures[w]["memorized"])) for w in ("real", "tuned", "base")))
    nll = report["nll"]
    table.add_row("held-out NLL per token", "", f"{nll['tuned']['nll']:.3f}", f"{nll['base']['nll']:.3f}")
    console().print(table)
    console().print(f"report: {done.path / 'report.html'} (and report.json); recorded in {done.path.parent / 'manifest.json'}")
    console().print(f"next: `chatlike-runner chat {done.run_id}` talks with it; `chatlike-runner export {done.run_id}` "
                    "makes a GGUF for llama.cpp and Ollama")


def _export_summary(done: JobDone) -> None:
    checks = done.report or {}
    (gguf,) = done.path.glob("*.gguf")
    logits = checks["logits"]
    console().print(f"{gguf} ({gguf.stat().st_size / 2**20:.1f} MiB), with a Modelfile for Ollama", style="green")
    greedy = checks["greedy"]
    console().print(f"llama.cpp: loads and generates; chat template and {checks['eot_token']['text']} in its metadata; "
                  f"training's prompt on {checks['prompts']['equal']}/{checks['prompts']['compared']} held-out "
                  f"conversations; logits within {logits['max_abs_difference']:.2g} of the merged model's "
                  f"(top token the same on {logits['top1_agreement']:.0%}); greedy replies the same on "
                  f"{greedy['same']}/{greedy['compared']} held-out contexts (their first {greedy['tokens']} tokens)")
    memorized = checks["memorized"]
    if memorized["memorized"] is None:
        console().print(f"memorization: not measured yet; `chatlike-runner eval {done.run_id}` counts the replies "
                        "that recite your training chats, before you share this file", style="yellow")
    else:
        console().print(f"memorization: {memorized['memorized']} of {memorized['replies']} replies to held-out "
                        f"contexts repeat a training reply of yours verbatim (eval of {memorized['at']})",
                        style="yellow" if memorized["memorized"] else None)
    console().print(f"next: `cd {done.path} && ollama create {gguf.name.split('.')[0]} -f Modelfile`, "
                  f"or `llama-cli -m {gguf} -cnv`")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatlike-runner")
def cli() -> None:
    """Train a model that chats like you, in a container, on this machine or a rented one."""


@cli.command()
@click.argument("config", type=click.Path(path_type=Path), required=False)
@click.option("--preview", is_flag=True, help=f"Hear your data before you rent a GPU: configs/cpu-preview.yml (a real small model, SmolLM2-135M-Instruct) trained on the CPU in {c.CPU_IMAGE}, then eval's verdict.")
@click.option("--smoke", is_flag=True, help=f"CPU smoke run: configs/cpu-smoke.yml (a tiny built-in model, no downloads) in {c.CPU_IMAGE}.")
@click.option("--else-preview", is_flag=True, help="Where the Docker host has no usable GPU (no NVIDIA runtime), train the --preview instead, saying why; where it has, build the CUDA image first when it is missing (`make train`).")
@click.option("--data", type=click.Path(path_type=Path), help="Dataset file or folder; replaces the path of the config's dataset.")
@out_option
@click.option("--image", help=f"Training image.  [default: {c.DEFAULT_IMAGE}; {c.CPU_IMAGE} with --preview or --smoke]")
@host_option
@click.option("--gpus", default="none", show_default=True, help="all, a count (2), device ids (0,1) or none.")
@click.option("--shm-size", metavar="SIZE", help="Private /dev/shm of this size (e.g. 16g) instead of the host's IPC namespace.")
@click.option("--memory", metavar="SIZE", help="Memory limit for the container (e.g. 48g).")
@click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]", help="A ulimit such as memlock=-1 or stack=67108864; repeatable.")
@click.option("--env", "env", multiple=True, metavar="NAME", help="Pass this variable from your shell, by name; repeatable. HF_TOKEN and WANDB_API_KEY pass when set.")
@click.option("--detach", "-d", is_flag=True, help="Start and return at once; `attach` or `fetch` later.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check config and dataset with `chatlike-train validate` in the image first.")
@click.option("--fit-check/--no-fit-check", default=True, show_default=True, help="Refuse a run whose memory estimate exceeds its GPUs' (see `estimate`).")
@click.option("--stop-timeout", default=c.STOP_TIMEOUT, show_default=True, help="Seconds a stopped run gets to save before it is killed.")
@rent_options
def start(config: Path | None, preview: bool, smoke: bool, else_preview: bool, data: Path | None, out: Path, image: str | None, host: str | None, gpus: str, shm_size: str | None,
          memory: str | None, ulimits: tuple[str, ...], env: tuple[str, ...], detach: bool, validate: bool,
          fit_check: bool, stop_timeout: int, on: str | None, gpu: str | None, nodes: int, spot: bool, disk: int | None, keep: bool,
          dry_run: bool) -> None:
    """Train CONFIG (an Axolotl YAML file) in a container and copy the adapter to OUT/<run-id>/.

    \b
    Examples:
      chatlike-runner start configs/llama-3.1-8b-qlora.yml --data data/train.jsonl --gpus all
      chatlike-runner start cfg.yml --host ssh://ubuntu@203.0.113.7 --gpus all --detach
      chatlike-runner start --preview --data data/train.jsonl
      chatlike-runner start --smoke
      chatlike-runner start cfg.yml --data data/train.jsonl --on runpod --gpu RTX3090:2
    """
    if sum((preview, smoke, else_preview)) > 1:
        raise click.UsageError("--preview, --smoke and --else-preview each choose what to train: give one")
    where = _rented(on, gpu, nodes, spot, disk, keep, dry_run)
    if where is not None:
        if preview or smoke or else_preview or detach or config is None:
            raise click.UsageError("--on trains CONFIG on rented GPUs and follows it: give CONFIG, without --preview, "
                                   "--smoke, --else-preview or --detach")
        image = skytask.launch_image(image, registry.last_pushed())
        plan = build_plan(config, data=data, out=out, image=image, env=env, validate=False, fit_check=fit_check)
        _show(runs.start(plan, stop_timeout, where=where, dry_run=dry_run))
        return
    if else_preview and (trouble := trials.gpus_or_trouble(host, image)):
        console().print(f"no usable GPU on this Docker host ({trouble}): training the CPU preview instead, on the same "
                        "data. The GPU recipe needs an NVIDIA GPU with the NVIDIA Container Toolkit (`chatlike-runner "
                        f"doctor` checks it), or rent one: `{RENTED_RUN}`", style="yellow")
        preview, config, image, gpus = True, None, None, "none"
    if preview and detach:
        raise click.UsageError("--preview follows the run to eval's verdict: without --detach")
    trial = "preview" if preview else "smoke" if smoke else ""
    if trial:
        config = config or (c.PREVIEW_CONFIG if preview else c.SMOKE_CONFIG)
        image = image or c.CPU_IMAGE
        if data is None and (example := trials.example_dataset(config)):
            console().print(f"no dataset at {example}: wrote the bundled example chats there (as `chatlike-runner prepare` does)")
    elif config is None:
        raise click.UsageError("give CONFIG (an Axolotl YAML file), or --preview for a real small model on the CPU")
    image = image or c.DEFAULT_IMAGE
    plan = preflight.planned(lambda: build_plan(config, data=data, out=out, image=image, host=host, gpus=gpus,
                                                shm_size=shm_size, memory=memory, ulimits=ulimits, env=env, detach=detach,
                                                validate=validate, fit_check=fit_check, trial=trial),
                             host, image, gpus, out)
    events = runs.start(plan, stop_timeout)
    _show(trials.then_eval(events, out, host) if preview else events)


@cli.command(name="estimate")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False), help="Dataset to count (JSON Lines).  [default: the config's]")
@click.option("--gpu", "gpu", metavar="TYPE:COUNT", help=f"GPUs to estimate for, such as RTX3090:2 or H100:1.  [default: the engine's; with --on, {', '.join(f'{k} {v}' for k, v in skytask.DEFAULT_GPU.items())}]")
@click.option("--on", "on", type=click.Choice(skytask.PROVIDERS), help="Price the run at this provider's price in SkyPilot's catalog.")
@click.option("--spot", is_flag=True, help="With --on runpod: the spot price.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
@click.option("--image", help=f"Image to count parameters in where the training stack is not installed here.  [default: {c.DEFAULT_IMAGE}, else {c.CPU_IMAGE}]")
@host_option
def estimate_run(config: Path, data: Path | None, gpu: str | None, on: str | None, spot: bool, as_json: bool,
                 image: str | None, host: str | None) -> None:
    """Before you pay: whether CONFIG fits the GPUs (memory per GPU, term by term), how many steps its dataset
    makes, how long that takes and, with --on, what it costs. Needs no GPU.

    \b
    Examples:
      chatlike-runner estimate configs/llama-3.1-8b-qlora.yml --gpu RTX3090:2
      chatlike-runner estimate configs/llama-3.1-8b-qlora.yml --data data/train.jsonl --on runpod
    """
    from . import fit

    found = fit.for_command(config, data, gpu, on, spot, image, host)
    if as_json:
        sys.stdout.write(json.dumps(found.as_json(), indent=2) + "\n")
        return
    _estimate_summary(found)


def _estimate_summary(found) -> None:
    from rich.markup import escape
    from rich.table import Column, Table

    from .estimate import GIB

    p, m, model = found.facts["parameters"], found.memory, found.facts["model"]
    console().print(f"{model['model_type']}: {p['total']:,} parameters (config.json: {model.get('config_json')}); "
                    f"trainable {p['trainable']:,}: LoRA {p['lora']:,}, DoRA {p['dora']:,}, saved copies {p['saved']:,}")
    zero = f"DeepSpeed ZeRO-{found.recipe.zero}" if found.recipe.zero else "no DeepSpeed"
    console().print(f"memory per GPU, {m.count}x {m.gpu.name} ({round(m.gpu.memory_gib, 1):g} GiB each), {zero}:", style="bold")
    table = Table(Column("", no_wrap=True), Column("GiB", justify="right"), "how (source)", box=None)
    for item in m.items:
        when = {"backward": " [in backward]", "logits": " [at the loss]", "step": " [at the optimizer step]"}
        table.add_row(item.name, f"{item.bytes / GIB:.2f}", escape(item.formula + when.get(item.phase or "", "")))
    console().print(table)
    spare = m.gpu.memory_gib - m.total / GIB
    verdict = {"fits": f"fits ({spare:.1f} GiB spare)", "tight": "tight: over only by the allocator's margin, so it "
               "may fit or run out of memory", "does not fit": "does not fit"}[m.verdict]
    console().print(f"total {m.total / GIB:.1f} GiB of {round(m.gpu.memory_gib, 1):g}: {verdict}",
                    style={"fits": "green", "tight": "yellow"}.get(m.verdict, "red"))
    if not m.fits:
        for fix in found.fixes or ["no single change fits it: larger GPUs, or more of them with ZeRO-2"]:
            console().print(f"  would fit with {fix}", markup=False)
    work = found.work
    if work is None:
        return
    if found.data_note:
        console().print(found.data_note, style="yellow")
    console().print(f"work: {work.conversations:,} conversations, {work.tokens:,} tokens ({work.counted}); "
                    f"{work.sequences:,} {'packed ' if found.recipe.packing else ''}sequences of up to "
                    f"{found.recipe.sequence_len:,}; {work.steps:,} optimizer steps ({work.epochs:.2g} epochs); "
                    f"{work.flops:.3g} FLOPs", markup=False)
    if found.hours is None:
        console().print(f"time: no peak throughput known for {m.gpu.name}")
        return
    low, high = found.hours
    span = _duration(high) if _duration(low) == _duration(high) else f"{_duration(low)} to {_duration(high)}"
    console().print(f"time: {span} on {m.count}x {m.gpu.name} ({m.gpu.tflops:g} TFLOPS "
                    f"bf16 peak each, {m.gpu.source}) at {m.gpu.mfu[0]:.0%}-{m.gpu.mfu[1]:.0%} MFU (see docs/estimate.md)")
    if found.offer:
        offer = found.offer
        cost = found.cost
        low_cost, high_cost = (f"${value:.2f}" for value in cost) if cost else ("", "")
        price = ("no price in the catalog" if cost is None else low_cost if low_cost == high_cost
                 else f"{low_cost} to {high_cost}")
        hourly = f"${offer['hourly_price_usd']:.2f}/h" if offer["hourly_price_usd"] is not None else "no hourly price"
        console().print(f"cost: {price} at {hourly}{' spot' if offer['spot'] else ''} "
                        f"({offer['provider']} {offer['instance_type']} in {offer['region']}, SkyPilot's catalog), "
                        "plus the box's start-up and the model download")


def _duration(hours: float) -> str:
    return "under a minute" if hours < 1 / 60 else f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"


@cli.command()
@click.argument("run")
@out_option
@host_option
def attach(run: str, out: Path, host: str | None) -> None:
    """Follow RUN again and collect its outputs when it ends."""
    _show(runs.attach(host, run, out))


@cli.command()
@click.argument("run")
@out_option
@host_option
@click.option("--stop-timeout", default=c.STOP_TIMEOUT, show_default=True, help="Seconds a stopped run gets to save before it is killed.")
def resume(run: str, out: Path, host: str | None, stop_timeout: int) -> None:
    """Continue RUN, stopped by Ctrl-C or `stop`, from its last checkpoint."""
    _show(runs.resume(host, run, out, stop_timeout))


@cli.command()
@click.argument("run")
@out_option
@host_option
def fetch(run: str, out: Path, host: str | None) -> None:
    """Copy RUN's outputs to OUT now: a finished run to OUT/<run-id>, a running one to OUT/<run-id>.partial."""
    outcome = runs.fetch(host, run, out)
    console().print(f"run {outcome.run_id} ({outcome.status}): outputs in {outcome.path}")
    if outcome.status == "running":
        console().print(f"next: `chatlike-runner attach {outcome.run_id}` follows it and copies it home when it ends")
    elif outcome.status == "stopped":
        console().print(f"next: `chatlike-runner resume {outcome.run_id}` continues it from its last checkpoint")


@cli.command()
@click.argument("run")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the run writes.")
@host_option
def logs(run: str, follow: bool, host: str | None) -> None:
    """Print RUN's log."""
    for text in runs.logs(host, run, follow):
        sys.stdout.write(text)
        sys.stdout.flush()


@cli.command()
@click.argument("run")
@click.option("--timeout", default=c.STOP_TIMEOUT, show_default=True, help="Seconds to save before it is killed.")
@host_option
def stop(run: str, timeout: int, host: str | None) -> None:
    """Stop RUN gracefully (SIGTERM, then SIGKILL after --timeout)."""
    run_id = runs.stop(host, run, timeout)
    console().print(f"run {run_id} stopped. Continue it with `chatlike-runner resume {run_id}`, "
                  f"or copy what it wrote with `chatlike-runner fetch {run_id}`.")


@cli.command()
@click.argument("run")
@out_option
@click.option("--force", is_flag=True, help="Remove even if running or never fetched.")
@click.option("--cache", is_flag=True, help=f"Also remove the shared model cache volume ({c.CACHE_VOLUME}).")
@host_option
def rm(run: str, out: Path, force: bool, cache: bool, host: str | None) -> None:
    """Remove RUN's container and volumes (never the model cache unless --cache)."""
    for item in runs.remove(host, run, out, force=force, cache=cache):
        console().print(f"removed {item}")


@cli.command(name="eval")
@click.argument("run")
@out_option
@click.option("--heldout", type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out conversations (JSON Lines).  [default: the heldout.jsonl beside the run's dataset]")
@click.option("--samples", default=20, show_default=True, help="Held-out contexts to reply to, tuned and base.")
@click.option("--seed", default=0, show_default=True, help="Seed of the sampled replies and of the bootstrap.")
@click.option("--blind", type=click.IntRange(min=1), is_flag=False, flag_value=20, metavar="[N]",
              help="Then a blind test: N pairs of your reply and the tuned model's, which did you write?  [N: 20]")
@click.option("--versus-base", is_flag=True, help="With --blind: a second round, tuned against base, which sounds more like you?")
@click.option("--image", help="Image to evaluate in.  [default: the run's]")
@host_option
@click.option("--gpus", help="all, a count, device ids or none.  [default: the run's]")
@click.option("--env", "env", multiple=True, metavar="NAME", help="Pass this variable from your shell, by name; repeatable.")
@click.option("--force", is_flag=True, help="Replace an earlier eval of the run (earlier blind answers stay in the manifest).")
def evaluate(run: str, out: Path, heldout: Path | None, samples: int, seed: int, blind: int | None, versus_base: bool,
             image: str | None, host: str | None, gpus: str | None, env: tuple[str, ...], force: bool) -> None:
    """Is RUN you? A blind test judged by you (--blind), a stylometric classifier's verdict, the failures people
    hit (never ending, repeating, reciting your chats), held-out loss against the base model's, replies side by
    side; writes OUT/<run-id>/eval/report.html and report.json (and blind.json).

    Every reply is written before the first question. Piped, each question goes to stdout and each line of stdin
    answers one: 1, 2 or s (skip); the answers' end ends the test, keeping what was answered.

    \b
    Examples:
      chatlike-runner eval 20261130-101500-3fa2
      chatlike-runner eval 20261130 --gpus all --samples 50
      chatlike-runner eval 20261130 --blind --versus-base
    """
    if versus_base and not blind:
        raise click.UsageError("--versus-base is a round of the blind test: add --blind")
    from . import jobs  # eval, chat and export only: not loaded for the other commands

    piped = not sys.stdin.isatty()
    answers = (_piped_answers() if piped else _typed_answers()) if blind else None
    _show(jobs.evaluate(out, run, heldout=heldout, image=image, host=host, gpus=gpus, env=env, samples=samples,
                        seed=seed, force=force, blind=blind or 0, versus_base=versus_base, answers=answers),
          blind=_Blind(piped) if blind else None)


ANSWERS = {"1": "1", "2": "2", "s": "s", "skip": "s"}


def _piped_answers() -> Iterator[str]:
    """A blind test's answers, one line of stdin each (a wrong one ends the command: nothing is published)."""
    for number, line in enumerate(sys.stdin, 1):
        answer = ANSWERS.get(line.strip().lower())
        if answer is None:
            raise ChatlikeError(f"line {number} of the answers is {line.strip()!r}: answer 1, 2 or s (skip), one a line")
        yield answer


def _typed_answers() -> Iterator[str]:
    """A blind test's answers typed at the prompt; Ctrl-D or Ctrl-C there ends the test, keeping the answers."""
    while True:
        try:
            answer = ANSWERS.get(input("which? [1/2/s] ").strip().lower())
        except (EOFError, KeyboardInterrupt):
            console().print()
            return
        if answer is None:
            console().print("answer 1, 2 or s (skip); Ctrl-D ends the test", style="dim")
            continue
        yield answer


@cli.command()
@click.argument("run")
@out_option
@click.option("--system", metavar="TEXT", help="Start with this system prompt.  [default: training's]")
@click.option("--max-new-tokens", default=256, show_default=True, help="Longest reply.")
@click.option("--temperature", default=0.7, show_default=True, help="Sampling temperature (0: always the likeliest).")
@click.option("--heldout", type=click.Path(dir_okay=False, path_type=Path),
              help="Where training's system prompt is read from.  [default: the heldout.jsonl beside the run's dataset]")
@click.option("--image", help="Image to chat in.  [default: the run's]")
@host_option
@click.option("--gpus", help="all, a count, device ids or none.  [default: the run's]")
@click.option("--env", "env", multiple=True, metavar="NAME", help="Pass this variable from your shell, by name; repeatable.")
def chat(run: str, out: Path, system: str | None, max_new_tokens: int, temperature: float, heldout: Path | None,
         image: str | None, host: str | None, gpus: str | None, env: tuple[str, ...]) -> None:
    """Talk with RUN: replies stream as they come; /reset starts over, /system TEXT sets the system prompt,
    /base answers your last message with the base model; Ctrl-D leaves.

    Piped, each line of stdin is a turn and each reply one line of stdout (nothing else there).

    \b
    Examples:
      chatlike-runner chat 20261130-101500-3fa2 --gpus all
      printf 'hi!\\nare you coming tonight?\\n' | chatlike-runner chat 20261130
    """
    piped = not sys.stdin.isatty()
    turns = (line.rstrip("\n") for line in sys.stdin) if piped else _typed()
    if system:
        turns = itertools.chain([f"/system {system}"], turns)
    options = ("--max-new-tokens", str(max_new_tokens), "--temperature", str(temperature))
    from . import jobs

    _show(jobs.chat(out, run, turns, heldout=heldout, image=image, host=host, gpus=gpus, env=env, options=options),
          _Chat(piped))


@cli.command(name="export")
@click.argument("run")
@out_option
@click.option("--gguf", "quant", type=click.Choice(["q4_k_m", "q8_0", "f16"]), default="q4_k_m", show_default=True,
              help="GGUF type: llama.cpp's 4-bit K-quant, 8-bit, or 16-bit floats.")
@click.option("--name", default="chatlike", show_default=True, help="Model name: the file's, and Ollama's.")
@click.option("--heldout", type=click.Path(dir_okay=False, path_type=Path),
              help="Conversations the prompt check uses.  [default: the heldout.jsonl beside the run's dataset]")
@click.option("--image", help="Image to export in.  [default: the run's]")
@host_option
@click.option("--env", "env", multiple=True, metavar="NAME", help="Pass this variable from your shell, by name; repeatable.")
@click.option("--force", is_flag=True, help="Replace an earlier export of the run.")
def export_model(run: str, out: Path, quant: str, name: str, heldout: Path | None, image: str | None, host: str | None,
                 env: tuple[str, ...], force: bool) -> None:
    """Make RUN a GGUF for llama.cpp and Ollama: the adapter merged into its base, converted and quantized by
    llama.cpp's own tools, checked by llama.cpp; writes OUT/<run-id>/export/ with an Ollama Modelfile.

    \b
    Examples:
      chatlike-runner export 20261130-101500-3fa2
      chatlike-runner export 20261130 --gguf q8_0 --name marco
    """
    from . import jobs

    _show(jobs.export(out, run, quant=quant, name=name, heldout=heldout, image=image, host=host, gpus="none", env=env,
                      force=force))


@cli.command(name="reproduce")
@click.argument("run")
@out_option
@host_option
@click.option("--image", help="Image to run.  [default: the run's own: its registry digest, else its id]")
@click.option("--stop-timeout", default=c.STOP_TIMEOUT, show_default=True, help="Seconds a stopped run gets to save before it is killed.")
@rent_options
def reproduce_run(run: str, out: Path, host: str | None, image: str | None, stop_timeout: int, on: str | None,
                  gpu: str | None, nodes: int, spot: bool, disk: int | None, keep: bool, dry_run: bool) -> None:
    """Run RUN again from what it recorded: the same image, its config as staged and the same data (refused when
    its sha256 differs); then its first steps' losses beside the original's. RUN: a run id in OUT, or the path
    of a run's manifest.json.
    """
    where = _rented(on, gpu, nodes, spot, disk, keep, dry_run)
    _show(reproduce.reproduce(host, run, out, image, stop_timeout, where, dry_run))


@cli.command()
@click.argument("ref")
@click.option("--image", default=c.DEFAULT_IMAGE, show_default=True, help="The built image to push.")
@host_option
def push(ref: str, image: str, host: str | None) -> None:
    """Push the training image to a registry as REF (REGISTRY/NAME:TAG) and record the digest it got, by which
    rented boxes then launch it (they cannot see this engine's images). Log in first with `docker login`.

    \b
    Examples:
      chatlike-runner push ghcr.io/you/chatlike-train:v1
      chatlike-runner push localhost:5000/chatlike/train:cpu --image chatlike/train:cpu
    """
    _show(registry.push(host, image, ref))


@cli.command(name="ls")
@host_option
def ls(host: str | None) -> None:
    """List the runs on the Docker engine."""
    runs_here = runs.listing(host)
    from rich.table import Column, Table

    table = Table(Column("run", no_wrap=True), "status", "exit", "gpus", Column("image", overflow="fold"), "started", box=None)
    for run in runs_here:
        started = (run.started_at or "")[:19].replace("T", " ")
        exit_code = "" if run.exit_code is None else str(run.exit_code)
        table.add_row(run.id, run.status, exit_code, run.flags.get("gpus", ""), run.flags.get("image", ""), started)
    console().print(table if runs_here else "no runs")


@cli.command(name="build")
@click.option("--flavor", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help=f"cuda: {c.DEFAULT_IMAGE} for NVIDIA GPUs; cpu: {c.CPU_IMAGE} for smoke runs without one.")
@click.option("--tag", help="Image name to build.  [default: by flavor]")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Extra CA bundle for a TLS-intercepting proxy; used during the build only, never stored in the image.")
@click.option("--if-missing", is_flag=True, help="Build only when the image is not on the Docker host yet.")
@click.option("--gpu-check/--no-gpu-check", default=True, show_default=True,
              help="For the CUDA flavor, first check that the Docker host can run it (NVIDIA runtime).")
@host_option
def build_image(flavor: str, tag: str | None, ca_bundle: Path | None, if_missing: bool, gpu_check: bool,
                host: str | None) -> None:
    """Build the training image from this checkout's Dockerfile (needs the docker CLI with BuildKit)."""
    reason = build.needed(flavor, host, tag, check_gpus=gpu_check, if_missing=if_missing)
    if reason:
        console().print(reason)
        return
    code = build.build(flavor, host, tag, ca_bundle)
    if code == 0:
        console().print(f"next: {'chatlike-runner start --smoke' if flavor == 'cpu' else GPU_RUN}")
    sys.exit(code)


@cli.command()
@host_option
@click.option("--image", default=c.DEFAULT_IMAGE, show_default=True, help="Training image to look for.")
@click.option("--gpus", default="all", show_default=True, help="GPUs to probe for.")
@out_option
def doctor(host: str | None, image: str, gpus: str, out: Path) -> None:
    """Check the Docker engine, image, NVIDIA runtime and free space."""
    from rich.table import Table

    checks = preflight.doctor(host, image, parse_gpus(gpus), out)
    table = Table("check", "", "detail", box=None)
    for check in checks:
        table.add_row(check.name, "[green]ok" if check.ok else "[red]FAIL", check.detail)
    console().print(table)
    if not all(check.ok for check in checks):
        sys.exit(2)
    console().print(f"next: `{GPU_RUN}`" if gpus != "none" else "next: `chatlike-runner start --smoke`")


def main() -> None:
    cli()

from .prepare.command import prepare  # noqa: E402
cli.add_command(prepare)
