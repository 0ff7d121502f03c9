"""Benchmark: how much of each frame the flow vouches for, and how well, by DIS smoothness.

For every consecutive pair of a clip's frames at the rendering size, the flow stage's flow and
reliability mask (vidstyle.temporal.flow.FlowEstimator) are computed with DIS's variational
refinement at each smoothness given; printed per clip and smoothness:

- reliable: the mean share of pixels the mask keeps (what a warm frame carries; the rest is
  painted again from a fresh start);
- error: the mean absolute difference (0-255) between the source frame and the previous source
  frame carried along the flow, on the reliable pixels (how right what is carried is);
- lowest: the smallest reliable share of any frame.

    python bench/flow_reliability.py samples/clip.mp4 moving.mp4 --size 192 --smoothness 20,50,100

Writes JSON to bench/results/flow_reliability.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from temporal import decode  # noqa: E402

from vidstyle.device import cpu_model  # noqa: E402
from vidstyle.temporal import flow  # noqa: E402


def measure(images: list[np.ndarray], smoothness: float, preset: str) -> dict[str, float]:
    estimator = flow.FlowEstimator(preset, smoothness=smoothness)
    shares, errors = [], []
    for previous, frame in zip(images, images[1:], strict=False):
        to_previous, mask = estimator.flow_and_mask(frame, previous)
        carried = flow.sample_along_flow(previous.astype(np.float32), to_previous)
        error = np.abs(carried - frame.astype(np.float32)).mean(axis=2)
        shares.append(float(mask.mean()))
        errors.append(float((error * mask).sum() / max(mask.sum(), 1.0)))
    return {
        "reliable": float(np.mean(shares)),
        "lowest": float(np.min(shares)),
        "error": float(np.mean(errors)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--size", type=int, default=192, help="long side of the frames")
    parser.add_argument("--frames", type=int, default=72)
    parser.add_argument("--smoothness", default="20,50,100")
    parser.add_argument("--preset", default="medium")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "flow_reliability.json"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows = []
    print(f"{'clip':<14} {'smoothness':>10} {'reliable':>9} {'lowest':>7} {'error':>6}")
    for clip in args.clips:
        images = decode(clip, args.size, args.frames)
        for smoothness in (float(v) for v in args.smoothness.split(",")):
            row = {
                "clip": str(clip),
                "smoothness": smoothness,
                **measure(images, smoothness, args.preset),
            }
            rows.append(row)
            print(
                f"{clip.name:<14} {smoothness:>10g} {row['reliable']:>9.3f} "
                f"{row['lowest']:>7.2f} {row['error']:>6.2f}"
            )
    report = {"benchmark": "flow_reliability", "cpu": cpu_model(), "size": args.size, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
