"""The README and docs/: the CLI reference is the CLI's own --help (regenerate it with `python tests/test_readme.py`),
the table of a run's steps names every module, every relative link lands, and the README stays short."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

from chatlike_runner.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README, DOCS = ROOT / "README.md", ROOT / "docs"
CLI_PAGE = DOCS / "cli.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def reference() -> str:
    runner = CliRunner()
    blocks = []
    for name in [None, *sorted(cli.commands)]:
        args = ["--help"] if name is None else [name, "--help"]
        text = runner.invoke(cli, args, prog_name="chatlike-runner", terminal_width=100).output
        title = "chatlike-runner" if name is None else f"chatlike-runner {name}"
        blocks.append(f"## `{title}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(blocks)


def current() -> str:
    text = CLI_PAGE.read_text(encoding="utf-8")
    match = re.search(re.escape(START) + r"\n(.*)" + re.escape(END), text, re.DOTALL)
    assert match, f"{CLI_PAGE} lacks the {START} … {END} block"
    return match.group(1)


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_how_a_run_works_names_every_module_once():
    """docs/architecture.md's table of a run's steps names each module of the runner, and only those, once."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index("# How a run works"):text.index("**Ctrl-C** while following")]
    rows = [line.split("|")[2] for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    named = [name for row in rows for name in re.findall(r"`([a-z_]+(?:\.py|/))`", row)]
    package = ROOT / "runner" / "chatlike_runner"
    modules = {p.name for p in package.glob("*.py") if not p.name.startswith("__")}
    modules |= {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(named) == sorted(modules)


def test_cli_reference_is_current():
    assert current() == reference() + "\n", "docs/cli.md is stale: run `python tests/test_readme.py`"


def test_every_relative_link_lands_on_a_file_and_heading_that_exist():
    anchors = {page: {anchor(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines()
                      if re.match(r"#{1,6} ", line)} for page in pages()}
    broken = []
    for page in pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            landed = (page.parent / path).resolve() if path else page
            if not landed.exists() or (fragment and anchors.get(landed, set()).isdisjoint({fragment})):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_readme_is_short_and_lists_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 15_000, f"README.md is {len(text.encode())} bytes: move detail to docs/"
    assert sorted(re.findall(r"\]\((docs/[a-z]+\.md)\)", text.split("## Documentation")[1].split("\n## ")[0])) == \
        sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))


if __name__ == "__main__":
    text = CLI_PAGE.read_text(encoding="utf-8")
    head, _, rest = text.partition(START + "\n")
    _, _, tail = rest.partition(END)
    CLI_PAGE.write_text(f"{head}{START}\n{reference()}\n{END}{tail}", encoding="utf-8")
    sys.exit(0)
