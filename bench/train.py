"""Trained fast-mode networks against quality mode, on the same clip, size and features.

For each clip, renders it once in quality mode (the built-in defaults at `--size`, first
`--frames` frames) and once with every model given, through `vidstyle.render.pipeline.stylize_video`
as the command line does (fast renders with the `fast` preset: no smoothing), then measures
each render as `vidstyle eval` does, with the same VGG features for every row:

- E_warp (Lai et al. 2018, `vidstyle.metrics`): lower is steadier; the source's own is the floor;
- style distance: the Gram term of the rendering loss to the style image, scaled to the frame as
  a render scales it;
- content distance: the content term of the rendering loss (relu4_2, target-normalised) of each
  rendered frame against its source frame: 0 is the photo itself, larger has moved further from
  its shapes;
- seconds per frame of the render (model loading and the quality render's VGG set-up excluded).

Renders are kept in `--work` (the quality render is reused while its settings are the same; an
existing render made with other settings is rendered again), and `--grid` saves a PNG of frames
from the source, the quality render and every fast render, one row each, to look at.

    python bench/train.py clip.pth photos=photos.pth --vgg-weights vgg16.pth --size 192 \
        --frames 16 --grid grid.png

Prints a Markdown table per clip and writes JSON to bench/results/train.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # frame_grid: the PNG grids the docs use

import frame_grid  # noqa: E402

from vidstyle.config import RenderSettings, resolve_settings  # noqa: E402
from vidstyle.device import resolve_device  # noqa: E402
from vidstyle.media import image_to_tensor, probe, read_frames  # noqa: E402
from vidstyle.metrics import evaluate_videos  # noqa: E402
from vidstyle.nets.models import read_model_info  # noqa: E402
from vidstyle.render.pipeline import build_loss, stylize_video  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402


@dataclass(frozen=True)
class Row:
    label: str
    render: Path
    seconds_per_frame: float | None  # None: an earlier run's render, reused
    training: str  # how the model was trained; "" for quality mode


def content_distance(original: Path, styled: Path, style: Path, settings: RenderSettings) -> float:
    """Mean content term of the rendering loss of each styled frame against its source frame."""
    device = resolve_device(settings.device)
    info_o, info_s = probe(original), probe(styled)
    loss = build_loss(settings, device)
    # The loss needs a style target to run; only its content term is read.
    loss.set_style([style_tensor(load_style_image(style), info_s.size, 1.0, device)])
    total, frames = 0.0, 0
    with (
        contextlib.closing(read_frames(info_o, size=info_s.size)) as source,
        contextlib.closing(read_frames(info_s)) as rendered,
        torch.no_grad(),
    ):
        for a, b in zip(source, rendered, strict=False):
            loss.set_content(image_to_tensor(a.image, device))
            total += loss(image_to_tensor(b.image, device)).content
            frames += 1
    return total / frames


def describe_training(model: Path) -> str:
    info = read_model_info(model)
    t = info.training
    crops = f"{t.get('batch_size')}x{t.get('size')}²"
    return (
        f"{info.arch.name}, {t.get('steps')} steps of {crops} crops, "
        f"temporal weight {t.get('temporal_weight')}"
    )


def render(clip: Path, output: Path, settings: RenderSettings, styles: list[Path]) -> float | None:
    result = stylize_video(clip, styles, settings, output=output)
    if result.status == "stale":  # made with other settings (another commit's defaults...)
        result = stylize_video(clip, styles, settings.replace(overwrite=True), output=output)
    if result.status != "rendered":
        return None
    return result.seconds / max(result.frames, 1)


def bench_clip(clip: Path, models: list[tuple[str, Path]], args: argparse.Namespace) -> list[dict]:
    common: dict[str, Any] = {
        "size": args.size,
        "max_frames": args.frames,
        "features": args.features,
        "vgg_weights": str(args.vgg_weights) if args.vgg_weights else None,
        "device": args.device,
    }
    quality = resolve_settings("quality", overrides=common)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    reference = work / f"{clip.stem}.quality{args.size}.mp4"
    seconds = render(clip, reference, quality, [args.style])
    rows = [Row("quality (defaults)", reference, seconds, "")]
    for label, model in models:
        fast = resolve_settings(overrides={**common, "model": str(model), "overwrite": True})
        output = work / f"{clip.stem}.{label}{args.size}.mp4"
        rows.append(Row(label, output, render(clip, output, fast, []), describe_training(model)))

    results = []
    for row in rows:
        measured = evaluate_videos(clip, row.render, quality, styles=[args.style])
        results.append(
            {
                "clip": str(clip),
                "render": row.label,
                "training": row.training,
                "e_warp": measured.warping_error_styled,
                "e_warp_source": measured.warping_error_original,
                "style_distance": measured.style_distance,
                "content_distance": content_distance(clip, row.render, args.style, quality),
                "seconds_per_frame": row.seconds_per_frame,
                "size": list(measured.size),
                "frames": measured.frames,
                "features": measured.features,
            }
        )
    if args.grid:
        grid_path = args.grid
        if len(args.clip) > 1:
            grid_path = grid_path.with_stem(f"{grid_path.stem}-{clip.stem}")
        indices = [round(i * (args.frames - 1) / 3) for i in range(4)]
        image = frame_grid.grid(
            [clip, *(row.render for row in rows)],
            ["source", *(row.label for row in rows)],
            indices,
            args.grid_height,
        )
        image.save(grid_path)
        print(f"wrote {grid_path}", file=sys.stderr)
    return results


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def print_table(results: list[dict]) -> None:
    first = results[0]
    print(
        f"\n{first['clip']}: {first['frames']} frames at {first['size'][0]}x{first['size'][1]}, "
        f"E_warp of the source {fmt(first['e_warp_source'])}; features: {first['features']}\n"
    )
    print("| render | E_warp | style distance | content distance | s/frame | training |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r['render']} | {fmt(r['e_warp'])} | {fmt(r['style_distance'])} | "
            f"{fmt(r['content_distance'])} | {fmt(r['seconds_per_frame'], 3)} | {r['training']} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "models", nargs="+", help="model files; LABEL=PATH names the row (default: file stem)"
    )
    parser.add_argument("--clip", type=Path, action="append", help="default: samples/clip.mp4")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "style.png")
    parser.add_argument("--size", type=int, default=192, help="long side of every render")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--features", default="auto", choices=["auto", "pretrained", "random"])
    parser.add_argument("--vgg-weights", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "train-renders")
    parser.add_argument("--grid", type=Path, help="save a PNG grid of frames of every render")
    parser.add_argument("--grid-height", type=int, default=108)
    args = parser.parse_args(argv)
    args.clip = args.clip or [ROOT / "samples" / "clip.mp4"]
    torch.set_num_threads(args.threads)

    models: list[tuple[str, Path]] = []
    for item in args.models:
        label, sep, path = item.partition("=")
        models.append((label, Path(path)) if sep else (Path(item).stem, Path(item)))

    results = [row for clip in args.clip for row in bench_clip(clip, models, args)]
    for clip in args.clip:
        print_table([r for r in results if r["clip"] == str(clip)])
    out = ROOT / "bench" / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "threads": args.threads,
    }
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
