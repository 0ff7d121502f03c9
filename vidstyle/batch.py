"""Many videos: discovery, output planning, skip/overwrite, per-file errors, worker processes.

`plan_batch` turns the command line's paths and styles into jobs (one per input and style), each
with its output path and what will happen to it (render, skip, or fail with a reason found while
planning: a missing path, a file that is not a video); `run_batch` renders them, in this process
or in `jobs` worker processes, and reports through `BatchEvents`. A failing input is recorded
with its reason and the batch goes on; a problem with the command itself (a bad option, an
unreadable style image, missing weights) stops it, since every input would fail the same way.

Nothing here prints: `vidstyle.cli` shows the plan, the progress and the summary.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vidstyle.config import RenderSettings
from vidstyle.errors import (
    EXIT_USAGE,
    ConfigError,
    InputError,
    OutputError,
    RenderInterrupted,
    VidstyleError,
)
from vidstyle.filetypes import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

#: Output name template; fields: {stem} (input name without extension), {style} (style image
#: stem, styles joined by '+' for a blend, or the fast-mode model's name), {ext} (the output
#: extension, `OUTPUT_EXT`), {input_ext} (the input's own extension).
DEFAULT_NAME = "{stem}.{style}{ext}"
#: MP4 plays everywhere and holds every codec vidstyle encodes; audio it cannot hold is
#: re-encoded (and said so). `--name '{stem}.{style}.mkv'` keeps such audio as it is.
OUTPUT_EXT = ".mp4"
# The last four for a still image input, which renders to an image (vidstyle.media.still).
_OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".png", ".jpg", ".jpeg", ".webp")


# --------------------------------------------------------------------------------------------
# Planning


@dataclass
class Job:
    """One input rendered in one style (or one blend of styles)."""

    number: int  # 1-based, in plan order
    input: Path
    styles: tuple[Path, ...]  # empty in fast mode
    style_name: str
    output: Path
    action: str  # "render" | "skip" | "fail"
    reason: str = ""  # why it is skipped or fails
    error: VidstyleError | None = None  # the planning error behind a "fail"
    frames: int | None = None  # expected frames (from the container; None if unknown)
    resume_from: int = 0  # frames saved by an earlier, interrupted run of this output
    stale: tuple[str, ...] = ()  # a skipped output made with other settings: what differs


@dataclass
class BatchPlan:
    jobs: list[Job]
    output_dir: Path | None  # None: outputs beside the inputs, or one named output file

    @property
    def to_render(self) -> list[Job]:
        return [job for job in self.jobs if job.action == "render"]

    @property
    def frames_to_render(self) -> int:
        return sum(max(0, (job.frames or 0) - job.resume_from) for job in self.to_render)


@dataclass(frozen=True)
class _Found:
    path: Path
    root: Path | None  # the folder given on the command line it was found in (for mirroring)


def normalise_extensions(values: Sequence[str] | None) -> tuple[str, ...]:
    """`--ext mp4,.MOV --ext mkv` -> ('.mp4', '.mov', '.mkv'); None -> VIDEO_EXTENSIONS."""
    if not values:
        return VIDEO_EXTENSIONS
    result: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip().lower()
            if item:
                result.append(item if item.startswith(".") else f".{item}")
    if not result:
        raise ConfigError("--ext needs at least one extension, e.g. --ext mp4,mov")
    return tuple(dict.fromkeys(result))


def discover(
    paths: Sequence[Path],
    *,
    recursive: bool = False,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    exclude: Path | None = None,
) -> tuple[list[_Found], list[tuple[Path, InputError]]]:
    """Video files among `paths` (files as given; folders searched by extension), and the
    paths that yielded none, with the reason. Hidden files and folders (vidstyle's own work
    folders and temporary files among them) and anything under `exclude` (the output folder,
    whose earlier renders must not become inputs) are left out; each file is taken once."""
    found: list[_Found] = []
    problems: list[tuple[Path, InputError]] = []
    seen: set[Path] = set()
    excluded = exclude.resolve() if exclude is not None else None

    def add(path: Path, root: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(_Found(path, root))

    for path in paths:
        if not path.exists():
            problems.append((path, InputError("not found; check the path", path)))
        elif path.is_dir():
            files = [
                item
                for item in _walk(path, recursive)
                if item.suffix.lower() in extensions
                and not (excluded and _is_within(item.resolve(), excluded))
            ]
            if not files:
                where = "this folder" if recursive else "this folder (add -r for subfolders)"
                problems.append(
                    (
                        path,
                        InputError(
                            f"no video files ({', '.join(extensions[:4])}, ...) in {where}; "
                            "give video files, or --ext to match other extensions",
                            path,
                        ),
                    )
                )
            for item in files:
                add(item, path)
        else:
            add(path, None)  # a file named explicitly is taken whatever its extension
    return found, problems


def _walk(folder: Path, recursive: bool) -> Iterator[Path]:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as err:
        log.warning("%s: cannot list the folder (%s); skipped", folder, err.strerror or err)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                yield from _walk(entry, recursive)
        elif entry.is_file():
            yield entry


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def style_groups(styles: Sequence[Path], settings: RenderSettings) -> list[tuple[Path, ...]]:
    """Several --style values render every input in every style; with a blend (issue 6's
    `style_blend`) they are one style together. Fast mode has one group with no image."""
    if settings.mode == "fast":
        return [()]
    if getattr(settings, "style_blend", None) is not None:
        return [tuple(styles)]
    return [(style,) for style in dict.fromkeys(styles)]


def _style_name(group: Sequence[Path], settings: RenderSettings) -> str:
    if not group:
        return Path(settings.model or "model").stem
    return "+".join(style.stem for style in group)


def output_name(template: str, input_path: Path, style_name: str, ext: str = OUTPUT_EXT) -> str:
    """The output's name (a relative path) from the `--name` template; `ext` is `{ext}` (`.png`
    for a still image input)."""
    try:
        name = template.format(
            stem=input_path.stem, style=style_name, ext=ext, input_ext=input_path.suffix
        )
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(
            f"--name {template!r} is not a valid template ({err}); use the fields {{stem}}, "
            "{style}, {ext} and {input_ext}, e.g. '{stem}.{style}{ext}'"
        ) from None
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise ConfigError(f"--name {template!r} must give a relative name inside the output folder")
    if relative.suffix.lower() not in _OUTPUT_SUFFIXES:
        raise ConfigError(
            f"--name {template!r} gives {name!r}; end it with {{ext}} or one of "
            f"{', '.join(_OUTPUT_SUFFIXES)}"
        )
    return name


def _single_output_file(
    paths: Sequence[Path], groups: Sequence[tuple[Path, ...]], output: Path | None
) -> bool:
    """`-o` names a file when one input file is rendered in one style and it has a video
    extension (`-o out.mkv`, as always); otherwise (an existing folder, a name without a video
    extension, a trailing slash) it is the output folder."""
    if output is None or len(paths) != 1 or len(groups) != 1 or paths[0].is_dir():
        return False
    if output.is_dir() or str(output).endswith(("/", os.sep)):
        return False
    return output.suffix.lower() in _OUTPUT_SUFFIXES


def plan_batch(
    paths: Sequence[Path],
    styles: Sequence[Path],
    settings: RenderSettings,
    *,
    output: Path | None = None,
    recursive: bool = False,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    name_template: str = DEFAULT_NAME,
) -> BatchPlan:
    """Every (input, style) job with its output and action. Raises `VidstyleError` for
    problems with the command itself (bad styles or options, colliding outputs); problems
    with one input become that job's "fail"."""
    # Imported here: planning a dry run should not pay for more than it needs.
    from vidstyle.media import check_container_holds, probe
    from vidstyle.media.still import IMAGE_EXT, check_image_output, is_still_image
    from vidstyle.pipeline import check_mode_inputs, expected_frames
    from vidstyle.provenance import stale_reason, stale_settings
    from vidstyle.stylize.style_image import load_style_image

    if not paths:
        raise ConfigError("no input given; pass video files or folders")
    check_mode_inputs(settings, styles)
    for style in dict.fromkeys(styles):
        load_style_image(style)  # an unreadable style image fails before any render
    groups = style_groups(styles, settings)
    output_name(name_template, Path("clip.mp4"), "style")  # a bad template fails here too

    single_file = _single_output_file(paths, groups, output)
    output_dir = None if single_file or output is None else output
    if output_dir is not None:
        if output_dir.exists() and not output_dir.is_dir():
            raise ConfigError(f"-o {output_dir} is a file; several outputs need a folder")
        if output_dir.suffix.lower() in _OUTPUT_SUFFIXES and not output_dir.exists():
            raise ConfigError(
                f"-o {output_dir} looks like a file name, but this command renders several "
                "files; give a folder (it is created if missing)"
            )
    if output is None and any(path.is_dir() for path in paths):
        raise ConfigError(
            "rendering a folder needs -o OUTDIR (outputs written beside the inputs would be "
            "taken for inputs by the next run)"
        )
    found, problems = discover(
        paths, recursive=recursive, extensions=extensions, exclude=output_dir
    )

    jobs: list[Job] = []
    for path, error in problems:
        jobs.append(Job(len(jobs) + 1, path, (), "", path, "fail", str(error), error))
    targets: dict[Path, Job] = {}
    for item in found:
        probed = False
        info = None
        failure: VidstyleError | None = None
        still = is_still_image(item.path)
        for group in groups:
            style_name = _style_name(group, settings)
            name = output_name(
                name_template, item.path, style_name, IMAGE_EXT if still else OUTPUT_EXT
            )
            if single_file:
                assert output is not None
                target = output
            elif output_dir is None:
                target = item.path.parent / name
            elif item.root is None:
                target = output_dir / name
            else:  # mirror the input's place under the folder it was found in
                target = output_dir / item.path.parent.relative_to(item.root) / name
            job = Job(len(jobs) + 1, item.path, group, style_name, target, "render")
            if target.resolve() == item.path.resolve():
                job.error = OutputError("output would overwrite the input; change --name", target)
                job.action, job.reason = "fail", str(job.error)
            elif target.exists() and not settings.overwrite:
                # Not even probed (only its metadata read): re-running a large batch only looks
                # at what is left to do.
                job.action, job.reason = "skip", "output exists (--overwrite renders it again)"
                job.stale = tuple(stale_settings(target, item.path, group, settings))
                if job.stale:
                    job.reason = f"output {stale_reason(job.stale)}"
            else:
                if still:
                    job.frames = 1  # read when rendered: FFmpeg's probe is for videos
                elif not probed:  # once per input, whatever the number of styles
                    probed = True
                    try:
                        info = probe(item.path)
                    except VidstyleError as err:
                        failure = err
                if failure is not None:
                    job.action, job.reason, job.error = "fail", str(failure), failure
                elif info is not None:
                    job.frames = expected_frames(info, settings.max_frames)
            if job.action == "render" and still:
                check_image_output(target)  # an image renders to an image, whatever --name says
            elif job.action == "render":
                # A codec the container cannot hold fails every such job, and would only show
                # when the finished segments are joined: stop the command before any render.
                check_container_holds(target, settings.codec)
                job.resume_from = _saved_frames(target) if settings.resume else 0
            other = targets.get(target.resolve())
            if other is not None:
                raise ConfigError(
                    f"{other.input} and {item.path} would both render to {target}; "
                    "rename one, or add {input_ext} or a folder to --name"
                )
            targets[target.resolve()] = job
            jobs.append(job)
    return BatchPlan(jobs, output_dir)


def _saved_frames(output: Path) -> int:
    """Frames an interrupted render to `output` has saved (resumed if the settings match)."""
    from vidstyle.workdir import saved_frames

    return saved_frames(output)


def plan_table(plan: BatchPlan) -> list[str]:
    """The dry-run report: one line per job (input → output, action, frames)."""
    rows = [("INPUT", "OUTPUT", "ACTION", "FRAMES")]
    for job in plan.jobs:
        action = job.action
        if job.action == "render" and job.resume_from:
            action = f"resume at frame {job.resume_from}"
        elif job.action != "render":
            action = f"{job.action}: {job.reason}"
        frames = "?" if job.frames is None else str(job.frames)
        # A path that yielded no input (missing, no videos in it) has no output.
        output = "-" if job.action == "fail" and not job.style_name else job.output
        rows.append((str(job.input), str(output), action, frames if job.action == "render" else ""))
    widths = [max(len(row[i]) for row in rows) for i in (0, 1)]
    lines = [
        f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[3].rjust(6)}  {row[2]}"
        for row in rows
    ]
    counts = {a: sum(job.action == a for job in plan.jobs) for a in ("render", "skip", "fail")}
    stale = sum(bool(job.stale) for job in plan.jobs)
    lines.append(
        f"{counts['render']} to render ({plan.frames_to_render} frames), {counts['skip']} to "
        f"skip{f' ({stale} stale)' if stale else ''}, {counts['fail']} failing; nothing was "
        "written (dry run)"
    )
    return lines


# --------------------------------------------------------------------------------------------
# Running


@dataclass
class JobResult:
    job: Job
    status: str  # "rendered" | "skipped" | "stale" (skipped, other settings) | "failed" | ...
    frames: int = 0  # in the output
    seconds: float = 0.0
    resumed_from: int = 0
    message: str = ""
    exit_code: int = 0

    @property
    def rendered_frames(self) -> int:
        """Frames this run rendered (an earlier, interrupted run's not counted)."""
        return max(0, self.frames - self.resumed_from)


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


def parse_devices(device: str) -> list[str]:
    """`cuda:0,cuda:1` -> ['cuda:0', 'cuda:1']; each is checked before any work."""
    from vidstyle.device import resolve_device

    names = [name.strip() for name in device.split(",") if name.strip()]
    if not names:
        raise ConfigError("--device is empty; use auto, cpu, cuda or cuda:N (comma-separated)")
    for name in names:
        resolve_device(name)
    return names


def worker_devices(devices: Sequence[str], workers: int) -> list[str]:
    """The device of each worker: the list taken in turn (`cuda:0,cuda:1` and 4 workers:
    cuda:0, cuda:1, cuda:0, cuda:1), so the renders spread evenly over the devices."""
    return [devices[slot % len(devices)] for slot in range(workers)]


def run_batch(
    plan: BatchPlan,
    settings: RenderSettings,
    *,
    jobs: int = 1,
    events: BatchEvents | None = None,
    raise_errors: bool = False,
) -> BatchSummary:
    """Render the plan's jobs; failures are recorded and the batch goes on.

    `jobs` > 1 renders that many videos at once in worker processes, each on one of the
    devices of `settings.device` (a comma-separated list, taken in turn). `raise_errors`
    (one video, as `vidstyle clip.mp4 --style s.png`): errors propagate as they are.
    Ctrl-C stops every render cleanly (progress saved) and sets `interrupted`.
    """
    events = events or NullEvents()
    devices = parse_devices(settings.device)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {jobs})")
    summary = BatchSummary()
    started = time.perf_counter()
    for job in plan.jobs:
        if job.action == "fail":
            if raise_errors and job.error is not None:
                raise job.error
            log.error("%s", job.reason)
            _finish(summary, events, JobResult(job, "failed", message=job.reason, exit_code=1))
        elif job.action == "skip" and job.stale:
            # Not what this command asks for: said even with -q.
            log.warning("%s %s", job.output, job.reason.removeprefix("output "))
            _finish(summary, events, JobResult(job, "stale", message=job.reason))
        elif job.action == "skip":
            log.info("%s exists; skipping (pass --overwrite to render again)", job.output)
            _finish(summary, events, JobResult(job, "skipped", message=job.reason))
    render = plan.to_render
    workers = min(jobs, len(render))
    try:
        if workers <= 1:
            if len(devices) > 1:
                log.info("one render at a time: using %s (more devices need --jobs)", devices[0])
            one = settings.replace(device=devices[0])
            for job in render:
                if summary.interrupted:  # listed, so the summary accounts for every job
                    _finish(summary, events, JobResult(job, "interrupted", message="not started"))
                    continue
                result = _render_here(job, one, events, raise_errors, plan.output_dir)
                _finish(summary, events, result)
                summary.interrupted = result.status == "interrupted"
        else:
            _Pool(render, settings, devices, workers, events, summary, plan.output_dir).render()
    finally:
        summary.seconds = time.perf_counter() - started
    # Report in plan order, whatever order the renders finished in.
    summary.results.sort(key=lambda result: result.job.number)
    return summary


def _finish(summary: BatchSummary, events: BatchEvents, result: JobResult) -> None:
    summary.results.append(result)
    events.job_finished(result)


def _prepare_output(job: Job, output_dir: Path | None) -> None:
    """Create the output folder and the mirrored subfolders as needed (not the folder of an
    output file named with -o: a missing one is more likely a typo)."""
    if output_dir is not None:
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(
                f"cannot create the output folder ({err.strerror or err}); choose another -o",
                job.output.parent,
            ) from err


class _JobProgress:
    """The pipeline's `Progress`, forwarded to the batch's events."""

    def __init__(self, job: Job, events: BatchEvents) -> None:
        self.job, self.events = job, events

    def start(self, description: str, total: int | None) -> None:
        self.events.job_started(self.job, description, total)

    def advance(self, frames: int = 1) -> None:
        self.events.job_advanced(self.job, frames)

    def partial(self, fraction: float) -> None:
        self.events.job_partial(self.job, fraction)

    def finish(self) -> None:
        pass


def _render_here(
    job: Job,
    settings: RenderSettings,
    events: BatchEvents,
    raise_errors: bool,
    output_dir: Path | None,
) -> JobResult:
    from vidstyle.pipeline import stylize_video

    try:
        _prepare_output(job, output_dir)
        result = stylize_video(
            job.input, job.styles, settings, output=job.output, progress=_JobProgress(job, events)
        )
    except RenderInterrupted as err:
        if raise_errors:
            raise
        return JobResult(job, "interrupted", message=str(err), exit_code=err.exit_code)
    except VidstyleError as err:
        if raise_errors or err.exit_code == EXIT_USAGE:
            raise  # about the command, not this input: every other input would fail too
        log.error("%s", err)
        return JobResult(job, "failed", message=str(err), exit_code=err.exit_code)
    except Exception as err:
        if raise_errors:
            raise
        message = _unexpected(job, err)
        log.error("%s", message)
        return JobResult(job, "failed", message=message, exit_code=1)
    return JobResult(
        job,
        result.status,
        frames=result.frames,
        seconds=result.seconds,
        resumed_from=result.resumed_from,
    )


def _unexpected(job: Job, err: BaseException) -> str:
    """One line for an error vidstyle did not foresee (the batch goes on without it)."""
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return f"{job.input}: ran out of memory; render smaller with --size, or fewer --jobs"
    return f"{job.input}: failed ({type(err).__name__}: {err}); VIDSTYLE_DEBUG=1 shows details"


# --------------------------------------------------------------------------------------------
# Worker processes


class _Pool:
    """Worker processes rendering one job at a time each.

    Spawned, not forked: CUDA cannot be used in a forked child, and a clean interpreter does
    not inherit the parent's threads (decoder, logging). Each worker takes jobs from one queue
    as it becomes free (long and short videos balance themselves) and reports progress, log
    records and results on another. A worker that dies (killed, out of memory) fails only its
    current job and is replaced. Ctrl-C: the parent asks every worker to stop (SIGTERM, which
    they turn into a clean interrupt that saves the render's progress) and waits for them; a
    second Ctrl-C kills them.
    """

    def __init__(
        self,
        render: list[Job],
        settings: RenderSettings,
        devices: list[str],
        workers: int,
        events: BatchEvents,
        summary: BatchSummary,
        output_dir: Path | None,
    ) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.output_dir = output_dir
        self.tasks: Any = self.context.Queue()
        self.results: Any = self.context.Queue()
        self.jobs = {job.number: job for job in render}
        self.settings, self.devices, self.events, self.summary = settings, devices, events, summary
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        self.device_of = worker_devices(devices, workers)
        # Renders side by side on one device each get a share of its memory (vidstyle.memory).
        self.sharing = {device: self.device_of.count(device) for device in devices}
        self.level = logging.getLogger("vidstyle").getEffectiveLevel()
        for job in render:
            self.tasks.put(job.number)
        for _ in range(workers):
            self.tasks.put(None)
        self.running: dict[int, int] = {}  # worker slot -> job number
        self.started: set[int] = set()  # slots that have taken a job (so may be respawned)
        self.done: set[int] = set()
        self.stop_error: VidstyleError | None = None
        self.interrupts = 0
        self.processes = {slot: self._spawn(slot) for slot in range(workers)}

    def _spawn(self, slot: int) -> Any:
        device = self.device_of[slot]
        process = self.context.Process(
            target=_worker_main,
            args=(
                slot,
                self.settings.replace(device=device),
                self.jobs,
                self.tasks,
                self.results,
                self.level,
                self.threads,
                self.sharing[device],
                os.getpid(),
                self.output_dir,
            ),
            name=f"vidstyle-worker-{slot}",
            daemon=True,
        )
        process.start()
        return process

    @property
    def stopping(self) -> bool:
        return self.interrupts > 0 or self.stop_error is not None

    def render(self) -> None:
        """Render every job (worker i uses devices[i % len(devices)]); stop the workers after."""
        try:
            self.run()
        finally:
            self.close()
        if self.stop_error is not None:
            raise self.stop_error

    def run(self) -> None:
        while len(self.done) < len(self.jobs) and self.processes:
            try:
                self._step()
            except KeyboardInterrupt:
                self.interrupts += 1
                self.summary.interrupted = True
                _drain(self.tasks)
                for process in self.processes.values():
                    if process.is_alive() and process.pid is not None:
                        with contextlib.suppress(OSError):
                            if self.interrupts == 1:
                                os.kill(process.pid, signal.SIGTERM)  # save and stop
                            else:
                                process.kill()
        # Jobs no worker got to: the batch was stopped, or no worker could start.
        for number, job in self.jobs.items():
            if number not in self.done:
                status = "interrupted" if self.interrupts else "failed"
                text = (
                    "not started"
                    if self.stopping
                    else (f"{job.input}: not rendered (the worker processes stopped unexpectedly)")
                )
                self._finish(JobResult(job, status, message=text, exit_code=1))

    def _step(self) -> None:
        try:
            message = self.results.get(timeout=0.2)
        except queue.Empty:
            self._reap()
            return
        kind = message[0]
        if kind == "log":
            record = message[1]
            logging.getLogger(record.name).handle(record)
        elif kind == "start":
            _, slot, number, description, total = message
            self.running[slot] = number
            self.started.add(slot)
            self.events.job_started(self.jobs[number], description, total)
        elif kind == "advance":
            self.events.job_advanced(self.jobs[message[1]], message[2])
        elif kind == "partial":
            self.events.job_partial(self.jobs[message[1]], message[2])
        elif kind == "result":
            _, slot, number, status, frames, seconds, resumed_from, text, code = message
            self.running.pop(slot, None)
            self.started.add(slot)
            result = JobResult(self.jobs[number], status, frames, seconds, resumed_from, text, code)
            if status == "failed" and code == EXIT_USAGE and self.stop_error is None:
                # About the command, not this input: start no more renders.
                self.stop_error = ConfigError(text)
                _drain(self.tasks)
            self._finish(result)

    def _reap(self) -> None:
        """Notice workers that are gone (SIGKILL, out of memory, a crash in C code)."""
        for slot, process in list(self.processes.items()):
            if process.is_alive():
                continue
            del self.processes[slot]
            number = self.running.pop(slot, None)
            if number is not None:
                job = self.jobs[number]
                text = (
                    f"{job.input}: the worker process rendering it died (exit code "
                    f"{process.exitcode}: killed, or out of memory?); run again to resume"
                )
                log.error("%s", text)
                self._finish(JobResult(job, "failed", message=text, exit_code=1))
            if slot in self.started and not self.stopping and _has_items(self.tasks):
                self.processes[slot] = self._spawn(slot)  # keep the parallelism for the rest

    def _finish(self, result: JobResult) -> None:
        self.done.add(result.job.number)
        _finish(self.summary, self.events, result)

    def close(self) -> None:
        for process in self.processes.values():
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        for channel in (self.tasks, self.results):
            channel.close()
            channel.cancel_join_thread()


def _has_items(tasks: Any) -> bool:
    try:
        return bool(tasks.qsize())
    except NotImplementedError:  # macOS: no sem_getvalue; a spare worker just exits
        return True


def _drain(tasks: Any) -> None:
    with contextlib.suppress(queue.Empty, OSError, ValueError):
        while True:
            tasks.get_nowait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _WorkerProgress:
    """Forwards progress to the parent; stops the render cleanly if the parent is gone."""

    def __init__(self, results: Any, slot: int, number: int, parent: int) -> None:
        self.results, self.slot, self.number, self.parent = results, slot, number, parent

    def start(self, description: str, total: int | None) -> None:
        self.results.put(("start", self.slot, self.number, description, total))

    def advance(self, frames: int = 1) -> None:
        if os.getppid() != self.parent:
            raise KeyboardInterrupt  # orphaned (the parent was killed): save and stop
        self.results.put(("advance", self.number, frames))

    def partial(self, fraction: float) -> None:
        self.results.put(("partial", self.number, fraction))

    def finish(self) -> None:
        pass


def _worker_main(
    slot: int,
    settings: RenderSettings,
    jobs: dict[int, Job],
    tasks: Any,
    results: Any,
    level: int,
    threads: int,
    sharing: int,
    parent: int,
    output_dir: Path | None,
) -> None:
    """A worker process: render jobs from `tasks` until told to stop (None)."""
    # The terminal's Ctrl-C reaches the whole process group; the parent decides what happens
    # and tells us with SIGTERM, so that a render is stopped exactly once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    logger = logging.getLogger("vidstyle")
    logger.handlers[:] = [_QueueHandler(results)]
    logger.setLevel(level)
    logger.propagate = False
    import torch

    from vidstyle import memory
    from vidstyle.pipeline import stylize_video

    torch.set_num_threads(threads)
    memory.sharing = sharing  # renders beside this one on the same device
    try:
        while True:
            try:
                number = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:
                    return
                continue
            if number is None:
                return
            job = jobs[number]
            outcome: tuple[Any, ...]
            try:
                _prepare_output(job, output_dir)
                rendered = stylize_video(
                    job.input,
                    job.styles,
                    settings,
                    output=job.output,
                    progress=_WorkerProgress(results, slot, number, parent),
                )
                outcome = (
                    rendered.status,
                    rendered.frames,
                    rendered.seconds,
                    rendered.resumed_from,
                    "",
                    0,
                )
            except RenderInterrupted as err:
                results.put(
                    ("result", slot, number, "interrupted", 0, 0.0, 0, str(err), err.exit_code)
                )
                return
            except VidstyleError as err:
                logger.error("%s", err)
                outcome = ("failed", 0, 0.0, 0, str(err), err.exit_code)
            except Exception as err:
                text = _unexpected(job, err)
                logger.error("%s", text)
                outcome = ("failed", 0, 0.0, 0, text, 1)
            results.put(("result", slot, number, *outcome))
    except KeyboardInterrupt:
        return
    finally:
        results.put(("idle", slot))


class _QueueHandler(logging.handlers.QueueHandler):
    """Log records to the parent, which shows them with its own handler."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put(("log", record))
