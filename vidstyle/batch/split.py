"""A batch's videos rendered in parts (`--split shots`): each video's parts
(vidstyle.batch.shots) become jobs of their own, which any executor runs like whole videos;
`SplitRun` stands between the executor and the batch. It shows the parts' events as the events
of jobs of their own, and when the last part of a video is done it joins them and reports the
video's end, as a whole render would have.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from vidstyle.batch.jobs import BatchRun, Job
from vidstyle.batch.shots import Shot, find_shots, join_shots, load_shots, save_shots
from vidstyle.config import RenderSettings
from vidstyle.errors import VidstyleError
from vidstyle.fingerprint import size_and_time
from vidstyle.render.events import Event, Failed, Finished, RenderResult, ended
from vidstyle.render.workdir import WorkDir, work_dir_for

log = logging.getLogger(__name__)

# The settings that decide where a video is cut (`setting(..., shots=True)`): the shots found
# for a command are reused by its re-run only while these are the same.
SHOT_SETTINGS = tuple(
    field.name for field in dataclasses.fields(RenderSettings) if field.metadata["shots"]
)


@dataclass
class _Video:
    """A video being rendered in parts."""

    job: Job
    shots: list[Shot]
    done: dict[int, RenderResult] = field(default_factory=dict)  # shot number -> its result
    reported: bool = False  # its result has gone to the batch
    started: float = field(default_factory=time.perf_counter)


def split_jobs(render: Sequence[Job], run: BatchRun, *, parts: int) -> tuple[list[Job], SplitRun]:
    """The jobs to hand an executor for `render` when the settings split videos, and the run
    the executor reports to. A video with one part stays one job. `parts`: how many pieces a
    render with independent frames is cut into (the renders that run at once)."""
    jobs: list[Job] = []
    videos: dict[int, _Video] = {}
    number = max((job.number for job in run.jobs.values()), default=0)
    for job in render:
        shots = _shots_of(job, parts)
        if len(shots) <= 1:
            jobs.append(job)
            continue
        job = dataclasses.replace(job, parts=len(shots))
        run.jobs[job.number] = job  # the batch reports the video with its parts
        videos[job.number] = _Video(job, shots)
        for shot in shots:
            number += 1
            assert job.plan is not None
            jobs.append(
                dataclasses.replace(
                    job,
                    number=number,
                    plan=dataclasses.replace(job.plan, shot=shot),
                    resume_from=_saved(job, shot),
                    part_of=job.number,
                    parts=0,
                )
            )
    return jobs, SplitRun(run, videos, [job for job in jobs if job.part_of is not None])


def _shots_of(job: Job, parts: int) -> list[Shot]:
    """The parts of a planned video render (found once; kept for a re-run of the command)."""
    plan = job.plan
    if plan is None or plan.still or plan.info is None or plan.size is None:
        return []
    settings = plan.settings
    identity = {
        "input": f"{plan.input.name} {size_and_time(plan.input)}",
        "size": f"{plan.size[0]}x{plan.size[1]}",
        "parts": str(parts),
        **{name: repr(getattr(settings, name)) for name in SHOT_SETTINGS},
    }
    folder = work_dir_for(plan.output)
    shots = load_shots(folder, identity) if settings.resume else None
    if shots is None:
        log.info("%s: finding its shots (optical flow over every frame)", plan.input.name)
        shots = find_shots(plan.info, plan.size, settings, parts=parts)
        if len(shots) > 1:
            save_shots(folder, shots, identity)
    return shots


def _saved(job: Job, shot: Shot) -> int:
    """Frames of `shot` an earlier run has saved."""
    assert job.plan is not None
    work = WorkDir.saved(job.output, shot.folder(job.output), shot.first)
    return 0 if work is None else work.saved_frames


class SplitRun:
    """What an executor reports to (a `Report`) when some of its jobs are parts of videos: the
    parts' events are shown here, the rest go to the batch's `BatchRun`."""

    def __init__(self, run: BatchRun, videos: dict[int, _Video], parts: Sequence[Job]) -> None:
        self.run = run
        self.videos = videos
        self.parts = {job.number: job for job in parts}

    @property
    def stopping(self) -> bool:
        return self.run.stopping

    def interrupt(self) -> None:
        self.run.interrupt()

    def __call__(self, event: Event) -> None:
        part = self.parts.get(event.job)
        if part is None:
            self.run(event)
            return
        self.run.watch(event, part)  # the part's row
        if isinstance(event, Finished | Failed):
            self._part_ended(part, event.result)

    def _part_ended(self, part: Job, result: RenderResult) -> None:
        assert part.part_of is not None and part.plan is not None and part.plan.shot is not None
        video = self.videos[part.part_of]
        if video.reported:
            return
        if result.status != "rendered":
            # The first part that fails (or is interrupted) decides the video's result; its
            # other parts keep what they saved for the next run.
            video.reported = True
            self.run(ended(video.job.number, result))
            return
        video.done[part.plan.shot.number] = result
        if len(video.done) == len(video.shots):
            video.reported = True
            self.run(ended(video.job.number, self._join(video)))

    def _join(self, video: _Video) -> RenderResult:
        plan = video.job.plan
        assert plan is not None and plan.info is not None
        try:
            frames = join_shots(
                plan.output,
                video.shots,
                plan.info,
                audio=plan.settings.audio,
                max_frames=plan.settings.max_frames,
            )
        except VidstyleError as err:
            return RenderResult(
                plan.input, plan.output, "failed", message=str(err), exit_code=err.exit_code
            )
        seconds = time.perf_counter() - video.started
        log.info(
            "%s: %d frames in %d parts, joined; %.1f s",
            plan.output.name,
            frames,
            len(video.shots),
            seconds,
        )
        return RenderResult(
            plan.input,
            plan.output,
            "rendered",
            frames=frames,
            seconds=seconds,
            size=plan.size,
            resumed_from=sum(result.resumed_from for result in video.done.values()),
        )
