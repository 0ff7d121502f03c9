"""One video: decode → stylize → encode, composed from iterator stages. No algorithm lives here."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import torch

from vidstyle.config import RenderSettings
from vidstyle.device import resolve_device
from vidstyle.errors import ConfigError, OutputError, RenderInterrupted
from vidstyle.frame import FrameRecord
from vidstyle.media import (
    VideoInfo,
    VideoWriter,
    available_codecs,
    check_output_writable,
    image_to_tensor,
    plan_size,
    probe,
    read_frames,
    tensor_to_image,
)
from vidstyle.nets.vgg import VGGFeatures
from vidstyle.stylize.losses import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    LossWeights,
    PerceptualLoss,
)
from vidstyle.stylize.quality import QualityStylizer
from vidstyle.stylize.style_image import load_style_image, style_tensor

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the pipeline reports; `vidstyle.console` draws it, tests may record it."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, frames: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, frames: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class RenderResult:
    input: Path
    output: Path
    status: str  # "rendered" | "skipped"
    frames: int = 0
    seconds: float = 0.0
    size: tuple[int, int] | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def default_output_path(input_path: Path, styles: Sequence[Path]) -> Path:
    """`<stem>.<style-stem>.mp4` beside the input (style stems joined with '+' for blends)."""
    style_part = "+".join(style.stem for style in styles)
    return input_path.with_name(f"{input_path.stem}.{style_part}.mp4")


def expected_frames(info: VideoInfo, max_frames: int | None) -> int | None:
    if info.frame_count is None:
        return max_frames
    return min(info.frame_count, max_frames) if max_frames else info.frame_count


def build_loss(settings: RenderSettings, device: torch.device) -> PerceptualLoss:
    layers = sorted(set(DEFAULT_STYLE_LAYERS) | set(DEFAULT_CONTENT_LAYERS))
    features = VGGFeatures(
        layers,
        pooling=settings.pooling,
        weights=settings.features,
        weights_path=Path(settings.vgg_weights) if settings.vgg_weights else None,
        seed=settings.seed,
    ).to(device)
    weights = LossWeights(
        content=settings.content_weight, style=settings.style_weight, tv=settings.tv_weight
    )
    return PerceptualLoss(features, weights=weights).to(device)


def _check_codec(codec: str) -> None:
    codecs = available_codecs()
    if not codecs.get(codec, False):
        have = ", ".join(name for name, ok in codecs.items() if ok) or "none"
        missing = ", ".join(name for name, ok in codecs.items() if not ok)
        note = f" (not in this PyAV build: {missing})" if missing else ""
        raise ConfigError(f"codec '{codec}' is not available; choose one of {have}{note}")


def _to_records(
    info: VideoInfo, size: tuple[int, int], max_frames: int | None, device: torch.device
) -> Iterator[FrameRecord]:
    for frame in read_frames(info, size=size, max_frames=max_frames):
        yield FrameRecord(
            index=frame.index, pts=frame.pts, content=image_to_tensor(frame.image, device)
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
    info = probe(input_path)
    style_images = [load_style_image(path) for path in styles]
    output = output or default_output_path(input_path, styles)
    if output.exists() and output.resolve() == input_path.resolve():
        raise OutputError("output would overwrite the input; pass another -o", output)
    if output.exists() and not settings.overwrite:
        log.info("%s exists; skipping (pass --overwrite to render again)", output)
        return RenderResult(input=input_path, output=output, status="skipped")
    check_output_writable(output)
    _check_codec(settings.codec)
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
    loss = build_loss(settings, device)
    log.info("VGG-19 features: %s", loss.features.source.origin)
    loss.set_style(
        [style_tensor(image, size, settings.style_scale, device) for image in style_images]
    )
    stylizer = QualityStylizer(loss, settings)

    total = expected_frames(info, settings.max_frames)
    frame_ticks = Fraction(1) / (info.fps * info.time_base) if info.fps else Fraction(1)
    started = time.perf_counter()
    written = 0
    last_pts: int | None = None
    progress.start(input_path.name, total)
    try:
        records = stylizer(_to_records(info, size, settings.max_frames, device))
        with VideoWriter(
            output,
            info,
            size,
            codec=settings.codec,
            crf=settings.crf,
            encoder_preset=settings.encoder_preset,
            audio=settings.audio,
            end_pts=None,
        ) as writer:
            for record in records:
                assert record.styled is not None
                writer.write(tensor_to_image(record.styled), record.pts)
                last_pts = record.pts
                written += 1
                progress.advance()
            if settings.max_frames is not None and last_pts is not None:
                # A preview's audio ends where its last frame ends. The writer muxes audio only
                # up to the newest video frame, so setting this before close() is in time.
                writer.end_pts = last_pts + round(frame_ticks)
    except KeyboardInterrupt:
        raise RenderInterrupted(
            "interrupted; nothing was written under the final name", output
        ) from None
    finally:
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
        frames=written,
        seconds=seconds,
        size=size,
    )
