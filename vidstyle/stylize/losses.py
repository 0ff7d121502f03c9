"""Perceptual losses of Gatys et al. 2015: content, Gram-matrix style, and total variation.

Every layer's loss is divided by the mean square of its target ("target-normalised"). With
pretrained VGG-19 this only rescales the weights; with random-weight features it is what makes
them usable at all, because the magnitude of random activations differs by orders of magnitude
between layers and one layer would otherwise dominate (Ustyuzhaninov et al. 2016 normalise the
same way). It also keeps one set of weights meaningful for both feature sources.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidstyle.device import Precision, choose_precision, time_pass
from vidstyle.nets.vgg import VGGFeatures

DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)

# Keeps the normaliser away from zero for layers whose target is (nearly) all zeros.
_EPS = 1e-8


class _Gram(torch.autograd.Function):
    """G = scale · Fᵀ F for F of shape N×(H·W)×C, with a backward of one matrix product.

    Autograd of `bmm(Fᵀ, F)` differentiates the two uses of F separately (two products of the
    size of the forward, then a sum); G is symmetric, so dG/dF = F (dG + dGᵀ), one product. At
    the style layers of a 160 px frame that is a tenth of an iteration's time saved per third.
    """

    @staticmethod
    def forward(ctx: Any, flat: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(flat)
        ctx.scale = scale
        return torch.bmm(flat.transpose(1, 2), flat) * scale

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (flat,) = ctx.saved_tensors
        return torch.bmm(flat, grad + grad.transpose(1, 2)) * ctx.scale, None


def gram_matrix(features: Tensor) -> Tensor:
    """N×C×H×W -> N×C×C, divided by C·H·W so the value does not depend on the frame size."""
    n, c, h, w = features.shape
    # (H·W)×C per image: a view, no copy, for channels-last features (what the loss network
    # gives, see PerceptualLoss) and a transposed view for contiguous ones.
    flat = features.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return _Gram.apply(flat, 1.0 / (c * h * w))


def region_gram_matrix(features: Tensor, region: Tensor) -> Tensor:
    """The Gram matrix of `features` (N×C×H×W) over a soft region: `region` (N×1×h×w in
    [0, 1], any size; averaged down to the layer's) weights each position, and the sum is
    divided by C times the region's area, so a region whose texture matches the style has
    the style's Gram matrix whatever its size (the guided Gram of Gatys et al., CVPR 2017)."""
    n, c, h, w = features.shape
    weight = F.adaptive_avg_pool2d(region.to(features.dtype), (h, w))
    flat = (features * weight.sqrt()).permute(0, 2, 3, 1).reshape(n, h * w, c)
    area = weight.sum(dim=(1, 2, 3)).clamp_min(1.0).view(n, 1, 1)
    return _Gram.apply(flat, 1.0 / c) / area


def total_variation(image: Tensor) -> Tensor:
    """Mean squared difference between neighbouring pixels (smoothness prior)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def _channels_last(image: Tensor) -> Tensor:
    """`image` in the loss network's memory format (a copy unless it already is; never the
    caller's tensor modified)."""
    return image.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms."""

    content: float
    style: float
    tv: float


@dataclass(frozen=True)
class LossConfig:
    """What a perceptual loss is built from: the frozen VGG (`features` source, `vgg_weights`
    file and its `vgg_layout`, `pooling`, `seed` of random weights), the layers it reads and
    the weights of its terms. Quality mode and training each build one from their settings."""

    weights: LossWeights
    features: str
    vgg_weights: Path | None
    vgg_layout: str
    pooling: str
    seed: int
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal


class LossSettings(Protocol):
    """What a perceptual loss's config is read from: the fields a render's and a training's
    settings share (vidstyle.config), named here so `stylize` depends on neither."""

    content_weight: float
    style_weight: float
    tv_weight: float
    features: str
    vgg_weights: str | None
    vgg_layout: str
    pooling: str
    seed: int


def loss_config_of(settings: LossSettings) -> LossConfig:
    """The loss config of `settings`, with the default layers (a render replaces them with
    its own)."""
    return LossConfig(
        weights=LossWeights(
            content=settings.content_weight, style=settings.style_weight, tv=settings.tv_weight
        ),
        features=settings.features,
        vgg_weights=Path(settings.vgg_weights) if settings.vgg_weights else None,
        vgg_layout=settings.vgg_layout,
        pooling=settings.pooling,
        seed=settings.seed,
    )


@dataclass
class LossTerms:
    """One evaluation of the loss. `total` carries the graph; `parts` are the detached terms,
    read as floats only when asked for (each read waits for a GPU to finish the evaluation, and
    quality mode evaluates the loss every iteration without looking at them)."""

    total: Tensor
    parts: dict[str, Tensor]  # "content", "style", "tv"

    @property
    def content(self) -> float:
        return float(self.parts["content"])

    @property
    def style(self) -> float:
        return float(self.parts["style"])

    @property
    def tv(self) -> float:
        return float(self.parts["tv"])

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
        # Channels-last: oneDNN's convolutions (forward and backward) are faster in it on CPUs,
        # and the Gram matrices read its features without a copy.
        self.features = features.to(memory_format=torch.channels_last)
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
                feats = self.features(_channels_last(image))
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
            feats = self.features(_channels_last(content))
        self._content = {layer: feats[layer].detach() for layer in self.content_layers}
        self._content_norms = {
            layer: t.pow(2).mean().clamp_min(_EPS) for layer, t in self._content.items()
        }

    def forward(
        self,
        image: Tensor,
        region: Tensor | None = None,
        region_weight: float = 0.0,
        region_layers: Sequence[str] | None = None,
    ) -> LossTerms:
        """The loss of `image`. With a `region` (N×1×H×W in [0, 1]) and a `region_weight`,
        the style term is also taken over that region alone (`region_gram_matrix`), weighted
        by `region_weight` times the style weight, over `region_layers` (those of the style
        layers; None: all), their weights rescaled to the same sum: quality mode's warm frames
        give their new pixels a style gradient of their own this way (vidstyle.stylize.quality).
        """
        if not self._style_grams or not self._content:
            raise RuntimeError("set_style() and set_content() must be called before the loss")
        feats = self.features(_channels_last(image))
        content = sum(
            (feats[layer] - target).pow(2).mean() / self._content_norms[layer]
            for layer, target in self._content.items()
        ) / len(self._content)
        style = self._style_term(feats, gram_matrix)
        tv = total_variation(image)
        total = self.weights.content * content + self.weights.style * style + self.weights.tv * tv
        parts = {"content": content, "style": style, "tv": tv}
        if region is not None and region_weight > 0 and (region_layers is None or region_layers):
            region_style = self._style_term(
                feats, lambda f: region_gram_matrix(f, region), region_layers
            )
            total = total + region_weight * self.weights.style * region_style
            parts["region_style"] = region_style
        return LossTerms(total=total, parts={name: t.detach() for name, t in parts.items()})

    def _style_term(
        self,
        feats: Mapping[str, Tensor],
        gram: Callable[[Tensor], Tensor],
        layers: Sequence[str] | None = None,
    ) -> Tensor:
        """The target-normalised Gram distance over the style layers (or those of them in
        `layers`, their weights rescaled to sum to 1), with `gram` taking each layer's features
        to its Gram matrix."""
        weights = dict(zip(self.style_layers, self.style_layer_weights, strict=True))
        if layers is not None:
            chosen = {layer: w for layer, w in weights.items() if layer in layers}
            total = sum(chosen.values()) or 1.0
            weights = {layer: w / total for layer, w in chosen.items()}
        return sum(
            w
            * (gram(feats[layer]) - self._style_grams[layer]).pow(2).mean()
            / self._style_norms[layer]
            for layer, w in weights.items()
        )


def perceptual_loss(
    config: LossConfig,
    device: torch.device,
    *,
    adapt_features: Callable[[nn.Module], nn.Module] | None = None,
) -> PerceptualLoss:
    """The loss `config` describes, on `device`: its VGG cut after the deepest layer used.

    Quality mode and `vidstyle train` both build their loss here, so a network is trained
    against the same features a render would optimise against. `adapt_features` wraps the
    VGG module (e.g. to show it luminance only).
    """
    layers = sorted(set(config.style_layers) | set(config.content_layers))
    features: nn.Module = VGGFeatures(
        layers,
        pooling=config.pooling,
        weights=config.features,
        weights_path=config.vgg_weights,
        layout=config.vgg_layout,
        seed=config.seed,
    ).to(device)
    if adapt_features is not None:
        features = adapt_features(features)
    return PerceptualLoss(
        features,
        weights=config.weights,
        style_layers=config.style_layers,
        content_layers=config.content_layers,
        style_layer_weights=config.style_layer_weights,
    ).to(device)


def vgg_of(features: nn.Module) -> VGGFeatures:
    """The VGG network inside `features` (which may wrap it, as luminance-only features do)."""
    while not isinstance(features, VGGFeatures):
        features = features.inner  # type: ignore[assignment]
    return features


def loss_network_precision(
    loss: PerceptualLoss,
    requested: str,
    device: torch.device,
    size: tuple[int, int],
    *,
    batch: int = 1,
) -> Precision:
    """Choose the precision of `loss`'s VGG (`--precision`) for `batch` images of `size`
    (width, height) on `device`, and set it. On a CPU, `auto` times this network's forward
    and backward, with the Gram matrices of its style layers, at this size (or reuses the
    cached result); Gram matrices, losses and the image keep float32 whatever is chosen."""
    vgg = vgg_of(loss.features)
    width, height = size
    deepest = max(vgg.layers, key=vgg.arch.layer_names.index)
    workload = f"{vgg.arch.name} to {deepest}, forward+backward, {batch}x3x{height}x{width}"
    networks: dict[torch.dtype | None, nn.Module] = {None: vgg}

    def timer(dtype: torch.dtype | None) -> float:
        if dtype not in networks:  # a converted copy: the weights in use stay float32
            networks[dtype] = copy.deepcopy(vgg).set_precision(dtype)
        net = networks[dtype]
        image = torch.rand(batch, 3, height, width, device=device)
        image = _channels_last(image).requires_grad_(True)

        def one_pass() -> None:
            feats = net(image)
            sum(gram_matrix(f).pow(2).mean() + f.pow(2).mean() for f in feats.values()).backward()

        return time_pass(one_pass, device)

    precision = choose_precision(requested, device, workload=workload, timer=timer)
    vgg.set_precision(precision.dtype)
    return precision
