"""Make a moving-camera test clip: a camera that pans diagonally one way, then the other, then
zooms in, over two photographs side by side, with a cut-out of a third entering from the edge.

    python bench/make_moving_clip.py --photos DIR -o moving.mp4

DIR holds scikit-image's sample photos `chelsea.png`, `coffee.png` and `astronaut.png` (public
domain / CC0; `pip install scikit-image` puts them in `skimage/data/`, which is the default DIR
when scikit-image is installed): no photo is shipped with vidstyle. 256x144, 72 frames at 24 fps.
The camera moves 3-8 px a frame in x and in y at sub-pixel positions, as a real camera does:

- frames 0-23: right 5.5 px and down 3.1 px a frame;
- frames 24-47: right 7.2 px and up 3.4 px a frame;
- frames 48-71: zooms in by 1.4% a frame (to 1.39x) while panning right 3 px a frame.

A 44 px disc cut from the astronaut photo enters from the right edge at frame 6 and crosses the
frame leftwards at 6 px a frame (on top of the camera's motion), bobbing up and down.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from make_photo_clip import write_clip  # bench/, beside this script
from PIL import Image

SIZE = (256, 144)  # width, height of the clip
FRAMES = 72
FPS = Fraction(24)
# Frame pixels per canvas pixel at the start: the view covers SIZE / SCALE of the canvas.
SCALE = 0.6
CANVAS_HEIGHT = 400
# (first frame, dx, dy in frame pixels a frame, zoom factor a frame), until the next leg
LEGS = [(0, 5.5, 3.1, 1.0), (24, 7.2, -3.4, 1.0), (48, 3.0, 0.0, 1.014)]
DISC_SIDE = 44
DISC_ENTERS = 6  # frame at which the disc's left edge is at the frame's right edge
DISC_STEP = 6.0  # px a frame, leftwards


def default_photos() -> Path | None:
    try:
        import skimage  # noqa: PLC0415
    except ImportError:
        return None
    return Path(skimage.__file__).parent / "data"


def canvas_of(photos: Path) -> np.ndarray:
    """chelsea and coffee, each scaled to CANVAS_HEIGHT, side by side (RGB uint8)."""
    parts = []
    for name in ("chelsea.png", "coffee.png"):
        image = Image.open(photos / name).convert("RGB")
        width = round(image.width * CANVAS_HEIGHT / image.height)
        parts.append(np.asarray(image.resize((width, CANVAS_HEIGHT), Image.LANCZOS)))
    return np.concatenate(parts, axis=1)


def disc_of(photos: Path) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face as a DISC_SIDE px square and the disc's alpha (float, 0..1)."""
    image = Image.open(photos / "astronaut.png").convert("RGB")
    face = image.crop((140, 40, 300, 200)).resize((DISC_SIDE, DISC_SIDE), Image.LANCZOS)
    yy, xx = np.mgrid[:DISC_SIDE, :DISC_SIDE]
    r = (DISC_SIDE - 1) / 2
    # A one-pixel soft rim, as a filmed edge has.
    alpha = np.clip(r + 0.5 - np.hypot(yy - r, xx - r), 0.0, 1.0)
    return np.asarray(face), alpha.astype(np.float32)


def camera_path() -> list[tuple[float, float, float]]:
    """Per frame: the canvas position of the view's top-left corner and the view's scale
    (frame pixels per canvas pixel)."""
    width, height = SIZE
    x, y, scale = 0.0, 20.0, SCALE  # y: room for the upward leg
    path = []
    for i in range(FRAMES):
        path.append((x, y, scale))
        _, dx, dy, zoom = next(leg for leg in reversed(LEGS) if leg[0] <= i)
        # Zoom about the view's centre, then pan (dx, dy are in frame pixels).
        cx, cy = x + width / (2 * scale), y + height / (2 * scale)
        scale *= zoom
        x, y = cx - width / (2 * scale), cy - height / (2 * scale)
        x += dx / scale
        y += dy / scale
    return path


def frames(photos: Path) -> list[np.ndarray]:
    canvas = canvas_of(photos)
    face, alpha = disc_of(photos)
    width, height = SIZE
    out = []
    for i, (x, y, scale) in enumerate(camera_path()):
        # The view as an affine map canvas -> frame; INTER_AREA-like quality from a
        # downscaling view comes from blurring the canvas by the scale first.
        sigma = max(0.0, 0.5 / scale - 0.5)
        source = cv2.GaussianBlur(canvas, (0, 0), sigma) if sigma > 0.05 else canvas
        matrix = np.array([[scale, 0.0, -x * scale], [0.0, scale, -y * scale]], np.float32)
        view = cv2.warpAffine(
            source, matrix, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        view = view.astype(np.float32)
        # The disc: enters at the right edge, moves left at DISC_STEP, bobs by 14 px.
        dx = width - DISC_STEP * (i - DISC_ENTERS)
        dy = height / 2 - DISC_SIDE / 2 + 14.0 * np.sin(i / 5.0)
        shift = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
        disc = cv2.warpAffine(face, shift, SIZE, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(alpha, shift, SIZE, flags=cv2.INTER_LINEAR)[..., None]
        view = view * (1.0 - mask) + disc.astype(np.float32) * mask
        out.append(np.clip(np.rint(view), 0, 255).astype(np.uint8))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--photos",
        type=Path,
        default=default_photos(),
        help="folder with chelsea.png, coffee.png, astronaut.png (default: scikit-image's)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.photos is None:
        parser.error("--photos: install scikit-image or name a folder with its sample photos")
    write_clip(frames(args.photos), args.output, FPS)
    print(args.output)


if __name__ == "__main__":
    main()
