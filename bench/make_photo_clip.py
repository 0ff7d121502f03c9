"""Make a photographic test clip: a slow camera pan over one photo with a cut-out of another
moving fast across it (the case where a missed or poorly carried object leaves a trail).

    python bench/make_photo_clip.py BACKGROUND.png SPRITE.png -o photo_clip.mp4

The figures in docs/quality.md used scikit-image's sample photos (`pip download --no-deps
scikit-image`, then unzip `skimage/data/chelsea.png` and `skimage/data/coffee.png` from the
wheel): no photo is shipped with vidstyle. 256x144, 24 frames at 12 fps; the camera pans 1 px
a frame to the right and a 40 px disc cut from the middle of SPRITE crosses the frame at
7 px a frame.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SIZE = (256, 144)
FRAMES = 24
PAN_PX = 1
SPRITE_SIDE = 40
SPRITE_STEP = 7


def frames(background: Image.Image, sprite: Image.Image) -> list[np.ndarray]:
    width, height = SIZE
    scale = (height + 8) / background.height
    wide = background.resize(
        (max(width + PAN_PX * FRAMES + 8, round(background.width * scale)), height + 8),
        Image.LANCZOS,
    )
    canvas = np.asarray(wide.convert("RGB"))
    side = min(sprite.size)
    left, top = (sprite.width - side) // 2, (sprite.height - side) // 2
    disc_image = sprite.crop((left, top, left + side, top + side)).resize(
        (SPRITE_SIDE, SPRITE_SIDE), Image.LANCZOS
    )
    disc = np.asarray(disc_image.convert("RGB"))
    yy, xx = np.mgrid[:SPRITE_SIDE, :SPRITE_SIDE]
    r = (SPRITE_SIDE - 1) / 2
    inside = ((yy - r) ** 2 + (xx - r) ** 2) <= r * r
    out = []
    for i in range(FRAMES):
        x0 = PAN_PX * i
        frame = canvas[4 : 4 + height, x0 : x0 + width].copy()
        sx = -SPRITE_SIDE // 2 + SPRITE_STEP * i
        sy = height // 2 - SPRITE_SIDE // 2 + round(12 * np.sin(i / 4))
        for y in range(SPRITE_SIDE):
            for x in range(SPRITE_SIDE):
                fx, fy = sx + x, sy + y
                if inside[y, x] and 0 <= fx < width and 0 <= fy < height:
                    frame[fy, fx] = disc[y, x]
        out.append(frame)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("background", type=Path)
    parser.add_argument("sprite", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    images = frames(Image.open(args.background), Image.open(args.sprite))
    write_clip(images, args.output, Fraction(12))
    print(args.output)


def write_clip(images: list[np.ndarray], path: Path, fps: Fraction) -> None:
    """H×W×3 uint8 RGB frames as an H.264 MP4 at `fps`, nearly lossless (CRF 12)."""
    height, width = images[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


if __name__ == "__main__":
    main()
