"""The one error type: a line that says what is wrong and what to do."""

import click

BAD_INPUT = 2


class ChatlikeError(click.ClickException):
    """A failure the user can fix; printed as one line, never a traceback."""

    exit_code = BAD_INPUT

    def __init__(self, message: str, exit_code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"chatlike-runner: {self.format_message()}", err=True, file=file)
