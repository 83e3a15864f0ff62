"""What a command on a run reports as it goes. Commands yield these; the Click layer prints them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Note:
    """A line for the person running the command."""

    text: str
    warning: bool = False


@dataclass(frozen=True)
class Following:
    """The run's log follows, as Log events, until the next event of another kind."""

    run_id: str


@dataclass(frozen=True)
class Log:
    """One line of the run's log, secrets redacted."""

    text: str


@dataclass(frozen=True)
class Outcome:
    """How a run stands when the command ends, and where its outputs were copied."""

    run_id: str
    exit_code: int
    status: str  # running, succeeded, failed, oom, stopped
    path: Path | None = None
    trial: str = ""  # a CPU trial run: "smoke" (`start --smoke`) or "preview" (`start --preview`)


@dataclass(frozen=True)
class JobDone:
    """A job on a run (eval) ended well: its output is in `path`, OUT/<run-id>/<kind>/."""

    run_id: str
    kind: str
    path: Path
    image_id: str
    report: dict[str, Any] | None = None  # eval: report.json


@dataclass(frozen=True)
class ChatReady:
    """The model is loaded: the chat takes turns. `system` is the system prompt it starts with."""

    run_id: str
    system: str | None
    help: str


@dataclass(frozen=True)
class Said:
    """A piece of a reply as it comes (`text`), or its end (`end`: eot, or length when cut at the token limit)."""

    who: str  # tuned, or base (its answer for comparison)
    text: str = ""
    end: str | None = None


@dataclass(frozen=True)
class Progress:
    """How far a job is, replacing the last such line."""

    text: str


@dataclass(frozen=True)
class Question:
    """A blind test's question: the conversation so far (its last messages), and two replies in random order."""

    round: str  # you: yours or the tuned model's; base: tuned or base
    number: int
    of: int
    ask: str
    context: list[dict[str, str]]
    replies: list[str]


@dataclass(frozen=True)
class Pushed:
    """The image is on the registry as `ref` (REGISTRY/NAME@sha256:…), the digest a launch names it by."""

    ref: str
    image_id: str


@dataclass(frozen=True)
class TaskReady:
    """A rented run's SkyPilot task, written to `path` and checked offline: where it would run, and at what price."""

    run_id: str
    path: Path
    text: str
    placement: dict[str, Any]
    summary: str
    dry_run: bool


Event = Note | Following | Log | Outcome | JobDone | ChatReady | Said | Progress | Question | Pushed | TaskReady
