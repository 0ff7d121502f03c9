"""Still images as input and output: recognise one, read it upright as RGB, write one atomically.

A photo given as input renders to an image (neural-style users stylise photos), not to a
one-frame video. The output format follows the suffix; it is written under a temporary name
beside the target and renamed when complete, like a video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vidstyle.atomic import output_error, write_atomically
from vidstyle.errors import ConfigError, InputError
from vidstyle.media.output import check_output_writable

#: Output suffixes for a still image, and the Pillow format each is written in.
IMAGE_SUFFIXES: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: The default output suffix of an image input: lossless, and every viewer reads it.
IMAGE_EXT = ".png"
# Pillow formats taken as still-image input (MPO: a JPEG from a camera with a preview frame).
_INPUT_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP"})
# Lossy outputs at a quality that keeps brush strokes; PNG is lossless anyway.
_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"quality": 95},
    "PNG": {},
}


def is_still_image(path: Path) -> bool:
    """Whether `path` holds a still PNG, JPEG or WebP image (by its contents, not its name;
    an animated WebP is a video)."""
    try:
        with Image.open(path) as image:
            return image.format in _INPUT_FORMATS and getattr(image, "n_frames", 1) == 1
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False


def read_image(path: Path) -> np.ndarray:
    """The image upright (EXIF orientation applied) as H×W×3 uint8 RGB; transparent areas on
    white, as the style image's."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise InputError(
            f"cannot read the image ({err}); pass a PNG, JPEG or WebP file", path
        ) from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def image_size(source: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(width, height) with the long side `long_side`, never upscaled, aspect kept (an image
    needs no even sides, unlike yuv420p video)."""
    width, height = source
    factor = min(1.0, long_side / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def check_image_output(path: Path) -> None:
    """Raise `ConfigError` unless `path` names an image format an image input can render to."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(
            "an image input renders to an image; name the output .png, .jpg or .webp", path
        )


def write_image(image: np.ndarray, path: Path) -> None:
    """Write H×W×3 uint8 RGB to `path` (format from its suffix), atomically: nothing appears
    under `path` unless complete, and an earlier file there stays until then."""
    check_image_output(path)
    check_output_writable(path)
    fmt = IMAGE_SUFFIXES[path.suffix.lower()]
    picture = Image.fromarray(image, "RGB")
    try:
        write_atomically(path, lambda file: picture.save(file, format=fmt, **_SAVE_OPTIONS[fmt]))
    except OSError as err:
        raise output_error(err, path) from err
