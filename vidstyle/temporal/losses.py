"""Ruder et al.'s short-term temporal loss, used by quality mode next to the Gatys loss."""

from __future__ import annotations

from torch import Tensor


def temporal_loss(image: Tensor, warped: Tensor, reliable: Tensor) -> Tensor:
    """Masked mean squared difference to the warped previous output, at pixel level.

    Ruder, Dosovitskiy and Brox 2016, eq. 7: (1/D) Σ c · (x − ω)², with D the number of values
    (pixels × channels) and c the reliability mask, so the weight means the same whatever the
    frame size and however much of the frame is reliable. Pixels in [0, 1].
    """
    return (reliable * (image - warped).pow(2)).mean()
