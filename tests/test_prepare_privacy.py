"""Privacy: entity-aware masking on by default with counts; stable pseudonyms on request."""

from __future__ import annotations

import json
from collections import Counter

from prepare_fixtures.exports import MIN, chat, contents, full, msg, run_ok, them

from chatlike_runner.prepare.privacy import Pseudonyms, mask_plain


def test_marked_entities_are_masked_and_counted(tmp_path):
    entities = [{"type": "plain", "text": "mail "}, {"type": "email", "text": "ann@example.org"},
                {"type": "plain", "text": ", call "}, {"type": "phone", "text": "+1 202 555 0147"},
                {"type": "plain", "text": ", pay "}, {"type": "bank_card", "text": "4111111111111111"},
                {"type": "plain", "text": ", ask "}, {"type": "mention", "text": "@climbmaster"},
                {"type": "plain", "text": " and "}, {"type": "mention_name", "text": "Bob", "user_id": 7}]
    train, _, report = run_ok(full(chat([them(0, entities), msg(MIN, text="ok")])), tmp_path)
    assert contents(train, "user") == ["mail [email], call [phone], pay [card], ask [mention] and [mention]"]
    assert report["masks"] == {"email": 1, "phone": 1, "card": 1, "mention": 2, "name": 0}


def test_plain_text_is_masked_too(tmp_path):
    text = "i'm at rob.v@mail.co.uk or +44 7700 900123, card 4111 1111 1111 1111, ping @robin_v"
    train, _, report = run_ok(full(chat([them(0, "details?"), msg(MIN, text=text)])), tmp_path)
    assert contents(train, "assistant") == ["i'm at [email] or [phone], card [card], ping [mention]"]
    assert report["masks"] == {"email": 1, "phone": 1, "card": 1, "mention": 1, "name": 0}


def test_patterns_leave_ordinary_numbers_and_dates_alone():
    counts = Counter()
    text = "on 2024-01-15 at 12:30 we were 12345 people, not 4111 1111 1111 1112, mail a@b"
    assert mask_plain(text, counts) == text
    assert not counts


def test_masking_can_be_turned_off(tmp_path):
    train, _, report = run_ok(full(chat([them(0, "mail?"), msg(MIN, text="me@example.com")])), tmp_path, "--no-mask")
    assert contents(train, "assistant") == ["me@example.com"]
    assert report["masks"]["email"] == 0


def test_pseudonyms_replace_contact_names_stably(tmp_path):
    messages = [them(0, "Hi, it's Maya", name="Maya Chen"), msg(MIN, text="hey maya.. i mean Maya Chen :)")]
    export = full(chat(messages, name="Maya Chen", chat_id=2002))
    train, _, report = run_ok(export, tmp_path, "--pseudonyms", "--system", "You are {me}, chatting with {contact}.")
    text = json.dumps(train)
    assert "Maya" not in text and "Chen" not in text
    pseudonym = train[0][0]["content"].removeprefix("You are Robin Vale, chatting with ").rstrip(".")
    assert pseudonym == Pseudonyms().of("user2002", None)
    assert contents(train, "user") == [f"Hi, it's {pseudonym}"]
    assert contents(train, "assistant") == [f"hey maya.. i mean {pseudonym} :)"]
    assert report["masks"]["name"] == 2


def test_pseudonyms_are_unique_and_depend_only_on_the_id():
    first, second = Pseudonyms(), Pseudonyms()
    names = [first.of(f"user{i}", None) for i in range(200)]
    assert len(set(names)) == 200
    assert second.of("user7", None) == first.of("user7", None)
