"""Fast mode as a pipeline stage: a trained transformer network applied to batches of frames.

Frames are grouped into batches of `batch_size` (the last one may be shorter) so the device
works on several frames per call; instance normalisation is per image, so a frame's output does
not depend on which batch it landed in. Inference runs under `torch.inference_mode` with the
network and input in channels-last layout; on CUDA under autocast (fp16, or bf16 where asked),
on a CPU with the network converted to bf16 where `--precision auto` measured that it pays
(`vidstyle.device.choose_precision`). Everything the stage yields is float32 again, as the
rest of the pipeline expects.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from vidstyle.device import Precision, Timer, choose_precision, time_pass
from vidstyle.errors import ConfigError
from vidstyle.frame import FrameRecord
from vidstyle.nets.models import ModelInfo, load_model, resolve_model
from vidstyle.nets.transformer import TransformerNet

log = logging.getLogger(__name__)

_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16"}

# How far reduced-precision output may stray from the fp32 network, in grey levels of 255
# (tests/test_fast.py holds the stage to these). bf16 keeps 8 bits of mantissa, so a deep
# network's output moves by a grey level on average and by a few at the worst pixel.
TOLERANCE_MEAN = {torch.float16: 0.5, torch.bfloat16: 1.5}
TOLERANCE_MAX = {torch.float16: 4.0, torch.bfloat16: 12.0}


@dataclass(frozen=True)
class InferenceOptions:
    """How the network runs; `resolve` turns the user's `auto` choices into concrete ones."""

    batch_size: int = 4
    dtype: torch.dtype | None = None  # compute precision; None: float32 throughout
    channels_last: bool = False
    reason: str = "asked for"  # why this precision (`vidstyle.device.Precision.reason`)

    @classmethod
    def resolve(
        cls,
        device: torch.device,
        *,
        batch_size: int,
        precision: str,
        channels_last: str,
        timer: Timer | None = None,
        workload: str = "",
    ) -> InferenceOptions:
        """`timer` times one batch of the network in a dtype, for `auto` on a CPU (`workload`
        names it); without one, `auto` on a CPU keeps float32."""
        # On CUDA `auto` takes fp16 even where bf16 is native: inference has no gradients to
        # underflow, and fp16's longer mantissa keeps the output closer to float32 at the same
        # speed. On a CPU bf16 runs wherever the measurement found it pays (about 3x the fp32
        # network's frames/s on an AMX Xeon, bench/fast.py). Instance norm keeps its statistics
        # in float32 either way, so results stay within TOLERANCE_* of float32.
        chosen = choose_precision(
            precision, device, workload=workload, timer=timer, cuda_auto="fp16"
        )
        # cuDNN's fast fp16 convolutions want NHWC, and oneDNN's CPU convolutions are faster
        # in it too now that instance norm runs natively channels-last (no NCHW round trips).
        cl = channels_last != "off"
        return cls(batch_size, chosen.dtype, cl, chosen.reason)

    @property
    def precision(self) -> Precision:
        name = _NAMES.get(self.dtype, "fp32") if self.dtype is not None else "fp32"
        return Precision(name, self.reason)

    def describe(self) -> str:
        layout = "channels-last" if self.channels_last else "NCHW"
        return f"batch {self.batch_size}, {self.precision.describe()}, {layout}"


@dataclass(frozen=True)
class FastConfig:
    """What the fast stage is built from: the `model` (a file, or a name in `models_dir`), the
    frames per batch, and the user's `precision` and `channels_last` choices (auto or not)."""

    model: str | None
    models_dir: str | None
    batch_size: int
    precision: str
    channels_last: str


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
        device = next(net.parameters()).device
        # On CUDA, autocast picks the precision per op (norms stay float32). On the CPU the
        # weights are converted once instead: CPU autocast re-casts every weight on every
        # call, which measured a quarter slower than a bf16 network.
        self._autocast = self.options.dtype if device.type == "cuda" else None
        self._input_dtype = self.options.dtype if device.type != "cuda" else None
        if self._input_dtype is not None:
            net = net.to(self._input_dtype)
        if self.options.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    @classmethod
    def from_config(
        cls,
        config: FastConfig,
        device: torch.device,
        *,
        size: tuple[int, int] = (256, 256),
    ) -> FeedForwardStylizer:
        """Resolve `config.model` (path or name in the models directory) and load it, in the
        precision `config.precision` gives for frames of `size` (width, height)."""
        if not config.model:
            raise ConfigError(
                "fast mode needs --model (a file from `vidstyle train`, or a name that "
                "`vidstyle models` lists)"
            )
        path: Path = resolve_model(config.model, config.models_dir)
        net, info = load_model(path, device)
        channels_last = config.channels_last != "off"
        width, height = size
        options = InferenceOptions.resolve(
            device,
            batch_size=config.batch_size,
            precision=config.precision,
            channels_last=config.channels_last,
            timer=inference_timer(net, config.batch_size, size, channels_last),
            workload=f"{info.arch.name} transformer, inference, "
            f"{config.batch_size}x3x{height}x{width}",
        )
        log.info("Model: %s; %s", info.summary(), options.describe())
        return cls(net, options, info=info)

    def stylize(self, batch: Tensor) -> Tensor:
        """N×3×H×W [0, 1] → N×3×H×W float32 [0, 1]; a normal tensor, `batch` untouched."""
        device = batch.device
        x = batch if self._input_dtype is None else batch.to(self._input_dtype)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device_type=device.type, dtype=self._autocast)
            if self._autocast is not None
            else contextlib.nullcontext()
        )
        # cuDNN autotuning would pay off here (one frame size for a whole video), but it may
        # pick other algorithms, with other last bits, on every run: the render chose the
        # flags (vidstyle.reproducible; deterministic unless VIDSTYLE_CUDNN_BENCHMARK=1).
        with torch.inference_mode(), autocast:
            y = self.net(x)
        # Outside inference mode, so later stages get ordinary tensors they may use with
        # autograd or view freely (inference tensors refuse both); contiguous NCHW float32 is
        # what tensor_to_image and the temporal stage expect.
        return y.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)

    def __call__(self, frames: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        batch: list[FrameRecord] = []
        for record in frames:
            if batch and self._starts_batch(record, batch[0]):
                yield from self._run(batch)
                batch = []
            batch.append(record)
            if len(batch) >= self.options.batch_size:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)

    def _starts_batch(self, record: FrameRecord, first: FrameRecord) -> bool:
        """Whether `record` must open a new batch after one that began with `first`.

        Batches start at multiples of the batch size and at every new shot, so each frame lands
        in the same batch whether the video is rendered whole, resumed at a saved segment or
        split at its shots: a GPU may pick another convolution algorithm for another batch
        size, and the frames would then differ in their last bits.
        """
        return (
            record.new_shot
            or record.index % self.options.batch_size == 0
            or record.content.shape != first.content.shape  # not within one video; kept safe
        )

    def _run(self, batch: list[FrameRecord]) -> Iterator[FrameRecord]:
        styled = self.stylize(torch.cat([record.content for record in batch]))
        for i, record in enumerate(batch):
            yield replace(record, styled=styled[i : i + 1])


def inference_timer(
    net: TransformerNet, batch_size: int, size: tuple[int, int], channels_last: bool
) -> Timer:
    """Times one batch of `size` (width, height) frames through the stage as it would run
    `net` in a dtype (on copies: `net` itself is left as it is)."""
    stages: dict[torch.dtype | None, FeedForwardStylizer] = {}
    device = next(net.parameters()).device

    def timer(dtype: torch.dtype | None) -> float:
        if dtype not in stages:
            options = InferenceOptions(batch_size, dtype, channels_last)
            stages[dtype] = FeedForwardStylizer(copy.deepcopy(net), options)
        batch = torch.rand(batch_size, 3, size[1], size[0], device=device)
        return time_pass(lambda: stages[dtype].stylize(batch), device)

    return timer
