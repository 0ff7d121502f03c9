"""Fast-mode benchmark: a plain PyTorch loop vs vidstyle's network vs vidstyle end to end.

For each frame size it generates a clip with motion and audio, saves a seeded random-init model
(speed does not depend on the weights), then measures

  (r) plain reference: the same architecture and weights as a plain eager fp32 PyTorch loop
      (`nn.InstanceNorm2d`, NCHW, `torch.no_grad`, same batch size) over frames already in
      memory, as pytorch/examples' fast_neural_style runs it: the baseline (b) must beat;
  (a) network alone: the real `FeedForwardStylizer` stage over frames already decoded into
      tensors on the device (batching, inference mode, autocast/channels-last as configured);
  (b) end to end: `vidstyle.render.pipeline.stylize_video` on the clip with the `fast` preset
      (decode thread → network → whatever temporal stages the preset runs → encode thread → mux with
      audio → atomic rename), timed over its render loop (`RenderResult.seconds`: first decoded
      frame to renamed file; probing and model loading are excluded);

and prints frames/s for all three, b/r (target ≥ 1.3), the ratio b/a (target ≥ 0.9) (medians
over rounds of back-to-back runs, as a shared machine's load drifts between runs; b/r's spread
beside it), the load average before and after, and the share of (b)'s time the
main loop spent inside the network (how well decode and encode overlap with it, whatever else
the machine is doing) as a Markdown table, then writes the numbers and the machine to
bench/results/fast-<device>.json.

    python bench/fast.py                                   # CPU-sized defaults, --arch small
    python bench/fast.py --arch standard --sizes 640x360      # the comparison in the README
    python bench/fast.py --sizes 256x256 640x360 1280x720 1920x1080 --frames 240 --arch standard
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the generated-media factory the tests use

import mediagen  # noqa: E402

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.device import resolve_device  # noqa: E402
from vidstyle.frame import FrameRecord  # noqa: E402
from vidstyle.media import image_to_tensor, probe, read_frames  # noqa: E402
from vidstyle.nets.models import save_model  # noqa: E402
from vidstyle.nets.transformer import InstanceNorm, TransformerNet  # noqa: E402
from vidstyle.render.pipeline import fast_config, stylize_video  # noqa: E402
from vidstyle.stylize.feedforward import FeedForwardStylizer  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def default_frames(width: int, height: int) -> int:
    """Fewer frames for larger sizes, so a CPU run stays within a few minutes (24 at 256²,
    16 at 640×360, 4 at 1280×720); a batch's worth at the least."""
    return max(4, min(24, round(16 * 640 * 360 / (width * height))))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_alone(stage: FeedForwardStylizer, records: list[FrameRecord]) -> float:
    """Frames/s of the stage over frames already in memory on the device."""
    device = records[0].content.device
    sync(device)
    started = time.perf_counter()
    for _ in stage(records):
        pass
    sync(device)
    return len(records) / (time.perf_counter() - started)


def plain_reference(net: TransformerNet) -> nn.Module:
    """`net` as a plain PyTorch model: torch's own instance norm, float32, NCHW, eval mode."""
    plain = copy.deepcopy(net).float().eval()
    for parent in plain.modules():
        for name, child in parent.named_children():
            if isinstance(child, InstanceNorm):
                torch_norm = nn.InstanceNorm2d(child.num_features, eps=child.eps, affine=True)
                torch_norm.load_state_dict(child.state_dict())
                setattr(parent, name, torch_norm)
    return plain


def reference_loop(plain: nn.Module, records: list[FrameRecord], batch_size: int) -> float:
    """Frames/s of the plain eager loop over the same in-memory frames, same batches."""
    device = records[0].content.device
    sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(records), batch_size):
            plain(torch.cat([r.content for r in records[i : i + batch_size]]))
    sync(device)
    return len(records) / (time.perf_counter() - started)


@contextlib.contextmanager
def network_timer() -> Iterator[list[float]]:
    """Seconds spent inside `FeedForwardStylizer.stylize` (any instance) while active.

    In an end-to-end render this says how well decode and encode overlap with the network,
    independently of how busy the machine is: with perfect overlap the loop is always inside
    the network.
    """
    spent = [0.0]
    original = FeedForwardStylizer.stylize

    def timed(self: FeedForwardStylizer, batch: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        try:
            return original(self, batch)
        finally:
            spent[0] += time.perf_counter() - started

    FeedForwardStylizer.stylize = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        FeedForwardStylizer.stylize = original  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    load_before = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        model = folder / f"bench-{args.arch}.pth"
        net = TransformerNet(args.arch)
        save_model(model, net, style="random", training={})
        plain = plain_reference(net).to(device)
        for width, height in args.sizes:
            frames = args.frames or default_frames(width, height)
            clip = mediagen.make_video(
                folder / f"clip{width}x{height}.mp4",
                frames=frames,
                size=(width, height),
                motion="object",
                pan_px=4,
            )
            overrides = {
                "model": str(model),
                "device": args.device,
                "size": max(width, height),
                "batch_size": args.batch_size,
                "precision": args.precision,
                "channels_last": args.channels_last,
                "overwrite": True,
            }
            if args.smooth is not None:
                overrides["smooth"] = args.smooth
            settings = resolve_settings("fast", overrides=overrides)

            # (a) the same stage, on frames already in memory on the device.
            info = probe(clip)
            records = [
                FrameRecord(f.index, f.pts, image_to_tensor(f.image, device))
                for f in read_frames(info, size=(width, height))
            ]
            stage = FeedForwardStylizer.from_config(
                fast_config(settings), device, size=(width, height)
            )
            # Warm-up: kernels, allocator, threads.
            for _ in stage(records[: args.batch_size]):
                pass
            reference_loop(plain, records[: args.batch_size], args.batch_size)

            # (r), (a) and (b) alternate, and each (b) is compared with the (r) and (a) runs
            # just before it: on a shared machine other processes come and go, and runs
            # measured back to back see the same machine. Medians over the rounds.
            pairs = []
            for _ in range(args.repeats):
                ref = reference_loop(plain, records, args.batch_size)
                alone = network_alone(stage, records)
                with network_timer() as spent:
                    result = stylize_video(clip, [], settings, output=folder / "out.mp4")
                e2e = result.frames_per_second
                pairs.append((ref, alone, e2e, e2e / alone, spent[0] / result.seconds, e2e / ref))
            options = stage.options.describe()
            del records, stage
            ref, alone, end_to_end, ratio, busy, speedup = (
                statistics.median(p[i] for p in pairs) for i in range(6)
            )
            rows.append(
                {
                    "size": f"{width}x{height}",
                    "frames": frames,
                    "options": options,
                    "reference_fps": ref,
                    "network_fps": alone,
                    "end_to_end_fps": end_to_end,
                    "ratio": ratio,
                    "speedup_over_reference": speedup,
                    "speedup_range": [min(p[5] for p in pairs), max(p[5] for p in pairs)],
                    "network_busy_in_end_to_end": busy,
                    "runs": [
                        {
                            "reference_fps": f,
                            "network_fps": a,
                            "end_to_end_fps": b,
                            "ratio": r,
                            "busy": u,
                            "speedup_over_reference": x,
                        }
                        for f, a, b, r, u, x in pairs
                    ],
                }
            )
            print(
                f"{width}x{height} ({options}): plain reference {ref:.2f} frames/s, network "
                f"{alone:.2f} frames/s, end to end {end_to_end:.2f} frames/s",
                file=sys.stderr,
            )
    return {
        "benchmark": "fast",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_average": [load_before, os.getloadavg()[0]],
        },
        "settings": {
            "arch": args.arch,
            "batch_size": args.batch_size,
            "precision": settings.precision,
            "channels_last": settings.channels_last,
            "smooth": settings.smooth,
            "encoder_preset": settings.encoder_preset,
            "repeats": args.repeats,
        },
        "rows": rows,
    }


def table(report: dict) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"`{s['arch']}` network, batch {s['batch_size']}, {m['device']} ({m['threads']} threads), "
        f"torch {m['torch']}; end to end = `fast` preset, smooth {s['smooth']}, x264 "
        f"{s['encoder_preset']}; load average {m['load_average'][0]:.1f} → "
        f"{m['load_average'][1]:.1f} on {m['cpus']} CPUs",
        "",
        "| size | frames | vidstyle runs | (r) plain fp32 loop, frames/s "
        "| (a) network alone, frames/s | (b) end to end, frames/s | b/r (range) | b/a "
        "| network busy during (b) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        low, high = row["speedup_range"]
        lines.append(
            f"| {row['size']} | {row['frames']} | {row['options']} | "
            f"{row['reference_fps']:.2f} | {row['network_fps']:.2f} | "
            f"{row['end_to_end_fps']:.2f} | {row['speedup_over_reference']:.2f} "
            f"({low:.2f}–{high:.2f}) | {row['ratio']:.2f} | "
            f"{100 * row['network_busy_in_end_to_end']:.0f}% |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(256, 256), (640, 360), (1280, 720)],
        metavar="WxH",
    )
    parser.add_argument(
        "--frames", type=int, default=0, help="frames per clip (default: 24, fewer above 640x360)"
    )
    parser.add_argument("--arch", default="small", choices=["small", "standard"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--channels-last", default="auto")
    parser.add_argument(
        "--smooth",
        type=float,
        default=None,
        help="temporal smoothing strength (default: the fast preset's)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="pairs of (a) and (b) runs; medians are reported"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args()
    report = run(args)
    print(table(report))
    device = report["machine"]["device"].replace(" ", "-").lower()
    out = args.out or ROOT / "bench" / "results" / f"fast-{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
