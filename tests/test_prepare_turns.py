"""Turns and conversations: merge window, albums, silences, time order, sample boundaries."""

from __future__ import annotations

import json

from prepare_fixtures.exports import MIN, chat, contents, full, msg, run_ok, them

from chatlike_runner.prepare import samples as made
from chatlike_runner.prepare.turns import REORDER_WINDOW, Conversations, Line, TimeOrder

HOUR = 60 * MIN
DAY = 24 * HOUR


def in_time_order(lines: list[Line], window: int = REORDER_WINDOW) -> list[Line]:
    """TimeOrder fed line by line, as prepare feeds it batch by batch."""
    order, out = TimeOrder(window), []
    for line in lines:
        order.add((line,))
        out += order.ready()
    return out + list(order.rest())


def conversations(lines: list[Line], *, merge: int, gap: int) -> list:
    grouping = Conversations(merge=merge, gap=gap)
    found = list(grouping.add(lines))
    return found + ([last] if (last := grouping.close()) is not None else [])


def samples(turns: list, *, max_chars: int) -> list[list[dict]]:
    """The samples of one conversation as prepare writes them, read back."""
    texts = made.contents(turns, None)
    return [json.loads(made.encoded(turns, texts, start, end, None))["messages"]
            for start, end in made.spans(turns, texts, max_chars)]


def test_consecutive_messages_within_the_window_merge_with_newlines(tmp_path):
    messages = [them(0, "a"), them(4 * MIN, "b"), msg(5 * MIN, text="one"), msg(9 * MIN, text="two"),
                msg(13 * MIN, text="three"), msg(19 * MIN, text="late")]
    train, _, report = run_ok(full(chat(messages)), tmp_path)
    assert train == [[{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "one\ntwo\nthree"},
                      {"role": "assistant", "content": "late"}]]
    assert report["turns"] == {"total": 3, "mine": 2, "my_share": 0.6667}


def test_the_merge_window_is_rolling_but_bounded():
    lines = [Line(t, "me", "", str(t), True) for t in (0, 300, 600, 1000)]
    (turns,) = conversations(lines, merge=300, gap=3600)
    assert [t.text for t in turns] == ["0\n300\n600", "1000"]


def test_albums_stitch_even_without_a_merge_window(tmp_path):
    messages = [them(0, "from the trip", photo="x"), them(0, "and the lake", photo="y"), them(3, "third"),
                msg(MIN, text="wow")]
    train, _, _ = run_ok(full(chat(messages)), tmp_path, "--merge-minutes", "0")
    assert contents(train, "user") == ["from the trip\nand the lake", "third"]
    train, _, _ = run_ok(full(chat(messages)), _fresh(tmp_path))
    assert contents(train, "user") == ["from the trip\nand the lake\nthird"]


def test_a_long_silence_starts_a_new_conversation(tmp_path):
    messages = [them(0, "morning"), msg(MIN, text="hi"), them(MIN + 61 * MIN, "evening"), msg(MIN + 62 * MIN, text="yo")]
    train, _, report = run_ok(full(chat(messages)), tmp_path)
    assert len(train) == 2 and report["conversations"]["kept"] == 2


def test_gaps_count_whole_days_not_just_the_seconds_part():
    lines = [Line(0, "them", "", "a", False), Line(DAY + 10, "me", "", "b", True)]
    assert len(list(conversations(lines, merge=300, gap=3600))) == 2


def test_times_fall_back_to_date_when_date_unixtime_is_missing(tmp_path):
    first, second = them(0, "old export"), msg(0, text="still works")
    for m, date in ((first, "2020-05-01T10:00:00"), (second, "2020-05-01T10:02:00")):
        del m["date_unixtime"]
        m["date"] = date
    late = msg(0, text="much later")
    del late["date_unixtime"]
    late["date"] = "2020-05-03T10:00:00"
    train, _, _ = run_ok(full(chat([first, second, late])), tmp_path)
    assert train == [[{"role": "user", "content": "old export"}, {"role": "assistant", "content": "still works"}]]


def test_messages_are_put_in_time_order(tmp_path):
    messages = [msg(MIN, text="answer"), them(0, "question")]
    train, _, _ = run_ok(full(chat(messages)), tmp_path)
    assert train == [[{"role": "user", "content": "question"}, {"role": "assistant", "content": "answer"}]]


def test_reordering_is_bounded_and_stable():
    lines = [Line(t, "x", "", str(i), False) for i, t in enumerate((5, 1, 1, 9, 3))]
    assert [l.text for l in in_time_order(lines)] == ["1", "2", "4", "0", "3"]
    assert [l.ts for l in in_time_order(lines, window=1)] == [1, 1, 5, 3, 9]


def test_samples_start_with_them_and_end_with_me(tmp_path):
    messages = [msg(0, text="my opener"), them(MIN, "reply"), msg(2 * MIN, text="mine"), them(3 * MIN, "unanswered")]
    train, _, _ = run_ok(full(chat(messages)), tmp_path)
    assert train == [[{"role": "user", "content": "reply"}, {"role": "assistant", "content": "mine"}]]


def test_conversations_without_a_reply_of_mine_are_dropped(tmp_path):
    messages = [them(0, "hello?"), them(2 * HOUR, "anyone?"), msg(4 * HOUR, text="sorry"),
                them(4 * HOUR + MIN, "ok"), msg(4 * HOUR + 2 * MIN, text="k")]
    train, _, report = run_ok(full(chat(messages)), tmp_path)
    assert len(train) == 1
    assert report["conversations"]["dropped"] == {"no reply of yours to the other side": 2}


def test_long_conversations_are_cut_before_a_user_turn():
    lines = []
    for i in range(6):
        lines += [Line(i * 20, "them", "", f"q{i}" * 10, False), Line(i * 20 + 10, "me", "", f"a{i}" * 10, True)]
    (turns,) = conversations(lines, merge=5, gap=3600)
    cut = list(samples(turns, max_chars=90))
    assert [len(s) for s in cut] == [4, 4, 4]
    assert all(s[0]["role"] == "user" and s[-1]["role"] == "assistant" for s in cut)


def _fresh(tmp_path):
    fresh = tmp_path / "again"
    fresh.mkdir()
    return fresh
