"""The jobs of a batch and how they are run, whatever runs them: `render_job(job, device)`.

A `Job` is a numbered plan (`vidstyle.render.prepare.RenderPlan`); `render_job` renders it and
returns a `JobResult`, with every error classified here, once. The progress of a render goes out as
small event dataclasses through an `emit` callback. Jobs, events and results are picklable and
hold no open files or networks, so an executor may run `render_job` in this process, in a
worker process (`vidstyle.batch.pool`) or on another machine, and forward the events and the
result to a `BatchRun`, which keeps the summary and tells the batch's `BatchEvents`.
"""

from __future__ import annotations

import gc
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from vidstyle.errors import EXIT_USAGE, ConfigError, RenderInterrupted, VidstyleError

if TYPE_CHECKING:
    from vidstyle.render.prepare import RenderJob, RenderPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One input rendered in one style (or one blend of styles), as planned."""

    number: int  # 1-based, in plan order
    style_name: str
    request: RenderJob
    plan: RenderPlan | None = None  # None: planning failed (`error` says why)
    error: VidstyleError | None = None
    resume_from: int = 0  # frames saved by an earlier, interrupted run of this output
    # A part of a video rendered in parts (vidstyle.batch.split): the number of the video's job. Its
    # result is the batch's only through the video's, once every part is done and joined.
    part_of: int | None = None
    parts: int = 0  # a video rendered in parts: how many (its frames are counted in theirs)

    @property
    def input(self) -> Path:
        return self.request.input

    @property
    def styles(self) -> tuple[Path, ...]:
        return self.request.styles

    @property
    def output(self) -> Path:
        return self.request.output if self.plan is None else self.plan.output  # type: ignore[return-value]

    @property
    def action(self) -> str:
        """ "render" | "skip" | "fail"."""
        if self.plan is None:
            return "fail"
        return "skip" if self.plan.skip else "render"

    @property
    def reason(self) -> str:
        """Why the job is skipped or fails ("" if it renders)."""
        if self.plan is None:
            return str(self.error)
        return self.plan.skip_reason if self.plan.skip else ""

    @property
    def frames(self) -> int | None:
        """Frames the output will have (None: unknown)."""
        return None if self.plan is None else self.plan.frames

    @property
    def stale(self) -> tuple[str, ...]:
        """A skipped output made with other settings: what differs."""
        return () if self.plan is None else self.plan.stale


@dataclass(frozen=True)
class JobResult:
    job: Job
    status: str  # "rendered" | "skipped" | "stale" (skipped, other settings) | "failed" | ...
    frames: int = 0  # in the output
    seconds: float = 0.0
    resumed_from: int = 0
    message: str = ""
    exit_code: int = 0
    # The exception behind a "failed" or "interrupted", in the process that raised it (its type
    # and traceback for the caller of a single render); see `portable`.
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def rendered_frames(self) -> int:
        """Frames this run rendered (an earlier, interrupted run's not counted)."""
        return max(0, self.frames - self.resumed_from)

    @property
    def stops_batch(self) -> bool:
        """A usage error: about the command, not this input, so every other input would fail
        the same way."""
        return self.status == "failed" and self.exit_code == EXIT_USAGE

    def portable(self) -> JobResult:
        """This result as another process can take it: vidstyle's own errors travel (as their
        message), any other exception stays behind (its message is in `message`)."""
        return replace(self, error=self.error if isinstance(self.error, VidstyleError) else None)


# --------------------------------------------------------------------------------------------
# Events: what a render reports on the way, as messages an executor can forward


@dataclass(frozen=True)
class JobStarted:
    number: int
    description: str
    total: int | None  # frames to render, if known


@dataclass(frozen=True)
class JobAdvanced:
    number: int
    frames: int


@dataclass(frozen=True)
class JobPartial:
    number: int
    fraction: float  # share (0..1) of the frame in progress


Event = JobStarted | JobAdvanced | JobPartial


class _EventProgress:
    """The pipeline's `Progress` as events."""

    def __init__(self, number: int, emit: Callable[[Event], None]) -> None:
        self.number, self.emit = number, emit

    def start(self, description: str, total: int | None) -> None:
        self.emit(JobStarted(self.number, description, total))

    def advance(self, frames: int = 1) -> None:
        self.emit(JobAdvanced(self.number, frames))

    def partial(self, fraction: float) -> None:
        self.emit(JobPartial(self.number, fraction))

    def finish(self) -> None:
        pass


def _ignore(event: Event) -> None:
    pass


def render_job(
    job: Job, device: str, *, sharing: int = 1, emit: Callable[[Event], None] = _ignore
) -> JobResult:
    """Render a job that `prepare` planned to render, on `device` (a `--device` name), which
    `sharing` renders use side by side; its progress goes to `emit`. Never raises for a failed
    render: the result says how it ended (KeyboardInterrupt: "interrupted", progress saved)."""
    # Imported here: the batch's planning and its executors do not need torch themselves.
    from vidstyle.device import resolve_device
    from vidstyle.render.pipeline import render

    assert job.plan is not None and not job.plan.skip, "only a planned render is rendered"
    try:
        try:
            done = render(
                job.plan,
                resolve_device(device),
                sharing=sharing,
                progress=_EventProgress(job.number, emit),
            )
        except KeyboardInterrupt:
            # Before the first frame (building the networks): the render saved nothing.
            raise RenderInterrupted(
                "interrupted; nothing was written under the final name", job.output
            ) from None
    except RenderInterrupted as err:
        _release(err)
        return JobResult(job, "interrupted", message=str(err), exit_code=err.exit_code, error=err)
    except VidstyleError as err:
        _release(err)
        return JobResult(job, "failed", message=str(err), exit_code=err.exit_code, error=err)
    except Exception as err:
        _release(err)
        return JobResult(job, "failed", message=_unexpected(job, err), exit_code=1, error=err)
    return JobResult(
        job,
        done.status,
        frames=done.frames,
        seconds=done.seconds,
        resumed_from=done.resumed_from,
    )


def _release(err: BaseException) -> None:
    """Free what a failed render held while the result keeps its exception.

    A traceback keeps every frame it passes through alive, with their locals: the frames,
    activations and optimiser history of the render. Kept in the result (and, in a worker
    process, until its next job ends), they would make every later job in the process run
    out of memory after one did. The frames' locals are dropped; file and line stay for a
    traceback shown later. Then the memory goes back: cycles first, then CUDA's cache."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)  # skips the frames still running
        pending += [current.__cause__, current.__context__]
    gc.collect()
    if "torch" in sys.modules:  # only a render that imported torch can hold its memory
        import torch

        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _unexpected(job: Job, err: BaseException) -> str:
    """One line for an error vidstyle did not foresee (the batch goes on without it)."""
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return f"{job.input}: ran out of memory; render smaller with --size, or fewer --jobs"
    return f"{job.input}: failed ({type(err).__name__}: {err}); VIDSTYLE_DEBUG=1 shows details"


# --------------------------------------------------------------------------------------------
# The batch's side: events shown, results collected


class BatchEvents(Protocol):
    """What `run_batch` reports (the CLI's progress display; tests may record it)."""

    def job_started(self, job: Job, description: str, total: int | None) -> None: ...

    def job_advanced(self, job: Job, frames: int) -> None: ...

    def job_partial(self, job: Job, fraction: float) -> None:
        """Share (0..1) of the job's current frame done (quality mode, during a frame)."""

    def job_finished(self, result: JobResult) -> None: ...


class NullEvents:
    def job_started(self, job: Job, description: str, total: int | None) -> None:
        pass

    def job_advanced(self, job: Job, frames: int) -> None:
        pass

    def job_partial(self, job: Job, fraction: float) -> None:
        pass

    def job_finished(self, result: JobResult) -> None:
        pass


@dataclass
class BatchSummary:
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def frames(self) -> int:
        return sum(result.rendered_frames for result in self.results)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class RunReport(Protocol):
    """What an executor reports to: the `BatchRun`, or a `vidstyle.batch.split.SplitRun` in front of
    it when some jobs are parts of videos."""

    @property
    def stopping(self) -> bool: ...

    def interrupt(self) -> None: ...

    def deliver(self, event: Event) -> None: ...

    def finished(self, result: JobResult) -> None: ...


class Executor(Protocol):
    """Runs `render_job` for each of a batch's jobs to render, somewhere, and reports each
    job's events and result to `run` as they come; starts no job once `run.stopping`. Jobs it
    did not get to are the caller's to account for."""

    def render(self, jobs: Sequence[Job], run: RunReport) -> None: ...


class BatchRun:
    """A batch being rendered, as its executor reports it: events from the renders (`deliver`)
    and their results (`finished`), in whatever order and from whatever process they come.

    An executor starts no new render once `stopping` is true: Ctrl-C (`interrupt`), or a result
    whose error is to be raised (`stop_error`): a usage error, or any error of a single render
    (`raise_errors`: `vidstyle clip.mp4 --style s.png` reports errors as they are).
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        events: BatchEvents,
        summary: BatchSummary,
        *,
        raise_errors: bool = False,
    ) -> None:
        self.jobs = {job.number: job for job in jobs}
        self.events, self.summary, self.raise_errors = events, summary, raise_errors
        self.stop_error: BaseException | None = None
        self.done: set[int] = set()

    @property
    def stopping(self) -> bool:
        return self.summary.interrupted or self.stop_error is not None

    def interrupt(self) -> None:
        self.summary.interrupted = True

    def deliver(self, event: Event) -> None:
        job = self.jobs[event.number]
        if isinstance(event, JobStarted):
            self.events.job_started(job, event.description, event.total)
        elif isinstance(event, JobAdvanced):
            self.events.job_advanced(job, event.frames)
        else:
            self.events.job_partial(job, event.fraction)

    def finished(self, result: JobResult) -> None:
        # The batch's own Job, whichever process the result comes from.
        result = replace(result, job=self.jobs[result.job.number])
        if result.status == "interrupted":
            self.interrupt()
        ended_badly = result.status in ("failed", "interrupted")
        if result.stops_batch or (self.raise_errors and ended_badly):
            # Not counted: the caller gets the error itself (or, where the exception stayed
            # in the worker process that raised it, its message).
            if self.stop_error is None:
                self.stop_error = result.error or ConfigError(result.message)
            self.done.add(result.job.number)
            return
        if result.status == "failed":
            log.error("%s", result.message)
        self.record(result)

    def record(self, result: JobResult) -> None:
        """Count a result that needs no rendering (a skip, a failure found while planning, a
        job the batch stopped before), or one a render ended with."""
        self.done.add(result.job.number)
        self.summary.results.append(result)
        self.events.job_finished(result)
