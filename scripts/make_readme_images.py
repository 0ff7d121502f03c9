"""Generate the README's before/after images of the artistic controls into docs/images/.

Every picture is the first frame of samples/clip.mp4 rendered by the real pipeline
(`vidstyle.stylize_video` with `max_frames = 1`, decoded back from the output file) with
samples/style.png, so what the README shows is what the command line produces:

    colors.png   source | style | --preserve-colors none | luminance | histogram
    blend.png    style A | style B | A alone | --style-blend 0.5,0.5 | B alone
    layers.png   default style layers | --style-layers relu1_1,relu2_1 | relu3_1,relu4_1,relu5_1

Style B is samples/style.png turned a quarter and recoloured in blues (its luminance mapped
onto a navy-to-white ramp), so a blend is easy to tell from either style. The coarse-to-fine
picture (docs/images/coarse_to_fine.png) comes from the benchmark that measures it:
`python bench/controls.py --docs`.

    python scripts/make_readme_images.py                # 192 px frames, 100 iterations
    python scripts/make_readme_images.py --vgg-weights vgg16.pth    # what docs/images shows

Pictures are saved as 255-colour palette PNGs so that all of them stay well under 300 KB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import av
import torch
from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parent.parent

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.render.pipeline import stylize_video  # noqa: E402

TILE_HEIGHT = 96
CAPTION = 14


def first_frame(path: Path) -> Image.Image:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return Image.fromarray(frame.to_ndarray(format="rgb24"))


def render(clip: Path, styles: list[Path], folder: Path, **overrides: Any) -> Image.Image:
    """The first frame of `clip` as the pipeline renders it with these settings."""
    settings = resolve_settings(
        "quality",
        overrides={"max_frames": 1, "audio": False, "crf": 0, "overwrite": True, **overrides},
    )
    out = folder / f"render{len(list(folder.iterdir()))}.mkv"
    stylize_video(clip, styles, settings, output=out)
    return first_frame(out)


def strip(tiles: list[Image.Image], labels: list[str]) -> Image.Image:
    """Tiles side by side at one height, each with a caption above."""
    scaled = [
        tile.resize(
            (round(tile.width * TILE_HEIGHT / tile.height), TILE_HEIGHT), Image.Resampling.LANCZOS
        )
        for tile in tiles
    ]
    gap = 4
    width = sum(t.width for t in scaled) + gap * (len(scaled) - 1)
    sheet = Image.new("RGB", (width, TILE_HEIGHT + CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for tile, label in zip(scaled, labels, strict=True):
        sheet.paste(tile, (x, CAPTION))
        draw.text((x + 2, 1), label, fill="black")
        x += tile.width + gap
    return sheet


def save(sheet: Image.Image, path: Path) -> None:
    # Stylised texture compresses badly as truecolour PNG; a palette keeps each picture ~50 KB.
    palette = sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "clip.mp4")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "style.png")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--features", default="auto")
    parser.add_argument("--vgg-weights", help="VGG checkpoint (implies pretrained features)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["colors", "blend", "layers"],
        default=["colors", "blend", "layers"],
        help="pictures to (re)make",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    common = {
        "size": args.size,
        "first_iterations": args.iterations,
        "features": "pretrained" if args.vgg_weights else args.features,
        "vgg_weights": args.vgg_weights,
    }

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "renders"
        folder.mkdir()
        style_a = Image.open(args.style).convert("RGB")
        style_b_path = Path(tmp) / "blues.png"
        ImageOps.colorize(
            ImageOps.grayscale(style_a.rotate(90)), black="#0b1e5b", mid="#3a7bd5", white="#f2f7ff"
        ).save(style_b_path)
        style_b = Image.open(style_b_path)
        source = first_frame(args.clip)
        frame = source.resize(
            (
                round(source.width * args.size / max(source.size)),
                round(source.height * args.size / max(source.size)),
            ),
            Image.Resampling.LANCZOS,
        )

        plain = render(args.clip, [args.style], folder, **common)
        if "colors" in args.only:
            colours = [
                render(args.clip, [args.style], folder, preserve_colors=mode, **common)
                for mode in ("luminance", "histogram")
            ]
            save(
                strip(
                    [frame, style_a, plain, *colours],
                    ["source", "style", "none", "luminance", "histogram"],
                ),
                args.out / "colors.png",
            )
        if "blend" in args.only:
            only_b = render(args.clip, [style_b_path], folder, **common)
            mixed = render(
                args.clip, [args.style, style_b_path], folder, style_blend="0.5,0.5", **common
            )
            save(
                strip(
                    [style_a, style_b, plain, mixed, only_b],
                    ["style A", "style B", "A", "blend 0.5,0.5", "B"],
                ),
                args.out / "blend.png",
            )
        if "layers" in args.only:
            fine = render(args.clip, [args.style], folder, style_layers="relu1_1,relu2_1", **common)
            coarse = render(
                args.clip, [args.style], folder, style_layers="relu3_1,relu4_1,relu5_1", **common
            )
            save(
                strip(
                    [plain, fine, coarse],
                    ["relu1_1 ... relu5_1 (default)", "relu1_1,relu2_1", "relu3_1 ... relu5_1"],
                ),
                args.out / "layers.png",
            )
    total = sum(p.stat().st_size for p in args.out.glob("*.png"))
    print(f"docs/images: {total // 1024} KB in all", file=sys.stderr)


if __name__ == "__main__":
    main()
