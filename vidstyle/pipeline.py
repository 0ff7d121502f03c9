"""One video: decode → stylize → encode, composed from iterator stages. No algorithm lives here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from vidstyle.config import RenderSettings, check_layer_weights
from vidstyle.device import resolve_device
from vidstyle.errors import ConfigError, OutputError, RenderInterrupted
from vidstyle.fingerprint import render_fingerprint, settings_files
from vidstyle.frame import FrameRecord
from vidstyle.media import (
    CODEC_ALIASES,
    VideoInfo,
    available_codecs,
    check_container_holds,
    check_output_writable,
    image_to_tensor,
    plan_size,
    probe,
    read_frames,
    tensor_to_image,
)
from vidstyle.media.segments import SegmentedWriter
from vidstyle.media.still import (
    IMAGE_EXT,
    check_image_output,
    image_size,
    is_still_image,
    read_image,
    write_image,
)
from vidstyle.memory import check_fits
from vidstyle.models import resolve_model
from vidstyle.provenance import stale_reason, stale_settings
from vidstyle.resume import capture, restore, skip_before
from vidstyle.stylize.color import LuminanceFeatures, preserve_colors_stage
from vidstyle.stylize.feedforward import FeedForwardStylizer
from vidstyle.stylize.losses import PerceptualLoss, perceptual_loss
from vidstyle.stylize.quality import QualityStylizer
from vidstyle.stylize.style_image import load_style_image
from vidstyle.stylize.targets import StyleTargets, blend_weights
from vidstyle.temporal import TemporalSmoother, flow_needed, flow_stage
from vidstyle.workdir import WorkDir

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the pipeline reports; `vidstyle.console` draws it, tests may record it."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, frames: int = 1) -> None: ...

    def partial(self, fraction: float) -> None:
        """Share (0..1) of the frame in progress done so far; `advance` ends the frame."""

    def finish(self) -> None: ...


class NullProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, frames: int = 1) -> None:
        pass

    def partial(self, fraction: float) -> None:
        pass

    def finish(self) -> None:
        pass


class _IterationShare:
    """Quality mode's progress within a frame: optimiser iterations against the frame's budget.

    A fresh frame (the first of a render, the first of a shot, every frame with `init =
    content`) gets `first_iterations`, often minutes of work, during which a bar counting whole
    frames would sit at 0/N with no rate and no ETA. `watch` sits in front of the stylizer to
    see which frame it takes next; the share is capped below 1 because an early stop may end
    the frame sooner and `advance` then completes it.
    """

    def __init__(self, progress: Progress, settings: RenderSettings) -> None:
        self.progress = progress
        self.settings = settings
        self.fresh_next = True  # False for a resumed render: it warm-starts from its saved output
        self.budget = settings.first_iterations
        self.done = 0

    def watch(self, records: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        for record in records:
            fresh = self.fresh_next or record.new_shot or self.settings.init == "content"
            self.fresh_next = False
            self.budget = self.settings.first_iterations if fresh else self.settings.iterations
            self.done = 0
            yield record

    def on_iteration(self, iteration: int, loss: float) -> None:
        self.done += 1
        self.progress.partial(min(self.done / max(1, self.budget), 0.99))


@dataclass(frozen=True)
class RenderResult:
    input: Path
    output: Path
    status: str  # "rendered" | "skipped" | "stale" (skipped, made with other settings)
    frames: int = 0
    seconds: float = 0.0
    size: tuple[int, int] | None = None
    resumed_from: int = 0  # frames an earlier, interrupted run had finished (vidstyle.resume)

    @property
    def frames_per_second(self) -> float:
        """Frames rendered by this run per second of it."""
        done = self.frames - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


def default_output_path(input_path: Path, styles: Sequence[Path], *, still: bool = False) -> Path:
    """`<stem>.<style-stem>.mp4` beside the input (style stems joined with '+' for blends);
    `.png` for a still image input."""
    style_part = "+".join(style.stem for style in styles)
    suffix = IMAGE_EXT if still else ".mp4"
    return input_path.with_name(f"{input_path.stem}.{style_part}{suffix}")


def expected_frames(info: VideoInfo, max_frames: int | None) -> int | None:
    if info.frame_count is None:
        return max_frames
    return min(info.frame_count, max_frames) if max_frames else info.frame_count


def build_loss(
    settings: RenderSettings, device: torch.device, *, luminance_only: bool = False
) -> PerceptualLoss:
    """The Gatys loss on the settings' layers; `luminance_only`: VGG sees luminance alone
    (luminance-only colour preservation, vidstyle.stylize.color)."""
    check_layer_weights(settings)
    return perceptual_loss(
        settings,
        device,
        style_layers=settings.style_layers,
        content_layers=settings.content_layers,
        style_layer_weights=settings.style_layer_weights,
        adapt_features=LuminanceFeatures if luminance_only else None,
    )


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
        # A model that is not there fails the command before any render is planned or logged.
        resolve_model(settings.model, settings.models_dir)
    elif not styles:
        raise ConfigError("quality mode needs --style IMAGE (or --mode fast with --model)")


def _check_codec(codec: str) -> None:
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


def _to_records(
    info: VideoInfo,
    size: tuple[int, int],
    max_frames: int | None,
    device: torch.device,
    start: int = 0,
) -> Iterator[FrameRecord]:
    for frame in read_frames(info, size=size, max_frames=max_frames):
        if frame.index < start:
            continue  # finished by an earlier run (resume): decoded only to count frames
        yield FrameRecord(
            index=frame.index, pts=frame.pts, content=image_to_tensor(frame.image, device)
        )


Stylizer = Callable[[Iterable[FrameRecord]], Iterator[FrameRecord]]


def build_stylizer(
    settings: RenderSettings,
    device: torch.device,
    style_images: Sequence[Image.Image],
    *,
    on_iteration: Callable[[int, float], None] | None = None,
) -> tuple[Stylizer, str | None]:
    """The stylize stage of `settings.mode`, and (quality mode) the VGG features in use."""
    if settings.mode == "fast":
        return FeedForwardStylizer.from_settings(settings, device), None
    loss = build_loss(settings, device, luminance_only=settings.preserve_colors == "luminance")
    # Several styles are one blended style here (weights from style_blend, else equal).
    targets = StyleTargets(
        loss,
        style_images,
        blend=settings.style_blend,
        style_scale=settings.style_scale,
        preserve_colors=settings.preserve_colors,
    )
    stylizer = QualityStylizer(loss, settings, style_targets=targets, on_iteration=on_iteration)
    return stylizer, loss.features.source.describe()


def _render_still(
    input_path: Path,
    output: Path,
    style_images: Sequence[Image.Image],
    settings: RenderSettings,
    progress: Progress,
) -> RenderResult:
    """One still image: the frame-1 path of a render (no flow, smoothing, segments or codec),
    written as an image."""
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    source = read_image(input_path)
    size = image_size((source.shape[1], source.shape[0]), settings.size)
    log.info(
        "%s → %s: %dx%d, %s mode on %s",
        input_path,
        output,
        size[0],
        size[1],
        settings.mode,
        device,
    )
    check_fits((source.shape[1], source.shape[0]), size, settings, device, input_path)
    stylizer, _ = build_stylizer(settings, device, style_images)
    if size != (source.shape[1], source.shape[0]):
        resized = Image.fromarray(source).resize(size, Image.Resampling.LANCZOS)
        source = np.asarray(resized, dtype=np.uint8)
    record = FrameRecord(index=0, pts=0, content=image_to_tensor(source, device), new_shot=True)
    started = time.perf_counter()
    progress.start(input_path.name, 1)
    try:
        records = stylizer(iter([record]))
        colors = preserve_colors_stage(settings.preserve_colors, settings.mode)
        if colors is not None:
            records = colors(records)
        styled = next(records).styled
        assert styled is not None
        progress.advance()
        write_image(tensor_to_image(styled), output)
    except KeyboardInterrupt:
        raise RenderInterrupted("interrupted; nothing was written", output) from None
    finally:
        progress.finish()
    seconds = time.perf_counter() - started
    log.info("%s: 1 image in %.1f s", output.name, seconds)
    return RenderResult(
        input=input_path, output=output, status="rendered", frames=1, seconds=seconds, size=size
    )


def stylize_video(
    input_path: Path,
    styles: Sequence[Path],
    settings: RenderSettings,
    *,
    output: Path | None = None,
    progress: Progress | None = None,
) -> RenderResult:
    """Render one video in the given style(s). Raises VidstyleError subclasses for user errors."""
    progress = progress or NullProgress()
    check_mode_inputs(settings, styles)
    if settings.mode == "quality" and settings.style_blend is not None:
        blend_weights(settings.style_blend, len(styles))  # a wrong count fails before any work
    still = is_still_image(input_path)
    info = None if still else probe(input_path)
    style_images = [load_style_image(path) for path in styles]
    # Fast mode names the output after the model (`clip.starry.mp4`), as quality mode does
    # after the style image.
    output = output or default_output_path(
        input_path, styles or [Path(settings.model or "")], still=still
    )
    if output.exists() and output.resolve() == input_path.resolve():
        raise OutputError("output would overwrite the input; pass another -o", output)
    if still:
        check_image_output(output)
    if output.exists() and not settings.overwrite:
        stale = stale_settings(output, input_path, styles, settings)
        if stale:
            log.warning("%s %s", output, stale_reason(stale))
            return RenderResult(input=input_path, output=output, status="stale")
        log.info("%s exists; skipping (pass --overwrite to render again)", output)
        return RenderResult(input=input_path, output=output, status="skipped")
    check_output_writable(output)
    if still:
        return _render_still(input_path, output, style_images, settings, progress)
    assert info is not None
    _check_codec(settings.codec)
    check_container_holds(output, settings.codec)  # not only when the segments are joined
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)

    size, size_note = plan_size(info.size, settings.size)
    if size_note:
        log.info("%s: %s", input_path.name, size_note)
    log.info(
        "%s → %s: %dx%d, %s fps, %s mode on %s",
        input_path,
        output,
        size[0],
        size[1],
        info.fps,
        settings.mode,
        device,
    )
    check_fits(info.size, size, settings, device, input_path)  # before any work is wasted
    share = _IterationShare(progress, settings) if settings.mode == "quality" else None
    stylizer, features = build_stylizer(
        settings, device, style_images, on_iteration=None if share is None else share.on_iteration
    )
    smoother = TemporalSmoother(settings.smooth) if settings.smooth > 0 else None

    # Earlier progress of this same command, if it was interrupted (vidstyle.resume); the
    # stages that carry state from frame to frame continue from the last saved frame.
    identity = render_fingerprint(
        input_path, styles, settings, files=settings_files(settings), features=features
    )
    work = WorkDir.open(output, identity, resume=settings.resume)
    stages = [stylizer, smoother]
    restore(stages, work.carry)
    start = work.next_index
    if share is not None:
        share.fresh_next = start == 0

    total = expected_frames(info, settings.max_frames)
    frame_ticks = Fraction(1) / (info.fps * info.time_base) if info.fps else Fraction(1)
    started = time.perf_counter()
    written = 0
    progress.start(
        f"{input_path.name} (from frame {start})" if start else input_path.name,
        None if total is None else max(0, total - start),
    )
    # The stages with threads (decoder, flow), closed on the way out even when a traceback
    # keeps this frame alive: their threads stop now, not whenever the garbage collector runs.
    threaded: list[Iterator[FrameRecord]] = []
    try:
        flow = flow_needed(settings)
        # Flow into the first new frame needs the source frame before it: decode one more.
        context = 1 if flow and start else 0
        frames = _to_records(info, size, settings.max_frames, device, start=start - context)
        threaded.append(frames)
        if flow:
            # Flow of the source frames, computed once on a worker thread ahead of the
            # stylizer, and shared by it (warm start, temporal loss) and the smoothing stage.
            frames = flow_stage(settings, device)(frames)
            threaded.append(frames)
        if start:
            frames = skip_before(frames, start)
        records = stylizer(frames if share is None else share.watch(frames))
        if smoother is not None:
            records = smoother(records)
        colors = preserve_colors_stage(settings.preserve_colors, settings.mode)
        if colors is not None:
            # After smoothing, so luminance-only output keeps the source's chroma exactly.
            records = colors(records)
        # Frames are encoded into segments in the work folder, on their own thread
        # (overlapped with stylization); each full segment is saved with the stages' state.
        with SegmentedWriter(
            work,
            info,
            size,
            codec=settings.codec,
            crf=settings.crf,
            encoder_preset=settings.encoder_preset,
            segment_frames=settings.segment_frames,
            snapshot=lambda: capture(stages),
            queue_size=2 * settings.batch_size,
        ) as segments:
            for record in records:
                assert record.styled is not None
                # Only the image and its time: the record's other tensors can be freed.
                segments.write(record.styled, record.pts)
                written += 1
                progress.advance()
        end_pts = None
        if settings.max_frames is not None and work.last_pts is not None:
            # A preview's audio ends where its last frame ends.
            end_pts = work.last_pts + round(frame_ticks)
        frames_total = work.join(info, audio=settings.audio, end_pts=end_pts)
    except BaseException as err:
        work.remove_if_empty()
        if not isinstance(err, KeyboardInterrupt):
            raise
        saved = work.next_index
        raise RenderInterrupted(
            f"interrupted; {saved} frames are saved, run the same command to resume (nothing "
            "was written under the final name)"
            if saved
            else "interrupted; nothing was written under the final name",
            output,
        ) from None
    finally:
        for stage in reversed(threaded):  # downstream first: it may be iterating upstream
            stage.close()  # type: ignore[attr-defined]
        progress.finish()
    seconds = time.perf_counter() - started
    log.info(
        "%s: %d frames in %.1f s (%.2f frames/s)",
        output.name,
        written,
        seconds,
        written / seconds if seconds else 0.0,
    )
    return RenderResult(
        input=input_path,
        output=output,
        status="rendered",
        frames=frames_total,
        seconds=seconds,
        size=size,
        resumed_from=start,
    )
