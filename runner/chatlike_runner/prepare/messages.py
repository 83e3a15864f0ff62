"""One raw Telegram message becomes a Message (who, when, what was written) or the reason it is left out."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

from .telegram import user_id

# Telegram writes these where a file was not downloaded; they are never text.
PLACEHOLDERS = ("(File not included", "(File exceeds maximum size")
_MEDIA_KEYS = ("photo", "file", "media_type", "sticker_emoji", "contact_information", "location_information",
               "poll", "game_information", "invoice_information", "place_name", "live_location_period_seconds")


class Message(NamedTuple):
    """What the dataset keeps of a message; pieces are (entity type, text) so privacy can see the types.
    (A tuple: made once per message of the export, it must be cheap.)"""

    ts: int
    sender: str
    name: str
    pieces: tuple[tuple[str, str], ...]


def timestamp(raw: dict[str, Any]) -> int | None:
    """Seconds since the epoch: date_unixtime (exports since 2022), else the ISO date, read as UTC."""
    unix = raw.get("date_unixtime")
    if isinstance(unix, (str, int)) and not isinstance(unix, bool):
        try:
            return int(unix)
        except ValueError:
            pass
    date = raw.get("date")
    if isinstance(date, str):
        try:
            parsed = datetime.fromisoformat(date)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return int(parsed.timestamp())
    return None


def pieces(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The text as typed pieces: from text_entities, else from text (a string or a list of strings and entities)."""
    source = raw.get("text_entities")
    if type(source) is not list:
        source = raw.get("text")
        if type(source) is not list:
            source = [source]
    found = []
    append = found.append
    for item in source:  # a plain loop: this runs for every message of the export
        if type(item) is dict:
            text = item.get("text")
            if type(text) is str and text:
                kind = item.get("type")
                append((kind if type(kind) is str else "plain", text))
        elif type(item) is str and item:
            append(("plain", item))
    return tuple(found)


def _sticker(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    emoji = raw.get("sticker_emoji")
    return (("plain", emoji),) if isinstance(emoji, str) and emoji else ()


def read(raw: Any, *, stickers: bool) -> Message | str:
    """The Message, or why it is dropped (a short reason that the report counts).

    Runs for every message of the export: the common case (a string from_id and date_unixtime) takes the
    short way; anything else goes through user_id() and timestamp()."""
    if not isinstance(raw, dict):
        return "not a message object"
    kind = raw.get("type")
    if kind != "message":
        return kind if kind in ("service", "unsupported") else "unknown message type"
    if "forwarded_from" in raw:
        return "forwarded"
    if "saved_from" in raw:
        return "saved from another chat"
    if "via_bot" in raw:
        return "sent via a bot"
    sender = raw.get("from_id")
    if type(sender) is not str or not sender:
        sender = user_id(sender)
        if sender is None:
            return "no sender"
    if sender.startswith("channel"):
        return "posted by a channel"
    unix = raw.get("date_unixtime")
    try:
        ts = int(unix) if type(unix) is str else timestamp(raw)
    except ValueError:
        ts = timestamp(raw)
    if ts is None:
        return "no date"
    is_sticker = raw.get("media_type") == "sticker"
    found = _sticker(raw) if is_sticker and stickers else pieces(raw)
    text = found[0][1] if len(found) == 1 else "".join([t for _, t in found])
    text = text.strip()
    if not text or text.startswith(PLACEHOLDERS):
        if is_sticker:
            return "sticker"
        return "media without caption" if any(k in raw for k in _MEDIA_KEYS) else "empty"
    name = raw.get("from")
    return Message(ts, sender, name if isinstance(name, str) else "", found)
