"""Perceptual losses of Gatys et al. 2015: content, Gram-matrix style, and total variation.

Every layer's loss is divided by the mean square of its target ("target-normalised"). With
pretrained VGG-19 this only rescales the weights; with random-weight features it is what makes
them usable at all, because the magnitude of random activations differs by orders of magnitude
between layers and one layer would otherwise dominate (Ustyuzhaninov et al. 2016 normalise the
same way). It also keeps one set of weights meaningful for both feature sources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidstyle.nets.vgg import VGGFeatures

if TYPE_CHECKING:
    from vidstyle.config import RenderSettings, TrainSettings

DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)

# Keeps the normaliser away from zero for layers whose target is (nearly) all zeros.
_EPS = 1e-8
# Fewest feature positions (in units of one full position) a region must cover at a layer for
# its guided Gram matrix to count.
_MIN_REGION_CELLS = 4.0


def gram_matrix(features: Tensor) -> Tensor:
    """N×C×H×W -> N×C×C, divided by C·H·W so the value does not depend on the frame size."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def region_gram_matrix(features: Tensor, region: Tensor) -> Tensor | None:
    """The Gram matrix of `features` over a soft `region` (N×1×h×w in [0, 1], any size), as a
    guided Gram matrix (Gatys et al. 2017, "Controlling perceptual factors in neural style
    transfer", sec. 4): features weighted by the region, divided by C·Σm² so that for a binary
    region it is the Gram matrix of the pixels inside, comparable with `gram_matrix`.

    None when the region covers fewer than `_MIN_REGION_CELLS` positions at this layer: a Gram
    matrix of two or three positions is noise, not a texture statistic.
    """
    n, c, h, w = features.shape
    weight = F.interpolate(region, size=(h, w), mode="area")
    if float(weight.sum()) < _MIN_REGION_CELLS:
        return None
    flat = (features * weight).reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * weight.square().sum().clamp_min(_EPS))


def total_variation(image: Tensor) -> Tensor:
    """Mean squared difference between neighbouring pixels (smoothness prior)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


@dataclass(frozen=True)
class LossWeights:
    content: float = 1.0
    style: float = 5.0
    tv: float = 1e-2


@dataclass
class LossTerms:
    """One evaluation of the loss. `total` carries the graph; the others are plain floats."""

    total: Tensor
    content: float
    style: float
    tv: float

    def as_dict(self) -> dict[str, float]:
        return {
            "loss": float(self.total),
            "content": self.content,
            "style": self.style,
            "tv": self.tv,
        }


class PerceptualLoss(nn.Module):
    """Gatys loss against fixed style targets (set once per video) and a per-frame content target.

    Works on batches: content targets are per image; the style Gram targets (1×C×C) broadcast.
    """

    def __init__(
        self,
        features: nn.Module,
        *,
        weights: LossWeights,
        style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layer_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.weights = weights
        self.style_layers = tuple(style_layers)
        self.content_layers = tuple(content_layers)
        layer_weights = style_layer_weights or [1.0] * len(self.style_layers)
        if len(layer_weights) != len(self.style_layers):
            raise ValueError("one weight per style layer is needed")
        total = float(sum(layer_weights))
        self.style_layer_weights = [w / total for w in layer_weights]
        self._style_grams: dict[str, Tensor] = {}
        self._style_norms: dict[str, Tensor] = {}
        self._content: dict[str, Tensor] = {}
        self._content_norms: dict[str, Tensor] = {}

    def style_grams(
        self, images: Sequence[Tensor], blend: Sequence[float] | None = None
    ) -> dict[str, Tensor]:
        """Gram targets of one or several style images, blended with weights summing to 1."""
        blend = list(blend) if blend is not None else [1.0 / len(images)] * len(images)
        grams: dict[str, Tensor] = {}
        with torch.no_grad():
            for image, weight in zip(images, blend, strict=True):
                feats = self.features(image)
                for layer in self.style_layers:
                    g = gram_matrix(feats[layer]) * weight
                    grams[layer] = grams[layer] + g if layer in grams else g
        return grams

    def set_style_targets(self, grams: Mapping[str, Tensor]) -> None:
        self._style_grams = {k: v.detach() for k, v in grams.items()}
        self._style_norms = {k: v.pow(2).mean().clamp_min(_EPS) for k, v in grams.items()}

    def set_style(self, images: Sequence[Tensor], blend: Sequence[float] | None = None) -> None:
        self.set_style_targets(self.style_grams(images, blend))

    def set_content(self, content: Tensor) -> None:
        with torch.no_grad():
            feats = self.features(content)
        self._content = {layer: feats[layer].detach() for layer in self.content_layers}
        self._content_norms = {
            layer: t.pow(2).mean().clamp_min(_EPS) for layer, t in self._content.items()
        }

    def region_style(self, feats: Mapping[str, Tensor], region: Tensor) -> Tensor:
        """Style distance of the features inside `region` alone (guided Gram matrices).

        Why: the whole frame's Gram matrices barely notice a small unstylised patch (its share
        of the statistics is its share of the area), so pixels uncovered behind a moving object
        get almost no style gradient and stay close to the photo for many frames: a wake.
        Matching the style inside the region gives them a gradient as strong as a fresh frame's.
        Layers where the region is too small to have texture statistics are left out.
        """
        total = region.new_zeros(())
        for layer, w in zip(self.style_layers, self.style_layer_weights, strict=True):
            gram = region_gram_matrix(feats[layer], region)
            if gram is not None:
                difference = (gram - self._style_grams[layer]).pow(2).mean()
                total = total + w * difference / self._style_norms[layer]
        return total

    def forward(self, image: Tensor, region: Tensor | None = None) -> LossTerms:
        """The loss of `image`. With `region` (N×1×H×W in [0, 1]), the style term also matches
        the style's Gram matrices inside the region alone, with the same weight as the whole
        frame's (see `region_style`)."""
        if not self._style_grams or not self._content:
            raise RuntimeError("set_style() and set_content() must be called before the loss")
        feats = self.features(image)
        content = sum(
            (feats[layer] - target).pow(2).mean() / self._content_norms[layer]
            for layer, target in self._content.items()
        ) / len(self._content)
        style = sum(
            w
            * (gram_matrix(feats[layer]) - self._style_grams[layer]).pow(2).mean()
            / self._style_norms[layer]
            for layer, w in zip(self.style_layers, self.style_layer_weights, strict=True)
        )
        if region is not None:
            style = style + self.region_style(feats, region)
        tv = total_variation(image)
        total = self.weights.content * content + self.weights.style * style + self.weights.tv * tv
        return LossTerms(
            total=total,
            content=float(content.detach()),
            style=float(style.detach()),
            tv=float(tv.detach()),
        )


def perceptual_loss(
    settings: RenderSettings | TrainSettings,
    device: torch.device,
    *,
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
    style_layer_weights: Sequence[float] | None = None,
    adapt_features: Callable[[nn.Module], nn.Module] | None = None,
) -> PerceptualLoss:
    """The loss on the frozen VGG the settings choose (pooling, weight source, layout, seed), cut
    after the deepest layer used, with the settings' content/style/TV weights.

    Quality mode and `vidstyle train` both build their loss here, so a network is trained
    against the same features a render would optimise against. `adapt_features` wraps the
    VGG module (e.g. to show it luminance only).
    """
    layers = sorted(set(style_layers) | set(content_layers))
    features: nn.Module = VGGFeatures(
        layers,
        pooling=settings.pooling,
        weights=settings.features,
        weights_path=Path(settings.vgg_weights) if settings.vgg_weights else None,
        layout=settings.vgg_layout,
        seed=settings.seed,
    ).to(device)
    if adapt_features is not None:
        features = adapt_features(features)
    weights = LossWeights(
        content=settings.content_weight, style=settings.style_weight, tv=settings.tv_weight
    )
    return PerceptualLoss(
        features,
        weights=weights,
        style_layers=style_layers,
        content_layers=content_layers,
        style_layer_weights=style_layer_weights,
    ).to(device)
