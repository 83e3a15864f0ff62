"""Output: the chat-sample shape, the report and summary, the bundled example, byte-identical reruns."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from prepare_fixtures.exports import MIN, chat, exchange, full, msg, prepare, run_ok, them, write

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "telegram" / "result.json"


def test_samples_have_the_chat_shape_with_an_optional_system_prompt(tmp_path):
    train, _, _ = run_ok(full(chat(exchange(0), name="Maya")), tmp_path, "--system",
                         "You are {me}, chatting with {contact}.")
    assert train == [[{"role": "system", "content": "You are Robin Vale, chatting with Maya."},
                      {"role": "user", "content": "are you coming?"}, {"role": "assistant", "content": "sure"}]]


def test_a_bad_system_template_is_refused(tmp_path):
    result = prepare(write(tmp_path, full(chat(exchange(0)))), "-o", tmp_path / "out", "--system", "Hi {name}")
    assert result.exit_code == 2 and "{me} and {contact}" in result.stderr


def test_report_and_summary_say_what_was_kept_and_dropped(tmp_path):
    export = full(chat([them(0, "mail me at a@example.com"), msg(MIN, text="ok"), msg(2 * MIN, text="f", forwarded_from=None)]),
                  chat(exchange(0), "bot_chat", "Bot", 5))
    path = write(tmp_path, export)
    result = prepare(path, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["chats"] == {"read": 2, "kept": 1, "dropped": {"type bot_chat": 1}}
    assert report["messages"] == {"read": 3, "kept": 2, "dropped": {"forwarded": 1}}
    assert report["turns"]["my_share"] == 0.5 and report["characters"]["total"] == len("mail me at [email]") + 2
    assert report["export"]["sha256"] and report["export"]["file"] == "result.json"
    for words in ("1 kept of 2", "50% mine", "1 email", "1 forwarded", "1 type bot_chat", "train.jsonl"):
        assert words in result.stdout


def test_the_example_prepares_in_seconds_and_byte_identically(tmp_path):
    outputs = []
    for run in ("one", "two"):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "chatlike_runner", "prepare", str(EXAMPLE), "-o",
                               str(tmp_path / run), "--system", "You are {me}, chatting with {contact}."],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 10
        outputs.append({name: (tmp_path / run / name).read_bytes() for name in ("train.jsonl", "heldout.jsonl", "report.json")})
    assert outputs[0] == outputs[1]
    report = json.loads(outputs[0]["report.json"])
    assert report["samples"]["train"] > 50 and report["samples"]["heldout"] > 5
    assert report["me"]["id"] == "user4815162342"


def test_without_export_the_bundled_example_is_used(tmp_path):
    result = prepare("-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "synthetic example" in result.stdout
    assert (tmp_path / "out" / "train.jsonl").stat().st_size > 1000


def test_an_export_folder_is_read_through_its_result_json(tmp_path):
    folder = tmp_path / "DataExport_2025-01-01"
    folder.mkdir()
    write(folder, full(chat(exchange(0))))
    result = prepare(folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output


def test_the_example_is_made_by_its_script_from_a_fixed_seed(tmp_path):
    made = tmp_path / "result.json"
    subprocess.run([sys.executable, str(REPO / "examples" / "make_export.py"), str(made)], check=True, timeout=60)
    assert made.read_bytes() == EXAMPLE.read_bytes()
    assert EXAMPLE.stat().st_size < 1_000_000


def test_the_example_holds_every_checklist_case():
    raw = EXAMPLE.read_text(encoding="utf-8")
    for needle in ('"left_chats"', '"saved_messages"', '"bot_chat"', '"public_channel"', '"private_group"',
                   '"type": "service"', '"forwarded_from"', '"via_bot"', '"sticker_emoji"', '"contact_information"',
                   '"type": "email"', '"type": "mention"', '"type": "phone"', '"edited"', '"text": "k"'):
        assert needle in raw, needle


def test_the_short_path_for_plain_messages_gives_what_the_general_reader_gives(tmp_path):
    """prepare reads a message of the common shape (one plain text entity) by a short path of its own; the same
    texts split into two plain entities go through messages.read and privacy.mask: every byte out is the same."""
    texts = ["are you coming?", "  call me at +44 7700 900456 or robin@example.com  ", "ok 😀", "tonight at 8",
             "my card 4111 1111 1111 1111", "https://example.com/x?y=1", "see you", "Ёлки\nпалки", " 12 "]
    messages = []
    for i, text in enumerate(texts * 3):
        make = them if i % 2 == 0 else msg
        messages.append(make(i * MIN, text=text))

    def split(message: dict) -> dict:
        text = message["text_entities"][0]["text"]
        halves = [{"type": "plain", "text": text[:3]}, {"type": "plain", "text": text[3:]}]
        return {**message, "text": [h["text"] for h in halves], "text_entities": halves}

    outputs = []
    for name, batch in (("short", messages), ("general", [split(m) for m in messages])):
        folder = tmp_path / name
        folder.mkdir()
        result = prepare(write(folder, full(chat(batch))), "-o", folder / "out", "--pseudonyms", "--heldout-share", "0")
        assert result.exit_code == 0, result.output
        outputs.append([(folder / "out" / f).read_bytes() for f in ("train.jsonl", "heldout.jsonl")])
    assert outputs[0] == outputs[1] and outputs[0][0]
