"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2016, "Preserving color in neural
artistic style transfer", arXiv:1606.05897): keep the source's colours, take only the style's
texture. Two methods, as in the paper:

- **luminance** (paper §3, luminance-only transfer): style transfer runs on luminance alone. The
  loss network sees only the luminance of every image (`LuminanceFeatures`), the style image's
  luminance is first matched to the content's mean and standard deviation (so the style's overall
  brightness and contrast do not leak in), and the output gets the source frame's chroma back
  (`restore_chroma`), in YIQ as in the paper.
- **histogram** (paper §2, colour histogram matching): the style image's colours are moved by a
  linear map so that their mean and covariance equal the content's (`match_color`), before the
  Gram targets are computed; the optimisation then reproduces content-like colours by itself.

Fast mode cannot change the style image its network was trained on, so both methods become a
post-process on each output frame there (`preserve_colors_stage`): luminance replaces the output's
chroma by the source's exactly as in quality mode; histogram moves the output's colour mean and
covariance to the source frame's, the same linear transfer applied to the output instead of the
style image.

Frames follow the project convention: float32 N×3×H×W, RGB in [0, 1]; nothing is modified in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

import torch
from torch import Tensor, nn

from vidstyle.frame import FrameRecord

# RGB -> YIQ (NTSC 1953, as used by Gatys et al. 2016). Rows of I and Q sum to zero and Y's to
# one, so grey pixels have zero chroma and a grey image's luminance is its value.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA_WEIGHTS = _RGB_TO_YIQ[0].view(1, 3, 1, 1)

# Keeps the luminance standard deviation's inverse finite for flat (single-colour) images.
_EPS = 1e-5


# The matrices above as each device and dtype uses them: luminance-only transfer converts every
# image VGG sees, and a copy to the GPU per call would be a transfer per forward pass.
_on_device: dict[tuple[int, torch.device, torch.dtype], Tensor] = {}


def _placed(matrix: Tensor, like: Tensor) -> Tensor:
    """`matrix` (one of this module's constants) on `like`'s device in its dtype, made once."""
    key = (id(matrix), like.device, like.dtype)
    placed = _on_device.get(key)
    if placed is None:
        placed = _on_device.setdefault(key, matrix.to(like.device, like.dtype))
    return placed


def _apply(matrix: Tensor, image: Tensor) -> Tensor:
    """Per-pixel 3×3 colour transform of an N×3×H×W image."""
    return torch.einsum("ij,njhw->nihw", _placed(matrix, image), image)


def rgb_to_yiq(image: Tensor) -> Tensor:
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    return _apply(_YIQ_TO_RGB, image)


def luminance(image: Tensor) -> Tensor:
    """N×3×H×W RGB -> N×1×H×W luminance Y."""
    weights = _placed(_LUMA_WEIGHTS, image)
    return (image * weights).sum(dim=1, keepdim=True)


def grey(y: Tensor) -> Tensor:
    """N×1×H×W luminance -> N×3×H×W RGB with that luminance and zero chroma."""
    return y.expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """The style image as grey, its luminance shifted and scaled to the content's mean and
    standard deviation (Gatys et al. 2016 §3, eq. 3: L_S' = σ_C/σ_S (L_S − μ_S) + μ_C).

    Without this the luminance histogram of the style would be transferred too, e.g. a dark
    painting would darken the whole video."""
    ys, yc = luminance(style), luminance(content)
    mu_s, sd_s = ys.mean(dim=(1, 2, 3), keepdim=True), ys.std(dim=(1, 2, 3), keepdim=True)
    mu_c, sd_c = yc.mean(dim=(1, 2, 3), keepdim=True), yc.std(dim=(1, 2, 3), keepdim=True)
    return grey((ys - mu_s) * (sd_c / sd_s.clamp_min(_EPS)) + mu_c)


def restore_chroma(styled: Tensor, source: Tensor) -> Tensor:
    """The luminance of `styled` with the chroma (I, Q) of `source`, in [0, 1].

    Where that combination would leave the RGB cube, the luminance is clamped into the range in
    which the source's chroma is displayable instead of clamping R, G and B (which would shift
    the hue): so the result's chroma is the source's exactly, not just approximately. The range
    is never empty: the source pixel itself lies in it."""
    y = luminance(styled)
    iq = rgb_to_yiq(source)[:, 1:]
    # R, G, B = a_c·Y + d_c(I, Q), with a_c = 1 up to rounding (I and Q rows sum to zero).
    back = _placed(_YIQ_TO_RGB, source)
    a = back[:, 0].view(1, 3, 1, 1)
    d = torch.einsum("ij,njhw->nihw", back[:, 1:], iq)
    low = ((0.0 - d) / a).amax(dim=1, keepdim=True)
    high = ((1.0 - d) / a).amin(dim=1, keepdim=True)
    y = torch.minimum(torch.maximum(y, low), high)
    return (a * y + d).clamp(0.0, 1.0)  # clamp only removes float rounding at the bounds


def color_stats(image: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (N×3) and covariance (N×3×3) of the pixel colours, in float64."""
    pixels = image.detach().to(torch.float64).flatten(2)  # N×3×P
    mean = pixels.mean(dim=2)
    centred = pixels - mean.unsqueeze(2)
    cov = centred @ centred.transpose(1, 2) / max(pixels.shape[2] - 1, 1)
    return mean, cov


def _floor(cov: Tensor) -> Tensor:
    """A variance floor per matrix: negligible next to the image's largest variance (so matched
    statistics stay exact to ~1e-6 relative), yet > 0 for a flat image."""
    return cov.diagonal(dim1=-2, dim2=-1).amax(dim=-1) * 1e-6 + 1e-12


def _sqrt_psd(cov: Tensor, power: float) -> Tensor:
    """cov^power for symmetric positive semi-definite 3×3 matrices (eigendecomposition)."""
    values, vectors = torch.linalg.eigh(cov)
    # A flat image has zero variance along some axis: its inverse root is kept finite by a
    # floor relative to the largest variance, and a positive power needs only the
    # (rounding-negative) eigenvalues clipped to 0.
    floor = _floor(cov).unsqueeze(-1) if power < 0 else torch.zeros_like(values)
    scaled = torch.maximum(values, floor).pow(power)
    return vectors @ torch.diag_embed(scaled) @ vectors.transpose(-1, -2)


def match_color(image: Tensor, reference: Tensor, method: str = "eigen") -> Tensor:
    """`image` moved by x' = A(x − μ_I) + μ_R so that its colour mean and covariance are
    `reference`'s (Gatys et al. 2016 §2: A Σ_I Aᵀ = Σ_R).

    method "eigen" is the paper's 3D colour matching from Image Analogies, A = Σ_R^½ Σ_I^-½ (the
    symmetric choice: the smallest rotation of the colour cloud, which the paper's figures use);
    "cholesky" is its A = L_R L_I⁻¹. The result is not clamped: a style image fed to VGG may hold
    values outside [0, 1], and clamping would undo the match.
    """
    mu_i, cov_i = color_stats(image)
    mu_r, cov_r = color_stats(reference)
    eye = torch.eye(3, dtype=torch.float64, device=cov_i.device)
    if method == "eigen":
        a = _sqrt_psd(cov_r, 0.5) @ _sqrt_psd(cov_i, -0.5)
    elif method == "cholesky":
        # The floor makes a flat image's covariance positive definite.
        l_i = torch.linalg.cholesky(cov_i + _floor(cov_i)[..., None, None] * eye)
        l_r = torch.linalg.cholesky(cov_r + _floor(cov_r)[..., None, None] * eye)
        a = l_r @ torch.linalg.inv(l_i)
    else:
        raise ValueError(f"unknown colour matching method {method!r}")
    pixels = image.to(torch.float64).flatten(2)
    moved = a @ (pixels - mu_i.unsqueeze(2)) + mu_r.unsqueeze(2)
    return moved.reshape(image.shape).to(image.dtype)


def adapt_style(style: Tensor, content: Tensor, mode: str) -> Tensor:
    """The style image as quality mode should see it for `content` under `mode`."""
    if mode == "luminance":
        return match_luminance(style, content)
    if mode == "histogram":
        return match_color(style, content)
    if mode == "none":
        return style
    raise ValueError(f"unknown preserve_colors mode {mode!r}")


class LuminanceFeatures(nn.Module):
    """A feature extractor that sees only luminance (grey in, grey out), for luminance-only
    transfer: content, style and optimised image all reach VGG as Y replicated to three channels,
    as Gatys et al. 2016 §3 do, so the loss neither rewards nor penalises any chroma."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.inner = features

    @property
    def source(self) -> object:
        """The wrapped network's weight source (`VGGFeatures.source`), for logging."""
        return self.inner.source

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.inner(grey(luminance(x)))


class PreserveColors:
    """Iterator stage: each styled frame's colours put back to the source frame's (`content`).

    `method` "luminance": the source's chroma, exactly (`restore_chroma`); "histogram": the
    styled frame's colour mean and covariance matched to the source frame's, then clamped to
    [0, 1] (fast mode only; quality mode matches the style image instead)."""

    def __init__(self, method: str) -> None:
        if method not in ("luminance", "histogram"):
            raise ValueError(f"unknown colour preservation {method!r}")
        self.method = method

    def apply(self, styled: Tensor, content: Tensor) -> Tensor:
        if self.method == "luminance":
            return restore_chroma(styled, content)
        return match_color(styled, content).clamp(0.0, 1.0)

    def __call__(self, frames: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        for record in frames:
            if record.styled is None:
                raise ValueError(f"frame {record.index} has not been stylized")
            yield replace(record, styled=self.apply(record.styled, record.content))


def preserve_colors_stage(mode: str, render_mode: str) -> PreserveColors | None:
    """The post-process stage `mode` needs in `render_mode` ("quality" | "fast"), if any.

    Quality mode's histogram matching happens on the style image (`StyleTargets`), so it needs no
    post-process; luminance-only transfer always ends by restoring the source's chroma."""
    if mode == "none" or (mode == "histogram" and render_mode == "quality"):
        return None
    return PreserveColors(mode)
