"""What a render will do, decided once before any frame is decoded: `prepare(job) -> RenderPlan`.

Every check that can fail without rendering happens here, once: the mode's inputs, the style
images, the codec, the output name and folder, skip or stale, the probe and the frame size. A
single render (`stylize_video`) and every job of a batch go through `Preparer.prepare`; a batch
keeps one `Preparer`, so a check about the whole command (style images, codec) or about one
input (its probe) is done once however many jobs share it. The plan is small and picklable, so
an executor can hand it to another process and render it there without deciding anything again.

Free memory is the one check left to the render itself: it belongs to the device and the
moment the render runs on (`vidstyle.render.pipeline.render`), which a plan made elsewhere cannot
know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vidstyle.config import RenderSettings
from vidstyle.errors import ConfigError, InputError, OutputError, VidstyleError
from vidstyle.media import (
    CODEC_ALIASES,
    VideoInfo,
    available_codecs,
    check_container_holds,
    check_output_writable,
    output_codec,
    plan_size,
    probe,
)
from vidstyle.media.reader import check_not_truncated
from vidstyle.media.still import IMAGE_EXT, check_image_output, is_still_image
from vidstyle.nets.models import read_model_info, resolve_model
from vidstyle.nets.vgg import check_weights_source
from vidstyle.render.provenance import stale_reason, stale_settings
from vidstyle.render.workdir import work_dir_for
from vidstyle.stylize.style_image import load_style_image
from vidstyle.stylize.targets import blend_weights


@dataclass(frozen=True)
class Shot:
    """Frames [first, stop) of a video, rendered as one independent part."""

    number: int  # 1-based, in video order
    count: int  # parts of the video
    first: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.first

    def folder(self, output: Path) -> Path:
        """Where this part's segments are kept: inside the output's work folder."""
        return work_dir_for(output) / f"shot-{self.first:06d}-{self.stop:06d}"

    def describe(self, name: str) -> str:
        return f"{name} shot {self.number}/{self.count}"


@dataclass(frozen=True)
class RenderJob:
    """One input rendered in one style (or one blend of styles) to one output."""

    input: Path
    styles: tuple[Path, ...]  # empty in fast mode
    output: Path | None = None  # None: `default_output_path`
    # The render creates the output's folder (a batch's output folder and its mirrored
    # subfolders); otherwise a missing folder is an error (more likely a typo).
    create_folder: bool = False


@dataclass(frozen=True)
class RenderPlan:
    """What `prepare` decided for a job; `vidstyle.render.pipeline.render` carries it out."""

    job: RenderJob
    settings: RenderSettings
    output: Path
    skip: bool  # the output exists (and --overwrite was not given)
    stale: tuple[str, ...] = ()  # a skipped output made with other settings: what differs
    still: bool = False  # a still image input, rendered to an image (read when rendered)
    info: VideoInfo | None = None  # the probed video; None for a still image or a skip
    size: tuple[int, int] | None = None  # the frame size rendered; None as for `info`
    size_note: str | None = None  # said in the log when the render starts
    # Render only this part of the video into its own work folder, without writing the output
    # (vidstyle.batch.shots joins the parts); None: the whole video.
    shot: Shot | None = None

    @property
    def input(self) -> Path:
        return self.job.input

    @property
    def styles(self) -> tuple[Path, ...]:
        return self.job.styles

    @property
    def frames(self) -> int | None:
        """Frames the output will have, or this part of it (None: the container does not say)."""
        if self.shot is not None:
            return self.shot.frames
        if self.still:
            return 1
        if self.info is None:
            return None
        return expected_frames(self.info, self.settings.max_frames)

    @property
    def skip_reason(self) -> str:
        """Why the output is not rendered (the log's and the dry run's words)."""
        if self.stale:
            return f"output {stale_reason(self.stale)}"
        return "output exists (--overwrite renders it again)"


def expected_frames(info: VideoInfo, max_frames: int | None) -> int | None:
    if info.frame_count is None:
        return max_frames
    return min(info.frame_count, max_frames) if max_frames else info.frame_count


def default_output_path(input_path: Path, styles: Sequence[Path], *, still: bool = False) -> Path:
    """`<stem>.<style-stem>.mp4` beside the input (style stems joined with '+' for blends);
    `.png` for a still image input."""
    style_part = "+".join(style.stem for style in styles)
    suffix = IMAGE_EXT if still else ".mp4"
    return input_path.with_name(f"{input_path.stem}.{style_part}{suffix}")


def check_mode_inputs(settings: RenderSettings, styles: Sequence[Path]) -> None:
    """Quality mode takes its style from --style; fast mode from the trained --model alone (a
    network is trained for one style, so a --style beside it would be silently ignored)."""
    if settings.mode == "fast":
        if styles:
            raise ConfigError(
                "fast mode takes its style from --model (fixed when it was trained); drop "
                "--style, or use --mode quality to render with a style image"
            )
        if not settings.model:
            raise ConfigError(
                "fast mode needs --model: a file from `vidstyle train` or a name that "
                "`vidstyle models` lists"
            )
        # A model that is not there, or not a model, fails the command before any render is
        # planned or logged.
        read_model_info(resolve_model(settings.model, settings.models_dir))
    elif not styles:
        raise ConfigError("quality mode needs --style IMAGE (or --mode fast with --model)")
    else:
        vgg_weights = Path(settings.vgg_weights) if settings.vgg_weights else None
        check_weights_source(settings.features, vgg_weights)


def check_codec(codec: str) -> None:
    """Raise `ConfigError` unless this PyAV build has the encoder `codec`."""
    codecs = available_codecs()
    encoder = CODEC_ALIASES.get(codec.lower())
    if encoder is not None and codecs.get(encoder, False):
        raise ConfigError(
            f"codec '{codec}' is not an encoder name; use --codec {encoder} (encoders: "
            f"{', '.join(name for name, ok in codecs.items() if ok)})"
        )
    if not codecs.get(codec, False):
        have = ", ".join(name for name, ok in codecs.items() if ok) or "none"
        missing = ", ".join(name for name, ok in codecs.items() if not ok)
        note = f" (not in this PyAV build: {missing})" if missing else ""
        raise ConfigError(f"codec '{codec}' is not available; choose one of {have}{note}")


class Preparer:
    """Plans the jobs of one command. Raises `VidstyleError`: a `ConfigError` (exit code 2) is
    about the command and would fail every job; other errors concern one job's input or output.

    Built from the command's settings and every style it names: the mode's inputs and the style
    images are checked here, once. Probes and output folder checks are remembered, so an input
    rendered in several styles is probed once, and a folder of outputs is tried once.
    """

    def __init__(self, settings: RenderSettings, styles: Sequence[Path]) -> None:
        self.settings = settings
        check_mode_inputs(settings, styles)
        if settings.mode == "quality" and settings.style_blend is not None:
            blend_weights(settings.style_blend, len(styles))  # a wrong count fails before work
        for style in dict.fromkeys(styles):
            load_style_image(style)  # an unreadable style image fails before any render
        self._codecs_checked: set[str] = set()
        self._probes: dict[Path, VideoInfo | VidstyleError] = {}
        self._writable: set[Path] = set()
        self._still: dict[Path, bool] = {}

    def is_still(self, path: Path) -> bool:
        """Whether `path` is a still image (looked at once per input)."""
        key = path.resolve()
        if key not in self._still:
            self._still[key] = is_still_image(path)
        return self._still[key]

    def prepare(self, job: RenderJob) -> RenderPlan:
        settings = self.settings
        if not job.input.exists():  # before anything is said about its output
            raise InputError("file not found; check the path", job.input)
        still = self.is_still(job.input)
        # Fast mode names the output after the model (`clip.starry.mp4`), as quality mode does
        # after the style image.
        output = job.output or default_output_path(
            job.input, job.styles or [Path(settings.model or "")], still=still
        )
        # `--codec auto` (the default) becomes the container's usual encoder: what the output
        # is encoded with, and recorded as, is a real codec name.
        codec = output_codec(settings.codec, output)
        if codec != settings.codec:
            settings = settings.replace(codec=codec)
        if output.exists() and output.resolve() == job.input.resolve():
            raise OutputError(
                "output would overwrite the input; choose another output name", output
            )
        if still:
            check_image_output(output)  # an image renders to an image, whatever the name says
        if output.exists() and not settings.overwrite:
            # Not probed (only the output's metadata read): re-running a large batch only looks
            # at what is left to do.
            stale = tuple(stale_settings(output, job.input, job.styles, settings))
            return RenderPlan(job, settings, output, skip=True, stale=stale, still=still)
        self.check_folder(output, create=job.create_folder)
        if still:
            return RenderPlan(job, settings, output, skip=False, still=True)
        if settings.codec not in self._codecs_checked:
            check_codec(settings.codec)
            self._codecs_checked.add(settings.codec)
        # A codec the container cannot hold would only show when the finished segments are
        # joined: fail before the first frame.
        check_container_holds(output, settings.codec)
        info = self._probe(job.input)
        size, note = plan_size(info.size, settings.size)
        return RenderPlan(job, settings, output, skip=False, info=info, size=size, size_note=note)

    def _probe(self, path: Path) -> VideoInfo:
        key = path.resolve()
        if key not in self._probes:
            try:
                info = probe(path)
                if self.settings.max_frames is None:  # the first N frames may all be there
                    check_not_truncated(info)
                self._probes[key] = info
            except VidstyleError as err:
                self._probes[key] = err
        found = self._probes[key]
        if isinstance(found, VidstyleError):
            raise found
        return found

    def check_folder(self, output: Path, *, create: bool = False) -> None:
        """Raise `OutputError` unless `output`'s folder takes a new file (tried once per folder);
        with `create`, a missing folder is left to the render (creating it is the check)."""
        folder = output.parent.resolve()
        if create and not folder.exists():
            return
        if output.is_dir() or folder not in self._writable:
            check_output_writable(output)
            self._writable.add(folder)


def prepare(job: RenderJob, settings: RenderSettings) -> RenderPlan:
    """The plan of one render (see `Preparer`; a batch keeps one for all its jobs)."""
    return Preparer(settings, job.styles).prepare(job)
