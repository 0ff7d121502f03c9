"""Training a fast-mode network for one style (Johnson et al. 2016).

The network learns to map a content image straight to its stylization by minimising the same
perceptual loss quality mode optimises per frame (`PerceptualLoss`: VGG-19 content, Gram style
and total variation terms, each target-normalised), over random square crops of training
images. Training data can be image folders and/or videos, so a user can train on the very
footage they will render: frames are sampled evenly across each clip and kept in memory at
training scale, while image folders (possibly large datasets such as COCO) are read lazily.

Resuming: every `checkpoint_every` steps, and at the end, the full training state (network,
Adam moments, step, data sampler RNG) is written atomically to `<out>.ckpt`. Running the same
command again continues from there and gives bitwise the same network as an uninterrupted run
on the same machine; a checkpoint from a different run (another style, size, data...) is an
error rather than silently mixed in. Asking for more `steps` than a finished run had continues
it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vidstyle import reproducible
from vidstyle.background import Output, produce_in_background
from vidstyle.config import TrainSettings
from vidstyle.device import (
    Precision,
    Timer,
    choose_precision,
    resolve_device,
    time_pass,
    torch_threads,
)
from vidstyle.errors import ConfigError, InputError, RenderInterrupted, VidstyleError, WeightsError
from vidstyle.filetypes import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from vidstyle.fingerprint import differences, training_fingerprint
from vidstyle.media import probe, read_frames
from vidstyle.nets.models import (
    CHECKPOINT_FORMAT,
    atomic_save,
    checkpoint_path,
    load_file,
    model_dict,
)
from vidstyle.nets.transformer import TransformerNet
from vidstyle.stylize.losses import (
    PerceptualLoss,
    gram_matrix,
    loss_config_of,
    perceptual_loss,
    vgg_of,
)
from vidstyle.stylize.style_image import load_style_image, style_tensor
from vidstyle.temporal.flow import FlowEstimator, warp
from vidstyle.temporal.losses import temporal_loss

log = logging.getLogger(__name__)

# Changes whenever what a checkpoint holds changes incompatibly, its fingerprint included
# (`vidstyle.fingerprint.training_fingerprint`: compared key by key when resuming).
CHECKPOINT_VERSION = 2
# Batches drawn ahead of the training step (each a few MB).
_PREFETCH = 2


@dataclass(frozen=True)
class StepReport:
    """What training reports after every step (the console draws it; tests record it)."""

    step: int  # steps done so far, 1-based
    steps: int  # the target
    values: dict[str, torch.Tensor]  # loss (total), content, style, tv (+ temporal), detached
    seconds: float  # wall time of this step

    @functools.cached_property
    def losses(self) -> dict[str, float]:
        """The values as floats: read from the device when asked for, not on every step."""
        return {name: float(value) for name, value in self.values.items()}


@dataclass(frozen=True)
class TrainResult:
    model: Path
    checkpoint: Path
    start_step: int  # 0 for a fresh run, else the step resumed from
    steps: int  # steps done in total (the model's training)
    losses: dict[str, float] = field(default_factory=dict)  # of the last step run
    seconds: float = 0.0


StepCallback = Callable[[StepReport], None]


# ----------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSources:
    images: tuple[Path, ...]
    videos: tuple[Path, ...]


def find_data(paths: Sequence[Path]) -> DataSources:
    """Image and video files named by `--data`: files, or folders searched recursively."""
    if not paths:
        raise ConfigError("no training data; pass --data with image folders and/or videos")
    images: list[Path] = []
    videos: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise InputError("training data not found; check the --data path", path)
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix in IMAGE_EXTENSIONS:
                images.append(path)
            elif suffix in VIDEO_EXTENSIONS:
                videos.append(path)
            else:
                raise InputError(
                    "not an image or video file by its extension; pass images, videos or "
                    "folders of them",
                    path,
                )
            continue
        found = 0
        for child in sorted(path.rglob("*")):
            # Hidden files and folders are left out: an interrupted render's segments in
            # `.<output>.vidstyle-work/` are not training footage.
            hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
            if hidden or not child.is_file():
                continue
            suffix = child.suffix.lower()
            if suffix in IMAGE_EXTENSIONS:
                images.append(child)
                found += 1
            elif suffix in VIDEO_EXTENSIONS:
                videos.append(child)
                found += 1
        if not found:
            raise InputError("folder holds no images or videos to train on", path)
    return DataSources(images=tuple(images), videos=tuple(videos))


def _training_scale(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the short side equal to `size` (up or down), aspect kept."""
    factor = size / min(width, height)
    return max(size, round(width * factor)), max(size, round(height * factor))


def load_image(path: Path, size: int) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB with its short side scaled to `size`."""
    with Image.open(path) as opened:
        w, h = opened.size
        target = _training_scale(w, h, size)
        # JPEG can decode at 1/2, 1/4, 1/8 scale directly: much faster for large photos.
        opened.draft("RGB", target)
        image = opened.convert("RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True)
class FramePair:
    """Two consecutive video frames and the flow between them, for the temporal loss."""

    previous: np.ndarray  # H×W×3 uint8, frame t−1
    current: np.ndarray  # H×W×3 uint8, frame t
    flow: np.ndarray  # H×W×2 float32, pixels, from frame t to frame t−1 (vidstyle.temporal)
    reliable: np.ndarray  # H×W float32 in {0, 1}


# A pair whose flow is reliable on less than this fraction of the frame straddles a cut (the
# render pipeline's default scene-cut threshold); it would teach nothing about motion.
_MIN_RELIABLE = 0.5


def load_video_frames(
    path: Path, size: int, count: int, *, pairs: bool = False
) -> tuple[list[np.ndarray], list[FramePair]]:
    """`count` frames spread evenly over the clip, short side scaled to `size`; with `pairs`,
    also each of those frames with the frame before it and the optical flow between them."""
    info = probe(path)
    # probe estimates the count from the duration when the container has none; without either,
    # the first `count` frames are used.
    total = info.frame_count or count
    wanted = sorted({round(i) for i in np.linspace(0, max(total - 1, 0), num=min(count, total))})
    keep = set(wanted)
    frames: list[np.ndarray] = []
    found_pairs: list[FramePair] = []
    estimator = FlowEstimator("medium") if pairs else None
    previous: np.ndarray | None = None
    target = _training_scale(info.width, info.height, size)
    for frame in read_frames(info, size=target, max_frames=wanted[-1] + 1):
        if frame.index in keep:
            frames.append(frame.image)
            if estimator is not None and previous is not None:
                flow, mask = estimator.flow_and_mask(frame.image, previous)
                if mask.mean() >= _MIN_RELIABLE:
                    found_pairs.append(FramePair(previous, frame.image, flow, mask))
        previous = frame.image
    if not frames:
        raise InputError("no frames could be decoded for training", path)
    return frames, found_pairs


class TrainingSet:
    """Random square crops from in-memory video frames and lazily read image files, and (for
    the temporal loss) from consecutive-frame pairs with their flow."""

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        images: Sequence[Path],
        size: int,
        pairs: Sequence[FramePair] = (),
    ) -> None:
        self.frames = list(frames)
        self.images = list(images)
        self.pairs = list(pairs)
        self.size = size
        if not self.frames and not self.images:
            raise ConfigError("no training data could be read")

    @classmethod
    def from_sources(
        cls, sources: DataSources, size: int, frames_per_video: int, *, pairs: bool = False
    ) -> TrainingSet:
        frames: list[np.ndarray] = []
        found_pairs: list[FramePair] = []
        for video in sources.videos:
            clip, clip_pairs = load_video_frames(video, size, frames_per_video, pairs=pairs)
            extra = f" and {len(clip_pairs)} frame pairs with flow" if pairs else ""
            log.info("Training data: %d frames%s from %s", len(clip), extra, video)
            frames.extend(clip)
            found_pairs.extend(clip_pairs)
        if sources.images:
            log.info("Training data: %d image file(s), read as needed", len(sources.images))
        if pairs and not found_pairs:
            raise ConfigError(
                "--temporal-weight needs consecutive video frames that follow each other (no "
                "usable pairs in the --data videos); pass videos or set --temporal-weight 0"
            )
        return cls(frames, sources.images, size, found_pairs)

    def __len__(self) -> int:
        return len(self.frames) + len(self.images)

    def _item(self, index: int) -> np.ndarray | None:
        if index < len(self.frames):
            return self.frames[index]
        path = self.images[index - len(self.frames)]
        try:
            return load_image(path, self.size)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
            # One bad file in a large dataset should not end a long run: drop it and go on.
            log.warning("Skipping training image %s: cannot read it (%s)", path, err)
            self.images.remove(path)
            if not len(self):
                raise ConfigError("none of the training images could be read") from None
            return None

    def _window(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int]:
        top = int(torch.randint(height - self.size + 1, (1,), generator=generator))
        left = int(torch.randint(width - self.size + 1, (1,), generator=generator))
        return top, left

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """count×3×size×size float32 in [0, 1] (CPU). All randomness comes from `generator`."""
        crops: list[np.ndarray] = []
        s = self.size
        while len(crops) < count:
            index = int(torch.randint(len(self), (1,), generator=generator))
            image = self._item(index)
            if image is None:
                continue
            top, left = self._window(*image.shape[:2], generator)
            crops.append(image[top : top + s, left : left + s])
        return _to_batch(crops)

    def sample_pairs(
        self, count: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(previous, current, flow, reliable) crops: count×3, count×3, count×2, count×1 × S×S.

        The same window is cut from both frames and the flow; flow values are displacements,
        so they stay valid in the crop, but points that move out of the window are marked
        unreliable (the warp would fill them with border colour).
        """
        s = self.size
        prev, cur, flows, masks = [], [], [], []
        for _ in range(count):
            pair = self.pairs[int(torch.randint(len(self.pairs), (1,), generator=generator))]
            top, left = self._window(*pair.current.shape[:2], generator)
            window = (slice(top, top + s), slice(left, left + s))
            prev.append(pair.previous[window])
            cur.append(pair.current[window])
            flow = pair.flow[window]
            xs = np.arange(s, dtype=np.float32)[None, :] + flow[..., 0]
            ys = np.arange(s, dtype=np.float32)[:, None] + flow[..., 1]
            inside = (xs >= 0) & (xs <= s - 1) & (ys >= 0) & (ys <= s - 1)
            flows.append(flow.transpose(2, 0, 1))
            masks.append((pair.reliable[window] * inside)[None])
        return (
            _to_batch(prev),
            _to_batch(cur),
            torch.from_numpy(np.ascontiguousarray(np.stack(flows))),
            torch.from_numpy(np.ascontiguousarray(np.stack(masks), dtype=np.float32)),
        )


def _to_batch(crops: Sequence[np.ndarray]) -> torch.Tensor:
    # numpy, not torch: batches are drawn on a background thread, where a torch op would start
    # a second OpenMP team competing with training's. Same IEEE division, same values.
    batch = np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))
    return torch.from_numpy(np.divide(batch, 255.0, dtype=np.float32))


# ------------------------------------------------------------------------------- training


def build_loss(settings: TrainSettings, device: torch.device) -> PerceptualLoss:
    """The perceptual loss with the same VGG module and weight sources as quality mode."""
    return perceptual_loss(loss_config_of(settings), device)


def _loss_network(loss: PerceptualLoss) -> str:
    source = loss.features.source
    return f"{source.kind} {source.arch}" + (f" ({source.layout} layout)" if source.layout else "")


def _load_checkpoint(path: Path, fingerprint: Mapping[str, str]) -> dict[str, Any]:
    obj = load_file(path, "training checkpoint", remedy="pass --restart to start over")
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(
            "not a vidstyle training checkpoint; move it away or pass --restart", path
        )
    if obj.get("version") != CHECKPOINT_VERSION:
        raise WeightsError(
            f"checkpoint format version {obj.get('version')!r} is not {CHECKPOINT_VERSION}; "
            "pass --restart to train from scratch",
            path,
        )
    differs = differences(obj.get("fingerprint") or {}, fingerprint)
    if differs:
        names = ", ".join(k.replace("_", "-") for k in differs)  # as the options are named
        raise ConfigError(
            f"checkpoint is from a different training run (differs in: {names}); run the "
            "original command to resume it, pass --restart to start over, or choose another --out",
            path,
        )
    return obj


def train(
    style: Path,
    data: Sequence[Path],
    out: Path,
    settings: TrainSettings | None = None,
    *,
    restart: bool = False,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train a network for `style` on `data`; write the model to `out` (atomically).

    Resumes from `<out>.ckpt` unless `restart`. Raises VidstyleError subclasses for user errors.
    """
    settings = settings or TrainSettings()
    settings.validate()
    out, style = Path(out), Path(style)
    _check_output(out)
    style_image = load_style_image(style)
    sources = find_data(data)
    device = _training_device(settings.device)
    # The thread count (`--threads`) is set before precision is measured: it changes what pays.
    with torch_threads(settings.threads if device.type == "cpu" else None):
        ckpt_path = checkpoint_path(out)

        loss = build_loss(settings, device)
        log.info("Loss network: %s", loss.features.source.describe())
        net = _initial_network(settings.arch, settings.seed, device)
        precision = training_precision(net, loss, settings, device)
        fingerprint = training_fingerprint(settings, style, data, _loss_network(loss))
        fingerprint["precision in use"] = precision.name
        resumed = _existing_checkpoint(ckpt_path, fingerprint, restart=restart)
        trainer = _Trainer(net, loss, precision, settings, device, ckpt_path, fingerprint)
        if resumed is not None:
            trainer.restore(resumed)

        temporal = settings.temporal_weight > 0
        dataset = TrainingSet.from_sources(
            sources, settings.size, settings.frames_per_video, pairs=temporal
        )
        crop = (settings.size, settings.size)
        loss.set_style([style_tensor(style_image, crop, settings.style_scale, device)])

        start_step = trainer.step
        started = time.perf_counter()
        try:
            last = trainer.run(dataset, on_step)
        except KeyboardInterrupt:
            raise trainer.interrupted(start_step, out) from None
        if trainer.step > start_step or resumed is None:
            trainer.save_checkpoint()
        record = {
            **{f.name: getattr(settings, f.name) for f in fields(settings) if f.name != "device"},
            "steps": trainer.step,
            "loss_network": _loss_network(loss),
            "precision_in_use": precision.name,
            "data": [str(p) for p in data],
            "final_losses": last,
        }  # what the model file says about its training (`vidstyle models` shows it)
        atomic_save(model_dict(net, style=style.name, training=record), out)
        seconds = time.perf_counter() - started
        log.info(
            "Wrote %s after %d steps (%s)",
            out,
            trainer.step,
            _fmt(last) if last else "no new steps",
        )
        return TrainResult(
            model=out,
            checkpoint=ckpt_path,
            start_step=start_step,
            steps=trainer.step,
            losses=last,
            seconds=seconds,
        )


def _initial_network(arch: str, seed: int, device: torch.device) -> TransformerNet:
    """The untrained network of a run: the same for the same seed, the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TransformerNet(arch)
    return net.to(device).train()


def _check_output(out: Path) -> None:
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist; create it first", out)
    if out.suffix.lower() != ".pth":
        raise ConfigError("model files end in .pth; name --out like starry.pth", out)


def _training_device(name: str) -> torch.device:
    device = resolve_device(name)
    flags = reproducible.configure(device)  # before the first CUDA computation
    if flags is not None:
        log.info("CUDA: %s; a resumed training is not bitwise equal on a GPU", flags.describe())
    return device


def _existing_checkpoint(
    path: Path, fingerprint: Mapping[str, str], *, restart: bool
) -> dict[str, Any] | None:
    """The checkpoint of this same run to resume from, if there is one (`restart`: deleted)."""
    if restart and path.exists():
        log.info("--restart: discarding %s", path)
        path.unlink()
    elif path.exists():
        return _load_checkpoint(path, fingerprint)
    return None


class _Trainer:
    """One training run's state (what a checkpoint keeps: the network, Adam's moments, the
    step, the data sampler's RNG) and its steps."""

    def __init__(
        self,
        net: TransformerNet,
        loss: PerceptualLoss,
        precision: Precision,
        settings: TrainSettings,
        device: torch.device,
        checkpoint: Path,
        fingerprint: Mapping[str, str],
    ) -> None:
        self.net, self.loss, self.device = net, loss, device
        self.settings = settings
        self.checkpoint, self.fingerprint = checkpoint, fingerprint
        self.precision = precision
        # The network's weights and Adam's state stay float32; its forward runs under autocast.
        self.run_net = _AutocastNet(net, precision.dtype)
        # fp16 gradients of the network's own weights underflow without a loss scale (bf16 has
        # float32's range and needs none).
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.name == "fp16")
        self.optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.step = 0
        # The generator's state once the batches trained on so far were drawn: what a
        # checkpoint keeps, although the background thread has drawn further ahead.
        self.rng_state = self.generator.get_state()

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of this run (`_load_checkpoint`)."""
        try:
            self.net.load_state_dict(checkpoint["model"], strict=True)
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.generator.set_state(checkpoint["rng"])
            self.step = int(checkpoint["step"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise WeightsError(
                f"checkpoint is damaged ({type(err).__name__}); pass --restart to start over",
                self.checkpoint,
            ) from None
        self.rng_state = self.generator.get_state()
        steps = self.settings.steps
        log.info("Resuming from %s at step %d of %d", self.checkpoint, self.step, steps)
        if self.step >= steps:
            log.info("Already trained for %d steps; writing the model only", self.step)

    def save_checkpoint(self) -> None:
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "step": self.step,
                "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "rng": self.rng_state,
                "fingerprint": self.fingerprint,
            },
            self.checkpoint,
        )

    def run(self, dataset: TrainingSet, on_step: StepCallback | None) -> dict[str, float]:
        """Train from the current step to the last; the losses of the last step run (none
        when there was none to run)."""
        settings = self.settings
        if self.step < settings.steps:
            log.info(
                "Training the %s network: %d steps of %d crops of %d px on %s, %s",
                settings.arch,
                settings.steps - self.step,
                settings.batch_size,
                settings.size,
                self.device.type,
                self.precision.describe(),
            )
        eta = _EtaEstimate(self.step, settings.steps, self.device)
        batches = prefetch_batches(
            dataset,
            settings.batch_size,
            self.generator,
            settings.steps - self.step,
            pairs=settings.temporal_weight > 0,
            device=self.device,
        )
        report: StepReport | None = None
        with contextlib.closing(batches):
            for drawn in batches:
                tick = time.perf_counter()
                values = self._train_step(drawn)
                report = StepReport(self.step, settings.steps, values, time.perf_counter() - tick)
                if on_step is not None:
                    on_step(report)
                eta.step_done(self.step)
                every = settings.checkpoint_every
                if every and self.step % every == 0:
                    self.save_checkpoint()
                    log.info(
                        "Step %d/%d: %s; checkpoint saved",
                        self.step,
                        settings.steps,
                        _fmt(report.losses),
                    )
        return report.losses if report is not None else {}

    def _train_step(self, drawn: DrawnBatch) -> dict[str, torch.Tensor]:
        """One optimiser step on `drawn`; the loss (total) and its terms, detached."""
        batch = drawn.crops.to(self.device, non_blocking=True)
        self.loss.set_content(batch)
        terms = self.loss(self.run_net(batch))
        total = terms.total
        values = dict(terms.parts)
        if drawn.pairs is not None:
            tloss = _temporal_term(self.run_net, drawn.pairs, self.device)
            total = total + self.settings.temporal_weight * tloss
            values["temporal"] = tloss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self.rng_state = drawn.rng_after
        values = {"loss": total.detach(), **values}
        # One read from the device a step, for the divergence check; the terms are read only
        # when shown or logged (StepReport.losses).
        value = float(values["loss"])
        if not math.isfinite(value):
            raise VidstyleError(
                f"training diverged at step {self.step} (loss {value}); lower --lr or the loss "
                "weights and pass --restart"
            )
        return values

    def interrupted(self, start_step: int, out: Path) -> RenderInterrupted:
        """The error of a run stopped by Ctrl-C, saying where the next run resumes."""
        every = self.settings.checkpoint_every
        done = self.step - self.step % every if every else 0
        where = f"step {max(done, start_step)}" if self.checkpoint.exists() else "the start"
        return RenderInterrupted(
            f"training interrupted at step {self.step}; run the same command to resume from "
            f"{where}",
            out,
        )


# Steps timed (after the first, which carries the warm-up) before the time a run will take is
# logged: a progress bar's ETA needs a few steps to settle, and on a CPU a step can take
# seconds, so the one-line estimate is what tells a user early whether to wait or to stop.
_ETA_TIMED_STEPS = 3
# An estimated run this long on a CPU gets a pointer to the quicker settings.
_LONG_CPU_RUN_S = 3600.0


class _EtaEstimate:
    """Logs once how long the rest of the run will take, from the first few steps' pace."""

    def __init__(self, start_step: int, steps: int, device: torch.device) -> None:
        self.start_step = start_step
        self.steps = steps
        self.device = device
        self._since: float | None = None  # end of the first step of this run
        self._logged = False

    def step_done(self, step: int) -> None:
        if self._logged:
            return
        now = time.perf_counter()
        if self._since is None:
            self._since = now
            return
        timed = step - self.start_step - 1
        if timed < _ETA_TIMED_STEPS:
            return
        self._logged = True
        if step >= self.steps:
            return  # a short run: done before there was anything to estimate
        per_step = (now - self._since) / timed
        remaining = per_step * (self.steps - step)
        hint = ""
        if self.device.type == "cpu" and remaining > _LONG_CPU_RUN_S:
            hint = (
                "; on a CPU, --size 128 --steps 500 gives a usable model sooner (README: fast mode)"
            )
        log.info(
            "%.2g s a step on %s: about %s for the remaining %d steps%s",
            per_step,
            self.device.type,
            _duration(remaining),
            self.steps - step,
            hint,
        )


def _duration(seconds: float) -> str:
    """`3 h 05 min`, `12 min`, `40 s`: the precision an estimate has."""
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


@dataclass(frozen=True)
class DrawnBatch:
    """One step's training data, drawn ahead on a background thread."""

    crops: torch.Tensor  # N×3×S×S float32 in [0, 1], on the CPU (pinned for a GPU)
    pairs: tuple[torch.Tensor, ...] | None  # TrainingSet.sample_pairs, for the temporal term
    rng_after: torch.Tensor  # the generator's state once this batch was drawn


def prefetch_batches(
    dataset: TrainingSet,
    count: int,
    generator: torch.Generator,
    steps: int,
    *,
    pairs: bool,
    device: torch.device,
) -> Iterator[DrawnBatch]:
    """`steps` batches drawn in order on a background thread, a few ahead of the training step.

    Reading and decoding image files and cutting crops take CPU time a GPU would otherwise
    wait for. The draws are those a loop drawing each step itself would make (crops, then
    pairs, from the one generator), so a run gives the same batches either way; each batch
    carries the generator's state after it, which is what a checkpoint saves. For a GPU the
    batches are put in page-locked memory, so the copy to the device is asynchronous."""
    pin = device.type == "cuda"

    def draw(output: Output[DrawnBatch]) -> None:
        for _ in range(steps):
            crops = dataset.sample(count, generator)
            drawn = dataset.sample_pairs(count, generator) if pairs else None
            if pin:
                crops = crops.pin_memory()
                drawn = None if drawn is None else tuple(t.pin_memory() for t in drawn)
            if not output.put(DrawnBatch(crops, drawn, generator.get_state())):
                return

    return produce_in_background(draw, queue_size=_PREFETCH, name="vidstyle-training-data")


def _temporal_term(
    net: Callable[[torch.Tensor], torch.Tensor],
    pairs: tuple[torch.Tensor, ...],
    device: torch.device,
) -> torch.Tensor:
    """Masked squared difference between the output for frame t and the output for frame t−1
    carried onto frame t along the flow: what flickers between frames that show the same
    scene points. Both frames go through the network in one batch."""
    previous, current, flow, reliable = (t.to(device, non_blocking=True) for t in pairs)
    out_previous, out_current = net(torch.cat([previous, current])).chunk(2)
    return temporal_loss(out_current, warp(out_previous, flow), reliable)


class _AutocastNet:
    """`net`'s forward under autocast in `dtype` (None: as it is), output as float32: the
    losses, Gram matrices and gradients into the network are computed in float32."""

    def __init__(self, net: TransformerNet, dtype: torch.dtype | None) -> None:
        self.net = net
        self.dtype = dtype

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.dtype is None:
            return self.net(batch)
        with torch.autocast(batch.device.type, dtype=self.dtype):
            out = self.net(batch)
        return out.float()


def training_precision(
    net: TransformerNet, loss: PerceptualLoss, settings: TrainSettings, device: torch.device
) -> Precision:
    """The precision of a training step (`--precision`), set on the loss network: on a CPU,
    `auto` times a step of this network and loss at this batch and crop size (cached)."""
    size = settings.size
    workload = (
        f"training step, {settings.arch} transformer + {vgg_of(loss.features).arch.name}, "
        f"{settings.batch_size}x3x{size}x{size}"
    )
    timer = train_step_timer(net, loss, settings.batch_size, size, device)
    precision = choose_precision(settings.precision, device, workload=workload, timer=timer)
    vgg_of(loss.features).set_precision(precision.dtype)
    return precision


def train_step_timer(
    net: TransformerNet, loss: PerceptualLoss, batch_size: int, size: int, device: torch.device
) -> Timer:
    """Times a training step's forward and backward (network, loss network, Gram matrices) in
    a dtype, on copies of both networks (the ones in use are left as they are)."""
    copies: dict[torch.dtype | None, tuple[TransformerNet, torch.nn.Module]] = {}

    def timer(dtype: torch.dtype | None) -> float:
        if dtype not in copies:
            vgg = copy.deepcopy(vgg_of(loss.features)).set_precision(dtype)
            copies[dtype] = (copy.deepcopy(net), vgg)
        model, vgg = copies[dtype]
        run = _AutocastNet(model, dtype)
        batch = torch.rand(batch_size, 3, size, size, device=device)

        def step() -> None:
            feats = vgg(run(batch))
            sum(gram_matrix(f).pow(2).mean() for f in feats.values()).backward()
            model.zero_grad(set_to_none=True)

        return time_pass(step, device)

    return timer


def _fmt(losses: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in losses.items())


def evaluate_loss(
    net: TransformerNet, loss: PerceptualLoss, batches: Iterable[torch.Tensor]
) -> float:
    """Mean total loss of `net` over fixed batches (for tests and benches; no gradients)."""
    values: list[float] = []
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for batch in batches:
            loss.set_content(batch)
            values.append(float(loss(net(batch)).total))
    net.train(was_training)
    return sum(values) / len(values)
