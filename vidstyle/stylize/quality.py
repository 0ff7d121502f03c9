"""Quality mode as a pipeline stage: every frame optimised with the Gatys loss, warm-started.

Frame 1 (and a frame after which there is no usable previous output) starts from the content
frame or noise and gets `first_iterations`; every later frame starts from the previous output
(Ruder et al. 2016), which is already close to the optimum, and gets the much smaller
`iterations` budget. `initial_image()` is the single place that decides where a frame starts.

With `init = "warped"` the previous output is first moved along the optical flow, and pixels
the flow cannot vouch for (disocclusions, motion boundaries, points entering the frame, places
where the source changed along the flow) start afresh, so nothing is dragged behind a moving
object. Those new pixels would otherwise stay close to the photo for many frames (a wake, or
a moving shot fading towards the photo): the whole-frame Gram matrices barely notice an
unstylised patch, so it gets almost no style gradient. They start from the content frame
recoloured into the palette the shot's first frame was painted in (vidstyle.stylize.palette),
get a style term of their own (the Gram matrices of the pixels the temporal term does not yet
hold, `NEW_PIXEL_STYLE_WEIGHT`), and the frame's budget grows a little with their share of it
(`warm_budget`). A frame that starts a new shot (`FrameRecord.new_shot`) starts fresh, like
frame 1. `temporal_weight` adds Ruder's short-term temporal loss towards the warped previous
output on reliable pixels.

A fresh frame (frame 1, or a new shot) may be optimised coarse-to-fine (`coarse_to_fine`,
vidstyle.stylize.multiscale) within the same budget; given `StyleTargets`, the style Gram
targets are set for each fresh frame (colour preservation adapts them to the shot's colours).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor

from vidstyle.frame import FrameRecord
from vidstyle.stylize.losses import PerceptualLoss
from vidstyle.stylize.multiscale import coarse_start
from vidstyle.stylize.optimize import Curvature, OptimizerConfig, OptimizeResult, optimize_image
from vidstyle.stylize.palette import Palette, recolour
from vidstyle.stylize.targets import StyleTargets
from vidstyle.temporal.flow import inside_frame, warp, warp_previous
from vidstyle.temporal.losses import temporal_loss

log = logging.getLogger(__name__)

# A warm frame gets `iterations` plus the first-frame budget's extra times its share of new or
# still-settling pixels divided by this: 5 gives a frame all new a fifth of the extra. Without
# the growth new regions stay paler than the rest (numbers: docs/quality.md, the warm budget).
NEW_SHARE_FOR_FULL_BUDGET = 5.0


# Pixels that were new (uncovered, or part of a moving object) are anchored by the temporal term
# gradually, over this many frames after they appeared: anchored at once, they would be held
# at whatever the few iterations of their first frame reached, which is a soft, paler patch
# where an object passed (a wake) that never catches up with the rest of the painting.
SETTLE_FRAMES = 4

# Weight (times the style weight) of a warm frame's second style term, taken over its new and
# still-settling pixels alone, each as much as the temporal term leaves it free (a guided Gram,
# PerceptualLoss's `region`). The whole frame's Gram matrices barely notice what has just come
# in: their remaining distance, which every pixel's style gradient is proportional to, is small
# once most of the frame is painted, so content entering a moving shot stayed close to the photo
# for a dozen frames. Its own term gives it the gradient a fresh frame's pixels get (numbers:
# docs/quality.md, along a moving camera).
NEW_PIXEL_STYLE_WEIGHT = 0.25
# That term reads the style layers of the first this many VGG blocks (relu1_1 to relu3_1 of the
# default layers; None: all). The deeper ones carry a style's large structures: over a patch
# of flat sky they drew the style's concentric swirls into it, rings beside the sample's moon
# that its fresh frames do not have; the stroke texture and colours that new pixels lack are
# in the shallow ones (numbers and pictures: docs/quality.md).
NEW_PIXEL_STYLE_BLOCKS: int | None = 3
# Below this share of free pixels a frame has no second style term: a handful of pixels is no
# region whose texture can be compared with a style.
MIN_NEW_SHARE = 1e-3

# Step scale of new pixels on warm frames (optimize_image's step_scale; still-settling pixels
# get a share of it). 1: the same steps everywhere, since larger steps for some pixels slow the
# whole frame's way back to the style and a moving shot fades towards the photo (numbers:
# docs/quality.md, along a moving camera). Kept as a constant for bench/retention.py's "before"
# and "new-pixel-step-3" rules and bench/warm_budget.py, which set it.
NEW_PIXEL_STEP = 1.0

# Curvature pairs a warm frame hands to the next (about one warm frame's iterations): L-BFGS
# starts each warm frame with the last frame's memory of the loss's curvature, moved along the
# flow with the image, instead of an empty one (numbers: docs/quality.md, along a moving
# camera). Kept in bf16 between frames: they are part of a resumable render's saved state, and
# a curvature estimate needs no more digits.
CARRIED_PAIRS = 24


def warm_budget(iterations: int, first_iterations: int, new_share: float) -> int:
    """Iterations for a warm-started frame of which `new_share` (0..1) is not carried over."""
    extra = max(first_iterations - iterations, 0) * min(new_share / NEW_SHARE_FOR_FULL_BUDGET, 1.0)
    return iterations + round(extra)


def new_pixel_steps(anchor: Tensor) -> Tensor:
    """Per-pixel step scale of a warm frame: NEW_PIXEL_STEP where nothing anchors the pixel
    (`anchor` 0), 1 where it is fully anchored, in between while it settles."""
    return 1.0 + (NEW_PIXEL_STEP - 1.0) * (1.0 - anchor)


def new_pixel_style_layers(style_layers: Sequence[str]) -> tuple[str, ...]:
    """The style layers the new pixels' own style term reads (NEW_PIXEL_STYLE_BLOCKS)."""
    if NEW_PIXEL_STYLE_BLOCKS is None:
        return tuple(style_layers)
    return tuple(layer for layer in style_layers if _vgg_block(layer) <= NEW_PIXEL_STYLE_BLOCKS)


def _vgg_block(layer: str) -> int:
    """The VGG block a layer is in: 4 for relu4_1, conv4_2 and pool4."""
    match = re.search(r"(\d+)(?:_\d+)?$", layer)
    if match is None:
        raise ValueError(f"not a VGG layer name: {layer!r}")
    return int(match.group(1))


@dataclass(frozen=True)
class QualityConfig:
    """What the quality stage needs to know.

    A fresh frame (the first, or the first of a shot) starts from `first_init` (content or
    noise, seeded by `seed` and the frame's index) with `first_iterations`, coarse-to-fine from
    a long side of `coarse_min_size` if `coarse_to_fine`; every other frame starts as `init`
    says (content, prev or warped) with `iterations`, and `temporal_weight` holds it to the
    warped previous output. `optimizer`: how each frame is optimised."""

    first_init: str
    init: str
    first_iterations: int
    iterations: int
    temporal_weight: float
    coarse_to_fine: bool
    coarse_min_size: int
    seed: int
    optimizer: OptimizerConfig


@dataclass(frozen=True)
class FrameStats:
    index: int
    iterations: int
    final_loss: float
    seconds: float
    warm_started: bool
    stopped_early: bool


class QualityStylizer:
    """Iterator stage: FrameRecord(content) -> FrameRecord(content, styled)."""

    def __init__(
        self,
        loss: PerceptualLoss,
        config: QualityConfig,
        *,
        on_frame: Callable[[FrameStats], None] | None = None,
        on_iteration: Callable[[int, float], None] | None = None,
        style_targets: StyleTargets | None = None,
    ) -> None:
        self.loss = loss
        self.config = config
        # With targets, the style Grams are (re)set on the first frame of every shot: colour
        # preservation adapts them to the shot, coarse-to-fine needs them per scale. Without,
        # the caller has set them on `loss` once.
        self.style_targets = style_targets
        self.on_frame = on_frame
        self.on_iteration = on_iteration
        self.stats: list[FrameStats] = []
        # Resume (vidstyle.render.resume): the last output and the first content frame of its shot
        # (the style targets are fitted to it), and what a resumed render starts from.
        self._last: Tensor | None = None
        # How settled each pixel of the last output is (0: new in that frame, 1: carried for
        # SETTLE_FRAMES frames or more, or optimised as a fresh frame); None: all settled.
        self._settled: Tensor | None = None
        self._shot_content: Tensor | None = None
        # The colours of the shot's first output, which new pixels of its later frames start in
        # (None: no fresh frame seen; the previous output's colours are used).
        self._palette: Palette | None = None
        self._resumed: tuple[Tensor | None, Tensor | None] | None = None
        # L-BFGS's memory after the last output, for the next warm frame (None: nothing to
        # carry, after a fresh frame or where the frame does not carry it).
        self._curvature: Curvature | None = None

    def initial_image(
        self,
        record: FrameRecord,
        previous: Tensor | None,
        target: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, bool]:
        """Where optimisation of `record` starts, and whether that is a warm start. `target`:
        `temporal_target(record, previous)` when the caller has it already."""
        fresh = previous is None or record.new_shot  # nothing usable from before this frame
        if not fresh and self.config.init == "prev":
            return previous, True
        if not fresh and self.config.init == "warped":
            warped, reliable = target or self.temporal_target(record, previous)
            # lerp with a {0, 1} mask: warped where reliable, the recoloured content elsewhere:
            # new pixels start as part of the painting, not as a patch of photo; their structure
            # is the content's, and strokes come from the optimisation.
            start = recolour(record.content, self._palette or Palette.of(previous))
            return torch.lerp(start, warped, reliable), True
        if fresh and self.config.first_init == "noise":
            noise = torch.rand(
                record.content.shape, generator=_noise_generator(self.config.seed, record.index)
            )
            return noise.to(record.content.device), False
        return record.content, False

    def temporal_target(self, record: FrameRecord, previous: Tensor) -> tuple[Tensor, Tensor]:
        """The previous output warped onto `record` and its reliability mask (same shot only)."""
        carried = warp_previous(previous, record)
        if carried is None:
            raise ValueError(f"frame {record.index} starts a new shot: no temporal target")
        return carried

    def _target_if_used(
        self, record: FrameRecord, previous: Tensor | None
    ) -> tuple[Tensor, Tensor] | None:
        """`temporal_target` where the frame uses it (warped warm start or temporal term)."""
        if previous is None or record.new_shot or self.config.init == "content":
            return None
        if self.config.init != "warped" and self.config.temporal_weight <= 0:
            return None
        return self.temporal_target(record, previous)

    def _anchor(self, record: FrameRecord, reliable: Tensor) -> Tensor:
        """Where (and how strongly, 0..1) the temporal term holds this frame to the warped
        previous output: reliable pixels, as settled as they were (see SETTLE_FRAMES). Updates
        how settled this frame's pixels will be."""
        settled = self._settled
        if settled is None or settled.shape[-2:] != reliable.shape[-2:]:
            carried = torch.ones_like(reliable)
        elif record.flow is None:
            carried = settled.to(reliable.device)
        else:
            carried = warp(settled.to(reliable.device), record.flow).clamp(0.0, 1.0)
        anchor = reliable * carried
        self._settled = reliable * (carried + 1.0 / SETTLE_FRAMES).clamp(max=1.0)
        return anchor

    def _objective(
        self, warm: bool, target: tuple[Tensor, Tensor] | None, free_share: float
    ) -> Callable[[Tensor], Tensor]:
        """The loss of one frame: Gatys; on warm-started frames (`target`: the warped previous
        output and where it anchors the frame, `free_share` of it unanchored) plus the style
        term of the pixels it does not anchor (NEW_PIXEL_STYLE_WEIGHT) and the temporal term."""
        weight = self.config.temporal_weight
        # Only warm starts get these terms: with init "content" frames are independent by
        # design (the baseline), and a new shot has nothing to be consistent with.
        if not warm or target is None:
            return lambda image: self.loss(image).total
        warped, anchor = target
        # The pixels the temporal term does not (yet) hold, as free as they are unanchored.
        free = 1.0 - anchor
        layers = new_pixel_style_layers(self.loss.style_layers)
        enough = bool(layers) and free_share >= MIN_NEW_SHARE
        region_weight = NEW_PIXEL_STYLE_WEIGHT if enough else 0.0
        if weight <= 0:
            return lambda image: self.loss(image, free, region_weight, layers).total
        return lambda image: (
            self.loss(image, free, region_weight, layers).total
            + weight * temporal_loss(image, warped, anchor)
        )

    def get_resume_state(self) -> dict[str, Any]:
        """What the frame after the last one yielded needs (`vidstyle.render.resume.Resumable`)."""
        return {
            "previous": self._last,
            "settled": self._settled,
            "shot_content": self._shot_content,
            "palette": None
            if self._palette is None
            else (self._palette.mean, self._palette.covariance),
            "curvature": None if self._curvature is None else list(self._curvature.pairs),
        }

    def set_resume_state(self, state: Mapping[str, Any]) -> None:
        """Continue after a saved frame: the next `__call__` warm-starts from its output."""
        self._resumed = (state.get("previous"), state.get("shot_content"))
        self._settled = state.get("settled")
        palette = state.get("palette")
        self._palette = None if palette is None else Palette(*palette)
        pairs = state.get("curvature")
        self._curvature = None if pairs is None else Curvature(tuple(map(tuple, pairs)))

    def __call__(self, frames: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        previous, shot = self._resumed or (None, None)
        self._resumed = None
        for record in frames:
            if previous is not None:
                previous = previous.to(record.content.device)
            if shot is not None:
                self._resume_shot(shot.to(record.content.device))
                shot = None
            started = time.perf_counter()
            plan = self._plan(record, previous)
            result, coarse_iterations = self._optimize(record, plan)
            self._report(record, plan, result, coarse_iterations, time.perf_counter() - started)
            previous = result.image
            self._last = previous
            yield replace(record, styled=result.image)

    def _resume_shot(self, shot_content: Tensor) -> None:
        """Resumed mid-shot: the style targets as the shot's first frame had them."""
        self._shot_content = shot_content
        if self.style_targets is not None:
            self.style_targets.apply(shot_content)

    def _plan(self, record: FrameRecord, previous: Tensor | None) -> _FramePlan:
        """Where `record`'s optimisation starts, with what budget and temporal target."""
        # Warped once per frame, for both the warm start and the temporal term.
        target = self._target_if_used(record, previous)
        init, warm = self.initial_image(record, previous, target)
        fresh = previous is None or getattr(record, "new_shot", False)
        if fresh:
            self._settled = None  # optimised from scratch: every pixel settled
        config = self.config
        if warm and target is not None and config.init == "warped":
            warped, reliable = target
            target = (warped, self._anchor(record, reliable))
        # The share of the frame the temporal term does not hold: new and still-settling pixels.
        free_share = 1.0 - float(target[1].mean()) if warm and target is not None else 0.0
        if not warm:
            budget = config.first_iterations
        elif target is not None and config.init == "warped":
            # New and still-settling pixels need iterations; settled ones barely move.
            budget = warm_budget(config.iterations, config.first_iterations, free_share)
        else:
            budget = config.iterations
        step_scale = None
        if warm and target is not None and config.init == "warped" and NEW_PIXEL_STEP != 1:
            step_scale = new_pixel_steps(target[1])
        curvature = None
        # Only warm frames' memories are carried: a fresh frame's describes the loss far from
        # where the shot's later frames are (measured worse at frame 15). A memory is of the
        # image itself, so not where a step scale changes the variable L-BFGS works on.
        lbfgs = config.optimizer.optimizer == "lbfgs"
        if warm and config.init == "warped" and lbfgs and step_scale is None:
            curvature = carried_curvature(self._curvature, record.flow, init)
        return _FramePlan(init, warm, fresh, budget, target, free_share, step_scale, curvature)

    def _optimize(self, record: FrameRecord, plan: _FramePlan) -> tuple[OptimizeResult, int]:
        """Optimise `record` as `plan` says; the result and the iterations spent at coarse
        scales before it."""
        init, budget, coarse_iterations = plan.init, plan.budget, 0
        if plan.fresh and self.config.coarse_to_fine:
            # Part of the budget runs at smaller sizes first (vidstyle.stylize.multiscale).
            start = coarse_start(
                self.loss,
                record.content,
                init,
                budget=budget,
                min_size=self.config.coarse_min_size,
                options=self.config.optimizer,
                targets=self.style_targets,
                on_iteration=self.on_iteration,
            )
            init, budget, coarse_iterations = start.image, start.remaining, start.iterations
        if plan.fresh and self.style_targets is not None:
            self.style_targets.apply(record.content)
        if plan.fresh:
            self._shot_content = record.content
        self.loss.set_content(record.content)
        options = self.config.optimizer
        result = optimize_image(
            self._objective(plan.warm, plan.target, plan.free_share),
            init,
            iterations=budget,
            **asdict(options),
            on_iteration=self.on_iteration,
            step_scale=plan.step_scale,
            curvature=plan.curvature,
        )
        self._curvature = (
            None
            if result.curvature is None
            else result.curvature.last(CARRIED_PAIRS).map(lambda t: t.to(torch.bfloat16))
        )
        if plan.fresh:
            self._palette = Palette.of(result.image)
        return result, coarse_iterations

    def _report(
        self,
        record: FrameRecord,
        plan: _FramePlan,
        result: OptimizeResult,
        coarse_iterations: int,
        seconds: float,
    ) -> None:
        stats = FrameStats(
            index=record.index,
            iterations=result.iterations + coarse_iterations,
            final_loss=result.final_loss,
            seconds=seconds,
            warm_started=plan.warm,
            stopped_early=result.stopped_early,
        )
        self.stats.append(stats)
        log.debug(
            "frame %d: %d iterations from %s%s, loss %.4g, %.1f s",
            stats.index,
            stats.iterations,
            "the previous output" if plan.warm else "scratch",
            " (stopped early)" if stats.stopped_early else "",
            stats.final_loss,
            stats.seconds,
        )
        if self.on_frame is not None:
            self.on_frame(stats)


@dataclass(frozen=True)
class _FramePlan:
    """How one frame is optimised (`QualityStylizer._plan`)."""

    init: Tensor  # the start image
    warm: bool  # started from the previous output
    fresh: bool  # nothing usable before it: the first frame, or the first of a shot
    budget: int  # iterations
    target: tuple[Tensor, Tensor] | None  # the warped previous output and where it anchors
    free_share: float  # the share of the frame `target` does not anchor
    step_scale: Tensor | None  # optimize_image's per-pixel step scale
    curvature: Curvature | None  # L-BFGS's memory to start with (None: none carried)


def carried_curvature(memory: Curvature | None, flow: Tensor | None, like: Tensor) -> Curvature:
    """The last frame's L-BFGS memory moved onto this frame like its image (float32, on
    `like`'s device): each s and y warped along `flow`, zero where it comes from outside the
    frame. An empty memory when there is none."""
    if memory is None or not memory.pairs or memory.pairs[0][0].shape != like.shape:
        return Curvature()
    inside = None if flow is None else inside_frame(flow)

    def move(tensor: Tensor) -> Tensor:
        tensor = tensor.to(device=like.device, dtype=torch.float32)
        return tensor if inside is None else warp(tensor, flow) * inside

    return memory.map(move)


def _noise_generator(seed: int, index: int) -> torch.Generator:
    """The generator of frame `index`'s noise start: the same for a frame whatever was rendered
    before it, so a shot rendered on its own (or a resumed render) starts where a render of the
    whole video does. A private generator leaves the global RNG alone."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index) & 0x7FFF_FFFF_FFFF_FFFF)
