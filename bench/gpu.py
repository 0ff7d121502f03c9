"""GPU figures in one go, for the day a CUDA device is lent (a few minutes on one GPU).

On one CUDA device it prints, as Markdown tables, what the GPU rows of docs/benchmarks.md need,
and writes it to bench/results/gpu-<device>.json:

  - fast mode frames/s at 1280x720 and 1920x1080, standard network, batch 4, in fp16, bf16
    (where the GPU has it) and fp32: the network alone (the real `FeedForwardStylizer` stage
    over frames already on the device) and end to end (`stylize_video` with the `fast` preset:
    decode thread → network → encode thread → mux), medians of repeats, with the network's
    measured bytes per frame pixel beside the figure the memory check assumes;
  - the network alone in fp16 with channels-last on and off, and with cuDNN autotuning off
    (the deterministic default) and on (`VIDSTYLE_CUDNN_BENCHMARK=1`): what each costs;
  - quality mode seconds per frame at 1280x720 (`quality` preset): frame 1 (cold) and the warm
    frames after it (median), with the peak GPU memory beside the memory check's estimate;
  - 100 L-BFGS iterations at 1280x720 with a history of 10 and of 50 (host syncs per pair);
  - the result of the `gpu`-marked tests (`pytest -m gpu`).

It exits 0 when every part ran, every gpu test passed and the memory check's estimates were at
least what was measured; otherwise its last line on stderr says what failed. Without CUDA it
exits 2 with a one-line message. Speed does not depend on the weights, so the fast network is
seeded random-init and quality mode uses random VGG features unless --vgg-weights names a file.

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
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import fast  # noqa: E402  (bench/fast.py: the same timing helpers as the CPU benchmark)
import mediagen  # noqa: E402

from vidstyle import reproducible  # noqa: E402
from vidstyle.config import RenderSettings, resolve_settings  # noqa: E402
from vidstyle.frame import FrameRecord  # noqa: E402
from vidstyle.media import image_to_tensor, probe, read_frames  # noqa: E402
from vidstyle.nets.models import save_model  # noqa: E402
from vidstyle.nets.transformer import TransformerNet  # noqa: E402
from vidstyle.render import memory  # noqa: E402
from vidstyle.render.events import Event, FrameDone, Started  # noqa: E402
from vidstyle.render.pipeline import fast_config, stylize_video  # noqa: E402
from vidstyle.stylize.feedforward import FeedForwardStylizer  # noqa: E402

SIZES = [(1280, 720), (1920, 1080)]
GOAL_FAST_FPS = 30.0  # 1080p end to end
GOAL_QUALITY_S = 1.0  # 720p, per warm frame


class FrameClock:
    """A render's watcher that notes when each frame is finished (quality mode's per-frame
    time)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.marks = [time.perf_counter()]
        elif isinstance(event, FrameDone):
            self.marks.append(time.perf_counter())

    def seconds_per_frame(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def gib(value: float) -> float:
    return value / 2**30


def fast_settings(
    model: Path, device: torch.device, size: tuple[int, int], **overrides: Any
) -> RenderSettings:
    return resolve_settings(
        "fast",
        overrides={
            "model": str(model),
            "device": str(device),
            "size": max(size),
            "overwrite": True,
            **overrides,
        },
    )


def device_records(clip: Path, size: tuple[int, int], device: torch.device) -> list[FrameRecord]:
    return [
        FrameRecord(f.index, f.pts, image_to_tensor(f.image, device))
        for f in read_frames(probe(clip), size=size)
    ]


def network_fps(stage: FeedForwardStylizer, records: list[FrameRecord], batch: int) -> float:
    """Frames/s of the stage alone, after two batches of warm-up (cuDNN autotuning, if on)."""
    for _ in stage(records[: 2 * batch]):
        pass
    return fast.network_alone(stage, records)


def fast_rows(args: argparse.Namespace, device: torch.device, folder: Path) -> list[dict]:
    """Fast mode by size and precision: network alone, end to end, bytes per pixel."""
    from vidstyle.device import cuda_has_native_bf16

    precisions = ["fp16", "bf16", "fp32"] if cuda_has_native_bf16(device) else ["fp16", "fp32"]
    rows = []
    for size in SIZES:
        clip = args.clips[size]
        records = device_records(clip, size, device)
        pixels = size[0] * size[1] * args.batch_size
        for precision in precisions:
            settings = fast_settings(
                args.model, device, size, batch_size=args.batch_size, precision=precision
            )
            stage = FeedForwardStylizer.from_config(fast_config(settings), device)
            runs = []
            for _ in range(args.repeats):
                base = torch.cuda.memory_allocated(device)  # the frames and the network
                torch.cuda.reset_peak_memory_stats(device)
                alone = network_fps(stage, records, args.batch_size)
                network_bytes = torch.cuda.max_memory_allocated(device) - base
                torch.cuda.reset_peak_memory_stats(device)
                result = stylize_video(clip, [], settings, output=folder / "out.mp4")
                end_to_end_bytes = torch.cuda.max_memory_allocated(device) - base
                runs.append((alone, result.frames_per_second, network_bytes, end_to_end_bytes))
            del stage
            half = precision != "fp32"
            row = {
                "size": f"{size[0]}x{size[1]}",
                "precision": precision,
                "network_fps": statistics.median(r[0] for r in runs),
                "end_to_end_fps": statistics.median(r[1] for r in runs),
                "network_bytes_per_px": max(r[2] for r in runs) / pixels,
                "estimate_bytes_per_px": memory.fast_bytes_per_pixel(device, half),
                "end_to_end_peak_gib": gib(max(r[3] for r in runs)),
                "end_to_end_estimate_gib": gib(
                    memory.estimate_bytes(
                        size, device, mode="fast", batch_size=args.batch_size, half=half
                    )
                ),
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


def layout_rows(args: argparse.Namespace, device: torch.device, folder: Path) -> list[dict]:
    """The fp16 network alone: channels-last on/off × cuDNN autotuning off/on."""
    rows = []
    for size in SIZES:
        records = device_records(args.clips[size], size, device)
        for layout in ("on", "off"):
            for autotune in (False, True):
                torch.backends.cudnn.benchmark = autotune
                torch.backends.cudnn.deterministic = not autotune
                settings = fast_settings(
                    args.model,
                    device,
                    size,
                    batch_size=args.batch_size,
                    precision="fp16",
                    channels_last=layout,
                )
                stage = FeedForwardStylizer.from_config(fast_config(settings), device)
                fps = statistics.median(
                    network_fps(stage, records, args.batch_size) for _ in range(args.repeats)
                )
                rows.append(
                    {
                        "size": f"{size[0]}x{size[1]}",
                        "channels_last": layout,
                        "autotune": autotune,
                        "network_fps": fps,
                    }
                )
        del records
        torch.cuda.empty_cache()
    reproducible.configure(device)  # the defaults again
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
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    stylize_video(clip, [style], settings, output=folder / "quality.mp4", on_event=clock)
    per_frame = clock.seconds_per_frame()
    row = {
        "size": f"{width}x{height}",
        "features": settings.features,
        "first_iterations": settings.first_iterations,
        "iterations": settings.iterations,
        "frame_1_s": per_frame[0],
        "warm_frame_s": statistics.median(per_frame[1:]) if len(per_frame) > 1 else None,
        "per_frame_s": per_frame,
        "peak_gib": gib(torch.cuda.max_memory_allocated(device)),
        "estimate_gib": gib(
            memory.estimate_bytes(
                (width, height), device, mode="quality", style_scale=settings.style_scale
            )
        ),
    }
    print(
        f"quality {row['size']}: frame 1 {row['frame_1_s']:.2f} s, warm "
        f"{row['warm_frame_s'] or float('nan'):.2f} s",
        file=sys.stderr,
    )
    return row


def lbfgs_rows(args: argparse.Namespace, device: torch.device, folder: Path) -> list[dict]:
    """Seconds of a shot's first frame (100 L-BFGS iterations at 1280x720) by history length:
    torch's L-BFGS reads two numbers per stored pair back to the host every iteration. The
    loss each reaches at equal iterations was measured on a CPU (bench/lbfgs_history.py)."""
    from vidstyle.render.pipeline import build_loss
    from vidstyle.stylize import optimize

    settings = resolve_settings("quality", overrides={"features": "random", "size": 1280})
    loss = build_loss(settings, device)
    frame = torch.rand(1, 3, 720, 1280, device=device)
    loss.set_style([torch.rand(1, 3, 720, 1280, device=device)])
    loss.set_content(frame)
    default = optimize.LBFGS_HISTORY
    rows = []
    try:
        for history in (10, 50, 10, 50):  # alternated: the first run carries the warm-up
            optimize.LBFGS_HISTORY = history
            torch.cuda.synchronize(device)
            started = time.perf_counter()
            optimize.optimize_image(
                lambda x: loss(x).total, frame, iterations=100, stop_tolerance=0.0
            )
            torch.cuda.synchronize(device)
            rows.append({"history": history, "seconds": time.perf_counter() - started})
    finally:
        optimize.LBFGS_HISTORY = default
    return rows[2:]


def quality_precision_rows(args: argparse.Namespace, device: torch.device, folder: Path) -> list:
    """Quality mode per `--precision` at 1280x720 (3 frames, 20 + 10 iterations, early stop
    off): seconds per iteration, peak memory, and the final loss of each render measured by the
    fp32 network against the fp32 render's (target: within 2%). Prints its own table."""
    import precision as precision_bench  # bench/precision.py: the CPU comparison's helpers

    from vidstyle.device import cuda_has_native_bf16
    from vidstyle.frame import decode_records
    from vidstyle.render.pipeline import flow_stage
    from vidstyle.stylize.style_image import load_style_image

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
                "peak_gib": gib(torch.cuda.max_memory_allocated(device)),
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


# --------------------------------------------------------------------------------------------
# Verdict and tables (plain functions of the report: tests/test_bench.py runs them on a CPU)


def failures(report: dict) -> list[str]:
    """What did not pass, one short phrase each."""
    failed = [f"{name} did not run ({error})" for name, error in report["errors"].items()]
    tests = report.get("tests")
    if tests is not None and tests["exit_code"] != 0:
        failed.append(f"gpu tests: {tests['summary']}")
    for row in report.get("fast", []):
        if row["network_bytes_per_px"] > row["estimate_bytes_per_px"]:
            failed.append(
                f"fast {row['precision']} {row['size']} used {row['network_bytes_per_px']:.0f} "
                f"B/px, the memory check assumes {row['estimate_bytes_per_px']:.0f}"
            )
    quality = report.get("quality")
    if quality is not None and quality["peak_gib"] > quality["estimate_gib"]:
        failed.append(
            f"quality {quality['size']} peaked at {quality['peak_gib']:.2f} GiB, the memory "
            f"check estimates {quality['estimate_gib']:.2f}"
        )
    return failed


def tables(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"{m['device']} ({m['memory_gib']:.0f} GiB), torch {m['torch']}, CUDA {m['cuda']}, "
        f"{m['cpus']} CPUs; fast: `standard` network, batch {report['batch_size']}, "
        f"{report['frames']} frames, medians of {report['repeats']}",
    ]
    if "fast" in report:
        lines += [
            "",
            "| size | precision | network alone, frames/s | end to end, frames/s "
            "| network B/px (measured / assumed) | end to end peak GiB (measured / assumed) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in report["fast"]:
            lines.append(
                f"| {r['size']} | {r['precision']} | {r['network_fps']:.1f} | "
                f"{r['end_to_end_fps']:.1f} | {r['network_bytes_per_px']:.0f} / "
                f"{r['estimate_bytes_per_px']:.0f} | {r['end_to_end_peak_gib']:.2f} / "
                f"{r['end_to_end_estimate_gib']:.2f} |"
            )
    if "layouts" in report:
        lines += [
            "",
            "fp16 network alone, frames/s: channels-last and cuDNN autotuning",
            "",
            "| size | channels-last | autotuning off (default) | autotuning on |",
            "|---|---|---:|---:|",
        ]
        cells: dict[tuple[str, str], dict[bool, float]] = {}
        for r in report["layouts"]:
            cells.setdefault((r["size"], r["channels_last"]), {})[r["autotune"]] = r["network_fps"]
        for (size, layout), fps in cells.items():
            lines.append(
                f"| {size} | {layout} | {fps.get(False, float('nan')):.1f} | "
                f"{fps.get(True, float('nan')):.1f} |"
            )
    q = report.get("quality")
    if q is not None:
        warm = "n/a" if q["warm_frame_s"] is None else f"{q['warm_frame_s']:.2f}"
        lines += [
            "",
            f"quality mode, {q['features']} features, {q['first_iterations']} first / "
            f"{q['iterations']} warm iterations",
            "",
            "| size | frame 1, s | warm frames, s/frame | peak GiB (measured / assumed) |",
            "|---|---:|---:|---:|",
            f"| {q['size']} | {q['frame_1_s']:.2f} | {warm} | {q['peak_gib']:.2f} / "
            f"{q['estimate_gib']:.2f} |",
        ]
    if "lbfgs" in report:
        cells = ", ".join(f"history {r['history']}: {r['seconds']:.2f} s" for r in report["lbfgs"])
        lines += ["", f"quality 1280x720, 100 L-BFGS iterations: {cells}"]
    lines.append("")
    lines += goals(report)
    tests = report.get("tests")
    if tests is not None:
        lines.append(f"gpu-marked tests: {tests['summary']} (exit {tests['exit_code']})")
        lines += tests["failures"]
    lines.append(f"total {report['seconds']:.0f} s")
    return "\n".join(lines)


def goals(report: dict) -> list[str]:
    """The speed goals, met or not (figures, not failures)."""
    lines = []
    full_hd = [r for r in report.get("fast", []) if r["size"] == "1920x1080"]
    if full_hd:
        best = max(r["end_to_end_fps"] for r in full_hd)
        met = "met" if best >= GOAL_FAST_FPS else "not met"
        lines.append(f"goal fast 1080p >= {GOAL_FAST_FPS:.0f} frames/s end to end: {met}")
    q = report.get("quality")
    if q is not None and q["warm_frame_s"] is not None:
        met = "met" if q["warm_frame_s"] <= GOAL_QUALITY_S else "not met"
        lines.append(f"goal quality 720p <= {GOAL_QUALITY_S:.0f} s per warm frame: {met}")
    return lines


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=120, help="frames per fast-mode clip")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="runs per fast-mode figure")
    parser.add_argument(
        "--quality-frames", type=int, default=4, help="frames of the quality run (frame 1 + warm)"
    )
    parser.add_argument("--vgg-weights", type=Path, default=None, help="real VGG weights file")
    parser.add_argument("--skip-tests", action="store_true", help="leave out pytest -m gpu")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    return parser.parse_args(argv)


def run_part(report: dict, name: str, part: Callable[[], Any]) -> None:
    """report[name] = part(); an exception is noted in report["errors"] and the rest go on."""
    try:
        report[name] = part()
    except Exception as err:
        traceback.print_exc()
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        report["errors"][name] = f"{type(err).__name__}: {first}"[:200]
        torch.cuda.empty_cache()


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        print(
            "bench/gpu.py needs a CUDA device and torch sees none; run it on a machine with one "
            "(bench/fast.py measures the CPU)",
            file=sys.stderr,
        )
        sys.exit(2)
    device = torch.device(args.device)
    reproducible.configure(device)  # as a render sets them
    props = torch.cuda.get_device_properties(device)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "gpu",
        "machine": {
            "platform": platform.platform(),
            "device": props.name,
            "memory_gib": gib(props.total_memory),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cpus": os.cpu_count(),
        },
        "batch_size": args.batch_size,
        "frames": args.frames,
        "repeats": args.repeats,
        "errors": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        args.model = folder / "bench-standard.pth"
        save_model(args.model, TransformerNet("standard"), style="random", training={})
        args.clips = {
            size: mediagen.make_video(
                folder / f"clip{size[0]}x{size[1]}.mp4",
                frames=args.frames,
                size=size,
                motion="object",
                pan_px=4,
            )
            for size in SIZES
        }
        run_part(report, "fast", lambda: fast_rows(args, device, folder))
        run_part(report, "layouts", lambda: layout_rows(args, device, folder))
        run_part(report, "quality", lambda: quality_row(args, device, folder))
        run_part(report, "lbfgs", lambda: lbfgs_rows(args, device, folder))
        run_part(report, "quality_precision", lambda: quality_precision_rows(args, device, folder))
    if not args.skip_tests:
        run_part(report, "tests", gpu_tests)
    report["seconds"] = time.perf_counter() - started
    print(tables(report))
    name = props.name.replace(" ", "-").lower()
    out = args.out or ROOT / "bench" / "results" / f"gpu-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    failed = failures(report)
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
