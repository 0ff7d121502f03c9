"""Renders of a batch as Ray tasks on a cluster (`--cluster`; optional extra `vidstyle[ray]`).

Ray schedules, places and retries; vidstyle only describes each render as a task:

- resources: one GPU with `--device cuda` (Ray gives the task its own GPU, seen as `cuda`)
  and `--threads` CPUs (default: the CPUs per GPU of the leanest GPU node, for decoding, flow
  and encoding), else `--threads` CPUs (default 1), which is also the render's torch thread
  count; `--device auto` is cuda when the cluster has a GPU;
- files: inputs, style images, models and outputs are read and written by the workers under
  the same paths as on this machine, so they must be on a file system every node mounts there;
  a worker that cannot read an input or write beside the output fails that job in one line;
- a worker that dies (killed, out of memory, node lost) has its task retried up to
  `TASK_RETRIES` times, and the retry resumes from the segments the work folder holds;
- progress, log lines and results come back through one small actor (`_Relay`) that the
  driver polls, into the same display and summary as a local batch;
- Ctrl-C cancels every unfinished task; a cancelled render saves its segments (Ray raises
  KeyboardInterrupt in it) and the next run of the same command resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidstyle.batch.jobs import Job, Report
from vidstyle.errors import ConfigError, InputError, OutputError, VidstyleError
from vidstyle.render.events import (
    Event,
    Failed,
    Finished,
    Iteration,
    RenderResult,
    Started,
    ended,
    portable,
)
from vidstyle.render.threads import render_threads

log = logging.getLogger(__name__)

# Retries of a task whose worker process died (Ray's own count; a render error is not retried:
# it would fail the same way again).
TASK_RETRIES = 3
# After Ctrl-C, how long the cancelled renders get to save their last segment.
_CANCEL_GRACE_S = 30.0
_POLL_S = 0.2
# Quality mode reports progress within a frame every iteration; a few updates a second are
# enough for the display and keep the relay's traffic small.
_PARTIAL_EVERY_S = 0.5

INSTALL_HINT = "--cluster needs Ray on this machine and every node: pip install 'vidstyle[ray]'"


def import_ray() -> Any:
    """The `ray` module, or a one-line ConfigError saying what to install."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(INSTALL_HINT) from err
    return ray


def connect(address: str) -> Any:
    """Connect this process to the cluster at `address` (`auto`, `host:port`, `ray://...`)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    _use_auth_token_if_any()
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            log_to_driver=False,  # workers' log lines come through the relay, formatted as ours
            include_dashboard=False,
        )
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r} ({first}); start one with `ray start "
            "--head` or pass its address (host:6379, ray://host:10001, auto); a cluster with "
            "token authentication needs RAY_AUTH_MODE=token here"
        ) from err
    _cluster_messages_to_log()
    return ray


def _cluster_messages_to_log() -> None:
    """Ray prints the cluster's notices (a worker died, a task will be retried) on the
    driver's stdout, which holds only output paths here; they go to the debug log instead,
    and the driver says in its own words what happened to a render."""
    with contextlib.suppress(ImportError, AttributeError):
        from ray._private import worker

        def to_log(data: dict[str, Any], ignore_prefix: bool) -> None:
            for line in data.get("lines", []):
                log.debug("ray (%s): %s", data.get("pid"), line)

        worker.print_to_stdstream = to_log


def _use_auth_token_if_any() -> None:
    """Send the cluster's token where there is one. `ray start --head` turns on token
    authentication and saves the token in ~/.ray/auth_token, but a driver only sends it when
    RAY_AUTH_MODE=token: without this, connecting to a cluster started on this machine with
    default settings fails after a minute of retries."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def task_resources(device: str, threads: int) -> dict[str, float]:
    """What one render asks Ray for: `device` is cuda, cpu or auto (auto: checked only, it is
    resolved from the cluster's resources by `cluster_device`)."""
    names = [name.strip() for name in device.split(",") if name.strip()]
    if len(names) != 1 or names[0] not in ("auto", "cuda", "cpu"):
        raise ConfigError(
            f"--device {device!r} with --cluster: use cuda (Ray gives every task a GPU of its "
            "own), cpu or auto"
        )
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1 (got {threads})")
    if names[0] == "cuda":
        return {"num_gpus": 1.0, "num_cpus": float(threads)}
    return {"num_cpus": float(threads)}


def cluster_device(device: str, resources: Mapping[str, float]) -> str:
    """`--device` as the cluster's tasks use it: auto is cuda where the cluster has a GPU."""
    if device.strip() != "auto":
        return device.strip()
    return "cuda" if resources.get("GPU", 0) >= 1 else "cpu"


def gpu_task_cpus(nodes: Sequence[Mapping[str, Any]]) -> int:
    """CPUs a GPU render asks for: the CPUs per GPU of the leanest GPU node (at least 1).

    A GPU render also decodes, computes optical flow and encodes on the CPU, and OpenCV and
    x264 would take every core of the node: with one CPU asked for, Ray would place the node's
    CPU tasks on the cores those renders use. The leanest node sets it so that every GPU
    node can still run one render per GPU."""
    shares = [
        int(node["Resources"].get("CPU", 0) // node["Resources"]["GPU"])
        for node in nodes
        if node.get("Alive", True) and node.get("Resources", {}).get("GPU", 0) >= 1
    ]
    return max(1, min(shares, default=1))


# --------------------------------------------------------------------------------------------
# The worker side


@dataclass(frozen=True)
class TaskSpec:
    """What a task needs besides the job (small and picklable)."""

    device: str  # "cuda" (the GPU Ray gives the task) or "cpu"
    threads: int
    log_level: int


def check_shared_paths(inputs: Sequence[Path], output: Path, node: str) -> None:
    """Fail in one line when this node cannot see a job's files where the driver does."""
    where = f"on node {node}; inputs and outputs must be on a file system every node mounts "
    where += "under the same path"
    for path in inputs:
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot be read {where}", path)
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the render creates a batch's output folders
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise OutputError(f"its folder cannot be written {where}", output)


class _RelayLogHandler(logging.Handler):
    """Log records to the driver, as (logger name, level, message)."""

    def __init__(self, post: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self.post = post

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.post(("log", record.name, record.levelno, record.getMessage()))


class _Throttled:
    """Forwards a render's events to the driver; progress within a frame at most every
    `_PARTIAL_EVERY_S` (quality mode reports it on every iteration)."""

    def __init__(self, post: Callable[[tuple[Any, ...]], None]) -> None:
        self.post = post
        self._last_partial = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Iteration):
            now = time.monotonic()
            if now - self._last_partial < _PARTIAL_EVERY_S:
                return
            self._last_partial = now
        self.post(("event", portable(event)))


class _Relay:
    """An actor holding the events the tasks post until the driver collects them."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []

    def post(self, item: tuple[Any, ...]) -> None:
        self.items.append(item)

    def drain(self) -> list[tuple[Any, ...]]:
        items, self.items = self.items, []
        return items


def _render_task(job: Job, spec: TaskSpec, relay: Any) -> Event:
    """One render on a worker (a Ray task): its events and logs go to the relay; its last
    event is also returned (the driver takes the first of the two it sees)."""
    import ray

    from vidstyle.render.job import render_job

    def post(item: tuple[Any, ...]) -> None:
        relay.post.remote(item)

    logger = logging.getLogger("vidstyle")
    logger.handlers[:] = [_RelayLogHandler(post)]
    logger.setLevel(spec.log_level)
    logger.propagate = False
    if spec.device == "cuda":
        import cv2

        # Optical flow runs on the CPUs this task asked for, not on every core of the node.
        cv2.setNumThreads(spec.threads)
    assert job.plan is not None
    emit = _Throttled(post)
    output = job.plan.output
    try:
        check_shared_paths([job.input, *job.styles], output, ray.util.get_node_ip_address())
    except VidstyleError as err:
        message, code = str(err), err.exit_code
        result = RenderResult(job.input, output, "failed", message=message, exit_code=code)
        emit(Failed(job.number, result))
    else:
        result = render_job(job.plan, spec.device, job=job.number, emit=emit, threads=spec.threads)
    return portable(ended(job.number, result))


# --------------------------------------------------------------------------------------------
# The driver side


class ClusterExecutor:
    """Runs a batch's jobs as Ray tasks and reports them to its run, as the local executors
    do. Connects when made, so a missing Ray or an unreachable cluster fails before any work."""

    def __init__(self, address: str, device: str, threads: int | None) -> None:
        """`threads`: each task's CPU threads and the CPUs it asks for (None: 1 for a CPU
        render, the cluster's CPUs per GPU for a GPU render)."""
        task_resources(device, threads or 1)  # a device Ray cannot give fails before connecting
        self.ray = connect(address)
        resolved = cluster_device(device, self.ray.cluster_resources())
        if resolved != device.strip():
            log.info("--device %s on the cluster: %s", device, resolved)
        gpu = resolved == "cuda"
        # A task's CPUs: those it asks Ray for (a GPU render's share of its node, else one).
        threads = render_threads(threads, cpus=gpu_task_cpus(self.ray.nodes()) if gpu else 1)
        assert threads is not None
        self.resources = task_resources(resolved, threads)
        self.spec = TaskSpec(
            device=resolved,
            threads=threads,
            log_level=logging.getLogger("vidstyle").getEffectiveLevel(),
        )
        self.threads = threads
        self.jobs: dict[int, Job] = {}
        self.started: set[int] = set()
        self.finished: set[int] = set()

    def slots(self) -> int:
        """How many renders the cluster runs at once (as it is now)."""
        resources = self.ray.cluster_resources()
        if "num_gpus" in self.resources:
            return max(1, int(resources.get("GPU", 1)))
        return max(1, int(resources.get("CPU", 1) // self.threads))

    def render(self, jobs: Sequence[Job], report: Report) -> None:
        """Run `jobs` on the cluster; their events go to `report`."""
        ray = self.ray
        relay = ray.remote(num_cpus=0)(_Relay).remote()
        task = ray.remote(_render_task).options(
            max_retries=TASK_RETRIES, retry_exceptions=False, **self.resources
        )
        self.jobs = {job.number: job for job in jobs}
        pending = {task.remote(job, self.spec, relay): job.number for job in jobs}
        try:
            while pending and not report.stopping:
                self._step(pending, relay, report)
            if pending:  # a usage error: the rest would fail the same way
                self._cancel(pending, relay, report, grace=0.0)
        except KeyboardInterrupt:
            report.interrupt()
            self._cancel(pending, relay, report, grace=_CANCEL_GRACE_S)
        finally:
            with contextlib.suppress(Exception):
                ray.kill(relay)

    def _step(self, pending: dict[Any, int], relay: Any, report: Report) -> None:
        ready, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=_POLL_S)
        self._forward(self.ray.get(relay.drain.remote()), report)
        for ref in ready:
            self._collect(ref, pending.pop(ref), report)

    def _forward(self, items: list[tuple[Any, ...]], report: Report) -> None:
        for item in items:
            kind = item[0]
            if kind == "log":
                _, name, level, message = item
                logging.getLogger(name).log(level, "%s", message)
            elif isinstance(item[1], Finished | Failed):
                self._finish(item[1], report)
            elif item[1].job not in self.finished:
                event = item[1]
                if isinstance(event, Started):
                    if event.job in self.started:
                        log.warning(
                            "%s: the Ray worker rendering it was lost; the retry resumes from "
                            "the saved segments",
                            self.jobs[event.job].input,
                        )
                    self.started.add(event.job)
                report(event)

    def _collect(self, ref: Any, number: int, report: Report) -> None:
        """The result of a finished task (or why it has none)."""
        job = self.jobs[number]
        assert job.plan is not None
        try:
            event = self.ray.get(ref)
        except self.ray.exceptions.TaskCancelledError:
            cancelled = RenderResult(
                job.input, job.plan.output, "interrupted", message="cancelled", exit_code=130
            )
            event = Failed(number, cancelled)
        except self.ray.exceptions.RayError as err:
            text = (
                f"{job.input}: the Ray worker rendering it was lost {TASK_RETRIES + 1} times "
                f"({type(err).__name__}); run again to resume"
            )
            lost = RenderResult(job.input, job.plan.output, "failed", message=text, exit_code=1)
            event = Failed(number, lost)
        self._finish(event, report)

    def _finish(self, event: Event, report: Report) -> None:
        if event.job in self.finished:
            return
        self.finished.add(event.job)
        report(event)

    def _cancel(self, pending: dict[Any, int], relay: Any, report: Report, *, grace: float) -> None:
        """Cancel every unfinished task; give the running ones `grace` seconds to save."""
        for ref in pending:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)
        deadline = time.monotonic() + grace
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C stops waiting
            while pending and time.monotonic() < deadline:
                self._step(pending, relay, report)
