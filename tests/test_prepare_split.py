"""Held-out split by time: the newest conversations, never a random draw."""

from __future__ import annotations

from prepare_fixtures.exports import chat, contents, exchange, full, run_ok

from chatlike_runner.prepare.split import heldout_flags

DAY = 86_400


def _chat(days: int, chat_id: int) -> dict:
    messages = []
    for day in range(days):
        messages += exchange(day * DAY, who=chat_id, mine=f"{chat_id} day {day}")
    return chat(messages, chat_id=chat_id, name=f"Friend {chat_id}")


def test_the_newest_share_of_each_chat_is_held_out(tmp_path):
    train, heldout, report = run_ok(full(_chat(10, 2002), _chat(20, 3003)), tmp_path, "--heldout-share", "10")
    assert contents(heldout, "assistant") == ["2002 day 9", "3003 day 18", "3003 day 19"]
    assert len(train) == 27 and report["samples"] == {"train": 27, "heldout": 3}


def test_the_last_days_of_the_export_are_held_out(tmp_path):
    train, heldout, _ = run_ok(full(_chat(10, 2002), _chat(20, 3003)), tmp_path, "--heldout-days", "3")
    assert contents(heldout, "assistant") == ["3003 day 16", "3003 day 17", "3003 day 18", "3003 day 19"]
    assert "2002 day 9" in contents(train, "assistant")


def test_samples_of_one_conversation_stay_together():
    flags = list(heldout_flags([0, 0, 0, 0], [0, 1, 1, 2], [0, 10, 10, 20], share=50, days=None))
    assert flags == [False, True, True, True]
    assert list(heldout_flags([0, 0, 0], [0, 1, 1], [0, 5 * DAY, 5 * DAY], share=0, days=1)) == [False, True, True]


def test_rounding_half_up_per_chat():
    flags = list(heldout_flags([0] * 5 + [1], [0, 1, 2, 3, 4, 0], [0] * 6, share=10, days=None))
    assert flags == [False, False, False, False, True, False]


def test_a_split_that_holds_nothing_out_says_so_in_one_line(tmp_path):
    from prepare_fixtures.exports import prepare, write

    small = write(tmp_path, full(_chat(3, 2002)))
    result = prepare(small, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    warning = ("chatlike-runner: warning: nothing was held out (--heldout-share 10 of 3 samples): heldout.jsonl is "
               "empty and `eval` will have nothing to judge the run on; raise --heldout-share or --heldout-days")
    assert result.stderr.strip().splitlines() == [warning]
    assert (tmp_path / "out" / "heldout.jsonl").read_text() == ""
    (tmp_path / "none").mkdir()
    _, heldout, report = run_ok(full(_chat(3, 2002)), tmp_path / "none", "--heldout-share", "0")
    assert heldout == [] and report["warnings"] == [warning.split("warning: ")[1].replace("share 10", "share 0")]
