"""A batch's plan: discovery of the inputs, output names, skip/overwrite, per-file errors.

`plan_batch` turns the command line's paths and styles into jobs (one per input and style),
each with its output path and its plan (`vidstyle.render.prepare`): render, skip, or fail with a
reason found while planning (a missing path, a file that is not a video). A problem with the
command itself (a bad option, an unreadable style image, missing weights) fails the planning,
since every input would fail the same way. `vidstyle.batch.run` renders the plan.

Nothing here prints: `vidstyle.cli` shows the plan, the progress and the summary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vidstyle.batch.jobs import Job
from vidstyle.config import RenderSettings
from vidstyle.errors import EXIT_USAGE, ConfigError, InputError, VidstyleError
from vidstyle.filetypes import VIDEO_EXTENSIONS

if TYPE_CHECKING:
    from vidstyle.render.prepare import Preparer

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


@dataclass
class BatchPlan:
    jobs: list[Job]
    output_dir: Path | None  # None: outputs beside the inputs, or one named output file
    settings: RenderSettings  # what the jobs were planned with (and are rendered with)

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
    """Several --style values render every input in every style; with a blend (the
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
    """Every (input, style) job with its output and its plan (`vidstyle.render.prepare`). Raises
    `VidstyleError` for problems with the command itself (bad styles or options, colliding
    outputs, an unwritable output folder); problems with one input become that job's "fail"."""
    # Imported here: `vidstyle --help` should not pay for what planning needs.
    from vidstyle.media.still import IMAGE_EXT
    from vidstyle.render.prepare import Preparer

    preparer = Preparer(settings, styles)  # the mode's inputs and the style images, once
    if not paths:
        raise ConfigError("no input given; pass video files or folders")
    groups = style_groups(styles, settings)
    output_name(name_template, Path("clip.mp4"), "style")  # a bad template fails here too

    single_file = _single_output_file(paths, groups, output)
    output_dir = None if single_file or output is None else output
    _check_output_folder(paths, output_dir, output)
    found, problems = discover(
        paths, recursive=recursive, extensions=extensions, exclude=output_dir
    )

    jobs: list[Job] = []
    for path, error in problems:
        jobs.append(Job(path, (), path, number=len(jobs) + 1, error=error))
    requests: list[Job] = []
    targets: dict[Path, Path] = {}
    for item in found:
        ext = IMAGE_EXT if preparer.is_still(item.path) else OUTPUT_EXT
        for group in groups:
            style_name = _style_name(group, settings)
            name = output_name(name_template, item.path, style_name, ext)
            target = output if single_file and output else _target(item, name, output_dir)
            other = targets.setdefault(target.resolve(), item.path)
            if other != item.path:
                raise ConfigError(
                    f"{other} and {item.path} would both render to {target}; "
                    "rename one, or add {input_ext} or a folder to --name"
                )
            # Into an output folder, the render creates the folder and mirrored subfolders.
            requests.append(
                Job(
                    item.path,
                    group,
                    target,
                    create_folder=output_dir is not None,
                    number=0,  # numbered once every request is known
                    style_name=style_name,
                )
            )
    if output_dir is not None:
        # An unwritable output folder fails the command once, not every file in turn.
        first = next((r.output for r in requests if _writes(r.output, settings)), None)
        if first is not None:
            preparer.check_folder(first)
    for request in requests:
        jobs.append(_plan_job(preparer, replace(request, number=len(jobs) + 1)))
    return BatchPlan(jobs, output_dir, settings)


def _check_output_folder(
    paths: Sequence[Path], output_dir: Path | None, output: Path | None
) -> None:
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


def _target(item: _Found, name: str, output_dir: Path | None) -> Path:
    """Where an input's output named `name` goes: beside it, or in the output folder (under
    the input's place in the folder it was found in)."""
    if output_dir is None:
        return item.path.parent / name
    if item.root is None:
        return output_dir / name
    return output_dir / item.path.parent.relative_to(item.root) / name


def _writes(output: Path | None, settings: RenderSettings) -> bool:
    """Whether a job's output will be written into a folder that exists."""
    assert output is not None
    return output.parent.is_dir() and (settings.overwrite or not output.exists())


def _plan_job(preparer: Preparer, job: Job) -> Job:
    try:
        plan = preparer.prepare(job)
    except VidstyleError as err:
        if err.exit_code == EXIT_USAGE:
            raise  # about the command, not this input: every other input would fail too
        return replace(job, error=err)
    resume_from = 0
    if preparer.settings.resume and not plan.skip and not plan.still:
        resume_from = _saved_frames(plan.output)
    return replace(job, plan=plan, resume_from=resume_from)


def _saved_frames(output: Path) -> int:
    """Frames an interrupted render to `output` has saved (resumed if the settings match)."""
    from vidstyle.render.workdir import saved_frames

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
