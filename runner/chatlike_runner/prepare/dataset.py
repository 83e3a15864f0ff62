"""The dataset step end to end: read the export as a stream, keep my real replies in context, split by time.

Samples are spooled to disk as they are made; only a few numbers per conversation stay in memory, so memory is
bounded whatever the size of the export.
"""

from __future__ import annotations

import gc
import json
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from ..core.errors import ChatlikeError
from . import messages, privacy
from .samples import contents, encoded, spans
from .split import heldout_flags
from .telegram import HOW_TO_EXPORT, Chat, HashingReader, chats, resolve, user_id
from .turns import Conversations, Line, TimeOrder, Turn

PERSONAL = frozenset({"personal_chat"})
GROUPS = frozenset({"private_group", "private_supergroup", "public_supergroup"})
SPOOL = "samples.spool"
_ME = re.compile(r"^(?:user)?(\d+)$")
HOW_TO_FIND_ME = ('your id is the "from_id" of a message you sent, e.g. "user123456789"; '
                  "or pass --me-name with your display name")
SENDER_SCAN = 1000
_BATCH = 256  # lines read before they go on to be ordered, grouped and spooled
_COLLECT_EVERY = 50_000  # allocated containers (net) between collections of the youngest generation, while reading


@dataclass(frozen=True)
class Options:
    """What the user chose; every field is written to report.json."""

    me: str | None = None
    me_name: str | None = None
    groups: bool = False
    stickers: bool = False
    merge_minutes: float = 5
    gap_minutes: float = 60
    heldout_share: float = 10
    heldout_days: float | None = None
    mask: bool = True
    pseudonyms: bool = False
    system: str | None = None
    max_chars: int = 16_000


@dataclass
class Tally:
    """Counts for the report."""

    chats_read: int = 0
    chats_kept: int = 0
    chats_dropped: Counter[str] = field(default_factory=Counter)
    messages_read: int = 0
    messages_kept: int = 0
    messages_dropped: Counter[str] = field(default_factory=Counter)
    conversations: int = 0
    conversations_dropped: Counter[str] = field(default_factory=Counter)
    my_turns: int = 0
    their_turns: int = 0
    my_characters: int = 0
    their_characters: int = 0
    masks: Counter[str] = field(default_factory=Counter)
    senders: Counter[tuple[str, str]] = field(default_factory=Counter)
    my_messages: int = 0


def normalize_me(value: str) -> str:
    """--me as a from_id: user123 or 123."""
    match = _ME.match(value.strip())
    if match is None:
        raise ChatlikeError(f"--me {value!r} is not a Telegram user id; {HOW_TO_FIND_ME}")
    return f"user{match.group(1)}"


def check_system(template: str | None) -> None:
    """Fail early on a system prompt with an unknown placeholder."""
    if template is None:
        return
    try:
        template.format(me="", contact="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ChatlikeError(f"--system {template!r} is not a valid template ({exc}); "
                            "use only the placeholders {me} and {contact}") from None


class Identity:
    """Who is me: a from_id, or (explicit fallback) a display name, with a warning when two senders share it."""

    def __init__(self, me_id: str | None, me_name: str | None, display: str | None) -> None:
        self.me_id = me_id
        self.me_name = me_name
        self.display = display or me_name
        self.name_owners: set[str] = set()

    def is_me(self, sender: str, name: str) -> bool:
        if self.me_id is not None:
            return sender == self.me_id
        if name == self.me_name:
            self.name_owners.add(sender)
            return True
        return False

    @property
    def described(self) -> str:
        return self.me_id if self.me_id is not None else f"the sender named {self.me_name!r}"


class Builder:
    """Turns the chats of one export into spooled samples, counting everything it keeps and drops."""

    def __init__(self, options: Options, spool: BinaryIO) -> None:
        self.options = options
        self.spool = spool
        self.tally = Tally()
        self.identity: Identity | None = None
        self.how_me = ""
        self.pseudonyms = privacy.Pseudonyms() if options.pseudonyms else None
        self.kept_types = PERSONAL | (GROUPS if options.groups else frozenset())
        self.chat_of = array("q")
        self.conversation_of = array("q")
        self.start_of = array("q")

    def chat(self, chat: Chat, raw_messages: Iterator[Any]) -> None:
        """Read one chat and spool its samples."""
        self.tally.chats_read += 1
        if chat.type not in self.kept_types:
            reason = f"type {chat.type}" if chat.type else "no type"
            if chat.type in GROUPS:
                reason += " (pass --groups to keep)"
            self.tally.chats_dropped[reason] += 1
            return
        identity = self._identity(chat, raw_messages)
        group = chat.type in GROUPS
        options = self.options
        order = TimeOrder()
        grouping = Conversations(merge=int(options.merge_minutes * 60), gap=int(options.gap_minutes * 60))
        made = 0

        def conversations(lines: list[Line]) -> None:
            nonlocal made
            for turns in grouping.add(lines):
                made += self._conversation(chat, turns, group, identity, made)

        def spool(lines: list[Line]) -> None:
            order.add(lines)
            conversations(order.ready())

        # A group's system prompt names the group by its scrubbed name, which depends on the contacts read so
        # far: there, each line goes on at once, so that the prompt sees what it would see line by line.
        batch = 1 if group and self.pseudonyms is not None and options.system is not None else _BATCH
        mine, theirs = self._lines(chat, identity, raw_messages, spool, batch)
        conversations(order.rest())
        if (turns := grouping.close()) is not None:
            made += self._conversation(chat, turns, group, identity, made)
        if made:
            self.tally.chats_kept += 1
        else:
            reason = ("no messages of yours" if not mine else
                      "only your messages" if not theirs else "no reply of yours to the other side")
            self.tally.chats_dropped[reason] += 1

    def _identity(self, chat: Chat, raw_messages: Iterator[Any]) -> Identity:
        if self.identity is None:
            options = self.options
            if options.me:
                self.identity, self.how_me = Identity(normalize_me(options.me), None, chat.owner_name), "--me"
            elif options.me_name:
                self.identity, self.how_me = Identity(None, options.me_name, None), "--me-name"
            elif chat.owner_id:
                self.identity = Identity(chat.owner_id, None, chat.owner_name)
                self.how_me = "personal_information.user_id"
            else:
                found = Counter()
                for raw in _first(raw_messages, SENDER_SCAN):
                    message = messages.read(raw, stickers=True)
                    if isinstance(message, messages.Message):
                        found[(message.sender, message.name)] += 1
                raise ChatlikeError(f"this export does not say who you are; pass --me with your id "
                                    f"({HOW_TO_FIND_ME}){senders_hint(found)}")
        return self.identity

    def _lines(self, chat: Chat, identity: Identity, raw_messages: Iterable[Any],
               spool: Callable[[list[Line]], None], batch: int) -> tuple[int, int]:
        """Every kept message of the chat as a line (a Line's fields as a plain tuple), handed to spool in
        batches; returns the counts of my messages and theirs.

        This loop runs for each message of the export: a message of the common shape (one plain text
        entity, a string from_id and date_unixtime, no sticker) takes the short way, any other goes through
        messages.read and privacy.mask, which give the same for the common shape. What it uses is bound to
        locals and counted in plain dicts, added to the tally at the end."""
        tally, options, pseudonyms = self.tally, self.options, self.pseudonyms
        if pseudonyms is not None and chat.type in PERSONAL and user_id(chat.id):
            pseudonyms.of(user_id(chat.id), chat.name)
        read, message_type, stickers, mask, masks = messages.read, messages.Message, options.stickers, options.mask, tally.masks
        dropped, senders = Counter(), defaultdict(int)
        me_id, me_name, name_owners = identity.me_id, identity.me_name, identity.name_owners
        needs_display = not identity.display
        mask_text, mask_plain, candidate, placeholders = privacy.mask, privacy.mask_plain, privacy.CANDIDATE.search, messages.PLACEHOLDERS
        lines: list[Any] = []
        line = lines.append
        count = mine_count = theirs_count = 0
        # The senders are only named when the export holds no message of mine: counted until one comes.
        counting = not tally.my_messages
        try:
            for raw in raw_messages:
                count += 1
                try:
                    short = (raw["type"] == "message" and "forwarded_from" not in raw and "saved_from" not in raw
                             and "via_bot" not in raw and "media_type" not in raw
                             and type(sender := raw["from_id"]) is str and sender
                             and type(unix := raw["date_unixtime"]) is str
                             and type(entities := raw["text_entities"]) is list and len(entities) == 1
                             and type(entity := entities[0]) is dict and entity["type"] == "plain"
                             and type(text := entity["text"]) is str
                             and (stripped := text.strip()) and not stripped.startswith(placeholders)
                             and not sender.startswith("channel") and unix.isdecimal())
                except (KeyError, TypeError):
                    short = False
                if short:
                    ts = int(unix)
                    name = raw.get("from")
                    if type(name) is not str:
                        name = ""
                    if mask and candidate(text):
                        text = mask_plain(text, masks)
                        stripped = None
                else:
                    message = read(raw, stickers=stickers)
                    if type(message) is not message_type:
                        dropped[message] += 1
                        continue
                    ts, sender, name, pieces = message
                    text = mask_text(pieces, masks) if mask else "".join([t for _, t in pieces])
                    stripped = None
                if me_id is not None:
                    mine = sender == me_id
                else:
                    mine = name == me_name
                    if mine:
                        name_owners.add(sender)
                if counting:
                    senders[(sender, name)] += 1
                    counting = not mine
                if mine:
                    mine_count += 1
                    if needs_display:
                        identity.display = name
                        needs_display = not name
                else:
                    theirs_count += 1
                    if pseudonyms is not None:
                        pseudonyms.of(sender, name)
                if pseudonyms is not None:
                    text = pseudonyms.scrub(text, masks)
                    stripped = None
                line((ts, sender, name, text.strip() if stripped is None else stripped, mine))
                if len(lines) >= batch:
                    spool(lines)
                    lines = []
                    line = lines.append
            spool(lines)
        finally:
            tally.messages_read += count
            tally.messages_kept += mine_count + theirs_count
            tally.my_messages += mine_count
            tally.messages_dropped.update(dropped)
            tally.senders.update(senders)
        return mine_count, theirs_count

    def _conversation(self, chat: Chat, turns: list[Turn], group: bool, identity: Identity, ordinal: int) -> int:
        """Spool the samples of one conversation; 1 when it gave any, else 0."""
        texts = contents(turns, self._speaker if group else None)
        found = spans(turns, texts, self.options.max_chars)
        if not found:
            self.tally.conversations_dropped["no reply of yours to the other side"] += 1
            return 0
        system = self._system(chat, turns, group, identity)
        my_turns = my_characters = their_turns = their_characters = 0
        for start, end in found:
            for index in range(start, end):
                if turns[index][2]:
                    my_turns += 1
                    my_characters += len(texts[index])
                else:
                    their_turns += 1
                    their_characters += len(texts[index])
            self.spool.write(encoded(turns, texts, start, end, system).encode())
            self.chat_of.append(chat.index)
            self.conversation_of.append(ordinal)
            self.start_of.append(turns[0].start)
        tally = self.tally
        tally.conversations += 1
        tally.my_turns += my_turns
        tally.their_turns += their_turns
        tally.my_characters += my_characters
        tally.their_characters += their_characters
        return 1

    def _speaker(self, turn: Turn) -> str:
        if self.pseudonyms is not None:
            return self.pseudonyms.of(turn.sender, turn.name)
        return turn.name or "someone"

    def _system(self, chat: Chat, turns: list[Turn], group: bool, identity: Identity) -> str | None:
        if self.options.system is None:
            return None
        if group:
            contact = chat.name or "a group"
            if self.pseudonyms is not None:
                contact = self.pseudonyms.scrub(contact, Counter())
        else:
            other = next(t for t in turns if not t.mine)
            contact = self._speaker(other) if self.pseudonyms is not None else chat.name or other.name or "someone"
        return self.options.system.format(me=identity.display or "me", contact=contact)


def _first(items: Iterator[Any], limit: int) -> Iterator[Any]:
    for count, item in enumerate(items):
        if count >= limit:
            return
        yield item


def senders_hint(senders: Counter[tuple[str, str]]) -> str:
    """The most frequent senders, to help pick --me."""
    top = [f"{sender} {name!r} ({count} messages)" for (sender, name), count in senders.most_common(5)]
    return f"; senders in this export: {', '.join(top)}" if top else ""


@contextmanager
def _rare_collections() -> Iterator[None]:
    """Fewer and smaller runs of the cycle collector: each chunk of the export makes a thousand containers that
    live until its messages are read, which by default would start a collection every chunk, though none of them
    is in a cycle; and the objects made before (the program's modules) are left out of the collections."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_COLLECT_EVERY, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def read_export(source: Path, builder: Builder) -> str:
    """Feed every chat of the export to the builder; returns the export's sha256."""
    try:
        raw = source.open("rb")
    except OSError as exc:
        raise ChatlikeError(f"cannot read {source} ({exc.strerror}); check the path and its permissions") from None
    with raw:
        reader = HashingReader(raw)
        try:
            with _rare_collections():
                for chat, raw_messages in chats(reader):
                    builder.chat(chat, raw_messages)
        except ijson.JSONError as exc:
            detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "bad JSON"
            raise ChatlikeError(f"{source} is not valid JSON ({detail}); it may be truncated or not an export: "
                                f"{HOW_TO_EXPORT}") from None
        except OSError as exc:
            raise ChatlikeError(f"cannot read {source} ({exc.strerror or exc}); check the file and retry") from None
    return reader.sha256.hexdigest()


def _check(builder: Builder, source: Path) -> None:
    """One clear error when the export gave nothing to train on."""
    tally = builder.tally
    if not tally.chats_read:
        raise ChatlikeError(f"{source} holds no chats, so it is not a Telegram Desktop JSON export; {HOW_TO_EXPORT}")
    if builder.identity is None:
        found = ", ".join(f"{n} {reason}" for reason, n in sorted(tally.chats_dropped.items()))
        raise ChatlikeError(f"{source} holds no chats to learn from ({found}); export your personal chats, "
                            "or pass --groups to use groups")
    if not tally.my_messages:
        raise ChatlikeError(f"{source} holds no messages from {builder.identity.described}; pass --me with your "
                            f"own id ({HOW_TO_FIND_ME}){senders_hint(tally.senders)}")
    if not tally.conversations:
        raise ChatlikeError(f"no conversation in {source} has a reply of yours after the other side wrote; "
                            "nothing to train on (a longer --gap-minutes may join your replies to their messages)")


def _name_warning(identity: Identity) -> list[str]:
    if identity.me_id is None and len(identity.name_owners) > 1:
        ids = ", ".join(sorted(identity.name_owners))
        return [f"{len(identity.name_owners)} senders share the name {identity.me_name!r} ({ids}); all were taken "
                f"as you: pass --me with your own id to pick one"]
    return []


def build(export: Path, options: Options, workdir: Path) -> dict[str, Any]:
    """Write train.jsonl, heldout.jsonl and report.json into workdir; return the report."""
    source = resolve(export)
    check_system(options.system)
    if options.me:
        normalize_me(options.me)
    spool_path = workdir / SPOOL
    with spool_path.open("wb") as spool:
        builder = Builder(options, spool)
        sha256 = read_export(source, builder)
    _check(builder, source)
    counts = Counter()
    flags = heldout_flags(builder.chat_of, builder.conversation_of, builder.start_of,
                          share=options.heldout_share, days=options.heldout_days)
    with spool_path.open("rb") as spool, (workdir / "train.jsonl").open("wb") as train, \
            (workdir / "heldout.jsonl").open("wb") as heldout:
        for line, held in zip(spool, flags):
            (heldout if held else train).write(line)
            counts["heldout" if held else "train"] += 1
    spool_path.unlink()
    report = _report(builder, options, source, sha256, counts)
    (workdir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report


def _report(builder: Builder, options: Options, source: Path, sha256: str, samples: Counter[str]) -> dict[str, Any]:
    tally, identity = builder.tally, builder.identity
    assert identity is not None
    turns = tally.my_turns + tally.their_turns
    characters = tally.my_characters + tally.their_characters
    return {
        "export": {"file": source.name, "sha256": sha256},
        "me": {"id": identity.me_id, "name": identity.display, "found_by": builder.how_me},
        "options": asdict(options),
        "chats": {"read": tally.chats_read, "kept": tally.chats_kept, "dropped": dict(sorted(tally.chats_dropped.items()))},
        "messages": {"read": tally.messages_read, "kept": tally.messages_kept,
                     "dropped": dict(sorted(tally.messages_dropped.items()))},
        "conversations": {"kept": tally.conversations, "dropped": dict(sorted(tally.conversations_dropped.items()))},
        "samples": {"train": samples["train"], "heldout": samples["heldout"]},
        "turns": {"total": turns, "mine": tally.my_turns, "my_share": round(tally.my_turns / turns, 4)},
        "characters": {"total": characters, "mine": tally.my_characters,
                       "my_share": round(tally.my_characters / characters, 4)},
        "masks": {kind: tally.masks[kind] for kind in (*privacy.MASKS, "name")},
        "warnings": _name_warning(identity) + _heldout_warning(options, samples),
    }


def _heldout_warning(options: Options, samples: Counter[str]) -> list[str]:
    """A line when nothing was held out: `eval` then has nothing to judge the run on."""
    if samples["heldout"] or not samples["train"]:
        return []
    split = f"--heldout-days {options.heldout_days:g}" if options.heldout_days is not None else \
        f"--heldout-share {options.heldout_share:g}"
    return [f"nothing was held out ({split} of {samples['train']} samples): heldout.jsonl is empty and `eval` will "
            "have nothing to judge the run on; raise --heldout-share or --heldout-days"]
