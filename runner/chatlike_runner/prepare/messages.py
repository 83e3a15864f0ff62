"""One raw Telegram message becomes a Message (who, when, what was written) or the reason it is left out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .export import user_id

# Telegram writes these where a file was not downloaded; they are never text.
_PLACEHOLDERS = ("(File not included", "(File exceeds maximum size")
_MEDIA_KEYS = ("photo", "file", "media_type", "sticker_emoji", "contact_information", "location_information",
               "poll", "game_information", "invoice_information", "place_name", "live_location_period_seconds")


@dataclass(frozen=True)
class Message:
    """What the dataset keeps of a message; pieces are (entity type, text) so privacy can see the types."""

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


def _piece(item: Any) -> tuple[str, str] | None:
    if isinstance(item, str):
        return ("plain", item)
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        kind = item.get("type")
        return (kind if isinstance(kind, str) else "plain", item["text"])
    return None


def pieces(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The text as typed pieces: from text_entities, else from text (a string or a list of strings and entities)."""
    source = raw.get("text_entities")
    if not isinstance(source, list):
        source = raw.get("text")
        if not isinstance(source, list):
            source = [source]
    found = (_piece(item) for item in source)
    return tuple(piece for piece in found if piece is not None and piece[1])


def _sticker(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    emoji = raw.get("sticker_emoji")
    return (("plain", emoji),) if isinstance(emoji, str) and emoji else ()


def read(raw: Any, *, stickers: bool) -> Message | str:
    """The Message, or why it is dropped (a short reason that the report counts)."""
    if not isinstance(raw, dict):
        return "not a message object"
    kind = raw.get("type")
    if kind != "message":
        return kind if kind in ("service", "unsupported") else "unknown message type"
    for key, reason in (("forwarded_from", "forwarded"), ("saved_from", "saved from another chat"),
                        ("via_bot", "sent via a bot")):
        if key in raw:
            return reason
    sender = user_id(raw.get("from_id"))
    if sender is None:
        return "no sender"
    if sender.startswith("channel"):
        return "posted by a channel"
    ts = timestamp(raw)
    if ts is None:
        return "no date"
    is_sticker = raw.get("media_type") == "sticker"
    found = _sticker(raw) if is_sticker and stickers else pieces(raw)
    text = "".join(t for _, t in found).strip()
    if not text or text.startswith(_PLACEHOLDERS):
        if is_sticker:
            return "sticker"
        return "media without caption" if any(k in raw for k in _MEDIA_KEYS) else "empty"
    name = raw.get("from")
    return Message(ts=ts, sender=sender, name=name if isinstance(name, str) else "", pieces=found)
