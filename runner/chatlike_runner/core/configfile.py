"""An Axolotl config file read as a YAML mapping: one loader for the runner (host) and chatlike-train (image)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import ChatlikeError


def load_config(path: Path, error: type[ChatlikeError] = ChatlikeError) -> dict:
    """The Axolotl config as a mapping, or one clear `error`."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"config {path} does not exist; pass the path of an Axolotl YAML file") from None
    except IsADirectoryError:
        raise error(f"config {path} is a folder; pass the path of an Axolotl YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"config {path} cannot be read ({exc}); check its permissions and encoding") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise error(f"config {path} is not valid YAML{line}; fix it and try again") from None
    if not isinstance(raw, dict):
        raise error(f"config {path} is not a YAML mapping of Axolotl options")
    return raw
