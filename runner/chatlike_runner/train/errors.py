"""The training entrypoint's one error type: one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import click

from ..core.errors import ChatlikeError


class TrainError(ChatlikeError):
    """A failure the user can fix, printed as `chatlike-train: ...`."""

    def show(self, file=None) -> None:
        click.echo(f"chatlike-train: {self.format_message()}", err=True, file=file)
