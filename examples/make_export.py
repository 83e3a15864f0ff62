"""Make a synthetic Telegram Desktop export (result.json), shaped like the real one, from a fixed seed.

"Me" is Robin Vale, who writes in lowercase, says "ngl" and "tbh", trails off with "..", ends with " :)" and
likes 🌿. The export holds what a real one holds: personal chats, a group, saved messages, a bot, a channel,
a partially exported left group, service messages, forwards, photos with and without captions, an album,
stickers, a voice message, a shared contact, entities (links, mentions, emails, phones) and one-character replies.

    python examples/make_export.py                 # writes examples/telegram/result.json
    python examples/make_export.py --sessions 60000 OUT.json   # a big one, for bench/prepare.py
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

SEED = 20240301
START = int(datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc).timestamp())
ME = {"user_id": 4815162342, "first_name": "Robin", "last_name": "Vale", "phone_number": "+44 7700 900123",
      "username": "@robinvale", "bio": ""}
FRIENDS = [("Maya Chen", 5550001), ("Luca Rossi", 5550002), ("Grandma Vale", 5550003), ("Sam Okafor", 5550004)]
PLACEHOLDER = "(File not included. Change data exporting settings to download.)"

OPENERS = ["Are you free this weekend?", "Did you see the news about the bridge?", "How did the interview go?",
           "I finally finished that book you lent me.", "Can you send me the recipe again?",
           "We're going climbing on Saturday, want to come?", "Happy Friday! Any plans?",
           "My cat knocked over the plant again.", "Do you still have my umbrella?", "Dinner on Thursday?"]
THEIRS = ["That sounds great.", "Haha, typical.", "Really? Tell me more.", "I'm not sure, let me check.",
          "Okay, see you then!", "Honestly I forgot.", "Send me a photo!", "What time works for you?",
          "Sure, no problem.", "Oh no, is it okay?", "Wait, which one?", "Love that."]
MINE = ["ngl that sounds amazing :)", "haha yes.. obviously", "tbh i forgot too", "omg no 🌿", "on my way..",
        "sure sure, 7ish?", "ngl i'm so tired today", "lol the cat again..", "yes!! count me in :)",
        "hmm let me think..", "tbh i'd rather stay in 🌿", "aww thank you :)", "wait what.. no way",
        "i'll bring snacks :)", "sounds good tbh", "nah not really..", "ok ok you win 🌿"]
SHORT_MINE = ["k", "?", "👍", "ok", "🌿"]
STICKERS = ["😂", "👍", "🌿", "😴"]


class Writer:
    """Writes messages one at a time, indented like Telegram Desktop does, so a big export never sits in memory."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.next_id = 1

    def chat(self, name: str | None, kind: str, chat_id: int, messages: list[dict[str, Any]], first: bool) -> None:
        head = json.dumps({"name": name, "type": kind, "id": chat_id}, ensure_ascii=False, indent=1)[:-2]
        self.out.write(("" if first else ",\n") + head + ',\n "messages": [\n')
        for index, message in enumerate(messages):
            self.out.write((",\n" if index else "") + json.dumps({"id": self.next_id, **message}, ensure_ascii=False,
                                                                 indent=1))
            self.next_id += 1
        self.out.write("\n ]\n}")


def _base(ts: int, name: str, from_id: str) -> dict[str, Any]:
    date = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return {"type": "message", "date": date, "date_unixtime": str(ts), "from": name, "from_id": from_id}


def text(ts: int, name: str, from_id: str, body: str | list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    """A message; body is plain text or a list of entities, written both as text and text_entities."""
    entities = [{"type": "plain", "text": body}] if isinstance(body, str) else body
    if isinstance(body, str):
        shown: Any = body
    else:
        shown = [e["text"] if e["type"] == "plain" else e for e in body]
    return {**_base(ts, name, from_id), **extra, "text": shown, "text_entities": entities if body else []}


def media(ts: int, name: str, from_id: str, caption: str = "", **fields: Any) -> dict[str, Any]:
    return text(ts, name, from_id, caption, **fields)


def service(ts: int, actor: str, actor_id: str, action: str) -> dict[str, Any]:
    date = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return {"type": "service", "date": date, "date_unixtime": str(ts), "actor": actor, "actor_id": actor_id,
            "action": action, "text": "", "text_entities": []}


def session(rng: random.Random, ts: int, friend: tuple[str, int], me: tuple[str, str]) -> list[dict[str, Any]]:
    """One conversation with a friend, with the odd special message a real chat has."""
    name, uid = friend
    them = f"user{uid}"
    out = [text(ts, name, them, rng.choice(OPENERS))]
    for _ in range(rng.randint(2, 7)):
        ts += rng.randint(20, 240)
        if rng.random() < 0.55:
            roll = rng.random()
            if roll < 0.1:
                out.append(text(ts, *me, rng.choice(SHORT_MINE)))
            elif roll < 0.15:
                out.append(media(ts, *me, media_type="sticker", file=PLACEHOLDER, sticker_emoji=rng.choice(STICKERS)))
            else:
                out.append(text(ts, *me, rng.choice(MINE)))
                if rng.random() < 0.3:  # a second message right after: one turn
                    ts += rng.randint(3, 40)
                    out.append(text(ts, *me, rng.choice(MINE), edited="x"))
        else:
            out.append(_special(rng, ts, name, them))
    ts += rng.randint(20, 200)
    out.append(text(ts, *me, rng.choice(MINE)))
    return out


def _special(rng: random.Random, ts: int, name: str, them: str) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.05:
        return text(ts, name, them, "Look at this", forwarded_from="Daily Cats")
    if roll < 0.08:
        return media(ts, name, them, "our view today!", photo=PLACEHOLDER, width=1280, height=960)
    if roll < 0.10:
        return media(ts, name, them, media_type="voice_message", file=PLACEHOLDER, duration_seconds=7)
    if roll < 0.12:
        return text(ts, name, them, [{"type": "plain", "text": "Write to "},
                                     {"type": "email", "text": f"{name.split()[0].lower()}@example.org"},
                                     {"type": "plain", "text": " or call "},
                                     {"type": "phone", "text": "+1 202 555 0147"}])
    if roll < 0.14:
        return text(ts, name, them, [{"type": "plain", "text": "Ask "}, {"type": "mention", "text": "@climbmaster"},
                                     {"type": "plain", "text": ", details at "},
                                     {"type": "link", "text": "https://example.com/wall"}])
    if roll < 0.15:
        return text(ts, name, them, "my new number is 07700 900456, card for the trip 4111 1111 1111 1111")
    return text(ts, name, them, rng.choice(THEIRS))


def personal(rng: random.Random, friend: tuple[str, int], sessions: int, ts: int) -> list[dict[str, Any]]:
    me = (f"{ME['first_name']} {ME['last_name']}", f"user{ME['user_id']}")
    out: list[dict[str, Any]] = [service(ts - 60, me[0], me[1], "phone_call")]
    for number in range(sessions):
        out += session(rng, ts, friend, me)
        if number == 1:  # an album: two photos in one second, the first with a caption
            album_ts = int(out[-1]["date_unixtime"]) + 30
            out.append(media(album_ts, friend[0], f"user{friend[1]}", "from the trip", photo=PLACEHOLDER))
            out.append(media(album_ts, friend[0], f"user{friend[1]}", photo=PLACEHOLDER))
            out.append(text(album_ts + 50, *me, "ngl these are gorgeous :)"))
        if number == 2:  # a shared contact and a message sent through an inline bot
            contact_ts = int(out[-1]["date_unixtime"]) + 40
            out.append(media(contact_ts, friend[0], f"user{friend[1]}", contact_information={
                "first_name": "Plumber", "last_name": "", "phone_number": "+44 20 7946 0958"}))
            out.append(text(contact_ts + 5, *me, "cheers", via_bot="@gif"))
            out.append(text(contact_ts + 9, *me, "thx.. saved it :)"))
        ts += rng.randint(3 * 3600, 4 * 86400)
    return out


def group(rng: random.Random, sessions: int, ts: int) -> list[dict[str, Any]]:
    me = (f"{ME['first_name']} {ME['last_name']}", f"user{ME['user_id']}")
    out: list[dict[str, Any]] = [service(ts - 600, "Sam Okafor", "user5550004", "create_group")]
    for _ in range(sessions):
        for _ in range(rng.randint(2, 5)):
            name, uid = rng.choice(FRIENDS[:2] + FRIENDS[3:])
            out.append(text(ts, name, f"user{uid}", rng.choice(THEIRS + OPENERS)))
            ts += rng.randint(30, 300)
        out.append(text(ts, *me, rng.choice(MINE)))
        ts += rng.randint(86400, 6 * 86400)
    return out


def write_export(out: IO[str], sessions: int, seed: int = SEED) -> None:
    """The whole export; sessions is the number of conversations in each personal chat."""
    rng = random.Random(seed)
    me = (f"{ME['first_name']} {ME['last_name']}", f"user{ME['user_id']}")
    writer = Writer(out)
    head = {"about": "Here is the data you requested.", "personal_information": {"about": "", **ME},
            "contacts": {"about": "", "list": [{"first_name": n.split()[0], "last_name": n.split()[-1],
                                                "phone_number": f"+1 555 010{i}", "date": "2024-01-01T10:00:00",
                                                "date_unixtime": "1704103200"} for i, (n, _) in enumerate(FRIENDS)]}}
    out.write(json.dumps(head, ensure_ascii=False, indent=1)[:-2] + ',\n "chats": {\n  "about": "", "list": [\n')
    for index, friend in enumerate(FRIENDS):
        writer.chat(friend[0], "personal_chat", friend[1], personal(rng, friend, sessions, START + index * 7200),
                    first=index == 0)
    writer.chat("Climbing crew", "private_group", 7770001, group(rng, max(3, sessions // 2), START), first=False)
    writer.chat(None, "saved_messages", ME["user_id"], [text(START, *me, "note to self: buy oat milk")], first=False)
    writer.chat("WeatherBot", "bot_chat", 6660001, [text(START, *me, "/start"),
                                                    text(START + 1, "WeatherBot", "user6660001", "Sunny, 21°C")],
                first=False)
    writer.chat("Daily Cats", "public_channel", 9990001, [
        {**_base(START, "Daily Cats", "channel9990001"), "text": "Cat of the day", "text_entities": [
            {"type": "plain", "text": "Cat of the day"}]}], first=False)
    out.write('\n  ]\n },\n "left_chats": {\n  "about": "", "list": [\n')
    writer.next_id = 1
    writer.chat("Old flat", "private_supergroup", 8880001,
                [text(START + i * 86400, *me, rng.choice(MINE)) for i in range(3)], first=True)
    out.write("\n  ]\n }\n}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=Path(__file__).parent / "telegram" / "result.json")
    parser.add_argument("--sessions", type=int, default=40, help="conversations per personal chat")
    args = parser.parse_args()
    args.path.parent.mkdir(parents=True, exist_ok=True)
    with args.path.open("w", encoding="utf-8", newline="\n") as out:
        write_export(out, args.sessions)


if __name__ == "__main__":
    main()
