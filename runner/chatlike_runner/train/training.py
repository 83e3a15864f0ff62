"""Start Axolotl on every visible GPU, copy its output to stdout and the log, and turn SIGTERM into a checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Nodes:
    """This machine's place in a run over several machines (SkyPilot sets the values on each node)."""

    count: int = 1
    rank: int = 0
    main_address: str | None = None  # the first node's address: accelerate's rendezvous
    main_port: int = 29500


def train_command(config: Path, gpu_count: int, python: str = sys.executable, nodes: Nodes = Nodes()) -> list[str]:
    """One process for none or one GPU on one machine; accelerate with one process per GPU otherwise (on every
    node of a multi-node run, each told the node count, its rank and the first node's address)."""
    if gpu_count <= 1 and nodes.count == 1:
        return [python, "-m", "axolotl.cli.train", str(config)]
    machines = ["--num_machines", str(nodes.count)]
    if nodes.count > 1:
        machines += ["--machine_rank", str(nodes.rank), "--main_process_ip", str(nodes.main_address),
                     "--main_process_port", str(nodes.main_port)]
    return [
        python, "-m", "accelerate.commands.launch",
        "--multi_gpu", *machines, "--num_processes", str(max(gpu_count, 1) * nodes.count),
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "axolotl.cli.train", str(config),
    ]


@dataclass(frozen=True)
class Outcome:
    """How the trainer ended: its return code (negative: killed by that signal) and the stop signal it was sent."""

    returncode: int
    signal: signal.Signals | None = None


def exit_code(returncode: int, stopped_by: signal.Signals | None) -> int:
    """The shell's convention: 128+N for a signal; a clean stop after a signal still says which one."""
    if returncode < 0:
        return 128 - returncode
    if returncode == 0 and stopped_by is not None:
        return 128 + stopped_by.value
    return returncode


def _children(pid: int) -> list[int]:
    """The direct children of pid (the ranks an accelerate launcher started)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


class _Forwarder:
    """First SIGTERM/SIGINT: SIGTERM to the training ranks (they checkpoint and stop). Second: SIGKILL them all."""

    def __init__(self, process: subprocess.Popen, multi: bool) -> None:
        self.process, self.multi = process, multi
        self.received: signal.Signals | None = None

    def __call__(self, signum: int, frame) -> None:
        if self.received is not None:
            _signal_group(self.process.pid, signal.SIGKILL)
            return
        self.received = signal.Signals(signum)
        # os.write, not print: the main loop may be inside sys.stdout's buffer (a reentrant write raises).
        os.write(1, f"\nchatlike-train: got {self.received.name}; asking the trainer to save a checkpoint and stop\n".encode())
        ranks = _children(self.process.pid) if self.multi else [self.process.pid]
        for pid in ranks or [self.process.pid]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def supervise(command: Sequence[str], env: Mapping[str, str], log_path: Path, multi: bool) -> Outcome:
    """Run command in its own session; tee stdout+stderr to our stdout and log_path; forward stop signals."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True
        )
        forwarder = _Forwarder(process, multi)
        previous = {sig: signal.signal(sig, forwarder) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            assert process.stdout is not None
            fd, out = process.stdout.fileno(), sys.stdout.buffer
            while chunk := os.read(fd, _CHUNK):
                out.write(chunk)
                out.flush()
                log.write(chunk)
                log.flush()
            returncode = process.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return Outcome(returncode, forwarder.received)
