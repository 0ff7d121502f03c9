"""Loading style images: any Pillow mode in, an RGB tensor at a size relative to the frame out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vidstyle.errors import StyleImageError
from vidstyle.filetypes import VIDEO_EXTENSIONS


def load_style_image(path: Path) -> Image.Image:
    """Open a style image as RGB (RGBA/LA composited on white; P, L, CMYK, I;16 converted)."""
    if not path.exists():
        raise StyleImageError("style image not found; check the path", path)
    if path.is_dir():
        raise StyleImageError("is a folder; pass a style image file", path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        raise StyleImageError("is a video; pass a still image (PNG, JPEG, ...) as --style", path)
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        reason = (
            "not an image Pillow can read"
            if isinstance(err, UnidentifiedImageError)
            else (f"cannot read the image ({err})")
        )
        raise StyleImageError(f"{reason}; pass a PNG or JPEG file", path) from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas would otherwise come out as whatever colour they store (often black).
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale high-bit-depth greyscale to 8 bits instead of letting Pillow clip it.
        array = np.asarray(image, dtype=np.float64)
        span = max(float(array.max()), 1.0)
        image = Image.fromarray((array / span * 255).round().astype(np.uint8))
    return image.convert("RGB")


def style_tensor(
    image: Image.Image, frame_size: tuple[int, int], scale: float, device: torch.device
) -> torch.Tensor:
    """The style image with long side `scale` × the frame's long side (1×3×H×W, [0,1])."""
    long_side = max(16, round(max(frame_size) * scale))
    w, h = image.size
    factor = long_side / max(w, h)
    size = (max(16, round(w * factor)), max(16, round(h * factor)))
    resized = image.resize(size, Image.Resampling.LANCZOS)
    array = np.asarray(resized, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float().div(255).to(device)
