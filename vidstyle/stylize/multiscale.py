"""Coarse-to-fine optimisation of a fresh frame (the first frame, and the first after a scene cut).

A frame that cannot start from the previous output is optimised first at a small size, then at
sizes growing by ×√2 up to the rendering size, each scale starting from the previous scale's
result upsampled (the multi-resolution scheme of Gatys et al. 2017, "Controlling perceptual
factors in neural style transfer", §5, and of neural-style's multires recipe). Coarse iterations
are cheap (each √2 step halves the pixels) and settle the large-scale arrangement of the style,
which single-scale optimisation at full size reaches only slowly because VGG's receptive fields
are small relative to a large frame; the full-size pass then only adds detail.

Iteration budget: the fresh frame's budget (`first_iterations`) counts loss evaluations at every
scale. The full size gets half of it (it is where the result is decided), the coarse scales share
the other half equally; iterations a scale leaves unused (early stop) pass to the next scale, so
the total never exceeds the budget. With five scales that costs about two thirds of a
single-scale pass of the same budget (64 % measured on a CPU, where small images do not scale
down perfectly). Half rather than a smaller share for the full size: in a one-off sweep (192 px,
budget 60, equal time) full-size shares of 0.2, 0.35, 0.5 and 0.7 all beat single-scale, by 3,
6, 6 and 8 %; 0.5 keeps most of the gain at a clearly lower cost. `bench/controls.py` compares
coarse-to-fine and single-scale at equal time.

The last scale is always exactly the requested frame size; the style image is scaled with each
scale (`StyleTargets`), so strokes keep their size relative to the frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch.nn.functional as F
from torch import Tensor

from vidstyle.stylize.losses import PerceptualLoss
from vidstyle.stylize.optimize import IterationCallback, OptimizerConfig, optimize_image
from vidstyle.stylize.targets import StyleTargets

SCALE_STEP = math.sqrt(2.0)
# A coarse scale closer than this factor to the full size would cost nearly a full-size pass
# and add little; it is left out (so 128 → 170 px runs at 128 and 170, not 128, 168 and 170).
_MIN_GAP = 1.2
# VGG-19 pools four times before relu5_1; smaller images leave it with no pixels at all.
_MIN_SIDE = 16
# Share of the budget reserved for the full-size pass.
FULL_SIZE_SHARE = 0.5


def scale_sizes(size: tuple[int, int], min_size: int) -> list[tuple[int, int]]:
    """(width, height) of every scale, coarse to fine: long side `min_size` × √2^k, then `size`
    itself (always last, exactly). One scale when `size` is not larger than `min_size`."""
    width, height = size
    long_side = max(width, height)
    sizes: list[tuple[int, int]] = []
    side = float(min_size)
    while side * _MIN_GAP <= long_side:
        factor = side / long_side
        sizes.append(
            (max(_MIN_SIDE, round(width * factor)), max(_MIN_SIDE, round(height * factor)))
        )
        side *= SCALE_STEP
    sizes.append((width, height))
    return sizes


def split_budget(budget: int, scales: int) -> list[int]:
    """Iterations per scale (coarse to fine) for a total of `budget`: `FULL_SIZE_SHARE` of it for
    the last scale, the rest equally over the others. Fewer scales when the budget cannot give
    each at least one iteration: the coarsest are dropped (the returned list is shorter)."""
    if budget < 1:
        raise ValueError("the iteration budget must be at least 1")
    full = max(1, round(budget * FULL_SIZE_SHARE))
    coarse = budget - full
    used = min(scales - 1, coarse)  # at least one iteration for every coarse scale kept
    if used <= 0:
        return [budget]
    share, extra = divmod(coarse, used)
    # The remainder goes to the finer coarse scales, nearer the final result.
    counts = [share + (1 if i >= used - extra else 0) for i in range(used)]
    return [*counts, full]


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize to (width, height); antialiased when shrinking so coarse scales see a
    faithful small version of the frame instead of aliased samples of it."""
    width, height = size
    if (image.shape[-1], image.shape[-2]) == (width, height):
        return image
    shrinking = width < image.shape[-1] or height < image.shape[-2]
    return F.interpolate(
        image, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
    )


@dataclass
class CoarseStart:
    """Where the full-size pass of a fresh frame starts after the coarse scales."""

    image: Tensor  # full-size start image (the last coarse result, upsampled); [0, 1]
    iterations: int  # loss evaluations spent at the coarse scales
    remaining: int  # what the budget leaves for the full-size pass (at least 1)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # every scale, full size last
    losses: list[float] = field(default_factory=list)  # final loss at each coarse scale


def coarse_start(
    loss: PerceptualLoss,
    content: Tensor,
    init: Tensor,
    *,
    budget: int,
    min_size: int,
    options: OptimizerConfig,
    targets: StyleTargets | None = None,
    on_iteration: IterationCallback | None = None,
    on_scale: Callable[[tuple[int, int], int], None] | None = None,
) -> CoarseStart:
    """Run the coarse scales of `content` (1×3×H×W) from `init` and return the full-size start.

    `min_size` is the long side of the coarsest scale; `options` say how each is optimised.

    Each scale sets its own content target and, with `targets`, style targets for its size; the
    caller sets the full-size ones before its final pass (the loss is left at the last coarse
    scale's). Without `targets` the current style Grams are used at every scale (they are
    normalised by the layer size, so they carry over roughly)."""
    full = (content.shape[-1], content.shape[-2])
    sizes = scale_sizes(full, min_size)
    counts = split_budget(budget, len(sizes))
    sizes = sizes[len(sizes) - len(counts) :]  # the coarsest dropped if the budget is small
    if len(sizes) == 1:
        return CoarseStart(image=init, iterations=0, remaining=budget, sizes=sizes)
    spent = 0
    allowance = 0
    losses: list[float] = []
    image = resize(init, sizes[0]).clamp(0.0, 1.0)
    for size, count in zip(sizes[:-1], counts[:-1], strict=True):
        scaled = resize(content, size)
        if targets is not None:
            targets.apply(scaled)
        loss.set_content(scaled)
        image = resize(image, size).clamp(0.0, 1.0)  # the previous scale's result, upsampled
        allowance += count
        result = optimize_image(
            lambda x: loss(x).total,
            image,
            iterations=allowance,
            **asdict(options),
            on_iteration=on_iteration,
        )
        image = result.image
        spent += result.iterations
        allowance -= result.iterations  # an early stop passes its unused iterations on
        losses.append(result.final_loss)
        if on_scale is not None:
            on_scale(size, result.iterations)
    return CoarseStart(
        image=resize(image, full).clamp(0.0, 1.0),
        iterations=spent,
        remaining=budget - spent,
        sizes=sizes,
        losses=losses,
    )
