"""Progress of an offline job on the terminal: a bar with rows, rows/s and ETA on a terminal, one
line per finished part otherwise (logs of a scheduled job stay readable)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from modelyard.jobs.batch_io import Part


class _RowsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{int(task.total):,}"
        return Text(f"{int(task.completed):,}/{total} rows")


class _SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("- rows/s" if speed is None else f"{speed:,.0f} rows/s")


class RichProgress:
    """Implements :class:`modelyard.jobs.batch.Progress` with rich."""

    def __init__(self, console: Console | None = None, *, bar: bool | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self._bar = self.console.is_terminal if bar is None else bar
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._parts = 0
        self._parts_done = 0

    def start(self, total_rows: int | None, done_rows: int, parts: int, parts_done: int) -> None:
        self._parts, self._parts_done = parts, parts_done
        if parts_done:
            self.console.print(f"resuming: {parts_done} of {parts} parts already done")
        if not self._bar:
            return
        self._progress = Progress(
            TextColumn("[bold]scoring"),
            BarColumn(),
            _RowsColumn(),
            _SpeedColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        # Rows done by an earlier run count toward the bar but not toward rows/s.
        self._task = self._progress.add_task("batch", total=total_rows, completed=done_rows)

    def advance(self, rows: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, rows)

    def part_done(self, part: Part, rows: int) -> None:
        self._parts_done += 1
        if not self._bar:
            self.console.print(
                f"part {self._parts_done}/{self._parts} done: {part.name} "
                f"({rows:,} rows from {part.describe()})"
            )

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
