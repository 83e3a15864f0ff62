"""chatlike-runner: the command line. It only parses, hands off and prints."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Column, Table

from . import __version__, build, preflight, runs
from . import constants as c
from .plan import build_plan, parse_gpus

console = Console(highlight=False, soft_wrap=True)

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


def _finish(outcome: runs.Outcome) -> None:
    if outcome.status == "running":
        console.print(
            f"detached. Follow it with `chatlike-runner attach {outcome.run_id}`, "
            f"copy its outputs with `chatlike-runner fetch {outcome.run_id}`."
        )
    elif outcome.status == "oom":
        console.print(
            f"run {outcome.run_id} ran out of memory (OOM-killed); outputs in {outcome.path}. Lower "
            "micro_batch_size or sequence_len, enable gradient_checkpointing, or raise --memory.",
            style="red",
        )
    elif outcome.status == "stopped":
        console.print(
            f"run {outcome.run_id} stopped (exit {outcome.exit_code}); what it wrote is in {outcome.path}. "
            f"Continue it with `chatlike-runner resume {outcome.run_id}`.",
            style="yellow",
        )
    elif outcome.path is not None:
        style = "green" if outcome.status == "succeeded" else "red"
        console.print(f"run {outcome.run_id} {outcome.status} (exit {outcome.exit_code}); outputs in {outcome.path}", style=style)
    sys.exit(outcome.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatlike-runner")
def cli() -> None:
    """Train a model that chats like you, in a container, on this machine or a rented one."""


@cli.command()
@click.argument("config", type=click.Path(path_type=Path), required=False)
@click.option("--smoke", is_flag=True, help=f"CPU smoke run: configs/cpu-smoke.yml (a tiny built-in model, no downloads) in {c.CPU_IMAGE}.")
@click.option("--data", type=click.Path(path_type=Path), help="Dataset file or folder; replaces the path of the config's dataset.")
@out_option
@click.option("--image", help=f"Training image.  [default: {c.DEFAULT_IMAGE}; {c.CPU_IMAGE} with --smoke]")
@host_option
@click.option("--gpus", default="none", show_default=True, help="all, a count (2), device ids (0,1) or none.")
@click.option("--shm-size", metavar="SIZE", help="Private /dev/shm of this size (e.g. 16g) instead of the host's IPC namespace.")
@click.option("--memory", metavar="SIZE", help="Memory limit for the container (e.g. 48g).")
@click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]", help="A ulimit such as memlock=-1 or stack=67108864; repeatable.")
@click.option("--env", "env", multiple=True, metavar="NAME", help="Pass this variable from your shell, by name; repeatable. HF_TOKEN and WANDB_API_KEY pass when set.")
@click.option("--detach", "-d", is_flag=True, help="Start and return at once; `attach` or `fetch` later.")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check config and dataset with `chatlike-train validate` in the image first.")
@click.option("--stop-timeout", default=c.STOP_TIMEOUT, show_default=True, help="Seconds a stopped run gets to save before it is killed.")
def start(config: Path | None, smoke: bool, data: Path | None, out: Path, image: str | None, host: str | None, gpus: str, shm_size: str | None,
          memory: str | None, ulimits: tuple[str, ...], env: tuple[str, ...], detach: bool, validate: bool,
          stop_timeout: int) -> None:
    """Train CONFIG (an Axolotl YAML file) in a container and copy the adapter to OUT/<run-id>/.

    \b
    Examples:
      chatlike-runner start configs/llama-3.1-8b-qlora.yml --data data/train.jsonl --gpus all
      chatlike-runner start cfg.yml --host ssh://ubuntu@203.0.113.7 --gpus all --detach
      chatlike-runner start --smoke
    """
    if smoke:
        config = config or c.SMOKE_CONFIG
        image = image or c.CPU_IMAGE
    elif config is None:
        raise click.UsageError("give CONFIG (an Axolotl YAML file), or --smoke for the CPU smoke run")
    plan = build_plan(config, data=data, out=out, image=image or c.DEFAULT_IMAGE, host=host, gpus=gpus, shm_size=shm_size,
                      memory=memory, ulimits=ulimits, env=env, detach=detach, validate=validate)
    _finish(runs.start(plan, console, stop_timeout))


@cli.command()
@click.argument("run")
@out_option
@host_option
def attach(run: str, out: Path, host: str | None) -> None:
    """Follow RUN again and collect its outputs when it ends."""
    _finish(runs.attach(host, run, out, console))


@cli.command()
@click.argument("run")
@out_option
@host_option
@click.option("--stop-timeout", default=c.STOP_TIMEOUT, show_default=True, help="Seconds a stopped run gets to save before it is killed.")
def resume(run: str, out: Path, host: str | None, stop_timeout: int) -> None:
    """Continue RUN, stopped by Ctrl-C or `stop`, from its last checkpoint."""
    _finish(runs.resume(host, run, out, console, stop_timeout))


@cli.command()
@click.argument("run")
@out_option
@host_option
def fetch(run: str, out: Path, host: str | None) -> None:
    """Copy RUN's outputs to OUT now: a finished run to OUT/<run-id>, a running one to OUT/<run-id>.partial."""
    outcome = runs.fetch(host, run, out)
    console.print(f"run {outcome.run_id} ({outcome.status}): outputs in {outcome.path}")


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
    console.print(f"run {runs.stop(host, run, timeout)} stopped")


@cli.command()
@click.argument("run")
@out_option
@click.option("--force", is_flag=True, help="Remove even if running or never fetched.")
@click.option("--cache", is_flag=True, help=f"Also remove the shared model cache volume ({c.CACHE_VOLUME}).")
@host_option
def rm(run: str, out: Path, force: bool, cache: bool, host: str | None) -> None:
    """Remove RUN's container and volumes (never the model cache unless --cache)."""
    for item in runs.remove(host, run, out, force=force, cache=cache):
        console.print(f"removed {item}")


@cli.command(name="ls")
@host_option
def ls(host: str | None) -> None:
    """List the runs on the Docker engine."""
    rows = runs.table(host)
    table = Table(Column("run", no_wrap=True), "status", "exit", "gpus", Column("image", overflow="fold"), "started", box=None)
    for row in rows:
        table.add_row(*(str(v) if v is not None else "" for v in row.values()))
    console.print(table if rows else "no runs")


@cli.command(name="build")
@click.option("--flavor", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help=f"cuda: {c.DEFAULT_IMAGE} for NVIDIA GPUs; cpu: {c.CPU_IMAGE} for smoke runs without one.")
@click.option("--tag", help="Image name to build.  [default: by flavor]")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Extra CA bundle for a TLS-intercepting proxy; used during the build only, never stored in the image.")
@host_option
def build_image(flavor: str, tag: str | None, ca_bundle: Path | None, host: str | None) -> None:
    """Build the training image from this checkout's Dockerfile (needs the docker CLI with BuildKit)."""
    sys.exit(build.build(flavor, host, tag, ca_bundle))


@cli.command()
@host_option
@click.option("--image", default=c.DEFAULT_IMAGE, show_default=True, help="Training image to look for.")
@click.option("--gpus", default="all", show_default=True, help="GPUs to probe for.")
@out_option
def doctor(host: str | None, image: str, gpus: str, out: Path) -> None:
    """Check the Docker engine, image, NVIDIA runtime and free space."""
    checks = preflight.doctor(host, image, parse_gpus(gpus), out)
    table = Table("check", "", "detail", box=None)
    for check in checks:
        table.add_row(check.name, "[green]ok" if check.ok else "[red]FAIL", check.detail)
    console.print(table)
    if not all(check.ok for check in checks):
        sys.exit(2)


def main() -> None:
    cli()

from .prepare.command import prepare  # noqa: E402
cli.add_command(prepare)
