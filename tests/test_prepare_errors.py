"""Bad input: one line on stderr saying what is wrong and what to do, exit 2, nothing half-written."""

from __future__ import annotations

import os

import pytest
from prepare_fixtures.exports import chat, exchange, full, msg, prepare, write


def _refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatlike-runner: "), result.stderr
    for word in words:
        assert word in lines[0]


def _leftovers(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial"))


def test_a_truncated_export(tmp_path):
    path = write(tmp_path, full(chat(exchange(0))))
    path.write_bytes(path.read_bytes()[:-40])
    _refused(prepare(path, "-o", tmp_path / "out"), "not valid JSON", "truncated", "Export")
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "result.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not json at all")
    _refused(prepare(path, "-o", tmp_path / "out"), "not valid JSON")


@pytest.mark.parametrize("content", ["[]", "{}", "42", '"text"', '{"chats": {"list": []}}'])
def test_json_that_is_not_an_export(tmp_path, content):
    path = tmp_path / "result.json"
    path.write_text(content)
    _refused(prepare(path, "-o", tmp_path / "out"), "holds no chats", "Export")


def test_an_export_with_no_messages_from_me(tmp_path):
    path = write(tmp_path, full(chat([msg(0, "user2002", "only them")])))
    _refused(prepare(path, "-o", tmp_path / "out"), "no messages from user1001", "--me")


def test_an_export_with_only_groups(tmp_path):
    path = write(tmp_path, full(chat(exchange(0), "private_group", "G", 9)))
    _refused(prepare(path, "-o", tmp_path / "out"), "--groups")


def test_missing_and_unreadable_paths(tmp_path):
    _refused(prepare(tmp_path / "nope.json", "-o", tmp_path / "out"), "does not exist", "result.json")
    _refused(prepare(tmp_path, "-o", tmp_path / "out"), "not a file")
    if os.geteuid() != 0:  # root reads anything
        path = write(tmp_path, full(chat(exchange(0))))
        path.chmod(0)
        _refused(prepare(path, "-o", tmp_path / "out"), "cannot read")


def test_an_existing_dataset_is_not_overwritten_without_force(tmp_path):
    path = write(tmp_path, full(chat(exchange(0, mine="first"))))
    out = tmp_path / "out"
    assert prepare(path, "-o", out).exit_code == 0
    before = (out / "train.jsonl").read_bytes()
    write(tmp_path, full(chat(exchange(0, mine="second"))))
    _refused(prepare(path, "-o", out), "already holds a dataset", "--force")
    assert (out / "train.jsonl").read_bytes() == before
    assert prepare(path, "-o", out, "--force").exit_code == 0
    assert b"second" in (out / "train.jsonl").read_bytes()
    assert not _leftovers(tmp_path)


def test_output_may_go_next_to_the_export(tmp_path):
    path = write(tmp_path, full(chat(exchange(0))))
    assert prepare(path, "-o", tmp_path).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout.jsonl", "report.json", "result.json", "train.jsonl"]


def test_a_failure_leaves_an_existing_dataset_and_no_temp_folder(tmp_path):
    good = write(tmp_path, full(chat(exchange(0))), "good.json")
    out = tmp_path / "out"
    assert prepare(good, "-o", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.json"
    bad.write_text('{"chats": {"list": [{"type": "personal_chat", "messages": [')
    _refused(prepare(bad, "-o", out, "--force"), "not valid JSON")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not _leftovers(tmp_path)


def test_an_output_path_that_is_a_file(tmp_path):
    path = write(tmp_path, full(chat(exchange(0))))
    _refused(prepare(path, "-o", path), "is a file")
