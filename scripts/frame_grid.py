"""Save a PNG grid of chosen frames: one row per video (source first), one column per frame.

    python scripts/frame_grid.py samples/clip.mp4 out.mp4 [more.mp4 ...] --frames 0 8 16 23 \
        -o grid.png [--labels source default ...] [--height 144] [--palette]

Used to look at renders as a painter would: frames side by side, the source above, so a ghost
(an object's colour left where it has gone), a wake (unstylised background behind a moving
object) or speckle is seen at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
from PIL import Image, ImageDraw

CAPTION = 14


def read_frames(path: Path, indices: list[int]) -> dict[int, Image.Image]:
    wanted = set(indices)
    found: dict[int, Image.Image] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                found[i] = frame.to_image()
            if len(found) == len(wanted):
                break
    return found


def grid(videos: list[Path], labels: list[str], indices: list[int], height: int) -> Image.Image:
    rows = []
    for video in videos:
        frames = read_frames(video, indices)
        tiles = [frames.get(i) for i in indices]
        first = next(t for t in tiles if t is not None)
        width = round(first.width * height / first.height)
        rows.append([t.resize((width, height), Image.LANCZOS) if t else None for t in tiles])
    width = max(t.width for row in rows for t in row if t is not None)
    label_w = 110
    canvas = Image.new(
        "RGB", (label_w + width * len(indices), CAPTION + height * len(rows)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for c, index in enumerate(indices):
        draw.text((label_w + c * width + 4, 1), f"frame {index}", fill="black")
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        y = CAPTION + r * height
        draw.text((4, y + height // 2 - 6), label[:18], fill="black")
        for c, tile in enumerate(row):
            if tile is not None:
                canvas.paste(tile, (label_w + c * width, y))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", type=Path, nargs="+", help="source first, then renders")
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 8, 16, 23])
    parser.add_argument("--labels", nargs="+")
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument(
        "--palette", action="store_true", help="save as a 255-colour PNG (small, for docs/)"
    )
    args = parser.parse_args()
    labels = args.labels or [p.stem for p in args.videos]
    image = grid(args.videos, labels, args.frames, args.height)
    if args.palette:
        image = image.quantize(255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(args.output, optimize=True)
    print(args.output)


if __name__ == "__main__":
    main()
