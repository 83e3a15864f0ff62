"""`chatlike-runner prepare`: parse the options, build the dataset, print the summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..core.errors import ChatlikeError
from .write import staged

if TYPE_CHECKING:
    from rich.table import Table

# The synthetic export made by examples/make_export.py, used when no EXPORT is given (in a checkout of the repo).
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "telegram" / "result.json"


def _summary(report: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    me = report["me"]
    table.add_row("me", f"{me['name'] or ''} ({me['id'] or 'by name'}, from {me['found_by']})")
    table.add_row("chats", f"{report['chats']['kept']} kept of {report['chats']['read']}")
    conversations = report["conversations"]
    table.add_row("conversations", f"{conversations['kept']} → {report['samples']['train']} train, "
                                   f"{report['samples']['heldout']} held-out samples")
    turns, characters = report["turns"], report["characters"]
    table.add_row("turns", f"{turns['total']}, {turns['my_share']:.0%} mine")
    table.add_row("characters", f"{characters['total']}, {characters['my_share']:.0%} mine")
    table.add_row("messages", f"{report['messages']['kept']} kept of {report['messages']['read']}")
    table.add_row("masked", ", ".join(f"{n} {kind}" for kind, n in report["masks"].items()))
    for label, key in (("dropped chats", "chats"), ("dropped messages", "messages"), ("dropped conversations", "conversations")):
        dropped = report[key]["dropped"]
        if dropped:
            table.add_row(label, ", ".join(f"{n} {reason}" for reason, n in dropped.items()))
    return table


@click.command()
@click.argument("export", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="Folder that receives train.jsonl, heldout.jsonl and report.json.")
@click.option("--me", metavar="ID", help='Your from_id (user123456789). Needed for a single-chat export; a full export says it.')
@click.option("--me-name", metavar="NAME", help="Fallback: find you by display name instead of id.")
@click.option("--groups", is_flag=True, help="Also learn from groups (personal chats only by default).")
@click.option("--stickers", is_flag=True, help="Keep stickers as their emoji.")
@click.option("--merge-minutes", type=click.FloatRange(min=0), default=5, show_default=True,
              help="One sender's messages this close together form one turn.")
@click.option("--gap-minutes", type=click.FloatRange(min=0), default=60, show_default=True,
              help="Silence that starts a new conversation.")
@click.option("--heldout-share", type=click.FloatRange(0, 100), default=10, show_default=True, metavar="PERCENT",
              help="Hold out the newest PERCENT of each chat's conversations.")
@click.option("--heldout-days", type=click.FloatRange(min=0), metavar="DAYS",
              help="Instead, hold out the conversations of the export's last DAYS days.")
@click.option("--no-mask", is_flag=True, help="Keep emails, phone numbers, bank cards and @mentions (masked by default).")
@click.option("--pseudonyms", is_flag=True, help="Replace your contacts' names with stable pseudonyms.")
@click.option("--system", metavar="TEMPLATE", help='System prompt, e.g. "You are {me}, chatting with {contact}."')
@click.option("--max-chars", type=click.IntRange(min=1), default=16_000, show_default=True,
              help="Cut conversations longer than this into several samples.")
@click.option("--force", is_flag=True, help="Replace a dataset already in OUT.")
def prepare(export: Path | None, out: Path, me: str | None, me_name: str | None, groups: bool, stickers: bool,
            merge_minutes: float, gap_minutes: float, heldout_share: float, heldout_days: float | None,
            no_mask: bool, pseudonyms: bool, system: str | None, max_chars: int, force: bool) -> None:
    """Turn a Telegram Desktop JSON export (result.json, or its folder) into a chat dataset in OUT.

    Without EXPORT, the bundled synthetic example is used.

    \b
    Examples:
      chatlike-runner prepare ~/Downloads/Telegram\\ Desktop/DataExport_2025-01-01 -o data/
      chatlike-runner prepare chat/result.json --me user123456789 --system "You are {me}, chatting with {contact}."
    """
    from rich.console import Console  # here: the other commands' start-up does not pay for it

    console = Console(highlight=False, soft_wrap=True)
    if export is None:
        if not EXAMPLE.is_file():
            raise ChatlikeError("no EXPORT given and the bundled example is not here; pass the path of result.json")
        export = EXAMPLE
        console.print(f"no EXPORT given: using the synthetic example {export}")
    from .dataset import Options, build  # here: every runner command loads this module, few of them prepare

    options = Options(me=me, me_name=me_name, groups=groups, stickers=stickers, merge_minutes=merge_minutes,
                      gap_minutes=gap_minutes, heldout_share=heldout_share, heldout_days=heldout_days,
                      mask=not no_mask, pseudonyms=pseudonyms, system=system, max_chars=max_chars)
    with staged(out, force) as workdir:
        report = build(export, options, workdir)
    console.print(_summary(report))
    console.print(f"wrote {out / 'train.jsonl'}, {out / 'heldout.jsonl'} and {out / 'report.json'}")
    console.print(f"next: `chatlike-runner start configs/llama-3.1-8b-qlora.yml --data {out / 'train.jsonl'} --gpus all`, "
                  f"or on the CPU first: `chatlike-runner start --smoke --data {out / 'train.jsonl'}`")
    for warning in report["warnings"]:
        click.echo(f"chatlike-runner: warning: {warning}", err=True)
