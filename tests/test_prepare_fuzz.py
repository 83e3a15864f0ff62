"""Malformed and random exports never give a traceback: either a dataset (exit 0) or one line (exit 2)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prepare_fixtures.exports import ME, T0, chat, exchange, full, prepare

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12))
anything = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=12)
entity = st.one_of(st.text(max_size=10), st.fixed_dictionaries(
    {"type": st.sampled_from(["plain", "bold", "email", "phone", "mention", "bank_card", "link", None, 3]),
     "text": st.one_of(st.text(max_size=15), anything)}), anything)
message = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["message", "service", "unsupported"]), anything)},
    optional={
        "id": anything,
        "date_unixtime": st.one_of(st.integers(T0, T0 + 10**6).map(str), st.integers(T0, T0 + 10**6), anything),
        "date": st.one_of(st.sampled_from(["2024-01-01T10:00:00", "2024-13-45T99:00:00", ""]), anything),
        "from_id": st.one_of(st.sampled_from([ME, "user2", "channel3", 1001, 2]), anything),
        "from": st.one_of(st.sampled_from(["Robin Vale", "Friend"]), anything),
        "text": st.one_of(st.text(max_size=20), st.lists(entity, max_size=4), anything),
        "text_entities": st.one_of(st.lists(entity, max_size=4), anything),
        "forwarded_from": anything, "media_type": st.one_of(st.just("sticker"), anything),
        "sticker_emoji": anything, "photo": anything,
    })
chats = st.fixed_dictionaries(
    {"messages": st.one_of(st.lists(message, max_size=8), anything)},
    optional={"name": anything, "type": st.one_of(st.sampled_from(["personal_chat", "private_group", "bot_chat"]), anything),
              "id": anything})
exports = st.one_of(
    chats,
    st.lists(chats, max_size=3),
    st.builds(lambda cs, left, pi: {"personal_information": pi, "chats": {"list": cs}, "left_chats": {"list": left}},
              st.lists(chats, max_size=3), st.one_of(st.lists(chats, max_size=2), anything),
              st.one_of(st.fixed_dictionaries({"user_id": st.one_of(st.just(1001), anything)}), anything)),
    anything,
)
flags = st.lists(st.sampled_from([["--groups"], ["--stickers"], ["--pseudonyms"], ["--no-mask"], ["--me", "user2"],
                                  ["--me-name", "Friend"], ["--merge-minutes", "0"], ["--heldout-days", "1"],
                                  ["--system", "{me}/{contact}"], ["--max-chars", "1"]]), max_size=3)


def _check(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("chatlike-runner: ")


@SETTINGS
@given(export=exports, extra=flags)
def test_random_exports(tmp_path_factory, export, extra):
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "result.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    result = prepare(path, "-o", tmp / "out", *[f for pair in extra for f in pair])
    _check(result)
    if result.exit_code == 0:
        for line in (tmp / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines():
            roles = [m["role"] for m in json.loads(line)["messages"] if m["role"] != "system"]
            assert roles[0] == "user" and roles[-1] == "assistant"
    else:
        assert not (tmp / "out").exists()


VALID = json.dumps(full(chat(exchange(0) + exchange(10_000)), chat(exchange(0), "private_group", "G", 9))).encode()


@SETTINGS
@given(cut=st.integers(0, len(VALID) - 1), junk=st.binary(max_size=8))
def test_truncated_and_corrupted_exports(tmp_path_factory, cut, junk):
    tmp = tmp_path_factory.mktemp("cut")
    path = tmp / "result.json"
    path.write_bytes(VALID[:cut] + junk)
    result = prepare(path, "-o", tmp / "out")
    _check(result)
    if result.exit_code == 2:
        assert not (tmp / "out").exists()
    assert not any(p.name.endswith(".partial") for p in tmp.iterdir())


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("bytes")
    path = tmp / "result.json"
    path.write_bytes(data)
    _check(prepare(path, "-o", tmp / "out"))
