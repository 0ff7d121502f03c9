"""Benchmark: what warm frames' iterations buy, budget rule by budget rule.

Issue-style targets for warm-started frames are a loss within 5% of a cold start's with at most
a fifth of its iterations; the catch is that the Gatys loss barely notices a small region
left unstylised (a wake), so every row pairs the iterations with the numbers that do: the style
distance, the trail ratio against independent frames and E_warp (`bench/temporal.py` defines
them). Each row renders the default path (flow-warped start, temporal loss, smoothing) with one
budget rule of `vidstyle.stylize.quality`:

- growth G: a warm frame gets `iterations` plus G x (first-frame budget - iterations) x the share
  of its pixels that are new or still settling (`NEW_SHARE_FOR_FULL_BUDGET` = 1 / G);
- step K: new pixels take K-times-larger steps (`NEW_PIXEL_STEP`, a diagonal preconditioner).

    python bench/warm_budget.py --clip samples/clip.mp4 --style samples/style.png \\
        --vgg-weights vgg16.pth --rules 1:1 0:1 0:3

Prints a Markdown table and writes bench/results/warm_budget.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import temporal  # noqa: E402  (bench/temporal.py: decode, render, the metrics)

import vidstyle.stylize.quality as quality  # noqa: E402
from vidstyle.config import RenderSettings  # noqa: E402
from vidstyle.media import image_to_tensor  # noqa: E402
from vidstyle.metrics import StyleDistance  # noqa: E402
from vidstyle.render.pipeline import build_loss  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402


def gatys(loss, images, frames) -> list[float]:
    """Each frame's Gatys loss (no temporal term) against its own content."""
    values = []
    with torch.no_grad():
        for image, frame in zip(images, frames, strict=True):
            loss.set_content(image_to_tensor(image, frame.device))
            values.append(float(loss(frame).total))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--first-iterations", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument(
        "--rules", nargs="+", default=["1:1", "0:1"], help="GROWTH:STEP pairs, one row each"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "warm_budget.json")
    args = parser.parse_args()

    device = torch.device("cpu")
    base = RenderSettings(
        features="pretrained",
        vgg_weights=args.vgg_weights,
        size=args.size,
        first_iterations=args.first_iterations,
        iterations=args.iterations,
        stop_tolerance=0.0,  # fixed budgets: the rule alone decides the iterations
    )
    images = temporal.decode(args.clip, args.size, args.frames)
    height, width = images[0].shape[:2]
    loss = build_loss(base, device)
    style = style_tensor(load_style_image(args.style), (width, height), base.style_scale, device)
    loss.set_style([style])
    distance = StyleDistance(loss, [style])
    cold = base.replace(init="content", temporal_weight=0.0, smooth=0.0)
    print("  independent frames ...", file=sys.stderr, flush=True)
    independent = temporal.render("content", images, loss, cold, device).styled
    e_ind, s_ind = temporal.measure(images, independent, distance, base)
    g_ind = statistics.mean(gatys(loss, images, independent)[1:])

    rows = []
    for rule in args.rules:
        growth, step = (float(x) for x in rule.split(":"))
        quality.NEW_SHARE_FOR_FULL_BUDGET = 1.0 / growth if growth > 0 else float("inf")
        quality.NEW_PIXEL_STEP = step
        print(f"  growth {growth:g}, step {step:g} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        run = temporal.render(rule, images, loss, base, device)
        seconds = time.perf_counter() - started
        e_warp, style_distance = temporal.measure(images, run.smoothed, distance, base)
        later = (run.iterations_per_frame * len(images) - args.first_iterations) / (len(images) - 1)
        rows.append(
            {
                "growth": growth,
                "step": step,
                "later_iterations": later,
                "iterations_share": later / args.first_iterations,
                "gatys_vs_cold_pct": 100
                * (statistics.mean(gatys(loss, images, run.styled)[1:]) / g_ind - 1),
                "style_vs_independent_pct": 100 * (style_distance / s_ind - 1),
                "trail_ratio": temporal.trail_ratio(run.reliable, run.smoothed, independent),
                "e_warp_ratio": e_warp / e_ind if e_warp and e_ind else None,
                "seconds": seconds,
            }
        )
    report = {"clip": str(args.clip), "size": [width, height], "frames": args.frames, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        f"\n{args.clip.name}, {width}x{height}, {args.frames} frames, default path vs "
        f"independent frames ({args.first_iterations} iterations each)\n"
    )
    print(
        "| growth | new-pixel step | later iterations | vs cold | Gatys loss vs cold "
        "| style distance | trail ratio | E_warp | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e_warp = "-" if r["e_warp_ratio"] is None else f"{r['e_warp_ratio']:.3f}x"
        print(
            f"| {r['growth']:g} | {r['step']:g} | {r['later_iterations']:.1f} | "
            f"{r['iterations_share']:.2f}x | {r['gatys_vs_cold_pct']:+.1f}% | "
            f"{r['style_vs_independent_pct']:+.1f}% | {r['trail_ratio']:.2f} | {e_warp} | "
            f"{r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
