"""A run's chat template and the tokens that end a turn, read from the run's own config and tokenizer, never
assumed: ChatML's <|im_end|> for SmolLM2, Llama 3's <|eot_id|> for the seed's model. eval, chat and export stop
where training taught the model to stop; export writes the same template for Ollama; validate refuses a template
whose special tokens the tokenizer lacks (`chat_template: llama3` on SmolLM2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# What a template's special tokens look like: <|eot_id|>, <|im_start|>, <s>, </s>, [INST], <start_of_turn>.
_SPECIAL = re.compile(r"<\|[^<>|\s]+\|>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>")
# Texts no template writes itself, to find where a message's content lands in what it renders.
_SYSTEM, _USER, _ASSISTANT = "Zq1systemtext", "Zq2usertext", "Zq3assistanttext"
PROBE = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _USER},
         {"role": "assistant", "content": _ASSISTANT}]


def end_of_turn(eot_tokens: Sequence[str] | None, tokenizer: Any, template: str) -> list[str]:
    """The tokens that end a reply, as Axolotl trains them: the config's eot_tokens that the template writes
    (Axolotl drops the others), else the tokenizer's end-of-text token."""
    if eot_tokens:
        return [token for token in eot_tokens if token in template]
    return [tokenizer.eos_token] if tokenizer.eos_token else []


def stop_ids(tokens: Sequence[str], tokenizer: Any) -> list[int]:
    """The ids of `tokens` that the tokenizer holds as one token each, and its end-of-text token's."""
    found = [_one_id(token, tokenizer) for token in tokens] + [tokenizer.eos_token_id]
    return list(dict.fromkeys(i for i in found if isinstance(i, int) and i >= 0))


def _one_id(token: str, tokenizer: Any) -> int | None:
    ids = tokenizer.encode(token, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def render(tokenizer: Any, template: str, messages: Sequence[Mapping[str, str]], generation: bool = False) -> str:
    """The text `template` makes of `messages` (with the reply's header after them when `generation`)."""
    return tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                         add_generation_prompt=generation)


def special_tokens(text: str) -> list[str]:
    """The special tokens in `text`, each once, in order."""
    return list(dict.fromkeys(_SPECIAL.findall(text)))


def missing_tokens(tokenizer: Any, template: str) -> list[str]:
    """The special tokens `template` writes (on a system, user and assistant turn, or a user and assistant turn where
    it refuses a system one) that the tokenizer lacks as single tokens: it would split each into pieces of text, and
    the model would never see its turns' marks. None found where the template renders neither."""
    for messages in (PROBE, PROBE[1:]):
        try:
            text = render(tokenizer, template, messages) + render(tokenizer, template, messages[:-1], generation=True)
        except Exception:  # the template's own refusal (a raise_exception in its Jinja), or a template that breaks
            continue
        return [token for token in special_tokens(text) if _one_id(token, tokenizer) is None]
    return []


@dataclass(frozen=True)
class TurnFormat:
    """A template that wraps each message alike: `before` + role + `after_role` + content + `after`, with a reply's
    header (`before` assistant `after_role`) after the last message; `head` starts the text; `default_system` is
    what it writes when the conversation has no system message (SmolLM2's "You are a helpful AI assistant…")."""

    head: str
    before: str
    after_role: str
    after: str
    default_system: str | None

    def ollama(self, bos: str | None) -> str:
        """The same format as an Ollama TEMPLATE (Go's text/template over Ollama's .Messages, which holds the
        system message too). The head is left out when it is the BOS token, which llama.cpp's tokenizer adds."""
        head = "" if self.head == bos else self.head
        return (f"{head}{{{{- range .Messages }}}}{self.before}{{{{ .Role }}}}{self.after_role}{{{{ .Content }}}}"
                f"{self.after}{{{{ end }}}}{self.before}assistant{self.after_role}")


def turn_format(render_messages: Callable[[Sequence[Mapping[str, str]], bool], str]) -> TurnFormat | None:
    """The TurnFormat of a template, read from what it renders of a probe conversation; None when the template
    does not wrap each message alike (then no Ollama TEMPLATE is written)."""
    try:
        full = render_messages(PROBE, False)
        asked = render_messages(PROBE[:2], True)
        bare = render_messages(PROBE[1:2], False)
    except Exception:  # a template that refuses a system message, or this order of roles
        return None
    if any(text.count(mark) != 1 for text in (full,) for mark in (_SYSTEM, _USER, _ASSISTANT)):
        return None
    before_system, rest = full.split(_SYSTEM)
    system_to_user, rest = rest.split(_USER)
    user_to_assistant, after = rest.split(_ASSISTANT)
    if not (system_to_user.startswith(after) and user_to_assistant.startswith(after) and after):
        return None
    before_user, before_assistant = system_to_user[len(after):], user_to_assistant[len(after):]
    before, found, after_role = before_user.partition("user")
    if not found or before_assistant != f"{before}assistant{after_role}" or asked != full[:full.index(_ASSISTANT)]:
        return None
    system_header = f"{before}system{after_role}"
    if not before_system.endswith(system_header) or "{{" in full:
        return None
    head = before_system[: -len(system_header)]
    lead = bare[: bare.index(_USER)] if _USER in bare else None
    if lead == head + before_user:
        default = None
    elif lead and lead.startswith(head + system_header) and lead.endswith(after + before_user):
        default = lead[len(head + system_header): -len(after + before_user)]
    else:
        return None
    return TurnFormat(head, before, after_role, after, default)
