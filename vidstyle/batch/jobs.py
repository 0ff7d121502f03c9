"""The jobs of a batch, their results, and the `BatchRun` every executor reports to.

A `Job` is a numbered render of the batch: what was asked (a `RenderJob`: input, styles,
output) with its plan (`vidstyle.render.prepare.RenderPlan`) or the reason planning failed.
Jobs are picklable and hold no open files or networks, so an executor may render a job's plan
in this process, in a worker process (`vidstyle.batch.pool`) or on another machine
(`vidstyle.batch.cluster`), with `vidstyle.render.pipeline.render_job`, and forward the render's
events (`vidstyle.render.events`) as they are to the batch's `BatchRun`, which keeps the summary
and shows each event, with its job, on the batch's display.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

from vidstyle.errors import ConfigError, VidstyleError
from vidstyle.render.events import Event, Failed, Finished, RenderResult, ended
from vidstyle.render.prepare import RenderJob, RenderPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Job(RenderJob):
    """One input rendered in one style (or one blend of styles), as planned."""

    number: int  # 1-based, in plan order
    style_name: str = ""  # "" for a path that yielded no input
    plan: RenderPlan | None = None  # None: planning failed (`error` says why)
    error: VidstyleError | None = None
    resume_from: int = 0  # frames saved by an earlier, interrupted run of this output
    # A part of a video rendered in parts (vidstyle.batch.split): the number of the video's
    # job. Its result is the batch's only through the video's, once every part is done.
    part_of: int | None = None
    parts: int = 0  # a video rendered in parts: how many (its frames are counted in theirs)

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


@dataclass(frozen=True, kw_only=True)
class JobResult(RenderResult):
    """A render's result as the batch's summary keeps it: with its job."""

    job: Job

    @classmethod
    def of(cls, job: Job, result: RenderResult) -> JobResult:
        return cls(job=job, **{item.name: getattr(result, item.name) for item in fields(result)})

    @classmethod
    def without_render(
        cls, job: Job, status: str, message: str = "", exit_code: int = 0
    ) -> JobResult:
        """A job the batch ends without rendering it: skipped, failed while planning, or not
        started."""
        assert job.output is not None
        return cls(job.input, job.output, status, message=message, exit_code=exit_code, job=job)


#: The batch's display: each event of a render with the job it is about.
Watch = Callable[[Event, Job], None]


def unwatched(event: Event, job: Job) -> None:
    """A `Watch` for a batch nobody watches."""


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


class Report(Protocol):
    """What an executor reports the renders' events to, as they come: the `BatchRun`, or a
    `vidstyle.batch.split.SplitRun` in front of it when some jobs are parts of videos."""

    @property
    def stopping(self) -> bool: ...

    def interrupt(self) -> None: ...

    def __call__(self, event: Event) -> None: ...


class Executor(Protocol):
    """Renders each of a batch's jobs somewhere (`vidstyle.render.pipeline.render_job`) and
    reports every event of each render, its `Finished` or `Failed` included, to `report`; starts
    no job once `report.stopping`. Jobs it did not get to are the caller's to account for."""

    def render(self, jobs: Sequence[Job], report: Report) -> None: ...


class BatchRun:
    """A batch being rendered, as its executor reports it: the renders' events, in whatever
    order and from whatever process they come. Each goes to `watch` with its job; a render's
    end is also counted in the summary.

    An executor starts no new render once `stopping` is true: Ctrl-C (`interrupt`), or a result
    whose error is to be raised (`stop_error`): a usage error, or any error of a single render
    (`raise_errors`: `vidstyle clip.mp4 --style s.png` reports errors as they are).
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        summary: BatchSummary,
        *,
        watch: Watch = unwatched,
        raise_errors: bool = False,
    ) -> None:
        self.jobs = {job.number: job for job in jobs}
        self.summary, self.watch, self.raise_errors = summary, watch, raise_errors
        self.stop_error: BaseException | None = None
        self.done: set[int] = set()

    @property
    def stopping(self) -> bool:
        return self.summary.interrupted or self.stop_error is not None

    def interrupt(self) -> None:
        self.summary.interrupted = True

    def __call__(self, event: Event) -> None:
        job = self.jobs[event.job]
        if isinstance(event, Finished | Failed):
            self._ended(job, event.result)
        else:
            self.watch(event, job)

    def _ended(self, job: Job, result: RenderResult) -> None:
        if result.status == "interrupted":
            self.interrupt()
        if result.usage_error or (self.raise_errors and result.ended_badly):
            # Not counted: the caller gets the error itself (or, where the exception stayed
            # in the worker process that raised it, its message).
            if self.stop_error is None:
                self.stop_error = result.error or ConfigError(result.message)
            self.done.add(job.number)
            return
        if result.status == "failed":
            log.error("%s", result.message)
        self.record(JobResult.of(job, result))

    def record(self, result: JobResult) -> None:
        """Count a result that needs no rendering (a skip, a failure found while planning, a
        job the batch stopped before), or one a render ended with, and show it."""
        self.done.add(result.job.number)
        self.summary.results.append(result)
        self.watch(ended(result.job.number, result), result.job)
