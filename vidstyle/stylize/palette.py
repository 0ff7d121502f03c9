"""A painting's colours as a mean and covariance, and a photo recoloured into them.

Quality mode starts pixels that enter a warm frame (uncovered, or coming in at an edge) from
the photo recoloured into the palette its shot was painted in: the linear map that gives the
frame's colours the palette's mean and covariance (the Monge–Kantorovich linear colour transfer,
Pitié and Kokaram, CVMP 2007). The palette is taken once per shot, from its first, freshly
optimised frame, so it does not drift with what the warm frames have not yet repainted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Added to the covariances' diagonals: a flat-coloured frame has a singular one.
_RIDGE = 1e-5


@dataclass(frozen=True)
class Palette:
    """Mean (3×1) and covariance (3×3) of an image's RGB colours."""

    mean: Tensor
    covariance: Tensor

    @classmethod
    def of(cls, image: Tensor) -> Palette:
        """The palette of a 1×3×H×W image (float32, on its device)."""
        pixels = image.detach().float().flatten(2)[0]  # 3×(H·W)
        mean = pixels.mean(dim=1, keepdim=True)
        centred = pixels - mean
        covariance = centred @ centred.T / max(pixels.shape[1], 1)
        return cls(mean, covariance + _RIDGE * torch.eye(3, device=image.device))

    def to(self, device: torch.device | str) -> Palette:
        return Palette(self.mean.to(device), self.covariance.to(device))


def recolour(image: Tensor, palette: Palette) -> Tensor:
    """`image` with its colours mapped linearly so that their mean and covariance are
    `palette`'s: x ↦ T (x − μ) + μ', T = Σ^-½ (Σ^½ Σ' Σ^½)^½ Σ^-½, the map of that kind that
    moves colours least. Clamped to [0, 1]; a new tensor."""
    own = Palette.of(image)
    target = palette.to(image.device)
    root = _sqrtm(own.covariance)
    inverse_root = torch.linalg.inv(root)
    transfer = inverse_root @ _sqrtm(root @ target.covariance @ root) @ inverse_root
    pixels = image.float().flatten(2)[0]
    mapped = transfer @ (pixels - own.mean) + target.mean
    return mapped.reshape(image.shape).to(image.dtype).clamp(0.0, 1.0)


def _sqrtm(matrix: Tensor) -> Tensor:
    """The square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(0.0).sqrt()) @ vectors.T
