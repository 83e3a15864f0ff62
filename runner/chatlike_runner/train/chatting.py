"""chatlike-train chat: talk with the tuned model over stdin and stdout, as the runner's `chat` does attached
to the container.

In: one line per turn, or a command: /reset, /system TEXT, /base (the base model's answer to your last
message). Out: one JSON object per line: {"ready"}, {"token"} as tokens come, {"end"} after each reply
(with why it stopped: "eot" or "length"), {"note"} after a command.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .tuned import Tuned

HELP = "/reset starts over, /system TEXT sets the system prompt, /base answers your last message with the base model"


def training_system(heldout: Path | None) -> str | None:
    """The system prompt training used most: the commonest system message of the held-out conversations."""
    if heldout is None or not heldout.is_file():
        return None
    found: Counter[str] = Counter()
    for line in heldout.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            messages = json.loads(line).get("messages") or []
        except (ValueError, AttributeError):
            continue
        found.update(m["content"] for m in messages[:1] if isinstance(m, dict) and m.get("role") == "system")
    return found.most_common(1)[0][0] if found else None


def stream_reply(tuned: Tuned, messages: list[dict[str, str]], emit: Callable[[dict], None], who: str,
                 max_new_tokens: int, temperature: float) -> str:
    """Generate a reply, emitting its text as it comes; returns it whole."""
    import torch
    from transformers import TextIteratorStreamer

    prompt = torch.tensor([tuned.prompt(messages)], device=tuned.device)
    streamer = TextIteratorStreamer(tuned.tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict[str, Any] = {}

    def work() -> None:
        with torch.inference_mode():
            result["ids"] = tuned.model.generate(
                input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=temperature > 0,
                temperature=temperature or None, top_p=0.9 if temperature > 0 else None, max_new_tokens=max_new_tokens,
                eos_token_id=tuned.stop_ids, pad_token_id=tuned.tokenizer.pad_token_id, streamer=streamer)

    thread = threading.Thread(target=work)
    thread.start()
    pieces = []
    for piece in streamer:
        if piece:
            pieces.append(piece)
            emit({"token": piece, "who": who})
    thread.join()
    new = result["ids"][0, prompt.shape[1]:].tolist()
    emit({"end": who, "stopped": "eot" if new and new[-1] in tuned.stop_ids else "length"})  # eot: a stop token
    return "".join(pieces).strip()


def chat(tuned: Tuned, system: str | None, lines: Iterable[str], emit: Callable[[dict], None], *,
         max_new_tokens: int = 256, temperature: float = 0.7) -> None:
    """The conversation: turns and commands from `lines` until they end."""
    history: list[dict[str, str]] = []

    def context(turns: list[dict[str, str]]) -> list[dict[str, str]]:
        return ([{"role": "system", "content": system}] if system else []) + turns

    emit({"ready": True, "system": system, "help": HELP})
    for line in lines:
        text = line.rstrip("\r\n")
        command, _, argument = text.partition(" ")
        if command == "/reset":
            history.clear()
            emit({"note": "conversation reset"})
        elif command == "/system":
            system = argument.strip() or None
            emit({"note": f"system prompt: {system}" if system else "no system prompt"})
        elif command == "/base":
            if not history:
                emit({"note": "say something first: /base answers your last message with the base model"})
                continue
            asked = history[:-1] if history[-1]["role"] == "assistant" else history
            with tuned.model.disable_adapter():
                stream_reply(tuned, context(asked), emit, "base", max_new_tokens, temperature)
        elif text.startswith("/"):
            emit({"note": f"unknown command {command}: {HELP}"})
        elif text.strip():
            history.append({"role": "user", "content": text})
            reply = stream_reply(tuned, context(history), emit, "tuned", max_new_tokens, temperature)
            history.append({"role": "assistant", "content": reply})
