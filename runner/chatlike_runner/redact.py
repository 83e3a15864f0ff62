"""Secrets out of sight: the values of HF_TOKEN, WANDB_API_KEY and of passed variables whose names look secret are
replaced by *** in every log line shown or saved."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from .core import constants as c
from .core.trainlog import texts


class Redactor:
    """Replaces secret values wherever they show up in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def stream(self, chunks: Iterable[bytes]) -> Iterator[str]:
        """Redacted text of a byte stream, also where a secret is split between chunks: the
        last few characters wait for the next chunk, as they may begin a secret."""
        keep = max((len(s) for s in self.secrets), default=1) - 1
        pending = ""
        for text in texts(chunks):
            pending = self(pending + text)
            cut = max(len(pending) - keep, 0)
            if cut:
                yield pending[:cut]
                pending = pending[cut:]
        if pending:
            yield pending


def redactor(env_names: Iterable[str]) -> Redactor:
    """Hides the values of the secrets a run was given by name: the known ones, and passed variables
    whose names look secret."""
    names = set(c.SECRET_NAMES) | {name for name in env_names if c.SECRET_NAME.search(name)}
    return Redactor(os.environ[name] for name in names if os.environ.get(name))
