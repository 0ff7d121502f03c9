"""Logging and progress display. Everything goes to stderr so stdout stays clean for data."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

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
# For progress rows printed as lines where stderr is not a terminal (rich assumes 80 columns).
_unbounded_console = Console(stderr=True, width=10_000, color_system=None, highlight=False)


def debug_enabled() -> bool:
    """`VIDSTYLE_DEBUG=1` shows tracebacks for user errors too."""
    return os.environ.get("VIDSTYLE_DEBUG", "") not in ("", "0")


def setup_logging(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings and errors only), 0 normal, 1 verbose (debug)."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler: logging.Handler
    if stderr_console.is_terminal:
        handler = RichHandler(
            console=stderr_console,
            show_time=False,
            show_path=False,
            markup=False,
            rich_tracebacks=debug_enabled(),
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        # A log file or CI: one line per message, timestamped, never wrapped at 80 columns.
        handler = logging.StreamHandler(stderr_console.file)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger("vidstyle")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class FramesPerSecondColumn(ProgressColumn):
    """Frames/s over the whole render so far (frames done / time since it started), so the
    figure a finished row shows is the one the summary gives; a row may set the exact final
    figure as its `frames_per_second` field. (The ETA column keeps rich's moving window, which
    follows slow-downs.)"""

    def render(self, task: Task) -> Text:
        speed = task.fields.get("frames_per_second")
        if speed is None and task.elapsed and task.completed:
            speed = task.completed / task.elapsed
        text = f"{speed:.2f} frames/s" if speed else "-- frames/s"
        return Text(text, style="progress.data.speed")


# Where stderr is not a terminal (a log file, CI, `2> log`) a bar cannot be redrawn in place;
# the progress display is printed as new lines this often instead, so a log shows headway.
PLAIN_PROGRESS_INTERVAL_S = 15.0
# How often the training bar shows new loss values.
_LOSSES_EVERY_S = 0.5


class _PlainProgress(Progress):
    """A rich Progress for a non-terminal stderr: prints its rows every
    `PLAIN_PROGRESS_INTERVAL_S` seconds as it advances, and once more when it stops (rich
    alone prints only the final state, cut to the 80 columns it assumes for a file)."""

    def __init__(self, *columns: str | ProgressColumn, **kwargs: Any) -> None:
        # transient: rich's own final print is replaced by `_print_rows`.
        super().__init__(*columns, **{**kwargs, "transient": True})
        self._last_print = time.monotonic()

    def _print_rows(self) -> None:
        """Each row as one plain line, timestamped like the log lines around it: its columns'
        text without the bar (glyphs a log file shows as mojibake or noise), never cut to a
        width (a log file has none to fit; a row cut short loses its ETA and losses)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for task in self.tasks:
            if not task.visible:
                continue
            cells = [_plain(column, task) for column in self.columns if not _is_bar(column)]
            line = " ".join(cell for cell in cells if cell)
            _unbounded_console.print(
                f"{stamp} {'INFO':<7} {line}", markup=False, highlight=False, soft_wrap=True
            )

    def _print_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_print >= PLAIN_PROGRESS_INTERVAL_S:
            self._last_print = now
            self._print_rows()

    def stop(self) -> None:
        # Not Progress.stop(): for a file it adds an empty line, which ended up above errors.
        started = self.live.is_started
        self.live.stop()
        if started:
            self._print_rows()

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._print_if_due()

    def update(self, task_id: TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._print_if_due()


def _is_bar(column: str | ProgressColumn) -> bool:
    return isinstance(column, BarColumn)


def _plain(column: str | ProgressColumn, task: Task) -> str:
    """A progress column's text for one task, without styles."""
    if isinstance(column, str):
        return Text.from_markup(column.format(task=task)).plain.strip()
    rendered = column(task)
    if isinstance(rendered, Text):
        return rendered.plain.strip()
    return str(rendered).strip()


def _stdout_shares_the_display() -> bool:
    """Whether stdout is the very terminal the progress display is drawn on (`vidstyle ...`
    typed at a prompt, nothing redirected)."""
    if not stderr_console.is_terminal:
        return False
    try:
        return sys.stdout.isatty() and os.ttyname(sys.stdout.fileno()) == os.ttyname(
            stderr_console.file.fileno()
        )
    except (AttributeError, OSError, ValueError):
        return False


def _progress(*columns: str | ProgressColumn) -> Progress:
    """A progress display on stderr: redrawn in place on a terminal, printed periodically else."""
    if not stderr_console.is_terminal:
        return _PlainProgress(*columns, console=stderr_console, transient=False)
    # On the display's own terminal, what is printed to sys.stdout meanwhile is put above the
    # display instead of being glued to its line; stdout going elsewhere (a pipe, a file) is
    # left alone, so what is printed there stays on stdout.
    return Progress(
        *columns,
        console=stderr_console,
        transient=False,
        redirect_stdout=_stdout_shares_the_display(),
    )


class _SingleTaskDisplay:
    """A progress display with one row, started lazily; `finish()` ends it (idempotent)."""

    _progress: Progress | None = None
    _task: TaskID | None = None

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None


class TrainingProgressBar(_SingleTaskDisplay):
    """`vidstyle train`'s bar: steps done/total, steps/s, ETA and the latest losses, on stderr.

    Takes `vidstyle.stylize.train.StepReport`s (duck-typed: step, steps, losses) so this module
    stays free of torch imports.
    """

    def __init__(self, enabled: bool = True, description: str = "training") -> None:
        self.enabled = enabled
        self.description = description
        self._losses_shown = -_LOSSES_EVERY_S

    def __call__(self, report: object) -> None:
        if not self.enabled:
            return
        step: int = report.step  # type: ignore[attr-defined]
        steps: int = report.steps  # type: ignore[attr-defined]
        if self._progress is None:
            self._progress = _progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
            )
            self._progress.start()
            # Start where a resumed run starts, so the rate and ETA count only this run's steps.
            self._task = self._progress.add_task(
                self.description, total=steps, completed=step - 1, losses=""
            )
        assert self._task is not None
        now = time.monotonic()
        if now - self._losses_shown >= _LOSSES_EVERY_S or step >= steps:
            # Reading the losses waits for the device to finish the step: a few times a
            # second is as often as anyone can read them.
            self._losses_shown = now
            losses: dict[str, float] = report.losses  # type: ignore[attr-defined]
            text = " ".join(f"{name} {value:.3g}" for name, value in losses.items())
            self._progress.update(self._task, losses=text)
        self._progress.update(self._task, completed=step)
        if step >= steps:
            # Done: the bar's last state goes out now, before the log says the model is written.
            self.finish()


class BatchProgress:
    """The display of a batch's renders (`vidstyle.batch.run.run_batch`'s `watch`): it takes
    each event of a render (`vidstyle.render.events`) with the job it is about. On stderr, an
    overall row (files finished of all, frames, frames/s, ETA) above a row per video being
    rendered; a single video has its row only, which stays when it finishes, at N/N with the
    render's frames/s. On stdout, the path of each finished output.

    Takes events and `vidstyle.batch.Job`s duck-typed (number, frames, resume_from, action,
    parts, part_of, output), so this module stays free of the pipeline's imports.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        files: int = 1,
        frames: int | None = None,
        overall: bool | None = None,
    ) -> None:
        """`enabled`: show the progress (the outputs' paths are printed either way);
        `overall`: show the overall row (default: with more than one file)."""
        self.enabled = enabled
        self.files = files
        self._done = 0
        self._progress: Progress | None = None
        self._overall: TaskID | None = None
        self._rows: dict[int, TaskID] = {}
        self._expected: dict[int, int] = {}  # job number -> frames its row expects
        self._advanced: dict[int, int] = {}
        self._partial: dict[int, float] = {}  # job number -> share of its current frame done
        self._total = frames or None  # the overall row's total, kept here as rows come and go
        self._completed = 0
        if enabled and (files > 1 if overall is None else overall):
            self._overall = self._display().add_task(self._overall_text(), total=self._total)

    def __call__(self, event: object, job: object) -> None:
        kind = type(event).__name__
        if kind == "Started":
            self.started(event, job)
        elif kind == "FrameDone":
            self.frame_done(event, job)
        elif kind == "Iteration":
            self.iteration(event, job)
        else:  # Finished or Failed
            self.ended(event, job)

    def _display(self) -> Progress:
        """The display, started when it first has a row: one that never had any (a command
        refused before its render began) would leave an empty line above the error."""
        if self._progress is None:
            self._progress = _progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                FramesPerSecondColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._progress.start()
        return self._progress

    def _overall_text(self) -> str:
        return f"all: {self._done}/{self.files} files"

    @staticmethod
    def _planned(job: object) -> int:
        """Frames the plan counted for `job` in the overall total (a video rendered in parts:
        none; its parts count them)."""
        if getattr(job, "action", "") != "render" or getattr(job, "parts", 0):
            return 0
        return max(0, (getattr(job, "frames", None) or 0) - getattr(job, "resume_from", 0))

    def started(self, event: Any, job: Any) -> None:
        if not self.enabled:
            return
        progress = self._display()
        number: int = job.number
        planned = self._planned(job)
        expected = planned if event.total is None else event.total
        self._expected[number] = expected
        self._advanced[number] = 0
        if self._overall is not None and self._total is not None and expected != planned:
            self._total += expected - planned
            progress.update(self._overall, total=self._total)
        self._rows[number] = progress.add_task(event.description, total=event.total)

    def frame_done(self, event: Any, job: Any) -> None:
        number: int = job.number
        self._advanced[number] = self._advanced.get(number, 0) + event.frames
        self._completed += event.frames
        self._partial.pop(number, None)
        self._show(number)

    def iteration(self, event: Any, job: Any) -> None:
        """Progress within the frame being rendered (quality mode: its iterations), so the
        bar moves and the ETA shows during a frame that takes minutes."""
        number: int = job.number
        self._partial[number] = min(max(event.fraction, 0.0), 1.0)
        self._show(number)

    def _show(self, number: int) -> None:
        # Absolute values, whole frames plus the current share: a sum of fractions would drift
        # off the whole frame count.
        if self._progress is None:
            return
        if number in self._rows:
            done = self._advanced.get(number, 0) + self._partial.get(number, 0.0)
            self._progress.update(self._rows[number], completed=done)
        if self._overall is not None:
            done = self._completed + sum(self._partial.values())
            self._progress.update(self._overall, completed=done)

    def ended(self, event: Any, job: Any) -> None:
        result = event.result
        self._count_ended(result, job)
        if result.status == "rendered" and job.part_of is None:
            if self.files == 1:
                self.finish()  # its last state stays on screen, the path below it
            # print, not click.echo: while the display runs on this terminal sys.stdout is
            # rich's proxy, which puts the line above the display.
            print(job.output, flush=True)

    def _count_ended(self, result: Any, job: Any) -> None:
        number: int = job.number
        if job.part_of is None:  # a part is not a file of its own
            self._done += 1
        self._partial.pop(number, None)
        if self._progress is None:
            return
        row = self._rows.pop(number, None)
        if row is not None and self._overall is None:
            self._finish_row(row, number, result)
        elif row is not None:
            self._progress.remove_task(row)
        if self._overall is not None:
            # Frames that will not come (a failure, a shorter video than the container said)
            # leave the total, so the ETA does not wait for them.
            expected = self._expected.pop(number, self._planned(job))
            missing = max(0, expected - self._advanced.pop(number, 0))
            if self._total is not None:
                self._total = max(self._completed, self._total - missing)
            self._progress.update(
                self._overall,
                total=self._total,
                completed=self._completed,
                description=self._overall_text(),
            )

    def _finish_row(self, row: TaskID, number: int, result: Any) -> None:
        """A single video's row stays: a finished render at N/N (a container may promise more
        frames than it holds) with the frames/s the summary gives, a failed one where it
        stopped."""
        assert self._progress is not None
        if result.status != "rendered":
            self._progress.stop_task(row)
            return
        done = self._advanced.get(number, 0)
        seconds: float = result.seconds
        rendered: int = result.rendered_frames
        self._progress.update(
            row,
            total=done,
            completed=done,
            frames_per_second=rendered / seconds if seconds > 0 else None,
        )
        self._progress.stop_task(row)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
