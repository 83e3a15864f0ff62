"""The dataset step: a Telegram export becomes train.jsonl, heldout.jsonl and report.json."""
