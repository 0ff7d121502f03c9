"""Coarse-to-fine vs single-scale optimisation of a fresh frame, at equal wall time.

Takes the first frame of samples/clip.mp4 and samples/style.png and optimises it twice through
the real quality stage: once coarse-to-fine (`coarse_to_fine = true`, the budget split over the
scales as vidstyle.stylize.multiscale documents) and once at the full size only, given as many
iterations as fit in the time coarse-to-fine took. Both results are scored with the same
full-size loss (content + style + TV against the full-size targets); lower is better.

Equal time is computed from per-iteration costs timed separately at every scale (best of a few
repeats), not from one wall-clock reading, so a busy machine (other processes, a shared CPU)
does not tilt the comparison; measured wall times are printed beside. Early stopping is off so
both runs spend exactly what they are given. For reference, single-scale is also run with the
whole iteration budget (more time than coarse-to-fine).

    python bench/controls.py                         # 256 px, budgets 60 and 120
    python bench/controls.py --size 512 --budgets 200 --device cuda

The sample clip is 256 px wide; larger --size values upscale its first frame (Lanczos).
Prints a Markdown table, writes bench/results/controls.json and a side-by-side image
bench/results/coarse_to_fine.png (frame | single-scale | coarse-to-fine, at the largest budget);
`--docs` also writes a small copy to docs/images/coarse_to_fine.png for the README.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent

from vidstyle.config import RenderSettings, resolve_settings  # noqa: E402
from vidstyle.device import resolve_device  # noqa: E402
from vidstyle.frame import FrameRecord  # noqa: E402
from vidstyle.media import image_to_tensor, probe, read_frames, tensor_to_image  # noqa: E402
from vidstyle.render.pipeline import build_loss, quality_config  # noqa: E402
from vidstyle.stylize.losses import PerceptualLoss  # noqa: E402
from vidstyle.stylize.multiscale import scale_sizes, split_budget  # noqa: E402
from vidstyle.stylize.quality import QualityStylizer  # noqa: E402
from vidstyle.stylize.style_image import load_style_image  # noqa: E402
from vidstyle.stylize.targets import StyleTargets  # noqa: E402


def first_frame(clip: Path, long_side: int, device: torch.device) -> torch.Tensor:
    info = probe(clip)
    frame = next(iter(read_frames(info, max_frames=1))).image
    height, width = frame.shape[:2]
    if max(width, height) != long_side:
        factor = long_side / max(width, height)
        size = (round(width * factor) // 2 * 2, round(height * factor) // 2 * 2)
        frame = np.array(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))
    return image_to_tensor(frame, device)


def iteration_seconds(
    loss: PerceptualLoss, targets: StyleTargets, content: torch.Tensor, repeats: int = 3
) -> float:
    """Best-of-`repeats` time of one loss evaluation with its backward pass at `content`'s size."""
    targets.apply(content)
    loss.set_content(content)
    image = content.clone().requires_grad_(True)
    best = math.inf
    for _ in range(repeats + 1):  # the first run warms up allocators and kernels
        if content.device.type == "cuda":
            torch.cuda.synchronize(content.device)
        started = time.perf_counter()
        loss(image).total.backward()
        if content.device.type == "cuda":
            torch.cuda.synchronize(content.device)
        best = min(best, time.perf_counter() - started)
    return best


def stylize(
    loss: PerceptualLoss, targets: StyleTargets, content: torch.Tensor, settings: RenderSettings
) -> tuple[torch.Tensor, float, int]:
    """One fresh frame through the quality stage: (image, wall seconds, iterations)."""
    stage = QualityStylizer(loss, quality_config(settings), style_targets=targets)
    started = time.perf_counter()
    (record,) = list(stage([FrameRecord(index=0, pts=0, content=content)]))
    seconds = time.perf_counter() - started
    assert record.styled is not None
    return record.styled, seconds, stage.stats[0].iterations


@torch.no_grad()
def full_size_loss(
    loss: PerceptualLoss, targets: StyleTargets, content: torch.Tensor, image: torch.Tensor
) -> float:
    targets.apply(content)
    loss.set_content(content)
    return float(loss(image).total)


def run(args: argparse.Namespace) -> tuple[dict, dict[int, list[torch.Tensor]]]:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    content = first_frame(args.clip, args.size, device)
    size = (content.shape[-1], content.shape[-2])
    base = resolve_settings(
        args.preset,
        overrides={
            "features": args.features,
            "device": args.device,
            "size": args.size,
            "coarse_min_size": args.min_size,
            "stop_tolerance": 0.0,  # spend exactly the budget: equal-time needs known counts
        },
    )
    loss = build_loss(base, device)
    targets = StyleTargets(loss, [load_style_image(args.style)], style_scale=base.style_scale)

    sizes = scale_sizes(size, base.coarse_min_size)
    seconds_per_iteration = {
        s: iteration_seconds(
            loss,
            targets,
            torch.nn.functional.interpolate(
                content, size=(s[1], s[0]), mode="bilinear", antialias=True
            ),
        )
        for s in sizes
    }
    full_cost = seconds_per_iteration[size]
    rows = []
    images: dict[int, list[torch.Tensor]] = {}
    for budget in args.budgets:
        counts = split_budget(budget, len(sizes))
        used = sizes[len(sizes) - len(counts) :]
        c2f_estimate = sum(n * seconds_per_iteration[s] for s, n in zip(used, counts, strict=True))
        equal = max(1, math.floor(c2f_estimate / full_cost))

        c2f_image, c2f_wall, c2f_iters = stylize(
            loss, targets, content, base.replace(coarse_to_fine=True, first_iterations=budget)
        )
        single_image, single_wall, _ = stylize(
            loss, targets, content, base.replace(coarse_to_fine=False, first_iterations=equal)
        )
        full_image, full_wall, _ = stylize(
            loss, targets, content, base.replace(coarse_to_fine=False, first_iterations=budget)
        )
        rows.append(
            {
                "budget": budget,
                "scales": [f"{w}x{h}" for w, h in used],
                "coarse_to_fine": {
                    "iterations_per_scale": counts,
                    "iterations": c2f_iters,
                    "estimated_s": c2f_estimate,
                    "wall_s": c2f_wall,
                    "loss": full_size_loss(loss, targets, content, c2f_image),
                },
                "single_scale_equal_time": {
                    "iterations": equal,
                    "estimated_s": equal * full_cost,
                    "wall_s": single_wall,
                    "loss": full_size_loss(loss, targets, content, single_image),
                },
                "single_scale_full_budget": {
                    "iterations": budget,
                    "estimated_s": budget * full_cost,
                    "wall_s": full_wall,
                    "loss": full_size_loss(loss, targets, content, full_image),
                },
            }
        )
        images[budget] = [content, single_image, c2f_image]
        print(f"  done budget {budget}", file=sys.stderr)
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "features": loss.features.source.origin,
        "preset": args.preset,
        "size": f"{size[0]}x{size[1]}",
        "coarse_min_size": base.coarse_min_size,
        "seconds_per_iteration": {f"{w}x{h}": t for (w, h), t in seconds_per_iteration.items()},
        "rows": rows,
    }
    return report, images


def table(report: dict) -> str:
    lines = [
        f"Fresh frame {report['size']} (first frame of samples/clip.mp4, samples/style.png), "
        f"preset `{report['preset']}`, early stop off, device {report['device']} "
        f"({report['cpu_threads']} CPU threads), features: {report['features']}. "
        f"Scales: {' → '.join(report['rows'][0]['scales'])}.",
        "",
        "| budget | run | iterations | time (est. / wall) s | full-size loss |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        c2f = row["coarse_to_fine"]
        entries = [
            (
                "coarse-to-fine",
                " + ".join(map(str, c2f["iterations_per_scale"])),
                c2f,
            ),
            (
                "single-scale, equal time",
                str(row["single_scale_equal_time"]["iterations"]),
                row["single_scale_equal_time"],
            ),
            (
                "single-scale, whole budget",
                str(row["single_scale_full_budget"]["iterations"]),
                row["single_scale_full_budget"],
            ),
        ]
        for label, iterations, r in entries:
            lines.append(
                f"| {row['budget']} | {label} | {iterations} | "
                f"{r['estimated_s']:.1f} / {r['wall_s']:.1f} | {r['loss']:.4f} |"
            )
    return "\n".join(lines)


def side_by_side(tiles: list[torch.Tensor], labels: list[str], tile_width: int) -> Image.Image:
    """Tiles in a row, each scaled to `tile_width`, with a caption strip above."""
    caption = 14
    pictures = []
    for tile in tiles:
        picture = Image.fromarray(tensor_to_image(tile))
        height = round(picture.height * tile_width / picture.width)
        pictures.append(picture.resize((tile_width, height), Image.Resampling.LANCZOS))
    height = max(p.height for p in pictures)
    sheet = Image.new("RGB", (tile_width * len(pictures), height + caption), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        sheet.paste(picture, (i * tile_width, caption))
        draw.text((i * tile_width + 3, 1), label, fill="black")
    return sheet


def save_palette(sheet: Image.Image, path: Path) -> None:
    """As a 255-colour palette PNG: stylised texture compresses badly as truecolour (~3x larger),
    and these images are committed."""
    palette = sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "clip.mp4")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "style.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--min-size", type=int, default=64)
    parser.add_argument("--budgets", type=int, nargs="+", default=[60, 120])
    parser.add_argument("--preset", default="quality")
    parser.add_argument("--features", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (1 is steadiest on a shared machine)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "controls.json")
    parser.add_argument("--docs", action="store_true", help="also write docs/images/")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report, images = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    budget = max(images)
    row = next(r for r in report["rows"] if r["budget"] == budget)
    labels = [
        "frame",
        f"single-scale, {row['single_scale_equal_time']['iterations']} it",
        f"coarse-to-fine, {budget} it",
    ]
    sheet = side_by_side(images[budget], labels, tile_width=max(images[budget][0].shape[-1], 256))
    save_palette(sheet, args.out.parent / "coarse_to_fine.png")
    if args.docs:
        docs = ROOT / "docs" / "images"
        docs.mkdir(parents=True, exist_ok=True)
        save_palette(
            side_by_side(images[budget], labels, tile_width=200), docs / "coarse_to_fine.png"
        )
    print(table(report))


if __name__ == "__main__":
    main()
