"""Style Gram targets for a frame: the style image(s) scaled to the frame, colour-adapted to it
where `preserve_colors` asks, and blended with normalised weights.

Quality mode needs targets for more than one frame size (coarse-to-fine optimises the first frame
of a shot at growing sizes, and the style image is scaled with the frame so strokes keep their
size relative to it) and, with colour preservation, for each shot's colours. `StyleTargets` is
the one place that knows how to make them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor

from vidstyle.errors import ConfigError
from vidstyle.stylize.color import adapt_style
from vidstyle.stylize.losses import PerceptualLoss
from vidstyle.stylize.style_image import style_tensor


def blend_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights for `count` styles, normalised to sum to 1 (equal when `weights` is None).

    Errors name the option, as users meet them on the command line."""
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ConfigError(
            f"--style-blend has {len(values)} weight(s) for {count} --style image(s); "
            "give one weight per style, in the same order"
        )
    if any(w < 0 for w in values) or sum(values) <= 0:
        raise ConfigError(
            f"--style-blend weights must be >= 0 and not all 0 (got {','.join(map(str, values))})"
        )
    total = sum(values)
    return [w / total for w in values]


class StyleTargets:
    """Gram targets of `images` for a content frame, set on `loss` by `apply(content)`.

    Without colour preservation the targets depend on the frame size only and are cached per
    size; with it they follow the content's colours, so they are recomputed for each call (the
    quality stage calls `apply` on the first frame of every shot, not per frame)."""

    def __init__(
        self,
        loss: PerceptualLoss,
        images: Sequence[Image.Image],
        *,
        blend: Sequence[float] | None = None,
        style_scale: float = 1.0,
        preserve_colors: str = "none",
    ) -> None:
        if not images:
            raise ValueError("at least one style image is needed")
        self.loss = loss
        self.images = list(images)
        self.weights = blend_weights(blend, len(self.images))
        self.style_scale = style_scale
        self.preserve_colors = preserve_colors
        self._cache: dict[tuple[int, int], dict[str, Tensor]] = {}

    def style_tensors(self, content: Tensor) -> list[Tensor]:
        """The style images at `content`'s scale, colour-adapted to it, on its device."""
        size = (content.shape[-1], content.shape[-2])
        return [
            adapt_style(
                style_tensor(image, size, self.style_scale, content.device),
                content,
                self.preserve_colors,
            )
            for image in self.images
        ]

    def grams(self, content: Tensor) -> dict[str, Tensor]:
        size = (content.shape[-1], content.shape[-2])
        if self.preserve_colors == "none" and size in self._cache:
            return self._cache[size]
        with torch.no_grad():
            grams = self.loss.style_grams(self.style_tensors(content), self.weights)
        if self.preserve_colors == "none":
            self._cache[size] = grams
        return grams

    def apply(self, content: Tensor) -> None:
        self.loss.set_style_targets(self.grams(content))
