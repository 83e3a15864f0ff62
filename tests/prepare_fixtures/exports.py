"""Small Telegram exports built in code, and a way to run `prepare` on them in-process."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from chatlike_runner.cli import cli

ME_ID = 1001
ME = f"user{ME_ID}"
ME_NAME = "Robin Vale"
T0 = 1_700_000_000
MIN = 60


def msg(ts: int, sender: str | int | None = ME, text: Any = "hi", name: str | None = None, **extra: Any) -> dict:
    """A message at ts seconds after T0; text plain or a list of entities. sender ME is me."""
    if name is None:
        name = ME_NAME if sender == ME else f"Friend {sender}"
    message = {"id": ts, "type": "message", "date": "2023-11-14T22:13:20", "date_unixtime": str(T0 + ts),
               "from": name, "from_id": sender, **extra}
    if isinstance(text, str):
        message["text"] = text
        message["text_entities"] = [{"type": "plain", "text": text}] if text else []
    else:
        message["text"] = [e["text"] if e["type"] == "plain" else e for e in text]
        message["text_entities"] = text
    return message


def them(ts: int, text: Any = "hello", who: int = 2002, **extra: Any) -> dict:
    return msg(ts, f"user{who}", text, **extra)


def chat(messages: list[dict], kind: str = "personal_chat", name: str | None = "Friend", chat_id: int = 2002) -> dict:
    return {"name": name, "type": kind, "id": chat_id, "messages": messages}


def exchange(ts: int, *, who: int = 2002, mine: str = "sure") -> list[dict]:
    """They write, I answer a minute later."""
    return [them(ts, "are you coming?", who=who), msg(ts + MIN, text=mine)]


def full(*chats: dict, left: tuple[dict, ...] = (), user_id: int = ME_ID) -> dict:
    export = {"about": "Here is the data you requested.",
              "personal_information": {"user_id": user_id, "first_name": "Robin", "last_name": "Vale",
                                       "phone_number": "+44 7700 900123"},
              "chats": {"about": "", "list": list(chats)}}
    if left:
        export["left_chats"] = {"about": "", "list": list(left)}
    return export


def write(tmp_path: Path, export: Any, name: str = "result.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(export, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def prepare(*args: str | Path) -> Result:
    """`chatlike-runner prepare ARGS`, in-process."""
    # click < 8.2 (which SkyPilot, the [cloud] extra, pins) mixes stderr into output unless told not to.
    separate = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
    return CliRunner(**separate).invoke(cli, ["prepare", *map(str, args)])


def run_ok(export: Any, tmp_path: Path, *args: str) -> tuple[list[list[dict]], list[list[dict]], dict]:
    """Prepare export with args; return (train samples, held-out samples, report). Holds nothing out by default."""
    path = write(tmp_path, export)
    out = tmp_path / "out"
    if not any(a.startswith("--heldout") for a in args):
        args = (*args, "--heldout-share", "0")
    result = prepare(path, "-o", out, *args)
    assert result.exit_code == 0, result.output
    return (_samples(out / "train.jsonl"), _samples(out / "heldout.jsonl"),
            json.loads((out / "report.json").read_text(encoding="utf-8")))


def _samples(path: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]


def contents(samples: list[list[dict]], role: str | None = None) -> list[str]:
    return [m["content"] for s in samples for m in s if role is None or m["role"] == role]
