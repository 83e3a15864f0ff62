"""Progress: show a run's log with a live bar of its step, loss, learning rate and ETA."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core.trainlog import TrainingState


if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class Display:
    """Prints log lines; on a terminal, keeps a live bar with step, loss, lr and ETA below them."""

    def __init__(self, console: Console, run_id: str) -> None:
        self.console = console
        self.state = TrainingState()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn(f"[bold]{run_id}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[summary]}"),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task("train", total=None, summary="starting")

    def __enter__(self) -> Display:
        if self._bar:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.stop()

    def show(self, line: str) -> None:
        before, step_before = dict(self.state.metrics), self.state.step
        is_bar = self.state.update(line)
        if self._bar is not None and self._task is not None:
            if not is_bar:
                self._bar.console.print(line, markup=False, highlight=False, style="dim")
            self._bar.update(
                self._task, completed=self.state.step or 0, total=self.state.total, summary=self.state.summary(step=False)
            )
            return
        if not is_bar:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        # The Trainer logs a step's loss before its bar moves on: the last step shows when the bar reaches it.
        finished = is_bar and self.state.step == self.state.total and step_before != self.state.step
        if self.state.metrics != before or finished:
            self.console.print(f"[progress] {self.state.summary()}", markup=False, highlight=False)
