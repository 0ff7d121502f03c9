"""Running a planned batch: `run_batch` hands the jobs to render to an executor (this process,
worker processes, or Ray tasks) and keeps the summary; a failing input is recorded with its
reason and the batch goes on, a problem with the command itself stops it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from vidstyle.batch.jobs import (
    BatchRun,
    BatchSummary,
    Executor,
    Job,
    JobResult,
    Report,
    Watch,
    unwatched,
)
from vidstyle.batch.plan import BatchPlan
from vidstyle.errors import ConfigError
from vidstyle.render.threads import render_threads

log = logging.getLogger(__name__)


def parse_devices(device: str) -> list[str]:
    """`cuda:0,cuda:1` -> ['cuda:0', 'cuda:1']; each is checked before any work."""
    from vidstyle.device import resolve_device

    names = [name.strip() for name in device.split(",") if name.strip()]
    if not names:
        raise ConfigError("--device is empty; use auto, cpu, cuda or cuda:N (comma-separated)")
    for name in names:
        resolve_device(name)
    return names


def run_batch(
    plan: BatchPlan,
    *,
    jobs: int = 1,
    watch: Watch = unwatched,
    raise_errors: bool = False,
    cluster: str | None = None,
) -> BatchSummary:
    """Render the plan's jobs; failures are recorded and the batch goes on. Every render's
    events go to `watch` with their job, and so does the end of each job that is not rendered.

    `jobs` > 1 renders that many videos at once in worker processes (`vidstyle.batch.pool`),
    each on one of the devices of the plan's `settings.device` (a comma-separated list, taken
    in turn). `raise_errors` (one video, as `vidstyle clip.mp4 --style s.png`): errors
    propagate as they are. Ctrl-C stops every render cleanly (progress saved) and sets
    `interrupted`. `cluster`: every render is a task on the Ray cluster at that address
    (`vidstyle.batch.cluster`), asking for a GPU with a CUDA device, else for CPUs. With
    `settings.split`, each video's shots are jobs of their own (`vidstyle.batch.split`).
    """
    cluster_executor = None
    if cluster is not None:
        from vidstyle.batch.cluster import ClusterExecutor

        # Before any work: Ray missing, the cluster unreachable, a device Ray cannot give.
        cluster_executor = ClusterExecutor(cluster, plan.settings.device, plan.settings.threads)
        devices = [plan.settings.device]
    else:
        devices = parse_devices(plan.settings.device)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {jobs})")
    summary = BatchSummary()
    run = BatchRun(plan.jobs, summary, watch=watch, raise_errors=raise_errors)
    started = time.perf_counter()
    _record_unrendered(plan, run)
    render: list[Job] = plan.to_render
    report: Report = run
    try:
        if plan.settings.split != "none" and render:
            from vidstyle.batch.split import split_jobs

            parts = jobs if cluster_executor is None else cluster_executor.slots()
            render, report = split_jobs(render, run, parts=parts)
        workers = min(jobs, len(render))
        executor = cluster_executor or _local_executor(devices, workers, plan.settings.threads)
        executor.render(render, report)
        if run.stop_error is not None:
            raise run.stop_error
        # Jobs no render got to: the batch was stopped, or no worker process could start.
        for job in plan.to_render:
            if job.number not in run.done:
                run.record(_not_started(job, summary.interrupted))
    finally:
        summary.seconds = time.perf_counter() - started
    # Report in plan order, whatever order the renders finished in.
    summary.results.sort(key=lambda result: result.job.number)
    return summary


def _record_unrendered(plan: BatchPlan, run: BatchRun) -> None:
    """The jobs that end before any render: failed while planning, or skipped."""
    from vidstyle.render.pipeline import log_skip

    for job in plan.jobs:
        if job.plan is None:
            if run.raise_errors and job.error is not None:
                raise job.error
            log.error("%s", job.reason)
            run.record(JobResult.without_render(job, "failed", job.reason, exit_code=1))
        elif job.plan.skip:
            log_skip(job.plan)
            status = "stale" if job.stale else "skipped"
            run.record(JobResult.without_render(job, status, job.reason))


def _local_executor(devices: Sequence[str], workers: int, threads: int | None) -> Executor:
    """Renders on this machine: in this process, or in `workers` worker processes."""
    if workers <= 1:
        if len(devices) > 1:
            log.info("one render at a time: using %s (more devices need --jobs)", devices[0])
        return InProcess(devices[0], threads)
    from vidstyle.batch.pool import ProcessPool

    return ProcessPool(devices, workers, threads)


class InProcess:
    """The executor of one render at a time: in this process, one job after another, its
    events straight to the batch."""

    def __init__(self, device: str, threads: int | None = None) -> None:
        """`threads`: `--threads` (None: the machine's, as torch has them)."""
        self.device = device
        self.threads = render_threads(threads)

    def render(self, jobs: Sequence[Job], report: Report) -> None:
        from vidstyle.render.job import render_job

        for job in jobs:
            if report.stopping:
                return
            assert job.plan is not None
            render_job(job.plan, self.device, job=job.number, emit=report, threads=self.threads)


def _not_started(job: Job, interrupted: bool) -> JobResult:
    if interrupted:
        return JobResult.without_render(job, "interrupted", "not started", exit_code=1)
    text = f"{job.input}: not rendered (the worker processes stopped unexpectedly)"
    return JobResult.without_render(job, "failed", text, exit_code=1)
