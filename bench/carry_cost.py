"""Benchmark: what carrying a painting one frame along a moving camera costs its style, by part.

For each sampled frame t of a clip, the fresh render of frame t−1 (alone, cold, frame-1 budget:
`bench/retention.py --fresh-cache` keeps them) is carried onto frame t and scored with the
style term of the rendering loss (Gram distance; lower is more styled), as a ratio to the fresh
render of frame t itself:

- along the flow, the entering pixels (unreliable) taken from the fresh render of t: the best
  a warm start could begin from;
- the same with the entering pixels from the affine palette start (the photo mapped to the
  carried painting's colours), which warm frames began them with before the shot's palette;
- moved by the flow's median as one whole shift (the border pixel repeated into what enters),
  by that shift rounded to whole pixels (no resampling), and by its fractional part alone
  (resampling, almost no new pixels): which of displacement and interpolation costs.

    python bench/retention.py moving.mp4 --style samples/style.png --vgg-weights vgg16.pth \\
        --size 192 --fresh-cache fresh192.pt --fresh-only
    python bench/carry_cost.py moving.mp4 --style samples/style.png --vgg-weights vgg16.pth \\
        --size 192 --fresh-cache fresh192.pt

Prints a Markdown table and writes bench/results/carry_cost.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from retention import affine_palette_start  # noqa: E402
from temporal import decode  # noqa: E402

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.device import cpu_model  # noqa: E402
from vidstyle.media import image_to_tensor  # noqa: E402
from vidstyle.metrics import StyleDistance  # noqa: E402
from vidstyle.render.pipeline import build_loss  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402
from vidstyle.temporal.flow import FlowEstimator, flow_to_tensor, mask_to_tensor, warp  # noqa: E402


def shifted(image: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """`image` moved by one shift for every pixel (bicubic, as the carry resamples)."""
    flow = torch.zeros(1, 2, *image.shape[-2:])
    flow[:, 0], flow[:, 1] = dx, dy
    return warp(image, flow, mode="bicubic").clamp(0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--fresh-cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/carry_cost.json")
    args = parser.parse_args()

    settings = resolve_settings(
        "quality",
        overrides={"size": args.size, "features": "pretrained", "vgg_weights": args.vgg_weights},
    )
    fresh: dict[int, torch.Tensor] = torch.load(args.fresh_cache)["frames"]
    samples = sorted(i for i in fresh if i - 1 in fresh)
    images = decode(args.clip, settings.size, max(samples) + 1)
    height, width = images[0].shape[:2]
    loss = build_loss(settings, torch.device("cpu"))
    style = style_tensor(load_style_image(args.style), (width, height), settings.style_scale, "cpu")
    loss.set_style([style])
    distance = StyleDistance(loss, [style])
    estimator = FlowEstimator(settings.flow_preset)

    rows = []
    for t in samples:
        flow, mask = estimator.flow_and_mask(images[t], images[t - 1])
        reliable = mask_to_tensor(mask, "cpu")
        flow_t = flow_to_tensor(flow, "cpu")
        before, target = fresh[t - 1], fresh[t]
        carried = warp(before, flow_t, mode="bicubic").clamp(0.0, 1.0)
        palette = affine_palette_start(image_to_tensor(images[t]), carried, reliable)
        dx, dy = (float(flow_t[:, c][reliable[:, 0] > 0.5].median()) for c in (0, 1))
        base = distance(target)
        row = {
            "frame": t,
            "reliable": float(reliable.mean()),
            "shift": [dx, dy],
            "carried, fresh new pixels": distance(torch.lerp(target, carried, reliable)) / base,
            "carried, affine palette new pixels": distance(torch.lerp(palette, carried, reliable))
            / base,
            "one shift": distance(shifted(before, dx, dy)) / base,
            "whole pixels": distance(shifted(before, round(dx), round(dy))) / base,
            "fraction only": distance(shifted(before, dx - round(dx), dy - round(dy))) / base,
            "not moved": distance(before) / base,
        }
        rows.append(row)
    columns = [k for k in rows[0] if k not in ("frame", "reliable", "shift")]
    print(f"CPU: {cpu_model()}; {args.clip.name} at {width}x{height}\n")
    print("| frame | shift (px) | reliable | " + " | ".join(columns) + " |")
    print("|---" * (3 + len(columns)) + "|")
    for row in rows:
        shift = "{:+.1f}, {:+.1f}".format(*row["shift"])
        cells = " | ".join(f"{row[c]:.3f}" for c in columns)
        print(f"| {row['frame']} | {shift} | {row['reliable']:.2f} | {cells} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_model(), "clip": str(args.clip), "rows": rows}))


if __name__ == "__main__":
    main()
