"""chatlike-train validate: Axolotl's schema, unknown keys, and the dataset read with the model's tokenizer.

Bad input is refused in words (TrainError, exit 2): a config problem names its key (`datasets[0].type`), the value's
type and what was expected; a dataset problem names the file, the line and the field (`messages[2].role`), lines
alike counted and the first few shown. Anything else raised here is a bug (entrypoint.py: exit 1, the traceback).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import config as cfg
from . import hubkernel
from . import template as turns
from .errors import TrainError

# Axolotl's chat_template defaults (prompt_strategies/chat_template.py): dataset role -> template role.
DEFAULT_ROLES = {"human": "user", "user": "user", "assistant": "assistant", "gpt": "assistant", "system": "system",
                 "tool": "tool"}
_SHOWN = 3  # line numbers quoted per kind of problem
_KINDS_SHOWN = 5  # kinds of problem shown per dataset
_INDEX = re.compile(r"\[\d+\]")
_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")  # a path with these names a file, not a hub dataset


def unknown_keys(keys: Iterable[str], known: set[str]) -> list[str]:
    """`key (did you mean 'x'?)` for each key Axolotl would silently ignore."""
    found = []
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            name = key if key.isprintable() and key.strip() == key and key else repr(key)
            found.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return found


def schema_fields(model) -> set[str]:
    """Field names and aliases of a pydantic model class."""
    names = set(model.model_fields)
    for info in model.model_fields.values():
        names.update(alias for alias in (info.alias, info.validation_alias) if isinstance(alias, str))
    return names


def kind_of(value: object) -> str:
    """What a JSON or YAML value is, in words: null, true, a number, a string, a list, a mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Problem:
    """What is wrong with one dataset line: at `field` (`messages[2].role`; "" for the whole line), `what`."""

    field: str
    what: str

    @property
    def kind(self) -> str:
        """Lines alike: the same fault at the same field of any turn."""
        return f"{_INDEX.sub('[]', self.field)}: {self.what}" if self.field else self.what

    def __str__(self) -> str:
        return f"{self.field}: {self.what}" if self.field else self.what


@dataclass
class DatasetFormat:
    """How one chat_template dataset entry maps its lines onto the template."""

    messages: str = "messages"
    role: str = "role"
    content: str = "content"
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))

    @classmethod
    def from_entry(cls, entry: Mapping, where: str = "datasets[0]") -> DatasetFormat:
        """The entry's field_messages, message_property_mappings and roles; TrainError naming the key when one is
        not of the shape Axolotl reads."""
        mappings = entry.get("message_property_mappings") or {}
        if not isinstance(mappings, Mapping) or not all(isinstance(v, str) for v in mappings.values()):
            raise TrainError(f"{where}.message_property_mappings: {kind_of(mappings)}, expected a mapping of names "
                             "such as {role: role, content: content}")
        roles = entry.get("roles")
        if roles and not (isinstance(roles, Mapping) and all(
                isinstance(sources, list) and all(isinstance(s, str) for s in sources) for sources in roles.values())):
            raise TrainError(f"{where}.roles: {kind_of(roles)}, expected a mapping of each role to a list of names "
                             "such as {assistant: [me], user: [friend]}")
        messages = entry.get("field_messages") or "messages"
        if not isinstance(messages, str):
            raise TrainError(f"{where}.field_messages: {kind_of(messages)}, expected the name of the lines' list of "
                             "turns, such as messages")
        return cls(
            messages=messages,
            role=mappings.get("role", "role"),
            content=mappings.get("content", "content"),
            roles={source: role for role, sources in roles.items() for source in sources} if roles else dict(DEFAULT_ROLES),
        )


def conversation(line: str, fmt: DatasetFormat) -> tuple[list[dict] | None, Problem | None]:
    """The line's messages as {role, content} for the template, or what is wrong with it and where."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, Problem("", f"not JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})")
    except RecursionError:
        return None, Problem("", "not JSON this reader can take (nested too deeply)")
    if not isinstance(record, dict):
        return None, Problem("", f"{kind_of(record)}, expected an object with a '{fmt.messages}' list")
    turns = record.get(fmt.messages)
    if not isinstance(turns, list) or not turns:
        found = "missing" if fmt.messages not in record else "an empty list" if turns == [] else kind_of(turns)
        return None, Problem(fmt.messages, f"{found}, expected a list of turns")
    roles = ", ".join(sorted(fmt.roles))
    messages = []
    for number, turn in enumerate(turns):
        where = f"{fmt.messages}[{number}]"
        if not isinstance(turn, dict):
            return None, Problem(where, f"{kind_of(turn)}, expected an object with '{fmt.role}' and '{fmt.content}'")
        role = turn.get(fmt.role)
        if not isinstance(role, str) or role not in fmt.roles:
            found = "missing" if fmt.role not in turn else kind_of(role)
            return None, Problem(f"{where}.{fmt.role}", f"{found}, expected one of the roles {roles}")
        content = turn.get(fmt.content)
        if not isinstance(content, str):
            found = "missing" if fmt.content not in turn else kind_of(content)
            return None, Problem(f"{where}.{fmt.content}", f"{found}, expected a string (the {role} turn's text)")
        messages.append({"role": fmt.roles[role], "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        return None, Problem(fmt.messages, "no assistant turn, expected at least one (nothing to learn from)")
    return messages, None


def problems_summary(problems: Mapping[str, list[int]]) -> str:
    """`kind: lines 3, 9, 12 (+4 more)` for each kind of problem."""
    parts = []
    for kind, lines in problems.items():
        more = f" (+{len(lines) - _SHOWN} more)" if len(lines) > _SHOWN else ""
        parts.append(f"{kind}: line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:_SHOWN]))}{more}")
    return "; ".join(parts)


def line_problems(path: Path, problems: Mapping[str, list[tuple[int, Problem]]], lines: int) -> str:
    """The file, how many lines are refused, then a line per kind of problem: the first line and field, and the
    other lines alike (a few shown, the rest counted)."""
    refused = sum(map(len, problems.values()))
    shown = []
    for found in list(problems.values())[:_KINDS_SHOWN]:
        (number, problem), others = found[0], [n for n, _ in found[1:]]
        alike = ""
        if others:
            more = f" (+{len(others) - _SHOWN} more)" if len(others) > _SHOWN else ""
            alike = f"; the same on line{'s' if len(others) > 1 else ''} {', '.join(map(str, others[:_SHOWN]))}{more}"
        shown.append(f"  line {number}, {problem}{alike}")
    if len(problems) > _KINDS_SHOWN:
        shown.append(f"  and {len(problems) - _KINDS_SHOWN} more kinds of problem")
    return "\n".join([f"dataset {path}: {refused} of {lines} lines cannot be trained on; fix them (or run prepare on "
                      "your export again):", *shown])


def length_line(name: str, lengths: list[int], sequence_len: int) -> str:
    over = sum(length > sequence_len for length in lengths)
    p95 = sorted(lengths)[max(0, round(0.95 * len(lengths)) - 1)]
    return (f"dataset {name}: {len(lengths)} conversations; tokens median {int(statistics.median(lengths))}, "
            f"p95 {p95}, max {max(lengths)}; sequence_len {sequence_len}; {over} longer")


def check_schema(raw: dict) -> str:
    """Axolotl's own validation plus unknown keys; returns the schema's name."""
    from axolotl.integrations.config import merge_input_args
    from axolotl.utils.config import prepare_plugins
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.datasets import SFTDataset

    check_shapes(raw)
    try:
        prepare_plugins(DictDefault(copy.deepcopy(raw)))
    except Exception as exc:  # a plugin that cannot be loaded, by Axolotl's own words
        raise TrainError(f"plugins: {kind_of(raw.get('plugins'))} cannot be loaded ({_said(exc)}); expected a list "
                         "of Axolotl plugin class paths installed in the image") from None
    _, schema = merge_input_args()
    unknown = unknown_keys(raw, schema_fields(schema))
    dataset_fields = schema_fields(SFTDataset)
    for key in cfg.DATASET_KEYS:
        for entry in raw.get(key) or []:
            if not raw.get("rl"):
                unknown += [f"{key}[].{name}" for name in unknown_keys(entry, dataset_fields)]
    if unknown:
        raise TrainError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                         "Axolotl ignores unknown keys silently; fix the spelling")
    axolotl_checks(raw, schema)
    return schema.__name__


def check_shapes(raw: Mapping) -> None:
    """What Axolotl reads before its schema can say anything: names as keys, datasets as lists of mappings."""
    for key in raw:
        if not isinstance(key, str):
            raise TrainError(f"config key {key!r} is {kind_of(key)}, expected an option's name")
    for key in cfg.DATASET_KEYS:
        entries = raw.get(key)
        if entries is not None and not isinstance(entries, list):
            raise TrainError(f"{key}: {kind_of(entries)}, expected a list of datasets, each a mapping with path and "
                             "type")
        for number, entry in enumerate(entries or []):
            if not isinstance(entry, Mapping):
                raise TrainError(f"{key}[{number}]: {kind_of(entry)}, expected a mapping with path and type")
            for name in entry:
                if not isinstance(name, str):
                    raise TrainError(f"{key}[{number}] key {name!r} is {kind_of(name)}, expected an option's name")


def axolotl_checks(raw: dict, schema) -> None:
    """Axolotl's validate_config, its refusals put in words that name the key: a schema error by its path and the
    value's type; any other exception from its validators by the key that raised it (found by checking each key's
    type against the schema, else by leaving keys out one at a time); its own message kept when it names the key."""
    from pydantic import ValidationError

    from axolotl.utils.schemas.datasets import SFTDataset

    for key in cfg.DATASET_KEYS if not raw.get("rl") else ():
        for number, entry in enumerate(raw.get(key) or []):
            try:  # as validate_config does first, where its errors lose which dataset they are about
                SFTDataset(**copy.deepcopy(dict(entry)))
            except ValidationError as exc:
                raise TrainError(schema_problems(exc, entry, f"{key}[{number}].")) from None
            except Exception:  # a crash of its validators: found below, by the type of the key
                pass
    try:
        _axolotl_validate(raw)
    except ValidationError as exc:
        raise TrainError(schema_problems(exc, raw)) from None
    except Exception as exc:
        said = _said(exc)
        named = [key for key in raw if re.search(rf"\b{re.escape(key)}\b", said)]
        if isinstance(exc, ValueError) and named:
            raise TrainError(f"config does not pass Axolotl's checks: {said}") from None
        typed = mistyped(raw, schema)
        if typed is not None:
            raise TrainError(f"config does not pass Axolotl's schema: {typed[0]}: {kind_of(_at(raw, typed[0]))}; "
                             f"{typed[1]}") from None
        key = culprit(raw, exc)
        if key is None:
            raise
        words = f" (it says: {said})" if isinstance(exc, ValueError) else ""  # not a Python error's internals
        raise TrainError(f"{key}: {kind_of(raw[key])} is refused by Axolotl's checks{words}; check its value against "
                         f"Axolotl's documentation of {key}") from None


def _at(raw: Mapping, path: str) -> object:
    """The value at `key` or `key[n].name`."""
    key, _, rest = path.partition("[")
    if not rest:
        return raw[key]
    number, _, name = rest.partition("].")
    return raw[key][int(number)][name]


def _axolotl_validate(raw: Mapping) -> None:
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    validate_config(DictDefault(copy.deepcopy(dict(raw))))


def _said(exc: BaseException) -> str:
    """An exception's own words on one line (its type's name only when it has none)."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def schema_problems(exc, raw: Mapping, prefix: str = "") -> str:
    """A pydantic ValidationError as `path: what the value is; expected …` for each path (its union's members, which
    pydantic reports one by one, as one)."""
    found: dict[str, tuple[object, list[str]]] = {}
    for error in exc.errors():
        path, value = _walk(raw, error["loc"])
        message = error["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        if error["type"] == "missing":
            value, message = _MISSING, "required"
        elif error["msg"].startswith("Input should be "):
            message = f"expected {message}"
        entry = found.setdefault(prefix + path if path else prefix.rstrip("."), (value, []))
        if message not in entry[1]:
            entry[1].append(message)
    issues = []
    for path, (value, messages) in found.items():
        said = " or ".join(messages) if all(m.startswith("expected ") for m in messages) else "; ".join(messages)
        said = said.replace(" or expected ", " or ")
        if value is _MISSING:
            issues.append(f"{path}: missing, {said}" if path else said)
        elif path:
            issues.append(f"{path}: {kind_of(value)}; {said}")
        else:
            issues.append(said)
    return f"config does not pass Axolotl's schema: {'; '.join(issues)}"


_MISSING = object()


def _walk(raw: Mapping, loc: tuple) -> tuple[str, object]:
    """The part of a pydantic error's location that is in the config (its union members' tags left out), written
    `datasets[0].type`, and the value there."""
    path, value = "", raw
    for part in loc:
        if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
            path, value = f"{path}[{part}]", value[part]
        elif isinstance(part, str) and isinstance(value, Mapping) and part in value:
            path, value = f"{path}.{part}" if path else part, value[part]
        elif isinstance(part, str) and value is raw:  # a key the config lacks: named, with nothing there
            return part, _MISSING
        else:
            break
    return path, value


_TYPES: dict[tuple[str, str], object] = {}


def mistyped(raw: Mapping, schema) -> tuple[str, str] | None:
    """The first key (a dataset's keys included) whose value is not of its field's type in Axolotl's schema, the
    validators aside, and what the schema expected; a value whose check crashes counts as not of its type."""
    from axolotl.utils.schemas.datasets import SFTDataset

    places = [("", raw, schema)]
    if not raw.get("rl"):
        places += [(f"{key}[{number}].", entry, SFTDataset) for key in cfg.DATASET_KEYS
                   for number, entry in enumerate(raw.get(key) or [])]
    for prefix, values, model in places:
        for key, value in values.items():
            expected = _type_problem(model, key, value)
            if expected is not None:
                return f"{prefix}{key}", expected
    return None


def _type_problem(model, key: str, value: object) -> str | None:
    """What `model`'s field `key` expects when `value` is not of its type; None when it is (or cannot be told)."""
    from pydantic import TypeAdapter, ValidationError

    info = model.model_fields.get(key)
    if info is None or info.annotation is None:
        return None
    if (model.__name__, key) not in _TYPES:
        try:
            _TYPES[model.__name__, key] = TypeAdapter(info.annotation)
        except Exception:  # a type pydantic cannot check alone: the other keys may still tell
            _TYPES[model.__name__, key] = None
    adapter = _TYPES[model.__name__, key]
    if adapter is None:
        return None
    try:
        adapter.validate_python(value)  # type: ignore[attr-defined]
    except ValidationError as exc:
        said = exc.errors()[0]["msg"]
        return f"expected {said.removeprefix('Input should be ')}" if said.startswith("Input should be ") else said
    except Exception:  # a validator of that type crashed on this value: not of its type
        return f"expected a value of type {getattr(info.annotation, '__name__', info.annotation)}"
    return None


def culprit(raw: Mapping, exc: BaseException) -> str | None:
    """The key without which Axolotl's validation no longer raises what it raised."""
    for key in raw:
        try:
            _axolotl_validate({k: v for k, v in raw.items() if k != key})
        except Exception as other:
            if type(other) is type(exc) and str(other) == str(exc):
                continue
        return key
    return None


def tokenizer_and_template(raw: Mapping, cached_only: bool = False):
    """The run's tokenizer (from the model cache alone with `cached_only`) and its chat template."""
    from axolotl.utils.chat_templates import get_chat_template
    from transformers import AutoTokenizer

    key = "tokenizer_config" if raw.get("tokenizer_config") else "base_model"
    name = raw.get(key)
    if not isinstance(name, str) or not name:
        raise TrainError(f"{key}: {kind_of(name)}, expected a model's name on the hub or a folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=cached_only)
    except Exception as exc:  # transformers' many ways of saying it found no usable tokenizer there
        raise TrainError(f"{key}: cannot load the tokenizer of {name} ({_said(exc)[:200]}); "
                         "check base_model, HF_TOKEN and the network or model cache") from None
    try:
        template = get_chat_template(raw.get("chat_template") or "tokenizer_default",
                                     jinja_template=raw.get("chat_template_jinja"), tokenizer=tokenizer)
    except Exception as exc:
        raise TrainError(f"chat_template: {kind_of(raw.get('chat_template'))} gives no chat template ({_said(exc)}); "
                         "name one of Axolotl's templates (llama3), or tokenizer_default for the model's own, or "
                         "give chat_template_jinja") from None
    return tokenizer, template


def check_recipe(raw: Mapping) -> None:
    """What Axolotl accepts but would train a model that does not chat like you: the other people's turns
    trained on, or the token that ends your reply never trained (the model then never stops)."""
    if raw.get("train_on_inputs"):
        raise TrainError("train_on_inputs: true trains the model on the other people's messages too, so it learns to "
                         "write like them; chatlike trains on your replies only: remove it (or set it to false)")
    for key in cfg.DATASET_KEYS:
        for number, entry in enumerate(raw.get(key) or []):
            roles = entry.get("roles_to_train")
            others = [r for r in roles if DEFAULT_ROLES.get(r, r) != "assistant"] if isinstance(roles, list) else []
            if others:
                raise TrainError(f"{key}[{number}].roles_to_train: {', '.join(map(str, others))} trains the model on "
                                 "the other people's turns too; chatlike trains on your replies only: remove "
                                 "roles_to_train (or leave only assistant)")
            for name in ("train_on_eos", "train_on_eot"):
                if entry.get(name) == "none":
                    raise TrainError(f"{key}[{number}].{name}: none never trains the token that ends your reply, so "
                                     f"the model never learns to stop talking: remove {name} (turn, the default, "
                                     "trains it after each of your replies)")


def check_template(raw: Mapping, tokenizer, template: str) -> None:
    """The template's special tokens are the tokenizer's, and the tokens that end a turn are ones it writes."""
    name = raw.get("tokenizer_config") or raw.get("base_model")
    chosen = raw.get("chat_template") or "tokenizer_default"
    missing = turns.missing_tokens(tokenizer, template)
    if missing:
        raise TrainError(f"chat_template: {chosen} writes {', '.join(missing)}, which the tokenizer of {name} lacks: "
                         "each would be trained as pieces of text, not as the mark of a turn; use chat_template: "
                         "tokenizer_default (the model's own template) or one made for this model")
    wanted = raw.get("eot_tokens")
    ends = turns.end_of_turn(wanted if isinstance(wanted, list) else None, tokenizer, template)
    unwritten = [token for token in wanted or [] if token not in ends] if isinstance(wanted, list) else []
    if unwritten or not ends:
        found = turns.turn_format(lambda messages, generation: turns.render(tokenizer, template, messages, generation))
        marks = turns.special_tokens(found.after) if found else []
        hint = f" ({', '.join(marks)} ends a turn in it)" if marks else ""
        what = (f"eot_tokens: {', '.join(unwritten)} is not in the chat template ({chosen}), so Axolotl would not "
                "train it" if unwritten else f"the chat template ({chosen}) writes no end-of-turn token")
        raise TrainError(f"{what} and the model would never learn to end a reply; set eot_tokens to the token the "
                         f"template ends a turn with{hint}")


def check_dataset(path: Path, fmt: DatasetFormat, tokenizer, template, sequence_len: int) -> tuple[str, list[int]]:
    """A report line and the line numbers of conversations longer than sequence_len; TrainError naming each kind
    of bad line (its first line and field, how many alike)."""
    problems: dict[str, list[tuple[int, Problem]]] = {}
    lengths, over, number = [], [], 0
    try:
        with open(path, "rb") as lines:
            for number, data in enumerate(lines, 1):
                length, problem = _tokens(data, fmt, tokenizer, template)
                if problem is not None:
                    problems.setdefault(problem.kind, []).append((number, problem))
                elif length is not None:
                    lengths.append(length)
                    if length > sequence_len:
                        over.append(number)
    except OSError as exc:
        raise TrainError(f"dataset {path} cannot be read ({exc.strerror or exc}); check the path and its "
                         "permissions") from None
    if problems:
        raise TrainError(line_problems(path, problems, number))
    if not lengths:
        raise TrainError(f"dataset {path} has no conversations; run prepare on your export first")
    return length_line(str(path), lengths, sequence_len), over


def _tokens(data: bytes, fmt: DatasetFormat, tokenizer, template) -> tuple[int | None, Problem | None]:
    """One dataset line's length in tokens through the chat template, or what is wrong with it; neither when blank."""
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Problem("", f"not UTF-8 text (byte {data[exc.start]:#04x} at column {exc.start + 1}), expected "
                                 "JSON in UTF-8")
    if not line.strip():
        return None, None
    messages, problem = conversation(line, fmt)
    if problem is not None:
        return None, problem
    try:
        ids = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True)
    except Exception as exc:  # the template's own refusal (a raise_exception in its Jinja)
        return None, Problem("", f"the chat template refused it ({_said(exc)[:120]})")
    return len(ids["input_ids"] if isinstance(ids, Mapping) else ids), None


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
    check_recipe(raw)
    config_dir = config_path.parent.absolute()
    sequence_len = int(raw.get("sequence_len") or 2048)
    tokenizer = template = None
    for key in cfg.DATASET_KEYS:
        for number, entry in enumerate(raw.get(key) or []):
            local = cfg.dataset_paths({key: [entry]}, config_dir)
            path = str(entry.get("path", ""))
            if not local and path.endswith(_FILE_SUFFIXES):
                raise TrainError(f"{key}[{number}].path: dataset {path} does not exist (read relative to "
                                 f"{config_dir}); run prepare first or fix the path")
            if not (local and str(entry.get("type", "")).startswith("chat_template") and local[0].suffix == ".jsonl"):
                report.append(f"dataset {entry.get('path')}: not a local chat_template JSON Lines file; not checked")
                continue
            fmt = DatasetFormat.from_entry(entry, f"{key}[{number}]")
            if tokenizer is None:
                tokenizer, template = tokenizer_and_template(raw)
                check_template(raw, tokenizer, template)
            line, over = check_dataset(local[0], fmt, tokenizer, template, sequence_len)
            if over and not raw.get("excess_length_strategy"):
                raise TrainError(f"{line} ({problems_summary({'over sequence_len': over})}): Axolotl would drop them; "
                                 "raise sequence_len, shorten those conversations, or set excess_length_strategy: "
                                 "drop|truncate to accept it")
            report.append(line)
    return report
