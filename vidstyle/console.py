"""Logging and progress display. Everything goes to stderr so stdout stays clean for data."""

from __future__ import annotations

import logging
import os

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

stderr_console = Console(stderr=True)


def debug_enabled() -> bool:
    """`VIDSTYLE_DEBUG=1` shows tracebacks for user errors too."""
    return os.environ.get("VIDSTYLE_DEBUG", "") not in ("", "0")


def setup_logging(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings and errors only), 0 normal, 1 verbose (debug)."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = RichHandler(
        console=stderr_console,
        show_time=False,
        show_path=False,
        markup=False,
        rich_tracebacks=debug_enabled(),
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("vidstyle")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class FramesPerSecondColumn(ProgressColumn):
    """Frames/s from rich's own speed estimate (a moving window, so it follows slow-downs)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        text = f"{speed:.2f} frames/s" if speed else "-- frames/s"
        return Text(text, style="progress.data.speed")


class ProgressBar:
    """A progress bar per video (frames done/total, frames/s, ETA) on stderr."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None) -> None:
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            FramesPerSecondColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=stderr_console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, frames: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, frames)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None
