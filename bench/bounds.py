"""Benchmark: how quality mode keeps pixels in [0, 1] while it optimises, at equal time.

L-BFGS builds its curvature model from the steps it took; clamping the image in place between
evaluations moves it somewhere else, so the model describes steps that did not happen. This
compares the ways of keeping pixels displayable (BOUNDS below; the product keeps "clamp") on real
frames: a cold frame from its content with the first-frame budget, then the next frame
warm-started from that result with the later-frame budget (each variant's own chain, as in a
render). Every variant's returned image (always in [0, 1]) is scored with the same Gatys loss;
iterations are equal, so time is equal up to the timing noise printed beside it.

    python bench/bounds.py --vgg-weights vgg16.pth --clip samples/clip.mp4 \\
        --style samples/style.png --size 128

Prints a Markdown table and writes bench/results/bounds.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.media import image_to_tensor, plan_size, probe, read_frames  # noqa: E402
from vidstyle.render.pipeline import build_loss  # noqa: E402
from vidstyle.stylize.optimize import optimize_image, whole_budget_lbfgs  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402

# How pixels are kept in [0, 1]:
#   "clamp"   - the image is clamped in place before every evaluation (the PyTorch neural-style
#               tutorial's way; vidstyle's optimize_image); L-BFGS's curvature pairs then
#               describe steps it did not take;
#   "forward" - the loss sees clamp(x) and x itself is free, so every step is the one L-BFGS
#               took and every recorded loss is exactly that of the image returned;
#   "after"   - unconstrained, clamped once at the end;
#   "sigmoid" - optimised in logits, image = sigmoid(z).
BOUNDS = ("clamp", "forward", "after", "sigmoid")

# Each alternative's image as a function of the free variable, and the variable it starts from.
_IMAGE_OF: dict[str, Callable[[Tensor], Tensor]] = {
    "forward": lambda x: x.clamp(0.0, 1.0),
    "after": lambda x: x,
    "sigmoid": torch.sigmoid,
}
_START: dict[str, Callable[[Tensor], Tensor]] = {
    "forward": lambda image: image,
    "after": lambda image: image,
    "sigmoid": lambda image: torch.logit(image.clamp(1e-3, 1.0 - 1e-3)),
}


def optimize_bounded(
    loss_fn: Callable[[Tensor], Tensor], init: Tensor, iterations: int, bounds: str
) -> Tensor:
    """The image (in [0, 1]) `iterations` L-BFGS evaluations reach from `init` under `bounds`.

    "clamp" is vidstyle's own optimiser; the others run the same L-BFGS (one step holding the
    whole budget, lr 1, no line search, LBFGS_HISTORY pairs) on a free variable and, like
    vidstyle's, return the best image evaluated."""
    if bounds == "clamp":
        return optimize_image(loss_fn, init, iterations=iterations, stop_tolerance=0.0).image
    image_of = _IMAGE_OF[bounds]
    # A copy: L-BFGS moves the variable in place, and `init` is the caller's (the content frame).
    variable = _START[bounds](init.detach()).clone().requires_grad_(True)
    best = {"loss": float("inf"), "image": image_of(variable).detach().clone()}
    lbfgs = whole_budget_lbfgs(variable, iterations)

    def closure() -> Tensor:
        lbfgs.zero_grad()
        image = image_of(variable)
        loss = loss_fn(image)
        loss.backward()
        value = float(loss.detach())
        if value < best["loss"]:
            best.update(loss=value, image=image.detach().clone())
        return loss

    lbfgs.step(closure)
    return best["image"].clamp(0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, nargs=2, default=[0, 1], help="cold, warm frame")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bounds.json")
    args = parser.parse_args()

    settings = resolve_settings(
        "quality",
        overrides={"features": "pretrained", "vgg_weights": args.vgg_weights, "size": args.size},
    )
    device = torch.device("cpu")
    info = probe(args.clip)
    size, _ = plan_size(info.size, settings.size)
    wanted = max(args.frames) + 1
    frames = [image_to_tensor(f.image) for f in read_frames(info, size=size, max_frames=wanted)]
    cold_frame, warm_frame = (frames[i] for i in args.frames)
    loss = build_loss(settings, device)
    loss.set_style([style_tensor(load_style_image(args.style), size, settings.style_scale, device)])

    def run(content: torch.Tensor, init: torch.Tensor, iterations: int, bounds: str) -> dict:
        loss.set_content(content)
        started = time.perf_counter()
        image = optimize_bounded(lambda x: loss(x).total, init, iterations, bounds)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            final = float(loss(image).total)  # the image returned, in [0, 1]
        return {"loss": final, "seconds": seconds, "image": image}

    rows = []
    for bounds in BOUNDS:
        cold = run(cold_frame, cold_frame, settings.first_iterations, bounds)
        # Each variant's warm frame starts from its own cold result, as in a render.
        warm = run(warm_frame, cold["image"], settings.iterations, bounds)
        rows.append(
            {
                "bounds": bounds,
                "cold_loss": cold["loss"],
                "cold_seconds": cold["seconds"],
                "warm_loss": warm["loss"],
                "warm_seconds": warm["seconds"],
            }
        )
        print(f"  {bounds} done", file=sys.stderr, flush=True)
    report = {
        "clip": str(args.clip),
        "size": list(size),
        "budgets": [settings.first_iterations, settings.iterations],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    base = rows[0]
    budgets = f"{settings.first_iterations} / {settings.iterations} iterations"
    print(
        f"{args.clip.name} at {size[0]}x{size[1]}, frames {args.frames[0]} (cold) and "
        f"{args.frames[1]} (warm), {budgets}"
    )
    print("\n| bounds | cold frame loss | vs clamp | s | warm frame loss | vs clamp | s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['bounds']} | {r['cold_loss']:.4f} | "
            f"{100 * (r['cold_loss'] / base['cold_loss'] - 1):+.1f}% | {r['cold_seconds']:.1f} | "
            f"{r['warm_loss']:.4f} | {100 * (r['warm_loss'] / base['warm_loss'] - 1):+.1f}% | "
            f"{r['warm_seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
