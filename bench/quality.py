"""Quality-mode benchmark: seconds and optimiser iterations per frame, warm vs cold start.

For each size it renders a clip (a generated one with a moving object, or --clip) twice
through the real quality stages — later frames warm-started from the flow-warped previous
output (`init=warped`, the default) and cold-started from their content (`init=content`,
independent frames) — with the preset's budgets and early stop, and times one VGG
forward+backward at that size (the floor: one iteration can't be faster). Each later frame's
Gatys loss (content + style + TV, without the temporal term a warm frame also has) is measured
on the returned image, so warm and cold are compared on the same objective.

    python bench/quality.py                      # sizes 128 and 256, 8 frames, quality preset
    python bench/quality.py --vgg-weights vgg16.pth --clip samples/clip.mp4 \
        --style samples/style.png --sizes 256 --frames 12
    python bench/quality.py --sizes 256 512 --frames 12 --device cuda
    python bench/quality.py --precision bf16 ...  # the loss network in bf16 (default fp32;
                                                 # the floor stays fp32)

Prints a Markdown table and writes bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the generated-media factory the tests use

import mediagen  # noqa: E402

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.device import resolve_device  # noqa: E402
from vidstyle.frame import decode_records  # noqa: E402
from vidstyle.media import plan_size, probe  # noqa: E402
from vidstyle.nets.vgg import VGGFeatures  # noqa: E402
from vidstyle.render.pipeline import build_loss, flow_stage, quality_config  # noqa: E402
from vidstyle.stylize.losses import loss_network_precision  # noqa: E402
from vidstyle.stylize.quality import FrameStats, QualityStylizer  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402


class Floor:
    """A plain VGG forward and backward to relu5_1 (eager, fp32, default memory format, no
    loss): what one iteration cannot undercut. Timed between frames, so each frame is compared
    with the floor of the moment and a change in machine load affects both alike.

    Also keeps the process's CPU time per frame (the stylizer's, plus decode and the flow
    worker running ahead) and per floor pass: on a machine shared with other work, CPU time
    barely moves with their load, while wall time does."""

    def __init__(self, settings, size: tuple[int, int], device: torch.device) -> None:
        self.vgg = VGGFeatures(
            ["relu5_1"],
            weights=settings.features,
            weights_path=Path(settings.vgg_weights) if settings.vgg_weights else None,
            layout=settings.vgg_layout,
        ).to(device)
        self.image = torch.rand(1, 3, size[1], size[0], device=device, requires_grad=True)
        self.device = device
        self.samples: list[float] = []  # wall seconds of a pass, one per frame
        self.cpu_samples: list[float] = []  # CPU seconds of a pass, one per frame
        self.frame_cpu: list[float] = []  # CPU seconds of each frame
        self.time(repeats=3)  # warms up allocators and kernels; not a sample
        self.samples.clear()
        self.cpu_samples.clear()
        self.start_run()

    def start_run(self) -> None:
        self._mark = time.process_time()

    def time(self, repeats: int = 2) -> float:
        """Best of `repeats` passes, in seconds; kept in `samples` (and `cpu_samples`)."""
        best = best_cpu = float("inf")
        for _ in range(repeats):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            started, cpu_started = time.perf_counter(), time.process_time()
            self.vgg(self.image)["relu5_1"].sum().backward()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - cpu_started)
        self.samples.append(best)
        self.cpu_samples.append(best_cpu)
        return best

    def after_frame(self, _: FrameStats) -> None:
        self.frame_cpu.append(time.process_time() - self._mark)
        self.time()
        self._mark = time.process_time()


def summarise(
    stats: list[FrameStats], gatys: list[float], floor: Floor, first: int
) -> dict[str, float]:
    """`first`: the index of this run's first frame in `floor`'s lists."""
    later = stats[1:]
    # Each frame's time over its iterations times the floor timed right after it.
    wall = [
        s.seconds / (s.iterations * f) for s, f in zip(stats, floor.samples[first:], strict=True)
    ]
    cpu = [
        c / (s.iterations * f)
        for s, c, f in zip(stats, floor.frame_cpu[first:], floor.cpu_samples[first:], strict=True)
    ]
    return {
        "frame1_s": stats[0].seconds,
        "frame1_iterations": stats[0].iterations,
        "later_s_per_frame": statistics.mean(s.seconds for s in later),
        "later_iterations_per_frame": statistics.mean(s.iterations for s in later),
        "later_final_loss": statistics.mean(gatys[1:]),
        "frame1_s_per_iteration_vs_floor": wall[0],
        "later_s_per_iteration_vs_floor": statistics.median(wall[1:]),
        "frame1_cpu_per_iteration_vs_floor": cpu[0],
        "later_cpu_per_iteration_vs_floor": statistics.median(cpu[1:]),
    }


def gatys_loss(loss, record) -> float:
    """The Gatys loss (no temporal term) of a rendered frame against its own content."""
    with torch.no_grad():
        loss.set_content(record.content)
        return float(loss(record.styled).total)


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        style_path = args.style or mediagen.make_image(folder / "style.png", (256, 256))
        style = load_style_image(style_path)
        for long_side in args.sizes:
            size16x9 = (long_side, long_side * 9 // 16 // 2 * 2)
            clip = args.clip or mediagen.make_video(
                folder / f"clip{long_side}.mp4",
                frames=args.frames,
                size=size16x9,
                motion="object",
                pan_px=2,
                audio=False,
            )
            info = probe(clip)
            features = "pretrained" if args.vgg_weights and args.features == "auto" else None
            budgets = {
                key: value
                for key, value in (
                    ("first_iterations", args.first_iterations),
                    ("iterations", args.iterations),
                    ("stop_tolerance", args.stop_tolerance),
                )
                if value is not None
            }
            settings = resolve_settings(
                args.preset,
                overrides={
                    "features": features or args.features,
                    "vgg_weights": args.vgg_weights,
                    "device": args.device,
                    "size": long_side,
                    **budgets,
                },
            )
            size, _ = plan_size(info.size, settings.size)
            loss = build_loss(settings, device)
            precision = loss_network_precision(loss, args.precision, device, size)
            loss.set_style([style_tensor(style, size, settings.style_scale, device)])
            floor = Floor(settings, size, device)
            row: dict = {
                "size": f"{size[0]}x{size[1]}",
                "features": loss.features.source.describe(),
                "precision": precision.describe(),
            }
            for init in ("warped", "content"):
                # The render's own stages: decode, flow (for the warped warm start and the
                # temporal loss), then the quality stylizer; the floor is timed after each frame.
                first = len(floor.frame_cpu)
                stylizer = QualityStylizer(
                    loss, quality_config(settings.replace(init=init)), on_frame=floor.after_frame
                )
                records = flow_stage(settings, device)(
                    decode_records(info, size, args.frames, device)
                )
                floor.start_run()
                rendered = list(stylizer(records))
                gatys = [gatys_loss(loss, record) for record in rendered]
                row["warm" if init == "warped" else "cold"] = summarise(
                    stylizer.stats, gatys, floor, first
                )
            row["vgg_fwd_bwd_s"] = statistics.median(floor.samples)
            row["vgg_fwd_bwd_cpu_s"] = statistics.median(floor.cpu_samples)
            warm, cold = row["warm"], row["cold"]
            row["warm_loss_vs_cold_pct"] = 100 * (
                warm["later_final_loss"] / cold["later_final_loss"] - 1
            )
            row["warm_iterations_share"] = (
                warm["later_iterations_per_frame"] / cold["later_iterations_per_frame"]
            )
            results.append(row)
            print(f"  done {row['size']}", file=sys.stderr)
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "preset": args.preset,
        "budgets": {
            key: getattr(settings, key)
            for key in ("first_iterations", "iterations", "stop_tolerance", "stop_window")
        },
        "frames": args.frames,
        "rows": results,
    }


def table(report: dict) -> str:
    lines = [
        f"{report['frames']} frames per clip, preset `{report['preset']}`, device "
        f"{report['device']} ({report['cpu_threads']} CPU threads), features "
        f"{report['rows'][0]['features']}, loss network in {report['rows'][0]['precision']}",
        "",
        "| size | VGG fwd+bwd (s) | start | frame 1 s / iters | later frames s / iters "
        "| per iteration vs VGG fwd+bwd, frame 1 / later: wall; CPU | later Gatys loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        for key, label in (("warm", "warm (flow-warped prev output)"), ("cold", "cold (content)")):
            r = row[key]
            lines.append(
                f"| {row['size']} | {row['vgg_fwd_bwd_s']:.3f} | {label} | "
                f"{r['frame1_s']:.1f} / {r['frame1_iterations']} | "
                f"{r['later_s_per_frame']:.2f} / {r['later_iterations_per_frame']:.1f} | "
                f"{r['frame1_s_per_iteration_vs_floor']:.2f}x / "
                f"{r['later_s_per_iteration_vs_floor']:.2f}x; "
                f"{r['frame1_cpu_per_iteration_vs_floor']:.2f}x / "
                f"{r['later_cpu_per_iteration_vs_floor']:.2f}x | "
                f"{r['later_final_loss']:.4f} |"
            )
    lines.append("")
    for row in report["rows"]:
        lines.append(
            f"{row['size']}: warm frames end {row['warm_loss_vs_cold_pct']:+.1f}% from a cold "
            f"start's loss (target <= +5%) with {row['warm_iterations_share']:.2f}x its "
            "iterations (target <= 0.2x)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--preset", default="quality")
    parser.add_argument("--first-iterations", type=int, help="override the preset's")
    parser.add_argument("--iterations", type=int, help="override the preset's")
    parser.add_argument("--stop-tolerance", type=float, help="override the preset's")
    parser.add_argument("--features", default="auto")
    parser.add_argument("--vgg-weights", help="VGG checkpoint (e.g. a pretrained VGG-16)")
    parser.add_argument("--clip", type=Path, help="render this clip instead of a generated one")
    parser.add_argument("--style", type=Path, help="style image (default: a generated one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    args = parser.parse_args()
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
