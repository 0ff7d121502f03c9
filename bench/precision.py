"""Quality mode in fp32 against bf16 (or fp16): seconds per iteration, final loss, steadiness.

For each size it renders the clip's first `--frames` frames through the real quality stages
(`vidstyle.render.pipeline.build_stylizer`, flow-warped warm starts, temporal term) once per
precision, `--repeats` times, alternating the precisions (fp32 first in odd rounds, last in
even ones) so a change in machine load falls on both alike, with early stop off so every
precision runs the same iterations. It reports the median seconds per iteration of each and
their ratio; then, from the first round's renders, the Gatys loss of every frame measured with
the fp32 network (so both renders are judged by the same objective), E_warp, and the largest
pixel difference; `--grid` saves a PNG of frames: source, fp32, bf16, and their difference x4.
It also says what `--precision auto` chooses at that size (from the cache when measured).

    python bench/precision.py --vgg-weights vgg16.pth --clip samples/clip.mp4 \
        --style samples/style.png --sizes 256 512 --frames 4 --repeats 3 \
        --grid docs/images/precision-256.png

Prints a Markdown table with the load average beside each size; writes
bench/results/precision.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.device import cpu_model, resolve_device  # noqa: E402
from vidstyle.frame import decode_records  # noqa: E402
from vidstyle.media import plan_size, probe, tensor_to_image  # noqa: E402
from vidstyle.metrics import warping_error  # noqa: E402
from vidstyle.render.pipeline import build_stylizer, flow_stage  # noqa: E402
from vidstyle.stylize.style_image import load_style_image  # noqa: E402


def cpu_flags() -> str:
    """Whether the CPU has the bf16 instructions oneDNN uses (for the record, not a rule)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "flags unknown"
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    return ", ".join(
        f"{flag} {'yes' if flag in flags else 'no'}" for flag in ("avx512_bf16", "amx_bf16")
    )


class Run(NamedTuple):
    stylizer: Any
    frames: list
    seconds: float  # wall
    iterations: int
    precision: Any
    cpu_seconds: float  # which other processes' load barely moves, unlike wall time


def render(settings, device, style, records, size) -> Run:
    """One render of `records` through the quality stylizer `settings` make."""
    stylizer, _, precision = build_stylizer(settings, device, [style], size=size)
    started, cpu = time.perf_counter(), time.process_time()
    frames = list(stylizer(iter(records)))
    seconds = time.perf_counter() - started
    iterations = sum(s.iterations for s in stylizer.stats)
    return Run(stylizer, frames, seconds, iterations, precision, time.process_time() - cpu)


def fp32_losses(stylizer, frames) -> list[float]:
    """The Gatys loss (no temporal term) of each rendered frame, by the fp32 stylizer's loss."""
    values = []
    with torch.no_grad():
        for record in frames:
            stylizer.style_targets.apply(record.content)
            stylizer.loss.set_content(record.content)
            values.append(float(stylizer.loss(record.styled).total))
    return values


def grid(rows: list[list[np.ndarray]], labels: list[str], path: Path) -> None:
    """Rows of uint8 frames side by side, each row's label in its first pixels' caption."""
    from PIL import ImageDraw

    h, w = rows[0][0].shape[:2]
    caption = 14
    sheet = Image.new("RGB", (w * len(rows[0]), (h + caption) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        draw.text((2, r * (h + caption)), label, fill="black")
        for c, frame in enumerate(row):
            sheet.paste(Image.fromarray(frame), (c * w, r * (h + caption) + caption))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def run_size(args: argparse.Namespace, long_side: int, style) -> dict:
    device = resolve_device(args.device)
    info = probe(args.clip)
    base = resolve_settings(
        "quality",
        overrides={
            "features": "pretrained" if args.vgg_weights else "random",
            "vgg_weights": str(args.vgg_weights) if args.vgg_weights else None,
            "device": args.device,
            "size": long_side,
            "first_iterations": args.first_iterations,
            "iterations": args.iterations,
            "stop_tolerance": 0.0,  # equal iterations for every precision
        },
    )
    size, _ = plan_size(info.size, base.size)
    records = list(flow_stage(base, device)(decode_records(info, size, args.frames, device)))
    one_iteration = base.replace(precision="auto", first_iterations=1, iterations=1)
    auto = render(one_iteration, device, style, records[:1], size).precision
    names = ("fp32", args.reduced)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu_times: dict[str, list[float]] = {name: [] for name in names}
    kept: dict[str, tuple] = {}
    loads = []
    for round_ in range(args.repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            loads.append(os.getloadavg()[0])
            run = render(base.replace(precision=name), device, style, records, size)
            stylizer, frames, seconds, iterations = run[:4]
            times[name].append(seconds / iterations)
            cpu_times[name].append(run.cpu_seconds / iterations)
            kept.setdefault(name, (stylizer, frames, iterations))
            print(
                f"  {size[0]}x{size[1]} round {round_ + 1} {name}: {seconds / iterations:.3f} "
                f"s/iteration, CPU {cpu_times[name][-1]:.3f} s ({iterations} iterations), "
                f"load {loads[-1]:.1f}",
                file=sys.stderr,
            )
    reference, reduced = kept["fp32"], kept[args.reduced]
    loss32 = fp32_losses(reference[0], reference[1])
    loss16 = fp32_losses(reference[0], reduced[1])
    source = [tensor_to_image(r.content) for r in reference[1]]
    out32 = [tensor_to_image(r.styled) for r in reference[1]]
    out16 = [tensor_to_image(r.styled) for r in reduced[1]]
    diff = [
        np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(out32, out16, strict=True)
    ]
    if args.grid:
        path = args.grid.with_name(f"{args.grid.stem}-{long_side}{args.grid.suffix}")
        amplified = [np.clip(d * 4, 0, 255).astype(np.uint8) for d in diff]
        grid(
            [source, out32, out16, amplified],
            ["source", "fp32", args.reduced, f"|fp32 - {args.reduced}| x4"],
            path,
        )
    median = {name: statistics.median(values) for name, values in times.items()}
    cpu_median = {name: statistics.median(values) for name, values in cpu_times.items()}
    return {
        "size": f"{size[0]}x{size[1]}",
        "auto": auto.describe(),
        "iterations": {name: kept[name][2] for name in names},
        "s_per_iteration": times,
        "median_s_per_iteration": median,
        "speedup": median["fp32"] / median[args.reduced],
        "cpu_s_per_iteration": cpu_times,
        "cpu_speedup": cpu_median["fp32"] / cpu_median[args.reduced],
        "load_average": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        "final_loss_fp32_render": loss32[-1],
        f"final_loss_{args.reduced}_render": loss16[-1],
        "final_loss_diff_pct": 100 * (loss16[-1] / loss32[-1] - 1),
        "mean_loss_diff_pct": 100 * (statistics.mean(loss16) / statistics.mean(loss32) - 1),
        "e_warp": {
            "source": warping_error(source, source),
            "fp32": warping_error(source, out32),
            args.reduced: warping_error(source, out16),
        },
        "mean_abs_diff_grey_levels": float(np.mean([d.mean() for d in diff])),
        "max_abs_diff_grey_levels": int(max(d.max() for d in diff)),
    }


def table(report: dict) -> str:
    reduced = report["reduced"]
    lines = [
        f"{report['cpu']} ({report['cpu_flags']}), {report['threads']} threads, torch "
        f"{report['torch']}; {report['frames']} frames, {report['first_iterations']} + "
        f"{report['iterations']} iterations a frame (early stop off), {report['repeats']} rounds "
        "alternating",
        "",
        f"| size | fp32 s/iter | {reduced} s/iter | speed-up (CPU time) | final loss, {reduced} "
        f"vs fp32 | E_warp fp32 / {reduced} | pixel diff mean / max | load avg | auto chooses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        m, e, load = row["median_s_per_iteration"], row["e_warp"], row["load_average"]
        lines.append(
            f"| {row['size']} | {m['fp32']:.3f} | {m[reduced]:.3f} | {row['speedup']:.2f}x "
            f"({row['cpu_speedup']:.2f}x) | "
            f"{row['final_loss_diff_pct']:+.2f}% | {e['fp32']:.5f} / {e[reduced]:.5f} | "
            f"{row['mean_abs_diff_grey_levels']:.2f} / {row['max_abs_diff_grey_levels']} | "
            f"{load['min']:.1f}-{load['max']:.1f} | {row['auto']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "clip.mp4")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "style.png")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--first-iterations", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reduced", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--vgg-weights", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", type=Path, help="PNG path; -SIZE is added per size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "precision.json")
    args = parser.parse_args()
    style = load_style_image(args.style)
    rows = [run_size(args, size, style) for size in args.sizes]
    report = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "frames": args.frames,
        "first_iterations": args.first_iterations,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "reduced": args.reduced,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
