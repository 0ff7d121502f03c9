"""Benchmark: the loss L-BFGS reaches at equal iterations with a shorter curvature history.

torch's L-BFGS reads two numbers per stored curvature pair back to the host every iteration,
so on a GPU each pair costs two syncs an iteration; a shorter history costs fewer. This runs the
first frame of a shot (the only place the history fills: later frames run a dozen iterations)
from its content with the quality preset's first-frame budget, once per history length, and
scores the image each returns with the same Gatys loss. Iterations are equal and CPU losses are
deterministic, so one run per history is enough.

    python bench/lbfgs_history.py --vgg-weights /work/vgg16.pth --style samples/style.png \\
        --photo chelsea.png --photo coffee.png --size 256

Prints a Markdown table and writes bench/results/lbfgs_history.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.media import image_to_tensor, plan_size  # noqa: E402
from vidstyle.render.pipeline import build_loss  # noqa: E402
from vidstyle.stylize import optimize  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402

CHECKPOINTS = (12, 25, 50, 100)  # iterations at which the best loss so far is reported


def photo_tensor(path: Path, size: int) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    frame_size, _ = plan_size(image.size, size)
    resized = image.resize(frame_size, Image.Resampling.LANCZOS)
    return image_to_tensor(np.asarray(resized))


def run(loss, content: torch.Tensor, iterations: int, history: int) -> dict:
    optimize.LBFGS_HISTORY = history
    loss.set_content(content)
    started = time.perf_counter()
    result = optimize.optimize_image(
        lambda x: loss(x).total, content, iterations=iterations, stop_tolerance=0.0
    )
    seconds = time.perf_counter() - started
    with torch.no_grad():
        final = float(loss(result.image).total)
    best = np.minimum.accumulate(result.losses)
    at = {n: float(best[n - 1]) for n in CHECKPOINTS if n <= len(best)}
    return {"history": history, "loss": final, "best_at": at, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, action="append", required=True)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--histories", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "lbfgs_history.json"
    )
    args = parser.parse_args()

    settings = resolve_settings(
        "quality",
        overrides={"features": "pretrained", "vgg_weights": args.vgg_weights, "size": args.size},
    )
    device = torch.device("cpu")
    loss = build_loss(settings, device)
    style = load_style_image(args.style)
    rows = []
    for photo in args.photo:
        content = photo_tensor(photo, args.size)
        frame_size = (content.shape[3], content.shape[2])
        loss.set_style([style_tensor(style, frame_size, settings.style_scale, device)])
        for history in args.histories:
            row = run(loss, content, settings.first_iterations, history)
            rows.append({"photo": photo.name, "size": list(frame_size), **row})
            print(f"  {photo.name} history {history}: {row['loss']:.4f}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"iterations": settings.first_iterations, "rows": rows}))
    load = os.getloadavg()[0]
    print(f"{settings.first_iterations} iterations from the content, load average {load:.1f}")
    heads = " | ".join(f"best at {n}" for n in CHECKPOINTS)
    print(f"\n| photo | history | {heads} | returned | vs longest | s |")
    print("|---|---|" + "---|" * len(CHECKPOINTS) + "---|---|---|")
    for r in rows:
        base = next(
            b["loss"]
            for b in rows
            if b["photo"] == r["photo"] and b["history"] == max(args.histories)
        )
        cells = " | ".join(f"{r['best_at'].get(n, float('nan')):.4f}" for n in CHECKPOINTS)
        change = 100 * (r["loss"] / base - 1)
        print(
            f"| {r['photo']} | {r['history']} | {cells} | {r['loss']:.4f} | {change:+.1f}% "
            f"| {r['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
