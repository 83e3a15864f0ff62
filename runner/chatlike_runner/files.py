"""Files: the hidden folder that outputs are written into before one rename publishes them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .core.errors import ChatlikeError


def hidden_folder(parent: Path, name: str, suffix: str, option: str) -> Path:
    """A new folder `.NAME.<random>SUFFIX` in `parent` (made if missing); `option` names the flag
    that picks another place when `parent` is not writable."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=suffix, dir=parent))
    except OSError as exc:
        raise ChatlikeError(f"cannot write to {parent} ({exc.strerror}); pass {option} with a writable folder") from None
