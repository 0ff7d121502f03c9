"""GPU figures in one go, for the day a CUDA device is lent (about 5 minutes on one H100).

On one CUDA device it prints, as Markdown tables, and writes to bench/results/gpu-<device>.json:

  - fast mode frames/s at 1280x720 and 1920x1080, standard network, batch 4, in fp16, bf16
    (where the GPU has it) and fp32: the network alone (the real `FeedForwardStylizer` stage
    over frames already on the device) and end to end (`stylize_video` with the `fast` preset:
    decode thread → network → encode thread → mux), alternated and repeated, medians, with the
    peak GPU memory of each;
  - quality mode seconds per frame at 1280x720 (`quality` preset): frame 1 (cold, its
    first-iterations) and the warm frames after it (median), with the peak GPU memory;
  - the result of the `gpu`-marked tests (`pytest -m gpu`).

Goals: fast 1080p at 30 frames/s or more end to end; quality 720p at 1 s per warm frame or less.
Speed does not depend on the weights, so the fast network is seeded random-init and quality
mode uses random VGG features unless --vgg-weights names a file (the same layers run either way).

    python bench/gpu.py
    python bench/gpu.py --vgg-weights vgg19.pth --frames 240 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import fast  # noqa: E402  (bench/fast.py: the same timing helpers as the CPU benchmark)
import mediagen  # noqa: E402

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.frame import FrameRecord  # noqa: E402
from vidstyle.media import image_to_tensor, probe, read_frames  # noqa: E402
from vidstyle.models import save_model  # noqa: E402
from vidstyle.nets.transformer import TransformerNet  # noqa: E402
from vidstyle.pipeline import NullProgress, stylize_video  # noqa: E402
from vidstyle.stylize.feedforward import FeedForwardStylizer  # noqa: E402

SIZES = [(1280, 720), (1920, 1080)]


class FrameClock(NullProgress):
    """Progress sink that notes when each frame is finished (quality mode's per-frame time)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def start(self, description: str, total: int | None) -> None:
        self.marks = [time.perf_counter()]

    def advance(self, frames: int = 1) -> None:
        self.marks.append(time.perf_counter())

    def seconds_per_frame(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30


def fast_rows(args: argparse.Namespace, device: torch.device, folder: Path) -> list[dict]:
    torch.manual_seed(0)
    model = folder / "bench-standard.pth"
    save_model(model, TransformerNet("standard"), style="random", training={})
    precisions = ["fp16", "bf16", "fp32"] if torch.cuda.is_bf16_supported() else ["fp16", "fp32"]
    rows = []
    for width, height in SIZES:
        clip = mediagen.make_video(
            folder / f"clip{width}x{height}.mp4",
            frames=args.frames,
            size=(width, height),
            motion="object",
            pan_px=4,
        )
        info = probe(clip)
        records = [
            FrameRecord(f.index, f.pts, image_to_tensor(f.image, device))
            for f in read_frames(info, size=(width, height))
        ]
        for precision in precisions:
            settings = resolve_settings(
                "fast",
                overrides={
                    "model": str(model),
                    "device": str(device),
                    "size": max(width, height),
                    "batch_size": args.batch_size,
                    "precision": precision,
                    "overwrite": True,
                },
            )
            stage = FeedForwardStylizer.from_settings(settings, device)
            for _ in stage(records[: 2 * args.batch_size]):  # warm-up: cuDNN autotuning
                pass
            runs = []
            for _ in range(args.repeats):
                torch.cuda.reset_peak_memory_stats(device)
                alone = fast.network_alone(stage, records)
                alone_peak = peak_gib(device)
                torch.cuda.reset_peak_memory_stats(device)
                result = stylize_video(clip, [], settings, output=folder / "out.mp4")
                runs.append((alone, result.frames_per_second, alone_peak, peak_gib(device)))
            del stage
            row = {
                "size": f"{width}x{height}",
                "precision": precision,
                "network_fps": statistics.median(r[0] for r in runs),
                "end_to_end_fps": statistics.median(r[1] for r in runs),
                "network_peak_gib": max(r[2] for r in runs),
                "end_to_end_peak_gib": max(r[3] for r in runs),
                "runs": [list(r) for r in runs],
            }
            rows.append(row)
            print(
                f"fast {row['size']} {precision}: network {row['network_fps']:.1f} frames/s, "
                f"end to end {row['end_to_end_fps']:.1f} frames/s",
                file=sys.stderr,
            )
        del records
        torch.cuda.empty_cache()
    return rows


def quality_row(args: argparse.Namespace, device: torch.device, folder: Path) -> dict:
    width, height = 1280, 720
    clip = mediagen.make_video(
        folder / "quality720.mp4", frames=args.quality_frames, size=(width, height), pan_px=4
    )
    style = mediagen.make_image(folder / "style.png", size=(512, 512))
    overrides: dict[str, object] = {
        "device": str(device),
        "size": width,
        "max_frames": args.quality_frames,
        "overwrite": True,
    }
    if args.vgg_weights:
        overrides.update(features="pretrained", vgg_weights=str(args.vgg_weights))
    else:
        overrides["features"] = "random"
    settings = resolve_settings("quality", overrides=overrides)
    clock = FrameClock()
    torch.cuda.reset_peak_memory_stats(device)
    stylize_video(clip, [style], settings, output=folder / "quality.mp4", progress=clock)
    per_frame = clock.seconds_per_frame()
    row = {
        "size": f"{width}x{height}",
        "features": settings.features,
        "first_iterations": settings.first_iterations,
        "iterations": settings.iterations,
        "frame_1_s": per_frame[0],
        "warm_frame_s": statistics.median(per_frame[1:]) if len(per_frame) > 1 else None,
        "per_frame_s": per_frame,
        "peak_gib": peak_gib(device),
    }
    print(
        f"quality {row['size']}: frame 1 {row['frame_1_s']:.2f} s, warm "
        f"{row['warm_frame_s'] or float('nan'):.2f} s",
        file=sys.stderr,
    )
    return row


def quality_precision_rows(args: argparse.Namespace, device: torch.device, folder: Path) -> list:
    """Quality mode per `--precision` at 1280x720 (3 frames, 20 + 10 iterations, early stop
    off): seconds per iteration, peak memory, and the final loss of each render measured by the
    fp32 network against the fp32 render's (target: within 2%). Prints its own table."""
    import precision as precision_bench  # bench/precision.py: the CPU comparison's helpers

    from vidstyle.device import cuda_has_native_bf16
    from vidstyle.frame import decode_records
    from vidstyle.stylize.style_image import load_style_image
    from vidstyle.temporal import flow_stage

    width, height = 1280, 720
    clip = mediagen.make_video(folder / "precision720.mp4", frames=3, size=(width, height))
    style = load_style_image(mediagen.make_image(folder / "style-p.png", size=(512, 512)))
    overrides: dict[str, object] = {"device": str(device), "size": width, "stop_tolerance": 0.0}
    overrides.update(first_iterations=20, iterations=10, features="random")
    if args.vgg_weights:
        overrides.update(features="pretrained", vgg_weights=str(args.vgg_weights))
    base = resolve_settings("quality", overrides=overrides)
    size = (width, height)
    records = list(flow_stage(base, device)(decode_records(probe(clip), size, 3, device)))
    names = ["fp32", "fp16"] + (["bf16"] if cuda_has_native_bf16(device) else [])
    rows, reference = [], None
    for name in [*names, *names]:  # twice, alternating: the second round is the one kept
        torch.cuda.reset_peak_memory_stats(device)
        run = precision_bench.render(base.replace(precision=name), device, style, records, size)
        stylizer, frames, seconds, iterations, chosen = run[:5]
        if name == "fp32":
            reference = (stylizer, frames)
        rows = [r for r in rows if r["precision"] != name]
        assert reference is not None
        final = precision_bench.fp32_losses(reference[0], frames)[-1]
        rows.append(
            {
                "precision": name,
                "s_per_iteration": seconds / iterations,
                "peak_gib": peak_gib(device),
                "final_loss": final,
                "chosen": chosen.describe(),
            }
        )
    fp32 = next(r for r in rows if r["precision"] == "fp32")
    print("\n| quality 1280x720 | s/iteration | vs fp32 | final loss vs fp32 | peak GiB |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['precision']} | {r['s_per_iteration']:.3f} | "
            f"{fp32['s_per_iteration'] / r['s_per_iteration']:.2f}x | "
            f"{100 * (r['final_loss'] / fp32['final_loss'] - 1):+.2f}% | {r['peak_gib']:.2f} |"
        )
    return rows


def gpu_tests() -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    return {
        "exit_code": done.returncode,
        "summary": lines[-1] if lines else done.stderr.strip()[-300:],
        "seconds": time.perf_counter() - started,
        "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))],
    }


def tables(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"{m['device']} ({m['memory_gib']:.0f} GiB), torch {m['torch']}, CUDA {m['cuda']}, "
        f"{m['cpus']} CPUs; fast: `standard` network, batch {report['batch_size']}, "
        f"{report['frames']} frames, medians of {report['repeats']}",
        "",
        "| size | precision | network alone, frames/s | end to end, frames/s "
        "| peak GiB (alone / end to end) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report["fast"]:
        lines.append(
            f"| {r['size']} | {r['precision']} | {r['network_fps']:.1f} | "
            f"{r['end_to_end_fps']:.1f} | {r['network_peak_gib']:.2f} / "
            f"{r['end_to_end_peak_gib']:.2f} |"
        )
    q = report["quality"]
    warm = "n/a" if q["warm_frame_s"] is None else f"{q['warm_frame_s']:.2f}"
    lines += [
        "",
        f"quality mode, {q['features']} features, {q['first_iterations']} first / "
        f"{q['iterations']} warm iterations",
        "",
        "| size | frame 1, s | warm frames, s/frame | peak GiB |",
        "|---|---:|---:|---:|",
        f"| {q['size']} | {q['frame_1_s']:.2f} | {warm} | {q['peak_gib']:.2f} |",
        "",
        f"gpu-marked tests: {report['tests']['summary']} (exit {report['tests']['exit_code']})",
        *report["tests"]["failures"],
        f"total {report['seconds']:.0f} s",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=120, help="frames per fast-mode clip")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="runs per fast-mode figure")
    parser.add_argument(
        "--quality-frames", type=int, default=4, help="frames of the quality run (frame 1 + warm)"
    )
    parser.add_argument("--vgg-weights", type=Path, default=None, help="real VGG weights file")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "bench/gpu.py needs a CUDA device and torch sees none; run it on a machine with one "
            "(bench/fast.py measures the CPU)",
            file=sys.stderr,
        )
        sys.exit(2)
    device = torch.device(args.device)
    props = torch.cuda.get_device_properties(device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report = {
            "benchmark": "gpu",
            "machine": {
                "platform": platform.platform(),
                "device": props.name,
                "memory_gib": props.total_memory / 2**30,
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "cpus": os.cpu_count(),
            },
            "batch_size": args.batch_size,
            "frames": args.frames,
            "repeats": args.repeats,
            "fast": fast_rows(args, device, folder),
            "quality": quality_row(args, device, folder),
            "quality_precision": quality_precision_rows(args, device, folder),
        }
    report["tests"] = gpu_tests()
    report["seconds"] = time.perf_counter() - started
    print(tables(report))
    name = props.name.replace(" ", "-").lower()
    out = args.out or ROOT / "bench" / "results" / f"gpu-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    if report["tests"]["exit_code"] not in (0, 5):  # 5: no gpu tests collected
        sys.exit(1)


if __name__ == "__main__":
    main()
