"""Fuzz `chatlike-train validate`: structurally mutated configs (values of the wrong type, deleted, misspelt or added
keys, odd dataset entries) and dataset lines (truncated JSON, messages that are not a list, roles and contents of
the wrong type, reversed turns, bytes that are not UTF-8) go through validate in-process, with real Axolotl and a
tiny local model. Each case must end valid or refused in words (TrainError, exit 2): no other exception, no message
that is only a Python exception's name, and a refused dataset line named by its line number. Prints the counts.

It runs in the CPU image's own Python (Axolotl as the image ships it; hypothesis lent read-only from the Python
that starts it), or in any Python with Axolotl and hypothesis:

    .venv/bin/python bench/fuzz_validate.py --in-image chatlike/train:cpu --cases 10000     # make fuzz
    .venv-train/bin/python bench/fuzz_validate.py --cases 1000

tests/test_validate_fuzz.py runs it in the image with a few hundred cases.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

for name, value in {"HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1",
                    "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}.items():
    os.environ.setdefault(name, value)

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "cpu-smoke.yml"
# A refusal that only names a Python exception: what the fuzz exists to find.
BARE = re.compile(r"\b(TypeError|AttributeError|KeyError|IndexError|ValueError|UnicodeDecodeError|RecursionError)\b"
                  r"|unhashable type|object has no attribute|object is not (subscriptable|iterable)|NoneType")
GOOD = [[{"role": "system", "content": "You chat like Robin."}, {"role": "user", "content": "hi, how are you?"},
         {"role": "assistant", "content": "fine thanks, and you?"}],
        [{"role": "user", "content": "see you at 8?"}, {"role": "assistant", "content": "yes, at the station"},
         {"role": "user", "content": "great"}, {"role": "assistant", "content": "ciao!"}]]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                    st.text(max_size=10))
anything = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=6)
DATASET_FIELDS = ["path", "type", "field_messages", "message_property_mappings", "roles", "split", "name",
                  "ds_type", "data_files", "roles_to_train", "train_on_eos", "chat_template", "message_field_role"]


def smoke_config(home: Path, model: Path) -> dict[str, Any]:
    config = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    config.update(base_model=str(model), output_dir=str(home / "outputs"),
                  dataset_prepared_path=str(home / "prepared"))
    config["datasets"][0]["path"] = "train.jsonl"
    return config


@st.composite
def config_edits(draw: st.DrawFn, keys: list[str]) -> list[tuple[str, Any, Any]]:
    """A few structural edits of the smoke config."""
    edit = st.one_of(
        st.tuples(st.just("set"), st.sampled_from(keys), anything),
        st.tuples(st.just("delete"), st.sampled_from(keys), st.none()),
        st.tuples(st.just("misspell"), st.sampled_from(keys), st.integers(0, 30)),
        st.tuples(st.just("add"), st.text(min_size=1, max_size=12), anything),
        st.tuples(st.just("dataset"), st.sampled_from(DATASET_FIELDS), anything),
        st.tuples(st.just("dataset-delete"), st.sampled_from(DATASET_FIELDS), st.none()),
        st.tuples(st.just("entry"), st.none(), anything),
        st.tuples(st.just("datasets"), st.none(), anything),
    )
    return draw(st.lists(edit, max_size=3))


def edited(config: dict[str, Any], edits: list[tuple[str, Any, Any]]) -> dict[str, Any]:
    config = json.loads(json.dumps(config))
    for op, key, value in edits:
        entries = config.get("datasets")
        entry = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
        if op == "set":
            config[key] = value
        elif op == "delete":
            config.pop(key, None)
        elif op == "misspell" and key in config:
            spot = value % len(key)
            config[key[:spot] + key[spot + 1:] + key[spot]] = config.pop(key)
        elif op == "add":
            config[key] = value
        elif op == "dataset" and entry is not None:
            entry[key] = value
        elif op == "dataset-delete" and entry is not None:
            entry.pop(key, None)
        elif op == "entry" and isinstance(entries, list) and entries:
            entries[0] = value
        elif op == "datasets":
            config["datasets"] = value
    return config


@st.composite
def line_edits(draw: st.DrawFn) -> list[tuple[str, int, Any]]:
    """A few structural edits of the dataset's lines."""
    edit = st.one_of(
        st.tuples(st.sampled_from(["truncate", "not-utf8", "blank"]), st.integers(0, 400), st.none()),
        st.tuples(st.sampled_from(["line", "messages", "turn", "role", "content", "extra"]), st.integers(0, 10),
                  anything),
        st.tuples(st.sampled_from(["reverse", "no-role", "no-content", "no-assistant", "unknown-role", "long",
                                   "empty", "bom"]), st.integers(0, 10), st.none()),
    )
    return draw(st.lists(edit, max_size=3))


def lines_of(edits: list[tuple[str, int, Any]]) -> list[bytes]:
    records: list[Any] = [{"messages": json.loads(json.dumps(GOOD[i % 2]))} for i in range(4)]
    raw: dict[int, bytes] = {}
    for op, at, value in edits:
        i = at % len(records)
        turns = records[i].get("messages") if isinstance(records[i], dict) else None
        turn = turns[at % len(turns)] if isinstance(turns, list) and turns else None
        if op == "line":
            records[i] = value
        elif op == "messages" and isinstance(records[i], dict):
            records[i]["messages"] = value
        elif op == "turn" and turn is not None:
            turns[at % len(turns)] = value
        elif op in ("role", "content") and isinstance(turn, dict):
            turn[op] = value
        elif op == "extra" and isinstance(turn, dict):
            turn["name"] = value
        elif op == "reverse" and isinstance(turns, list):
            turns.reverse()
        elif op in ("no-role", "no-content") and isinstance(turn, dict):
            turn.pop(op.removeprefix("no-"), None)
        elif op == "no-assistant" and isinstance(turns, list):
            turns[:] = [t for t in turns if not (isinstance(t, dict) and t.get("role") == "assistant")]
        elif op == "unknown-role" and isinstance(turn, dict):
            turn["role"] = "narrator"
        elif op == "long" and isinstance(turn, dict):
            turn["content"] = "word " * 400
        elif op == "empty" and isinstance(turns, list):
            turns.clear()
        elif op == "truncate":
            text = json.dumps(records[i]).encode()
            raw[i] = text[:at % max(1, len(text))]
        elif op == "not-utf8":
            raw[i] = json.dumps(records[i]).encode()[:10] + b"\xff\xfe" + b"\"}"
        elif op == "blank":
            raw[i] = b"   "
        elif op == "bom" and i == 0:
            raw[i] = b"\xef\xbb\xbf" + json.dumps(records[i]).encode()
    return [raw.get(i, json.dumps(record, allow_nan=True).encode()) for i, record in enumerate(records)]


def in_image(image: str, argv: list[str]) -> int:
    """This script again, in `image`'s Python, with its tiny model; hypothesis (and what it imports) lent from this
    Python's site-packages, read-only."""
    import _hypothesis_globals
    import hypothesis
    import sortedcontainers

    lent = [Path(hypothesis.__file__).parent, Path(sortedcontainers.__file__).parent, Path(_hypothesis_globals.__file__)]
    return subprocess.call([
        "docker", "run", "--rm", "--entrypoint", "python", "--env", "PYTHONPATH=/fuzz/lib", "--env", "HOME=/tmp",
        *(f"--volume={path}:/fuzz/lib/{path.name}:ro" for path in lent),
        f"--volume={REPO / 'bench'}:/fuzz/bench:ro", f"--volume={REPO / 'configs'}:/fuzz/configs:ro",
        image, "/fuzz/bench/fuzz_validate.py", *argv, "--model", "/opt/chatlike/tiny-model"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--examples", type=int, default=0, help="Print this many refusals, each of another kind.")
    parser.add_argument("--model", type=Path, help="A tiny model to read the tokenizer of (default: one made now).")
    parser.add_argument("--in-image", metavar="IMAGE", help="Run in this training image's Python (docker run).")
    args = parser.parse_args()
    if args.in_image:
        return in_image(args.in_image, [f"--cases={args.cases}", f"--seed={args.seed}", f"--examples={args.examples}"])

    from chatlike_runner.train.errors import TrainError
    from chatlike_runner.train.tinymodel import make_tiny_model
    from chatlike_runner.train.validate import validate

    home = Path(tempfile.mkdtemp(prefix="chatlike-fuzz-"))
    base = smoke_config(home, args.model or make_tiny_model(home / "tiny-model"))
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    examples: dict[str, str] = {}

    def case(config: dict[str, Any], lines: list[bytes], lines_edited: bool) -> None:
        folder = Path(tempfile.mkdtemp(dir=home))
        (folder / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        path = folder / "config.yml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        try:
            validate(path)
            counts["valid"] += 1
        except TrainError as exc:
            said = exc.format_message()
            if BARE.search(said):
                failures.append(f"a refusal that names only a Python exception: {said}")
            elif lines_edited and config == base and said.startswith("dataset") and " line" not in said:
                failures.append(f"a dataset refusal that names no line: {said}")
            else:
                counts["refused"] += 1
                examples.setdefault(re.sub(r"[^a-z_ ]", "", said.split(":")[0] + said.split(":")[1][:12]
                                           if ":" in said else said[:30]), said)
        except BaseException as exc:  # what the fuzz counts
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append("".join(traceback.format_exception_only(exc)).strip()
                            + "\n    " + traceback.format_tb(exc.__traceback__)[-1].strip().replace("\n", "\n    "))
        counts["cases"] += 1

    @with_seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(edits=config_edits(sorted(base)), lines=line_edits(), which=st.sampled_from(["config", "lines", "both"]))
    def fuzz(edits: list, lines: list, which: str) -> None:
        config = edited(base, edits) if which != "lines" else base
        case(config, lines_of(lines if which != "config" else []), which != "config")

    started = time.monotonic()
    fuzz()
    seconds = time.monotonic() - started
    print(f"fuzz_validate: seed {args.seed}: {counts['cases']} cases in {seconds:.0f} s: {counts['valid']} valid, "
          f"{counts['refused']} refused in words, {len(failures)} failures")
    for kind, times in collections.Counter(failures).most_common(12):
        print(f"  {times} x {kind}")
    for said in list(examples.values())[:args.examples]:
        print(f"refused: {said}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
