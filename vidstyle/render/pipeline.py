"""One render: `build_stages` and `run` carry out what `vidstyle.render.prepare` decided.

decode → stylize → encode, composed from iterator stages; no algorithm lives here. `render`
is the whole of one planned render (memory check, stages, work folder, run); `stylize_video`
is the one-call API: prepare, then render.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidstyle import reproducible
from vidstyle.config import RenderSettings, check_layer_weights
from vidstyle.device import Precision, resolve_device, torch_threads
from vidstyle.errors import OutputError, RenderInterrupted
from vidstyle.fingerprint import render_fingerprint, settings_files
from vidstyle.frame import FrameRecord, decode_records
from vidstyle.media import image_to_tensor, tensor_to_image
from vidstyle.media.segments import SegmentedWriter, preview_end_pts
from vidstyle.media.still import image_size, read_image, write_image
from vidstyle.render.events import Emit, FrameDone, Iteration, RenderResult, Started, ignore
from vidstyle.render.memory import check_fits
from vidstyle.render.prepare import RenderJob, RenderPlan, prepare
from vidstyle.render.resume import capture, restore, skip_before
from vidstyle.render.threads import render_threads
from vidstyle.render.workdir import PART_KEY, WorkDir
from vidstyle.stylize.color import LuminanceFeatures, PreserveColors, preserve_colors_stage
from vidstyle.stylize.feedforward import FastConfig, FeedForwardStylizer
from vidstyle.stylize.losses import (
    LossConfig,
    PerceptualLoss,
    loss_config_of,
    loss_network_precision,
    perceptual_loss,
)
from vidstyle.stylize.optimize import OptimizerConfig
from vidstyle.stylize.quality import QualityConfig, QualityStylizer
from vidstyle.stylize.style_image import load_style_image
from vidstyle.stylize.targets import StyleTargets
from vidstyle.temporal import FlowStage, TemporalSmoother

log = logging.getLogger(__name__)


class _IterationShare:
    """Quality mode's progress within a frame: optimiser iterations against the frame's budget.

    A fresh frame (the first of a render, the first of a shot, every frame with `init =
    content`) gets `first_iterations`, often minutes of work, during which a bar counting whole
    frames would sit at 0/N with no rate and no ETA. `watch` sits in front of the stylizer to
    see which frame it takes next; the share is capped below 1 because an early stop may end
    the frame sooner and `advance` then completes it. Built with the stylizer (which reports
    its iterations to it); `run` tells it where to report and whether the render is resumed.
    """

    def __init__(self, first_iterations: int, iterations: int, init: str) -> None:
        self.first_iterations, self.iterations, self.init = first_iterations, iterations, init
        self.emit: Emit = ignore
        self.job = 0  # the render the events are about
        self.fresh_next = True  # False for a resumed render: it warm-starts from its saved output
        self.budget = first_iterations
        self.done = 0

    def watch(self, records: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        for record in records:
            fresh = self.fresh_next or record.new_shot or self.init == "content"
            self.fresh_next = False
            self.budget = self.first_iterations if fresh else self.iterations
            self.done = 0
            yield record

    def on_iteration(self, iteration: int, loss: float) -> None:
        self.done += 1
        self.emit(Iteration(self.job, min(self.done / max(1, self.budget), 0.99)))


# Each stage takes a small config of its own; these build them from a render's settings, so
# that the settings of the whole program reach no further than this module.


def loss_config(settings: RenderSettings) -> LossConfig:
    """The perceptual loss of quality mode (and of `vidstyle eval`'s style distance)."""
    return replace(
        loss_config_of(settings),
        style_layers=settings.style_layers,
        content_layers=settings.content_layers,
        style_layer_weights=settings.style_layer_weights,
    )


def quality_config(settings: RenderSettings) -> QualityConfig:
    """What quality mode's stage needs of `settings`."""
    return QualityConfig(
        first_init=settings.first_init,
        init=settings.init,
        first_iterations=settings.first_iterations,
        iterations=settings.iterations,
        temporal_weight=settings.temporal_weight,
        coarse_to_fine=settings.coarse_to_fine,
        coarse_min_size=settings.coarse_min_size,
        seed=settings.seed,
        optimizer=OptimizerConfig(
            optimizer=settings.optimizer,
            learning_rate=settings.learning_rate,
            stop_tolerance=settings.stop_tolerance,
            stop_window=settings.stop_window,
        ),
    )


def fast_config(settings: RenderSettings) -> FastConfig:
    """What fast mode's stage needs of `settings`."""
    return FastConfig(
        model=settings.model,
        models_dir=settings.models_dir,
        batch_size=settings.batch_size,
        precision=settings.precision,
        channels_last=settings.channels_last,
    )


def flow_needed(settings: RenderSettings) -> bool:
    """Whether any stage of a render with `settings` uses flow (so the flow stage should run).

    Smoothing (both modes) and quality mode's warm start use it; `init = "prev"` too, only to
    start fresh after a scene cut. Independent frames without smoothing need none.
    """
    return settings.smooth > 0 or (settings.mode == "quality" and settings.init != "content")


def flow_stage(settings: RenderSettings, device: torch.device) -> FlowStage:
    """The flow stage a render with `settings` on `device` uses (render, shots and benchmarks)."""
    return FlowStage(
        settings.flow_preset,
        scene_cut_threshold=settings.scene_cut_threshold,
        opencv_threads=1 if device.type == "cpu" else None,
    )


def build_loss(
    settings: RenderSettings, device: torch.device, *, luminance_only: bool = False
) -> PerceptualLoss:
    """The Gatys loss on the settings' layers; `luminance_only`: VGG sees luminance alone
    (luminance-only colour preservation, vidstyle.stylize.color)."""
    check_layer_weights(settings)
    return perceptual_loss(
        loss_config(settings),
        device,
        adapt_features=LuminanceFeatures if luminance_only else None,
    )


Stylizer = Callable[[Iterable[FrameRecord]], Iterator[FrameRecord]]


def build_stylizer(
    settings: RenderSettings,
    device: torch.device,
    style_images: Sequence[Image.Image],
    *,
    on_iteration: Callable[[int, float], None] | None = None,
    size: tuple[int, int] = (256, 256),
) -> tuple[Stylizer, str | None, Precision]:
    """The stylize stage of `settings.mode` for frames of `size` (width, height), (quality mode)
    the VGG features in use, and the precision its network runs in."""
    if settings.mode == "fast":
        fast = FeedForwardStylizer.from_config(fast_config(settings), device, size=size)
        return fast, None, fast.options.precision
    loss = build_loss(settings, device, luminance_only=settings.preserve_colors == "luminance")
    precision = loss_network_precision(loss, settings.precision, device, size)
    # Several styles are one blended style here (weights from style_blend, else equal).
    targets = StyleTargets(
        loss,
        style_images,
        blend=settings.style_blend,
        style_scale=settings.style_scale,
        preserve_colors=settings.preserve_colors,
    )
    stylizer = QualityStylizer(
        loss, quality_config(settings), style_targets=targets, on_iteration=on_iteration
    )
    return stylizer, loss.features.source.describe(), precision


@dataclass
class Stages:
    """The stages of one render, built on its device; `run` composes them around the decoder
    and the segment writer."""

    device: torch.device
    stylizer: Stylizer
    features: str | None  # quality mode: the VGG features in use (part of the fingerprint)
    precision: Precision  # what the network runs in (part of the fingerprint)
    flow: FlowStage | None = None  # flow of the source frames, for warm start and smoothing
    smoother: TemporalSmoother | None = None
    colors: PreserveColors | None = None
    share: _IterationShare | None = None  # quality mode's progress within a frame

    @property
    def stateful(self) -> list[object]:
        """The stages that carry state from frame to frame (saved with each segment, restored
        on resume)."""
        return [self.stylizer, self.smoother]


def build_stages(
    settings: RenderSettings,
    device: torch.device,
    styles: Sequence[Path],
    size: tuple[int, int] = (256, 256),
) -> Stages:
    """Every stage `settings` asks for, on `device`, in the style of the `styles` images, for
    frames of `size` (width, height)."""
    share = None
    if settings.mode == "quality":
        share = _IterationShare(settings.first_iterations, settings.iterations, settings.init)
    stylizer, features, precision = build_stylizer(
        settings,
        device,
        [load_style_image(path) for path in styles],
        on_iteration=None if share is None else share.on_iteration,
        size=size,
    )
    smoother = TemporalSmoother(settings.smooth) if settings.smooth > 0 else None
    return Stages(
        device=device,
        stylizer=stylizer,
        features=features,
        precision=precision,
        flow=flow_stage(settings, device) if flow_needed(settings) else None,
        smoother=smoother,
        colors=preserve_colors_stage(settings.preserve_colors, settings.mode),
        share=share,
    )


def render(
    plan: RenderPlan,
    device: torch.device,
    *,
    sharing: int = 1,
    threads: int | None = None,
    job: int = 0,
    emit: Emit = ignore,
) -> RenderResult:
    """Carry out a plan that renders (not a skip) on `device`, which `sharing` renders share
    (each must fit in that share of its memory), with `threads` CPU threads (None: as they
    are; `vidstyle.render.threads` decides); its progress goes to `emit` as events about
    render `job`. Raises for a render that fails."""
    assert not plan.skip, "a skipped plan has nothing to render"
    flags = reproducible.configure(device)  # before the first CUDA computation
    if flags is not None:
        log.debug("CUDA: %s", flags.describe())
    with torch_threads(threads):
        return _render(plan, device, sharing, job, emit)


def _render(
    plan: RenderPlan, device: torch.device, sharing: int, job: int, emit: Emit
) -> RenderResult:
    settings = plan.settings
    if plan.job.create_folder:
        _make_folder(plan.output)
    torch.manual_seed(settings.seed)
    source = _source(plan)
    _check_memory(plan, source.source_size, source.size, device, sharing)  # before any work
    # Built before the render is announced: a model or VGG file that cannot be used, or a layer
    # the network lacks, is an error on its own, not one that follows "clip.mp4 → ...".
    stages = build_stages(settings, device, plan.styles, source.size)
    if plan.size_note:
        log.info("%s: %s", plan.input.name, plan.size_note)
    width, height = source.size
    log.info(
        "%s → %s: %dx%d, %s%s mode on %s",
        plan.input,
        plan.output,
        width,
        height,
        source.rate,
        settings.mode,
        device,
    )
    _log_precision(device, stages.precision)
    if source.picture is not None:
        return _render_picture(plan, stages, source.picture, job=job, emit=emit)
    return run(plan, stages, _open_work(plan, stages), job=job, emit=emit)


@dataclass(frozen=True)
class _Source:
    """What a render decodes: the frame size it renders and its source's, and, for a still
    image, the picture itself (read once, at the size rendered)."""

    size: tuple[int, int]
    source_size: tuple[int, int]
    rate: str  # the frame rate as the log's first line says it ("" for an image)
    picture: np.ndarray | None = None


def _source(plan: RenderPlan) -> _Source:
    if not plan.still:
        assert plan.info is not None and plan.size is not None
        return _Source(plan.size, plan.info.size, f"{plan.info.fps} fps, ")
    picture = read_image(plan.input)
    source_size = (picture.shape[1], picture.shape[0])
    size = image_size(source_size, plan.settings.size)
    if size != source_size:
        resized = Image.fromarray(picture).resize(size, Image.Resampling.LANCZOS)
        picture = np.asarray(resized, dtype=np.uint8)
    return _Source(size, source_size, "", picture)


def _log_precision(device: torch.device, precision: Precision) -> None:
    # Once the network is built: `auto` may have measured it. The render's first line (before
    # anything that can fail) names the device too.
    log.info("Precision on %s: %s", device, precision.describe())


def _check_memory(
    plan: RenderPlan,
    source_size: tuple[int, int],
    size: tuple[int, int],
    device: torch.device,
    sharing: int,
) -> None:
    settings = plan.settings
    check_fits(
        source_size,
        size,
        device,
        plan.input,
        mode=settings.mode,
        batch_size=settings.batch_size,
        style_scale=settings.style_scale,
        sharing=sharing,
        # On CUDA fast mode runs in 16-bit unless fp32 is asked for (vidstyle.stylize.feedforward).
        half=settings.precision != "fp32",
    )


def _make_folder(output: Path) -> None:
    """The output's folder and the mirrored subfolders above it, as needed."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create the output folder ({err.strerror or err}); choose another -o",
            output.parent,
        ) from err


@dataclass(frozen=True)
class _Part:
    """The frames a video render covers and where its work goes. A whole video is the
    one-part case: frames from 0, the output's own work folder, joined into the output when
    done. A part of a video (`plan.shot`) keeps its work in a folder of its own, and its
    segments wait for the other parts (`vidstyle.batch.shots` joins them)."""

    first: int
    stop: int | None  # None: to the end (or `max_frames`)
    expected_stop: int | None  # where the container says the frames end (None: unknown)
    name: str  # on the progress display
    log_name: str
    folder: Path | None  # its work folder (None: the output's)
    key: str | None  # its frame range, in its work folder's fingerprint
    joins: bool  # writes the output when its last frame is done


def _part(plan: RenderPlan) -> _Part:
    shot = plan.shot
    if shot is None:
        name = plan.input.name
        stop = plan.settings.max_frames
        return _Part(0, stop, plan.frames, name, plan.output.name, None, None, joins=True)
    name = shot.describe(plan.input.name)
    folder, key = shot.folder(plan.output), f"{shot.first}-{shot.stop}"
    return _Part(shot.first, shot.stop, shot.stop, name, name, folder, key, joins=False)


def _open_work(plan: RenderPlan, stages: Stages) -> WorkDir:
    """The work folder of the plan's frames: earlier progress of this same command, if it was
    interrupted (vidstyle.render.resume), from which the stages that carry state from frame to
    frame continue."""
    part = _part(plan)
    settings = plan.settings
    identity = render_fingerprint(
        plan.input,
        plan.styles,
        settings,
        files=settings_files(settings),
        features=stages.features,
        precision=stages.precision.name,
    )
    if part.key is not None:
        identity[PART_KEY] = part.key
    return WorkDir.open(
        plan.output, identity, resume=settings.resume, first_index=part.first, path=part.folder
    )


def run(
    plan: RenderPlan, stages: Stages, work: WorkDir, *, job: int = 0, emit: Emit = ignore
) -> RenderResult:
    """Render the plan's frames (the whole video, or its part `plan.shot`) through `stages`
    into `work`'s segments; a whole video's are then joined under the output's name. Ctrl-C
    raises `RenderInterrupted` with the progress saved."""
    part = _part(plan)
    restore(stages.stateful, work.carry)
    start = work.next_index
    if stages.share is not None:
        stages.share.emit, stages.share.job = emit, job
        stages.share.fresh_next = start == part.first
    expected = None if part.expected_stop is None else max(0, part.expected_stop - start)
    resumed = f" (from frame {start})" if start > part.first else ""
    emit(Started(job, part.name + resumed, expected))
    started = time.perf_counter()
    # The stages with threads (decoder, flow), closed on the way out even when a traceback
    # keeps this frame alive: their threads stop now, not whenever the garbage collector runs.
    threaded: list[Iterator[FrameRecord]] = []
    try:
        frames = _decoded(plan, stages, start, part.stop, threaded)
        written = _encode(plan, stages, work, _stylized(stages, frames), job=job, emit=emit)
        frames_total = _finish(plan, part, work)
    except BaseException as err:
        work.remove_if_empty()
        if not isinstance(err, KeyboardInterrupt):
            raise
        raise _interrupted(work.next_index, plan.output) from None
    finally:
        _close(threaded)
    seconds = time.perf_counter() - started
    log.info(
        "%s: %d frames in %.1f s (%.2f frames/s)",
        part.log_name,
        written,
        seconds,
        written / seconds if seconds else 0.0,
    )
    return RenderResult(
        input=plan.input,
        output=plan.output,
        status="rendered",
        frames=frames_total,
        seconds=seconds,
        size=plan.size,
        resumed_from=start - part.first,
    )


def _encode(
    plan: RenderPlan,
    stages: Stages,
    work: WorkDir,
    records: Iterator[FrameRecord],
    *,
    job: int,
    emit: Emit,
) -> int:
    """Encode the stylized frames into segments in the work folder, on their own thread
    (overlapped with stylization); each full segment is saved with the stages' state. Returns
    the number of frames written."""
    settings = plan.settings
    assert plan.info is not None and plan.size is not None
    written = 0
    with SegmentedWriter(
        work,
        plan.info,
        plan.size,
        codec=settings.codec,
        crf=settings.crf,
        encoder_preset=settings.encoder_preset,
        segment_frames=settings.segment_frames,
        snapshot=lambda: capture(stages.stateful),
        queue_size=2 * settings.batch_size,
    ) as segments:
        for record in records:
            assert record.styled is not None
            # Only the image and its time: the record's other tensors can be freed.
            segments.write(record.styled, record.pts, new_shot=record.new_shot)
            written += 1
            emit(FrameDone(job))
    return written


def _finish(plan: RenderPlan, part: _Part, work: WorkDir) -> int:
    """The frames of the output (or of this part of it): a whole video's segments are joined
    under the output's name with the source's audio; a part's wait for the other parts."""
    if not part.joins:
        return work.saved_frames
    assert plan.info is not None
    settings = plan.settings
    end_pts = None
    if settings.max_frames is not None and work.last_pts is not None:
        end_pts = preview_end_pts(work.last_pts, plan.info)
    return work.join(plan.info, audio=settings.audio, end_pts=end_pts)


def _decoded(
    plan: RenderPlan,
    stages: Stages,
    start: int,
    stop: int | None,
    threaded: list[Iterator[FrameRecord]],
) -> Iterator[FrameRecord]:
    """decode → flow, frames `start` to `stop` (None: the end); the stages that run threads
    are added to `threaded` for the caller to close."""
    assert plan.info is not None and plan.size is not None
    # Flow into the first new frame needs the source frame before it: decode one more.
    context = 1 if stages.flow is not None and start else 0
    frames = decode_records(plan.info, plan.size, stop, stages.device, start=start - context)
    threaded.append(frames)
    frames = _with_flow(stages, frames, threaded)
    return skip_before(frames, start) if start else frames


def _with_flow(
    stages: Stages, frames: Iterator[FrameRecord], threaded: list[Iterator[FrameRecord]]
) -> Iterator[FrameRecord]:
    if stages.flow is None:
        return frames
    # Flow of the source frames, computed once on a worker thread ahead of the stylizer, and
    # shared by it (warm start, temporal loss) and the smoothing stage.
    frames = stages.flow(frames)
    threaded.append(frames)
    return frames


def _stylized(stages: Stages, frames: Iterator[FrameRecord]) -> Iterator[FrameRecord]:
    """stylize → smooth → colours."""
    if stages.share is not None:
        frames = stages.share.watch(frames)
    records = stages.stylizer(frames)
    if stages.smoother is not None:
        records = stages.smoother(records)
    if stages.colors is not None:
        # After smoothing, so luminance-only output keeps the source's chroma exactly.
        records = stages.colors(records)
    return records


def _close(threaded: list[Iterator[FrameRecord]]) -> None:
    for stage in reversed(threaded):  # downstream first: it may be iterating upstream
        stage.close()  # type: ignore[attr-defined]


def _interrupted(saved: int, output: Path) -> RenderInterrupted:
    return RenderInterrupted(
        f"interrupted; {saved} frames are saved, run the same command to resume (nothing "
        "was written under the final name)"
        if saved
        else "interrupted; nothing was written under the final name",
        output,
    )


def _render_picture(
    plan: RenderPlan, stages: Stages, picture: np.ndarray, *, job: int, emit: Emit
) -> RenderResult:
    """A still image: a one-frame stream through the stages, written as an image."""
    if stages.share is not None:
        stages.share.emit, stages.share.job = emit, job
    started = time.perf_counter()
    emit(Started(job, plan.input.name, 1))
    try:
        styled = stylize_picture(stages, picture)
        emit(FrameDone(job))
        write_image(styled, plan.output)
    except KeyboardInterrupt:
        raise RenderInterrupted("interrupted; nothing was written", plan.output) from None
    seconds = time.perf_counter() - started
    log.info("%s: 1 image in %.1f s", plan.output.name, seconds)
    return RenderResult(
        input=plan.input,
        output=plan.output,
        status="rendered",
        frames=1,
        seconds=seconds,
        size=(picture.shape[1], picture.shape[0]),
    )


def stylize_picture(stages: Stages, picture: np.ndarray) -> np.ndarray:
    """One H×W×3 uint8 RGB picture of the stages' size, stylized as a one-frame stream through
    them: as the first frame of a shot is (quality mode's frame-1 budget, or the network;
    colours preserved as asked). A still image's render, and each picture of a contact sheet
    (`vidstyle.batch.sheet`)."""
    record = FrameRecord(
        index=0,
        pts=0,
        content=image_to_tensor(picture, stages.device),
        new_shot=True,
        rgb8=picture,
    )
    threaded: list[Iterator[FrameRecord]] = []
    try:
        styled = next(_stylized(stages, _with_flow(stages, iter([record]), threaded))).styled
    finally:
        _close(threaded)
    assert styled is not None
    return tensor_to_image(styled)


def stylize_video(
    input_path: Path,
    styles: Sequence[Path],
    settings: RenderSettings,
    *,
    output: Path | None = None,
    on_event: Emit = ignore,
) -> RenderResult:
    """Render one video (or still image) in the given style(s); an existing output is skipped
    unless `settings.overwrite`. Its progress goes to `on_event` (`vidstyle.render.events`).
    Raises VidstyleError subclasses for user errors."""
    plan = prepare(RenderJob(input_path, tuple(styles), output), settings)
    if plan.skip:
        log_skip(plan)
        status = "stale" if plan.stale else "skipped"
        return RenderResult(input=plan.input, output=plan.output, status=status)
    device = resolve_device(settings.device)
    return render(plan, device, threads=render_threads(settings.threads), emit=on_event)


def log_skip(plan: RenderPlan) -> None:
    """Say why a plan's output is not rendered: a stale one even with -q (it is not what the
    command asks for), an up-to-date one as information."""
    if plan.stale:
        log.warning("%s %s", plan.output, plan.skip_reason.removeprefix("output "))
    else:
        log.info("%s exists; skipping (pass --overwrite to render again)", plan.output)
