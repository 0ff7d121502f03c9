"""Benchmark: what temporal coherence buys in quality mode, and what it costs.

For a generated clip with known motion (and any clips given with --clip), renders the frames
with the pipeline's own stages for each start mode -- `init content` (independent frames, the
baseline), `prev` (raw previous output), `warped` without and with the temporal loss -- each
composed as `stylize_video` composes it with smoothing on (flow stage on its worker thread
before the stylizer, smoothing after). The stylizer's output is tapped before the smoothing
stage, so one run gives both the smoothing-off and smoothing-on frames. For each row:

- E_warp (Lai et al. 2018, `vidstyle.metrics`) of the frames as they would be encoded (uint8),
  with flow from the original frames; the original's own E_warp is the floor;
- style distance (the Gram term of the rendering loss, same features) to the style image;
- seconds per frame of the run (decode excluded; flow and smoothing included) and the mean
  optimiser iterations per frame.

The flow overhead is measured separately: `init prev` without smoothing, with the flow stage
(as rendering composes it, for scene cuts) and without it; both give the same frames on a clip
without cuts. Prints a table per clip and the issue's targets, and writes JSON to
bench/results/temporal.json.

    python bench/temporal.py     # generated 96x64 pan, 6 frames: minutes on 2 CPU cores
    python bench/temporal.py --motion none --clip samples/clip.mp4 --style samples/style.png \
        --size 128 --frames 12 --first-iterations 100 --iterations 12 --vgg-weights vgg16.pth

Rows report, beside E_warp and the style distance, the trail ratio (`vidstyle.metrics.TrailRatio`)
of each render against the independent frames: a ghost or a wake, which E_warp rewards, shows
there; and retention ("kept", `vidstyle.metrics.retention`): at sampled frames, the detail and
style distance of the render against the independent (fresh) render of the same frame, which
a render that fades back towards the photo fails. For clips of 60 frames and more, where
rendering every frame independently would take hours, bench/retention.py measures the same
against fresh renders of the sampled frames only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # mediagen: test media with known motion

import mediagen  # noqa: E402

from vidstyle.config import RenderSettings  # noqa: E402
from vidstyle.device import resolve_device  # noqa: E402
from vidstyle.frame import FrameRecord  # noqa: E402
from vidstyle.media import (  # noqa: E402
    image_to_tensor,
    plan_size,
    probe,
    read_frames,
    tensor_to_image,
)
from vidstyle.metrics import StyleDistance, TrailRatio, WarpingError, retention  # noqa: E402
from vidstyle.render.pipeline import build_loss, flow_stage, quality_config  # noqa: E402
from vidstyle.stylize.quality import QualityStylizer  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402
from vidstyle.temporal import TemporalSmoother, warp_previous  # noqa: E402


@dataclass
class Run:
    name: str
    settings: RenderSettings
    with_flow: bool
    styled: list[torch.Tensor]  # tapped before smoothing
    smoothed: list[torch.Tensor]
    reliable: list[Any]  # each frame's reliability mask (H×W numpy), None where a shot starts
    seconds_per_frame: float
    # CPU time of this process (all threads, flow's included) per frame: unlike wall time it
    # does not grow when other processes load a shared machine.
    cpu_seconds_per_frame: float
    iterations_per_frame: float


def decode(path: Path, long_side: int, frames: int) -> list[Any]:
    info = probe(path)
    size, _ = plan_size(info.size, long_side)
    return [f.image for f in read_frames(info, size=size, max_frames=frames)]


def to_records(images: list[Any], device: torch.device) -> Iterator[FrameRecord]:
    for i, image in enumerate(images):
        yield FrameRecord(index=i, pts=i, content=image_to_tensor(image, device))


def render(
    name: str,
    images: list[Any],
    loss: Any,
    settings: RenderSettings,
    device: torch.device,
    *,
    with_flow: bool = True,
) -> Run:
    """One run composed like `stylize_video` (flow → stylize → smoothing), timed end to end."""
    stylizer = QualityStylizer(loss, quality_config(settings))
    styled: list[torch.Tensor] = []
    reliable: list[Any] = []

    def tap(records: Iterator[FrameRecord]) -> Iterator[FrameRecord]:
        for record in records:
            assert record.styled is not None
            styled.append(record.styled)
            mask = None if record.new_shot or record.reliable is None else record.reliable
            reliable.append(None if mask is None else mask[0, 0].cpu().numpy())
            yield record

    # Tensors are made up front so decode and upload are not timed (they are the same for all).
    records = list(to_records(images, device))
    started, cpu_started = time.perf_counter(), time.process_time()
    stream: Iterator[FrameRecord] = iter(records)
    if with_flow:
        stream = flow_stage(settings, device)(stream)
    stream = tap(stylizer(stream))
    if settings.smooth > 0:
        stream = TemporalSmoother(settings.smooth)(stream)
    smoothed = [r.styled for r in stream if r.styled is not None]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    return Run(
        name=name,
        settings=settings,
        with_flow=with_flow,
        styled=styled,
        smoothed=smoothed,
        reliable=reliable,
        seconds_per_frame=seconds / len(images),
        cpu_seconds_per_frame=cpu_seconds / len(images),
        iterations_per_frame=sum(s.iterations for s in stylizer.stats) / len(images),
    )


def carry_along_flow(
    first: torch.Tensor, images: list[Any], settings: RenderSettings, device: torch.device
) -> list[torch.Tensor]:
    """`first` moved along the source's flow from frame to frame, as smoothing moves its output
    (content frames where a new shot starts)."""
    frames = [first]
    for record in list(flow_stage(settings, device)(to_records(images, device)))[1:]:
        carried = warp_previous(frames[-1], record)
        frames.append(record.content if carried is None else carried[0])
    return frames


def measure(
    images: list[Any], frames: list[torch.Tensor], distance: StyleDistance, settings: RenderSettings
) -> tuple[float | None, float]:
    meter = WarpingError(1, preset=settings.flow_preset)
    for original, frame in zip(images, frames, strict=True):
        meter.add(original, tensor_to_image(frame))
    style = sum(distance(f) for f in frames) / len(frames)
    return meter.values()[1], style


def trail_ratio(
    reliable: list[Any], frames: list[torch.Tensor], independent: list[torch.Tensor]
) -> float | None:
    """`TrailRatio` of `frames` against the independent per-frame render of the same frames."""
    meter = TrailRatio()
    for mask, frame, reference in zip(reliable, frames, independent, strict=True):
        meter.add(mask, tensor_to_image(frame), tensor_to_image(reference))
    return meter.value()


def floor_of(images: list[Any], settings: RenderSettings) -> float | None:
    meter = WarpingError(0, preset=settings.flow_preset)
    for original in images:
        meter.add(original)
    return meter.values()[0]


def pct(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return 100.0 * (new / old - 1.0)


def fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.0f}%"


def bench_clip(
    label: str,
    images: list[Any],
    style_path: Path,
    base: RenderSettings,
    device: torch.device,
    temporal_weight: float,
    repeats: int,
    retention_at: list[int],
) -> dict[str, Any]:
    height, width = images[0].shape[:2]
    loss = build_loss(base, device)
    style = style_tensor(load_style_image(style_path), (width, height), base.style_scale, device)
    loss.set_style([style])
    distance = StyleDistance(loss, [style])

    configs = [
        ("content", base.replace(init="content", temporal_weight=0.0)),
        ("prev", base.replace(init="prev", temporal_weight=0.0)),
        ("warped", base.replace(init="warped", temporal_weight=0.0)),
        ("warped+temporal", base.replace(init="warped", temporal_weight=temporal_weight)),
    ]
    runs = []
    for name, settings in configs:
        print(f"  {label}: {name} ...", file=sys.stderr, flush=True)
        runs.append(render(name, images, loss, settings, device))

    # Flow overhead: prev without smoothing, with and without the flow stage, alternated and
    # repeated (best of `repeats`) because other work on a shared machine makes one run noisy.
    print(f"  {label}: flow overhead ...", file=sys.stderr, flush=True)
    plain = base.replace(init="prev", temporal_weight=0.0, smooth=0.0)
    pairs = []
    for repeat in range(repeats):
        # Alternate which goes first, so a drift in machine load favours neither.
        order = (False, True) if repeat % 2 == 0 else (True, False)
        runs_by_flow = {
            flow: render(f"prev, flow {flow}", images, loss, plain, device, with_flow=flow)
            for flow in order
        }
        pairs.append((runs_by_flow[False], runs_by_flow[True]))
    without = min((p[0] for p in pairs), key=lambda r: r.seconds_per_frame)
    with_flow = min((p[1] for p in pairs), key=lambda r: r.seconds_per_frame)
    cpu_without = min(p[0].cpu_seconds_per_frame for p in pairs)
    cpu_with = min(p[1].cpu_seconds_per_frame for p in pairs)
    started = time.perf_counter()
    list(flow_stage(base, device)(to_records(images, device)))
    flow_alone = (time.perf_counter() - started) / len(images)

    floor = floor_of(images, base)
    # What resampling alone leaves: frame 1's stylization carried along the flow to every
    # later frame, unchanged (no new strokes). No smoothing can get below this without blurring
    # the strokes, so it shows how much room the rows below still had.
    carried_frames = carry_along_flow(runs[-1].styled[0], images, base, device)
    carried_e_warp, carried_style = measure(images, carried_frames, distance, base)
    rows = []
    baseline: dict[str, float | None] = {}
    independent = runs[0].styled  # init content, no smoothing: every frame on its own
    for run in runs:
        for smooth, frames in ((0.0, run.styled), (run.settings.smooth, run.smoothed)):
            e_warp, style_distance = measure(images, frames, distance, base)
            if run.name == "content" and smooth == 0.0:
                baseline = {"e_warp": e_warp, "style": style_distance}
                trail = None  # the reference itself
            else:
                trail = trail_ratio(run.reliable, frames, independent)
            # The independent frames are fresh renders of every frame (cold, frame-1 budget).
            kept = [retention(i, frames[i], independent[i], distance) for i in retention_at]
            rows.append(
                {
                    "init": run.settings.init,
                    "temporal_weight": run.settings.temporal_weight,
                    "smooth": smooth,
                    "e_warp": e_warp,
                    "e_warp_vs_content_pct": pct(e_warp, baseline.get("e_warp")),
                    "style_distance": style_distance,
                    "style_vs_content_pct": pct(style_distance, baseline.get("style")),
                    "trail_ratio": trail,
                    "retention_detail": min((k.detail_ratio for k in kept), default=None),
                    "retention_style": max((k.style_ratio for k in kept), default=None),
                    "seconds_per_frame": run.seconds_per_frame,
                    "iterations_per_frame": run.iterations_per_frame,
                }
            )

    def row(init: str, tw: float, smoothed: bool) -> dict[str, Any]:
        return next(
            r
            for r in rows
            if r["init"] == init and r["temporal_weight"] == tw and (r["smooth"] > 0) == smoothed
        )

    smoothing_effects = []
    for run in runs:
        tw = run.settings.temporal_weight
        off, on = row(run.settings.init, tw, False), row(run.settings.init, tw, True)
        smoothing_effects.append(
            {
                "init": run.name,
                "e_warp_pct": pct(on["e_warp"], off["e_warp"]),
                "style_pct": pct(on["style_distance"], off["style_distance"]),
            }
        )
    warped_temporal = row("warped", temporal_weight, False)
    default_path = row("warped", temporal_weight, True)  # what a render does: all of it on
    same_frames = all(
        torch.equal(a, b) for a, b in zip(without.styled, with_flow.styled, strict=True)
    )
    return {
        "clip": label,
        "size": [width, height],
        "frames": len(images),
        "retention_at": retention_at,
        "floor_e_warp": floor,
        "carried_e_warp": carried_e_warp,
        "carried_style_distance": carried_style,
        "rows": rows,
        "smoothing": smoothing_effects,
        "targets": {
            "smoothing_e_warp_pct_content": smoothing_effects[0]["e_warp_pct"],
            "smoothing_style_pct_content": smoothing_effects[0]["style_pct"],
            "warped_temporal_e_warp_vs_content_pct": warped_temporal["e_warp_vs_content_pct"],
            "default_e_warp_ratio": default_path["e_warp"] / baseline["e_warp"]
            if default_path["e_warp"] and baseline.get("e_warp")
            else None,
            "default_trail_ratio": default_path["trail_ratio"],
            "default_style_vs_content_pct": default_path["style_vs_content_pct"],
            "flow_wall_time_overhead_pct": pct(
                with_flow.seconds_per_frame, without.seconds_per_frame
            ),
            "flow_cpu_time_overhead_pct": pct(cpu_with, cpu_without),
            # Upper bound were flow not overlapped at all: its own time over a frame's.
            "flow_serial_overhead_pct": 100.0 * flow_alone / without.seconds_per_frame,
        },
        "flow": {
            "preset": base.flow_preset,
            "seconds_per_frame_alone": flow_alone,
            "prev_seconds_per_frame_without_flow": without.seconds_per_frame,
            "prev_seconds_per_frame_with_flow": with_flow.seconds_per_frame,
            "prev_cpu_seconds_per_frame_without_flow": cpu_without,
            "prev_cpu_seconds_per_frame_with_flow": cpu_with,
            "same_frames_with_and_without_flow": same_frames,
            "repeats": repeats,
        },
    }


def fmt_retention(row: dict[str, Any]) -> str:
    """Retention as "worst detail ratio / worst style ratio" over the sampled frames."""
    if row["retention_detail"] is None:
        return "-"
    return f"{row['retention_detail']:.2f} / {row['retention_style']:.2f}"


def print_table(result: dict[str, Any]) -> None:
    width, height = result["size"]
    print(f"\n## {result['clip']}: {width}x{height}, {result['frames']} frames")
    header = (
        f"{'init':<8} {'temporal':>8} {'smooth':>6} {'E_warp':>10} {'vs content':>10} "
        f"{'style dist':>10} {'vs content':>10} {'trail':>6} {'kept':>11} {'s/frame':>8} "
        f"{'iter/frame':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        e_warp = "-" if r["e_warp"] is None else f"{r['e_warp']:.3e}"
        print(
            f"{r['init']:<8} {r['temporal_weight']:>8g} {r['smooth']:>6g} {e_warp:>10} "
            f"{fmt_pct(r['e_warp_vs_content_pct']):>10} {r['style_distance']:>10.4f} "
            f"{fmt_pct(r['style_vs_content_pct']):>10} "
            f"{'-' if r['trail_ratio'] is None else format(r['trail_ratio'], '.2f'):>6} "
            f"{fmt_retention(r):>11} "
            f"{r['seconds_per_frame']:>8.2f} "
            f"{r['iterations_per_frame']:>10.1f}"
        )
    print(
        "kept: retention at frames "
        + ", ".join(str(i) for i in result["retention_at"])
        + " against the independent frames, the lowest detail ratio / highest style ratio"
    )
    floor = result["floor_e_warp"]
    print(f"floor (E_warp of the original): {'-' if floor is None else f'{floor:.3e}'}")
    carried = result["carried_e_warp"]
    print(
        "frame 1's stylization carried along the flow unchanged: E_warp "
        f"{'-' if carried is None else f'{carried:.3e}'}, style distance "
        f"{result['carried_style_distance']:.4f}"
    )
    print(
        "smoothing, per init: "
        + "; ".join(
            f"{s['init']} E_warp {fmt_pct(s['e_warp_pct'])} style {fmt_pct(s['style_pct'])}"
            for s in result["smoothing"]
        )
    )
    flow, t = result["flow"], result["targets"]
    print(
        f"flow ({flow['preset']}): {flow['seconds_per_frame_alone']:.4f} s/frame alone; "
        f"init prev without / with the flow stage: "
        f"{flow['prev_seconds_per_frame_without_flow']:.2f} / "
        f"{flow['prev_seconds_per_frame_with_flow']:.2f} s/frame wall, "
        f"{flow['prev_cpu_seconds_per_frame_without_flow']:.2f} / "
        f"{flow['prev_cpu_seconds_per_frame_with_flow']:.2f} s/frame CPU "
        f"(same frames: {flow['same_frames_with_and_without_flow']})"
    )
    print("targets:")
    ratio, trail = t["default_e_warp_ratio"], t["default_trail_ratio"]
    print(
        "  default path (warped + temporal + smoothing): E_warp <= 0.3x content: "
        f"{'-' if ratio is None else f'{ratio:.2f}x'}; trail ratio <= 1.2: "
        f"{'-' if trail is None else f'{trail:.2f}'}; "
        f"style distance <= +15%: {fmt_pct(t['default_style_vs_content_pct'])}"
    )
    print(
        f"  smoothing cuts E_warp >= 50% (content): {fmt_pct(t['smoothing_e_warp_pct_content'])}, "
        f"style distance <= +10%: {fmt_pct(t['smoothing_style_pct_content'])}"
    )
    print(
        "  warped + temporal cuts E_warp >= 70% vs content: "
        f"{fmt_pct(t['warped_temporal_e_warp_vs_content_pct'])}"
    )
    print(
        f"  flow adds <= 10% time per frame: wall {fmt_pct(t['flow_wall_time_overhead_pct'])}, "
        f"CPU {fmt_pct(t['flow_cpu_time_overhead_pct'])} (best of {result['flow']['repeats']}); "
        f"flow alone is {t['flow_serial_overhead_pct']:.2f}% of a frame's time"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96, help="long side of the frames (px)")
    parser.add_argument("--frames", type=int, default=6, help="frames per clip")
    parser.add_argument(
        "--motion", default="pan", choices=["pan", "object", "none"], help="generated clip"
    )
    parser.add_argument("--pan-px", type=int, default=2, help="motion of the generated clip")
    parser.add_argument("--clip", type=Path, action="append", default=[], help="extra clip(s)")
    parser.add_argument("--style", type=Path, help="style image (default: a generated one)")
    parser.add_argument("--features", default="random", choices=["auto", "pretrained", "random"])
    parser.add_argument(
        "--vgg-weights", help="VGG checkpoint (e.g. a pretrained VGG-16); implies pretrained"
    )
    parser.add_argument("--first-iterations", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs with/without flow for the overhead"
    )
    parser.add_argument("--temporal-weight", type=float, default=RenderSettings.temporal_weight)
    parser.add_argument("--smooth", type=float, default=RenderSettings.smooth)
    parser.add_argument("--flow-preset", default=RenderSettings.flow_preset)
    parser.add_argument(
        "--retention-at",
        default="5,10,15,30,45,60",
        help="frames to measure retention at (those in the clip; see bench/retention.py)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "temporal.json")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    base = RenderSettings(
        features="pretrained" if args.vgg_weights else args.features,
        vgg_weights=args.vgg_weights,
        size=args.size,
        first_iterations=args.first_iterations,
        iterations=args.iterations,
        # Fixed budgets: early stopping would make s/frame depend on the row's convergence.
        stop_tolerance=0.0,
        smooth=args.smooth,
        flow_preset=args.flow_preset,
        device=args.device,
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        style = args.style or mediagen.make_image(folder / "style.png", (128, 128))
        clips: list[tuple[str, Path]] = []
        if args.motion != "none":
            width = args.size
            height = round(args.size * 2 / 3) // 2 * 2
            path = mediagen.make_video(
                folder / "generated.mp4",
                frames=args.frames,
                size=(width, height),
                motion=args.motion,
                pan_px=args.pan_px,
                audio=False,
            )
            clips.append((f"generated {args.motion} ({args.pan_px} px/frame)", path))
        clips += [(str(path), path) for path in args.clip]
        for label, path in clips:
            images = decode(path, args.size, args.frames)
            at = [int(i) for i in args.retention_at.split(",") if 0 < int(i) < len(images)]
            result = bench_clip(
                label, images, style, base, device, args.temporal_weight, args.repeats, at
            )
            print_table(result)
            results.append(result)

    machine = {
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    report = {
        "benchmark": "temporal",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "features": "pretrained" if args.vgg_weights else args.features,
            "vgg_weights": args.vgg_weights,
            "first_iterations": args.first_iterations,
            "iterations": args.iterations,
            "temporal_weight": args.temporal_weight,
            "smooth": args.smooth,
            "flow_preset": args.flow_preset,
            "size": args.size,
            "frames": args.frames,
            "style": str(args.style) if args.style else "generated",
        },
        "clips": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nmachine: {machine}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
