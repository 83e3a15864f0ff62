"""What is kept: personal chats (groups opt-in), real text written by its sender; never media placeholders."""

from __future__ import annotations

import json

from prepare_fixtures.exports import MIN, chat, contents, exchange, full, msg, run_ok, them

PLACEHOLDER = "(File not included. Change data exporting settings to download.)"


def test_only_personal_chats_by_default(tmp_path):
    export = full(chat(exchange(0, mine="personal")),
                  chat(exchange(0, who=3003, mine="group"), "private_supergroup", "Crew", 9),
                  chat(exchange(0, mine="saved"), "saved_messages", None, 1001),
                  chat(exchange(0, mine="bot"), "bot_chat", "SomeBot", 5),
                  chat(exchange(0, mine="channel"), "public_channel", "News", 6),
                  chat(exchange(0, mine="replies"), "replies", "Replies", 7))
    train, _, report = run_ok(export, tmp_path)
    assert contents(train, "assistant") == ["personal"]
    dropped = report["chats"]["dropped"]
    assert dropped["type private_supergroup (pass --groups to keep)"] == 1
    for kind in ("saved_messages", "bot_chat", "public_channel", "replies"):
        assert dropped[f"type {kind}"] == 1


def test_groups_opt_in_and_name_the_speakers(tmp_path):
    messages = [them(0, "who's in?", who=3003, name="Ann"), them(10, "me!", who=4004, name="Bo"),
                msg(MIN, text="me too"), msg(MIN + 5, "channel77", "channel post", name="Chan")]
    for m, name in zip(messages[:2], ("Ann", "Bo")):
        m["from"] = name
    train, _, report = run_ok(full(chat(messages, "private_group", "Crew", 9)), tmp_path, "--groups")
    assert train == [[{"role": "user", "content": "Ann: who's in?"}, {"role": "user", "content": "Bo: me!"},
                      {"role": "assistant", "content": "me too"}]]
    assert report["messages"]["dropped"]["posted by a channel"] == 1


def test_left_chats_are_read_and_chats_with_only_my_messages_dropped(tmp_path):
    partial = chat([msg(0, text="only me"), msg(MIN, text="still me")], "private_supergroup", "Old", 8)
    export = full(chat(exchange(0, mine="kept")), left=(partial, chat(exchange(0, who=3003, mine="left ok"),
                                                                        "private_group", "Left", 9)))
    train, _, report = run_ok(export, tmp_path, "--groups")
    assert contents(train, "assistant") == ["kept", "left ok"]
    assert report["chats"]["dropped"] == {"only your messages": 1}


def test_service_and_unsupported_messages_are_skipped(tmp_path):
    messages = [them(0, "hi"), {"id": 2, "type": "service", "date_unixtime": "1700000010", "actor": "Friend",
                                "actor_id": "user2002", "action": "pin_message", "text": "pinned"},
                {"id": 3, "type": "unsupported", "date_unixtime": "1700000020", "from_id": "user2002", "text": "?"},
                msg(MIN, text="hey")]
    train, _, report = run_ok(full(chat(messages)), tmp_path)
    assert train == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]]
    assert report["messages"]["dropped"] == {"service": 1, "unsupported": 1}


def test_forwarded_saved_and_via_bot_text_is_not_mine(tmp_path):
    messages = [them(0, "hi"), msg(10, text="fwd null", forwarded_from=None), msg(20, text="fwd", forwarded_from="X"),
                msg(30, text="saved", saved_from="Y"), msg(40, text="gif", via_bot="@gif"), msg(MIN, text="real")]
    train, _, report = run_ok(full(chat(messages)), tmp_path)
    assert contents(train, "assistant") == ["real"]
    assert report["messages"]["dropped"] == {"forwarded": 2, "saved from another chat": 1, "sent via a bot": 1}


def test_media_placeholders_are_never_text_but_captions_are(tmp_path):
    messages = [them(0, "", photo=PLACEHOLDER), them(5, "look at this", photo=PLACEHOLDER),
                them(6, "", media_type="voice_message", file=PLACEHOLDER),
                them(7, PLACEHOLDER, file=PLACEHOLDER),
                them(8, "", contact_information={"first_name": "Plumber", "phone_number": "+44 20 7946 0958"}),
                msg(MIN, text="nice")]
    train, _, report = run_ok(full(chat(messages)), tmp_path)
    assert train == [[{"role": "user", "content": "look at this"}, {"role": "assistant", "content": "nice"}]]
    assert report["messages"]["dropped"] == {"media without caption": 4}
    assert "7946" not in json.dumps(train)


def test_stickers_become_their_emoji_only_if_asked(tmp_path):
    messages = [them(0, "joke"), msg(MIN, text="", media_type="sticker", sticker_emoji="😂", file=PLACEHOLDER),
                msg(MIN + 1, text="lol")]
    export = full(chat(messages))
    train, _, report = run_ok(export, tmp_path)
    assert contents(train, "assistant") == ["lol"]
    assert report["messages"]["dropped"] == {"sticker": 1}
    (tmp_path / "out").rename(tmp_path / "first")
    train, _, _ = run_ok(export, tmp_path, "--stickers")
    assert contents(train, "assistant") == ["😂\nlol"]


def test_text_is_flattened_from_entities_never_a_repr(tmp_path):
    entities = [{"type": "bold", "text": "Big"}, {"type": "plain", "text": " news, see "},
                {"type": "text_link", "text": "this", "href": "https://example.com"}]
    old_style = them(10, "x")
    old_style.pop("text_entities")
    old_style["text"] = ["old ", {"type": "italic", "text": "style"}]
    messages = [them(0, entities), old_style, msg(MIN, text="ok")]
    train, _, _ = run_ok(full(chat(messages)), tmp_path)
    assert contents(train, "user") == ["Big news, see this\nold style"]
    assert "{" not in json.dumps(contents(train))


def test_one_character_replies_are_kept(tmp_path):
    messages = [them(0, "ok?"), msg(MIN, text="k"), them(10 * MIN, "sure?"), msg(11 * MIN, text="?"),
                them(20 * MIN, "bye"), msg(21 * MIN, text="👍")]
    train, _, _ = run_ok(full(chat(messages)), tmp_path)
    assert contents(train, "assistant") == ["k", "?", "👍"]


def test_null_names_and_null_senders(tmp_path):
    messages = [them(0, "from a deleted account", name=None), {**them(5, "no sender"), "from_id": None},
                msg(MIN, text="hi ghost")]
    messages[0]["from"] = None
    train, _, report = run_ok(full(chat(messages, name=None)), tmp_path, "--system", "chatting with {contact}")
    assert train[0][0] == {"role": "system", "content": "chatting with someone"}
    assert report["messages"]["dropped"] == {"no sender": 1}
