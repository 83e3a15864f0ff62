"""chatlike-train validate: Axolotl's schema, unknown keys, and the dataset read with the model's tokenizer."""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import config as cfg
from . import hubkernel
from .errors import TrainError

# Axolotl's chat_template defaults (prompt_strategies/chat_template.py): dataset role -> template role.
DEFAULT_ROLES = {"human": "user", "user": "user", "assistant": "assistant", "gpt": "assistant", "system": "system",
                 "tool": "tool"}
_SHOWN = 3  # line numbers quoted per kind of problem
_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")  # a path with these names a file, not a hub dataset


def unknown_keys(keys: Iterable[str], known: set[str]) -> list[str]:
    """`key (did you mean 'x'?)` for each key Axolotl would silently ignore."""
    found = []
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            found.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return found


def schema_fields(model) -> set[str]:
    """Field names and aliases of a pydantic model class."""
    names = set(model.model_fields)
    for info in model.model_fields.values():
        names.update(alias for alias in (info.alias, info.validation_alias) if isinstance(alias, str))
    return names


@dataclass
class DatasetFormat:
    """How one chat_template dataset entry maps its lines onto the template."""

    messages: str = "messages"
    role: str = "role"
    content: str = "content"
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))

    @classmethod
    def from_entry(cls, entry: Mapping) -> DatasetFormat:
        mappings = entry.get("message_property_mappings") or {}
        roles = entry.get("roles")
        return cls(
            messages=entry.get("field_messages") or "messages",
            role=mappings.get("role", "role"),
            content=mappings.get("content", "content"),
            roles={source: role for role, sources in roles.items() for source in sources} if roles else dict(DEFAULT_ROLES),
        )


def conversation(line: str, fmt: DatasetFormat) -> tuple[list[dict] | None, str | None]:
    """The line's messages as {role, content} for the template, or what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg})"
    turns = record.get(fmt.messages) if isinstance(record, dict) else None
    if not isinstance(turns, list) or not turns:
        return None, f"no '{fmt.messages}' list"
    messages = []
    for turn in turns:
        role = turn.get(fmt.role) if isinstance(turn, dict) else None
        if role not in fmt.roles:
            return None, f"unknown role {role!r} (known: {', '.join(sorted(fmt.roles))})"
        content = turn.get(fmt.content)
        if not isinstance(content, str):
            return None, f"a {role} turn has no text '{fmt.content}'"
        messages.append({"role": fmt.roles[role], "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        return None, "no assistant turn (nothing to learn)"
    return messages, None


def problems_summary(problems: Mapping[str, list[int]]) -> str:
    """`kind: lines 3, 9, 12 (+4 more)` for each kind of problem."""
    parts = []
    for kind, lines in problems.items():
        more = f" (+{len(lines) - _SHOWN} more)" if len(lines) > _SHOWN else ""
        parts.append(f"{kind}: line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:_SHOWN]))}{more}")
    return "; ".join(parts)


def length_line(name: str, lengths: list[int], sequence_len: int) -> str:
    over = sum(length > sequence_len for length in lengths)
    p95 = sorted(lengths)[max(0, round(0.95 * len(lengths)) - 1)]
    return (f"dataset {name}: {len(lengths)} conversations; tokens median {int(statistics.median(lengths))}, "
            f"p95 {p95}, max {max(lengths)}; sequence_len {sequence_len}; {over} longer")


def check_schema(raw: dict) -> str:
    """Axolotl's own validation plus unknown keys; returns the schema's name."""
    from axolotl.utils.config import prepare_plugins, validate_config
    from axolotl.utils.dict import DictDefault
    from axolotl.integrations.config import merge_input_args
    from axolotl.utils.schemas.datasets import SFTDataset
    from pydantic import ValidationError

    prepare_plugins(DictDefault(copy.deepcopy(raw)))
    _, schema = merge_input_args()
    unknown = unknown_keys(raw, schema_fields(schema))
    dataset_fields = schema_fields(SFTDataset)
    for key in cfg.DATASET_KEYS:
        for entry in raw.get(key) or []:
            if isinstance(entry, dict) and not raw.get("rl"):
                unknown += [f"{key}[].{name}" for name in unknown_keys(entry, dataset_fields)]
    if unknown:
        raise TrainError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                         "Axolotl ignores unknown keys silently; fix the spelling")
    try:
        validate_config(DictDefault(copy.deepcopy(raw)))
    except ValidationError as exc:
        issues = [f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()]
        raise TrainError(f"config does not pass Axolotl's schema: {'; '.join(issues)}") from None
    except ValueError as exc:
        raise TrainError(f"config does not pass Axolotl's checks: {' '.join(str(exc).split())}") from None
    return schema.__name__


def tokenizer_and_template(raw: Mapping, cached_only: bool = False):
    """The run's tokenizer (from the model cache alone with `cached_only`) and its chat template."""
    from axolotl.utils.chat_templates import get_chat_template
    from transformers import AutoTokenizer

    name = raw.get("tokenizer_config") or raw["base_model"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=cached_only)
    except OSError as exc:
        raise TrainError(f"cannot load the tokenizer of {name} ({' '.join(str(exc).split())[:200]}); "
                         "check base_model, HF_TOKEN and the network or model cache") from None
    template = get_chat_template(raw.get("chat_template") or "tokenizer_default",
                                 jinja_template=raw.get("chat_template_jinja"), tokenizer=tokenizer)
    return tokenizer, template


def check_dataset(path: Path, fmt: DatasetFormat, tokenizer, template, sequence_len: int) -> tuple[str, list[int]]:
    """A report line and the line numbers of conversations longer than sequence_len; TrainError on bad lines."""
    problems: dict[str, list[int]] = {}
    lengths, over = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            messages, problem = conversation(line, fmt)
            if problem:
                problems.setdefault(problem, []).append(number)
                continue
            ids = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True)
            lengths.append(len(ids["input_ids"] if isinstance(ids, Mapping) else ids))
            if lengths[-1] > sequence_len:
                over.append(number)
    if problems:
        raise TrainError(f"dataset {path}: {problems_summary(problems)}")
    if not lengths:
        raise TrainError(f"dataset {path} has no conversations; run prepare on your export first")
    return length_line(str(path), lengths, sequence_len), over


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hold back what the libraries print (import warnings, banners); show it only if something unexpected breaks."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as held:
        for fd in saved:
            os.dup2(held.fileno(), fd)
        try:
            yield
        except TrainError:
            raise
        except BaseException:
            sys.stderr.flush()
            held.seek(0)
            os.write(saved[2], held.read())
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy_fd in saved.items():
                os.dup2(copy_fd, fd)
                os.close(copy_fd)


def validate(config_path: Path) -> list[str]:
    """Report lines for a config that would train as meant; TrainError (one line) for one that would not."""
    with quiet():
        return _validate(config_path)


def _validate(config_path: Path) -> list[str]:
    raw = cfg.load(config_path)
    report = [f"config {config_path}: passes {check_schema(raw)} (Axolotl's schema), no unknown keys"]
    if (refused := hubkernel.refusal(raw)) is not None:
        raise TrainError(refused)
    config_dir = config_path.parent.absolute()
    sequence_len = int(raw.get("sequence_len") or 2048)
    tokenizer = template = None
    for key in cfg.DATASET_KEYS:
        for entry in raw.get(key) or []:
            local = cfg.dataset_paths({key: [entry]}, config_dir)
            path = str(entry.get("path", ""))
            if not local and path.endswith(_FILE_SUFFIXES):
                raise TrainError(f"dataset {path} does not exist (read relative to {config_dir}); "
                                 "run prepare first or fix the path")
            if not (local and str(entry.get("type", "")).startswith("chat_template") and local[0].suffix == ".jsonl"):
                report.append(f"dataset {entry.get('path')}: not a local chat_template JSON Lines file; not checked")
                continue
            if tokenizer is None:
                tokenizer, template = tokenizer_and_template(raw)
            line, over = check_dataset(local[0], DatasetFormat.from_entry(entry), tokenizer, template, sequence_len)
            if over and not raw.get("excess_length_strategy"):
                raise TrainError(f"{line} ({problems_summary({'over sequence_len': over})}): Axolotl would drop them; "
                                 "raise sequence_len, shorten those conversations, or set excess_length_strategy: "
                                 "drop|truncate to accept it")
            report.append(line)
    return report
