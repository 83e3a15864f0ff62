"""The README's CLI reference is the CLI's own --help: regenerate it with `python tests/test_readme.py`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from chatlike_runner.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def reference() -> str:
    runner = CliRunner()
    blocks = []
    for name in [None, *sorted(cli.commands)]:
        args = ["--help"] if name is None else [name, "--help"]
        text = runner.invoke(cli, args, prog_name="chatlike-runner", terminal_width=100).output
        title = "chatlike-runner" if name is None else f"chatlike-runner {name}"
        blocks.append(f"### `{title}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(blocks)


def current() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(START) + r"\n(.*)" + re.escape(END), text, re.DOTALL)
    assert match, f"README.md lacks the {START} … {END} block"
    return match.group(1)


def test_how_a_run_works_names_every_module_once():
    """The README's table of a run's steps names each module of the runner, and only those, once."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## How a run works"):text.index("**Ctrl-C** while following")]
    rows = [line.split("|")[2] for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    named = [name for row in rows for name in re.findall(r"`([a-z_]+(?:\.py|/))`", row)]
    package = README.parent / "runner" / "chatlike_runner"
    modules = {p.name for p in package.glob("*.py") if not p.name.startswith("__")}
    modules |= {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(named) == sorted(modules)


def test_readme_cli_reference_is_current():
    assert current() == reference() + "\n", "README CLI reference is stale: run `python tests/test_readme.py`"


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    head, _, rest = text.partition(START + "\n")
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{reference()}\n{END}{tail}", encoding="utf-8")
    sys.exit(0)
