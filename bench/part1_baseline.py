"""The classic way to turn a Telegram export into a chat dataset, as the seed's Part 1 does it: load the whole
file with json.load, walk it with plain loops, write role/content conversations. bench/prepare.py measures
`chatlike-runner prepare` against it; it is a stand-in written for the benchmark, not part of chatlike.

    python bench/part1_baseline.py result.json out.jsonl
"""

import json
import sys

GAP = 3600  # seconds of silence that end a conversation

data = json.load(open(sys.argv[1], encoding="utf-8"))
me = f"user{data.get('personal_information', {}).get('user_id')}"
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for chat in data.get("chats", {}).get("list", []):
        if chat.get("type") != "personal_chat":
            continue
        conversation, last = [], None
        for message in chat.get("messages", []):
            if message.get("type") != "message" or "forwarded_from" in message:
                continue
            text = message.get("text")
            if isinstance(text, list):
                text = "".join(part if isinstance(part, str) else part.get("text", "") for part in text)
            if not text:
                continue
            ts = int(message["date_unixtime"])
            role = "assistant" if message.get("from_id") == me else "user"
            if last is not None and ts - last > GAP:
                if any(turn["role"] == "assistant" for turn in conversation):
                    out.write(json.dumps({"messages": conversation}, ensure_ascii=False) + "\n")
                conversation = []
            if conversation and conversation[-1]["role"] == role:
                conversation[-1]["content"] += "\n" + text
            else:
                conversation.append({"role": role, "content": text})
            last = ts
        if any(turn["role"] == "assistant" for turn in conversation):
            out.write(json.dumps({"messages": conversation}, ensure_ascii=False) + "\n")
