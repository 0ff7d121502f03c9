"""Fast mode as a pipeline stage: a trained transformer network applied to batches of frames.

Frames are grouped into batches of `batch_size` (the last one may be shorter) so the device
works on several frames per call; instance normalisation is per image, so a frame's output does
not depend on which batch it landed in. Inference runs under `torch.inference_mode`, with the
network and input in channels-last layout and CUDA autocast (fp16, or bf16 where asked) where
that helps; everything the stage yields is float32 again, as the rest of the pipeline expects.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from vidstyle.config import RenderSettings
from vidstyle.errors import ConfigError
from vidstyle.frame import FrameRecord
from vidstyle.models import ModelInfo, load_model, resolve_model
from vidstyle.nets.transformer import TransformerNet

log = logging.getLogger(__name__)

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class InferenceOptions:
    """How the network runs; `resolve` turns the user's `auto` choices into concrete ones."""

    batch_size: int = 4
    autocast_dtype: torch.dtype | None = None  # None: float32 throughout
    channels_last: bool = False

    @classmethod
    def resolve(
        cls, device: torch.device, *, batch_size: int, precision: str, channels_last: str
    ) -> InferenceOptions:
        if precision in _DTYPES and device.type != "cuda":
            # CPU autocast exists, but without AMX/AVX-512 bf16 it is slower than float32, and
            # fp16 convolutions are not implemented on every CPU build.
            raise ConfigError(f"precision {precision} needs a CUDA device; use fp32 or auto")
        if precision == "auto":
            # fp16 on CUDA: tensor cores, half the memory traffic; instance norm keeps its
            # statistics in float32 under autocast, so results stay within a grey level or two.
            dtype = torch.float16 if device.type == "cuda" else None
        else:
            dtype = _DTYPES.get(precision)
        if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU has no bf16 support; use --precision fp16 or fp32")
        # cuDNN's fast fp16 convolutions want NHWC; on the CPU oneDNN reorders internally and
        # channels-last only adds conversions around padding and normalisation.
        cl = channels_last == "on" or (channels_last == "auto" and device.type == "cuda")
        return cls(batch_size=batch_size, autocast_dtype=dtype, channels_last=cl)

    def describe(self) -> str:
        dtype = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.autocast_dtype, "fp32")
        layout = "channels-last" if self.channels_last else "NCHW"
        return f"batch {self.batch_size}, {dtype}, {layout}"


class FeedForwardStylizer:
    """Iterator stage: FrameRecord(content) -> FrameRecord(content, styled), in order."""

    def __init__(
        self,
        net: TransformerNet,
        options: InferenceOptions | None = None,
        *,
        info: ModelInfo | None = None,
    ) -> None:
        self.options = options or InferenceOptions()
        if self.options.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.options.batch_size}")
        self.info = info
        net = net.eval().requires_grad_(False)
        if self.options.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    @classmethod
    def from_settings(cls, settings: RenderSettings, device: torch.device) -> FeedForwardStylizer:
        """Resolve `settings.model` (path or name in the models directory) and load it."""
        if not settings.model:
            raise ConfigError(
                "fast mode needs --model (a file from `vidstyle train`, or a name that "
                "`vidstyle models` lists)"
            )
        path: Path = resolve_model(settings.model, settings.models_dir)
        net, info = load_model(path, device)
        options = InferenceOptions.resolve(
            device,
            batch_size=settings.batch_size,
            precision=settings.precision,
            channels_last=settings.channels_last,
        )
        log.info("Model: %s; %s", info.summary(), options.describe())
        return cls(net, options, info=info)

    def stylize(self, batch: Tensor) -> Tensor:
        """N×3×H×W [0, 1] → N×3×H×W float32 [0, 1]; a normal tensor, `batch` untouched."""
        device = batch.device
        x = (
            batch.contiguous(memory_format=torch.channels_last)
            if self.options.channels_last
            else batch
        )
        autocast = (
            torch.autocast(device_type=device.type, dtype=self.options.autocast_dtype)
            if self.options.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        # cuDNN autotuning pays off here (one frame size for a whole video, thousands of calls),
        # but it is a process-wide flag, so it is set for this call only.
        benchmark = torch.backends.cudnn.benchmark
        try:
            torch.backends.cudnn.benchmark = device.type == "cuda" or benchmark
            with torch.inference_mode(), autocast:
                y = self.net(x)
        finally:
            torch.backends.cudnn.benchmark = benchmark
        # Outside inference mode, so later stages get ordinary tensors they may use with
        # autograd or view freely (inference tensors refuse both); contiguous NCHW float32 is
        # what tensor_to_image and the temporal stage expect.
        return y.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)

    def __call__(self, frames: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        batch: list[FrameRecord] = []
        for record in frames:
            if batch and record.content.shape != batch[0].content.shape:
                # Cannot happen within one video; flushing keeps the stage correct regardless.
                yield from self._run(batch)
                batch = []
            batch.append(record)
            if len(batch) >= self.options.batch_size:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)

    def _run(self, batch: list[FrameRecord]) -> Iterator[FrameRecord]:
        styled = self.stylize(torch.cat([record.content for record in batch]))
        for i, record in enumerate(batch):
            yield replace(record, styled=styled[i : i + 1])
