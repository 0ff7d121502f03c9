"""Benchmark: does quality mode stay painted along a moving shot?

Renders a clip the way a render does (flow stage → quality stylizer → smoothing) with a preset's
settings, and renders the sampled frames (default 15, 30, 45, 60) and the frame before each
fresh: alone, cold, with the frame-1 budget and the same settings. For each variant it prints:

- retention at every sampled frame (`vidstyle.metrics.retention`): the coherent frame's detail
  and style distance as ratios to the fresh frame's (targets: detail ≥ 0.9, style ≤ 1.1);
- E_warp of the coherent render (all pairs) and, on the sampled pairs (the frame before and
  the frame), against the independent frames (target ≤ 0.3x);
- the trail ratio against the independent frames at the sampled frames (target ≤ 1.2);
- iterations and seconds per frame (CPU time too: it does not grow with other load).

The independent frames are the fresh ones: a frame rendered alone is exactly what an
independent render of it is, so the same renders serve retention, E_warp and the trail ratio.

    python bench/make_moving_clip.py -o moving.mp4
    python bench/retention.py moving.mp4 --style samples/style.png --vgg-weights vgg16.pth \\
        --size 192

Variants (`--variant`, repeatable) are the product's rule ("default") and rules it was
compared with, switched on inside this script only; docs/quality.md has the tables. Writes
JSON to bench/results/retention.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from temporal import decode, render, to_records  # noqa: E402

from vidstyle.config import resolve_settings  # noqa: E402
from vidstyle.device import cpu_model, resolve_device  # noqa: E402
from vidstyle.frame import FrameRecord  # noqa: E402
from vidstyle.media import image_to_tensor, tensor_to_image  # noqa: E402
from vidstyle.metrics import (  # noqa: E402
    StyleDistance,
    TrailRatio,
    WarpingError,
    detail,
    pair_warping_error,
    retention,
)
from vidstyle.render.pipeline import build_loss, flow_stage, quality_config  # noqa: E402
from vidstyle.stylize import quality  # noqa: E402
from vidstyle.stylize.losses import loss_network_precision  # noqa: E402
from vidstyle.stylize.style_image import load_style_image, style_tensor  # noqa: E402
from vidstyle.temporal import TemporalSmoother, flow  # noqa: E402
from vidstyle.temporal.flow import FlowEstimator  # noqa: E402


@contextlib.contextmanager
def patched(module: Any, name: str, value: Any) -> Iterator[None]:
    """`module.name` set to `value` for the duration (a rule the product does not use)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


@contextlib.contextmanager
def all_of(*contexts: contextlib.AbstractContextManager[None]) -> Iterator[None]:
    """Every one of `contexts` entered, for a variant that switches several rules."""
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        yield


def affine_palette_start(
    content: torch.Tensor, carried: torch.Tensor, reliable: torch.Tensor
) -> torch.Tensor:
    """The start for entering pixels the product used before its shot palette: `content`
    recoloured by the affine colour map (3×3 and offset, least squares) that best takes it to
    the carried painting on reliable pixels; `content` where too few are reliable."""
    keep = reliable.flatten() > 0.5
    if int(keep.sum()) < 64:
        return content
    source = content.flatten(2)[0].T  # (H·W)×3
    target = carried.flatten(2)[0].T
    design = torch.cat((source, torch.ones_like(source[:, :1])), dim=1)  # (H·W)×4
    a = design[keep]
    gram = a.T @ a + 1e-3 * torch.eye(4, dtype=a.dtype, device=a.device)
    mapping = torch.linalg.solve(gram, a.T @ target[keep])  # 4×3
    return (design @ mapping).T.reshape(content.shape).clamp(0.0, 1.0)


PLAIN_INITIAL_IMAGE = quality.QualityStylizer.initial_image


def with_start(
    start: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A variant whose warm frames start entering pixels from `start(content, carried,
    reliable)` instead of the product's shot palette."""

    def initial_image(self: Any, record: Any, previous: Any, target: Any = None) -> Any:
        if previous is None or record.new_shot or self.config.init != "warped":
            return PLAIN_INITIAL_IMAGE(self, record, previous, target)
        warped, reliable = target or self.temporal_target(record, previous)
        return torch.lerp(start(record.content, warped, reliable), warped, reliable), True

    return lambda: patched(quality.QualityStylizer, "initial_image", initial_image)


def histogram_start(
    content: torch.Tensor, carried: torch.Tensor, reliable: torch.Tensor
) -> torch.Tensor:
    """A start for entering pixels compared with the product's palette start: the photo's new
    pixels histogram-matched, channel by channel, to the carried painting's reliable ones."""
    start = affine_palette_start(content, carried, reliable).clone()
    keep = reliable.flatten() > 0.5
    new = ~keep
    if int(keep.sum()) < 64 or not bool(new.any()):
        return start
    flat = start.view(3, -1)
    for channel in range(3):
        source = content[0, channel].flatten()[new]
        reference, _ = torch.sort(carried[0, channel].flatten()[keep])
        quantile = (torch.argsort(torch.argsort(source)).float() + 0.5) / source.numel()
        at = (quantile * reference.numel()).long().clamp(max=reference.numel() - 1)
        flat[channel, new] = reference[at]
    return start


# Rules compared with the product's ("default"): each a context that switches a rule the
# product no longer uses on for one render, and the settings it changes.
VARIANTS: dict[str, tuple[Callable[[], contextlib.AbstractContextManager[None]], dict]] = {
    "default": (contextlib.nullcontext, {}),
    # The rule before moving shots were measured: a strong temporal term, new pixels taking
    # three times larger steps to make up for the stiffness it gives carried ones, and 12
    # iterations for later frames; no style term of their own, their start in the carried
    # painting's affine palette, OpenCV's own flow smoothness.
    "before": (
        lambda: all_of(
            patched(quality, "NEW_PIXEL_STEP", 3.0),
            patched(quality, "NEW_PIXEL_STYLE_WEIGHT", 0.0),
            with_start(affine_palette_start)(),
            patched(flow, "FLOW_SMOOTHNESS", 20.0),
        ),
        {"temporal_weight": 50.0, "iterations": 12},
    ),
    "new-pixel-step-3": (lambda: patched(quality, "NEW_PIXEL_STEP", 3.0), {}),
    "temporal-weight-50": (contextlib.nullcontext, {"temporal_weight": 50.0}),
    "no-temporal-loss": (contextlib.nullcontext, {"temporal_weight": 0.0}),
    "no-smoothing": (contextlib.nullcontext, {"smooth": 0.0}),
    # Every warm frame's L-BFGS starting with an empty memory, as before the memory was carried.
    "no-curvature-memory": (lambda: patched(quality, "CARRIED_PAIRS", 0), {}),
    # Entering pixels started in the painting's colour distribution, not its affine palette.
    "histogram-start": (with_start(histogram_start), {}),
    # Entering pixels started from the photo mapped affinely to the carried painting's colours.
    "affine-palette-start": (with_start(affine_palette_start), {}),
    # New pixels anchored by the temporal term over 8 frames instead of SETTLE_FRAMES.
    "settle-8": (lambda: patched(quality, "SETTLE_FRAMES", 8), {}),
    # DIS's variational refinement at OpenCV's own smoothness (the product's before).
    "flow-smoothness-20": (lambda: patched(flow, "FLOW_SMOOTHNESS", 20.0), {}),
    # No second style term for new and settling pixels (the product before it had one), and
    # that term at a half and a quarter of its weight.
    "no-new-pixel-style": (lambda: patched(quality, "NEW_PIXEL_STYLE_WEIGHT", 0.0), {}),
    "new-pixel-style-0.5": (lambda: patched(quality, "NEW_PIXEL_STYLE_WEIGHT", 0.5), {}),
    "new-pixel-style-0.25": (lambda: patched(quality, "NEW_PIXEL_STYLE_WEIGHT", 0.25), {}),
    # That term over every style layer, the deep ones too (the product reads blocks 1-3).
    "new-pixel-style-all-layers": (lambda: patched(quality, "NEW_PIXEL_STYLE_BLOCKS", None), {}),
    # A longer carried memory: all the pairs L-BFGS keeps (about two and a half warm frames').
    "curvature-memory-50": (lambda: patched(quality, "CARRIED_PAIRS", 50), {}),
}


def fresh_render(
    images: list[np.ndarray], index: int, loss: Any, settings: Any, device: torch.device
) -> torch.Tensor:
    """Frame `index` rendered alone: a new shot, cold start, the frame-1 budget."""
    stylizer = quality.QualityStylizer(loss, quality_config(settings))
    record = FrameRecord(index=index, pts=index, content=image_to_tensor(images[index], device))
    (result,) = list(stylizer(iter([record])))
    assert result.styled is not None
    return result.styled


def sampled_warping_error(
    images: list[np.ndarray], pairs: list[tuple[np.ndarray, np.ndarray, int]], preset: str
) -> float:
    """Mean E_warp over (frame before, frame, index) pairs of a render, along the source's flow."""
    estimator = FlowEstimator(preset)
    errors = []
    for before, frame, index in pairs:
        flow, mask = estimator.flow_and_mask(images[index - 1], images[index])
        errors.append(pair_warping_error(before, frame, flow, mask))
    return float(np.mean(errors))


def bench_variant(
    name: str,
    images: list[np.ndarray],
    loss: Any,
    distance: StyleDistance,
    settings: Any,
    device: torch.device,
    samples: list[int],
    fresh: dict[int, torch.Tensor],
    also_smooth: list[float],
) -> list[dict[str, Any]]:
    print(f"  {name} ...", file=sys.stderr, flush=True)
    context, changes = VARIANTS[name]
    with context():
        run = render(name, images, loss, settings.replace(**changes), device)
    rows = [measure_run(name, run, run.smoothed, images, distance, settings, samples, fresh)]
    for strength in also_smooth:
        # The same stylized frames smoothed at another strength: smoothing runs after the
        # stylizer and does not feed back into it, so no second render is needed.
        frames = resmooth(run.styled, images, settings, device, strength)
        label = f"{name}, smooth {strength:g}"
        rows.append(measure_run(label, run, frames, images, distance, settings, samples, fresh))
    return rows


def resmooth(
    styled: list[torch.Tensor],
    images: list[np.ndarray],
    settings: Any,
    device: torch.device,
    strength: float,
) -> list[torch.Tensor]:
    """`styled` (a render's frames before smoothing) through the smoothing stage at `strength`."""
    with_styled = (
        dataclasses.replace(record, styled=styled[record.index])
        for record in flow_stage(settings, device)(to_records(images, device))
    )
    return [r.styled for r in TemporalSmoother(strength)(with_styled) if r.styled is not None]


def measure_run(
    name: str,
    run: Any,
    frames: list[torch.Tensor],
    images: list[np.ndarray],
    distance: StyleDistance,
    settings: Any,
    samples: list[int],
    fresh: dict[int, torch.Tensor],
) -> dict[str, Any]:
    """One table row: `frames` (what a render encodes) of `run` against the fresh frames."""
    uint8 = [tensor_to_image(f) for f in frames]
    meter = WarpingError(1, preset=settings.flow_preset)
    for original, frame in zip(images, uint8, strict=True):
        meter.add(original, frame)
    trail = TrailRatio()
    for index, mask in enumerate(run.reliable):
        if index in fresh:
            trail.add(mask, uint8[index], tensor_to_image(fresh[index]))
        else:
            trail.sweep(mask)
    pairs = [(uint8[i - 1], uint8[i], i) for i in samples]
    return {
        "variant": name,
        "iterations_per_frame": run.iterations_per_frame,
        "seconds_per_frame": run.seconds_per_frame,
        "cpu_seconds_per_frame": run.cpu_seconds_per_frame,
        "e_warp": meter.values()[1],
        "e_warp_sampled": sampled_warping_error(images, pairs, settings.flow_preset),
        "trail_ratio": trail.value(),
        "retention": [retention(i, frames[i], fresh[i], distance).__dict__ for i in samples],
        # The stylizer's own frames, before smoothing: which of the two stages loses paint.
        "retention_before_smoothing": [
            retention(i, run.styled[i], fresh[i], distance).__dict__ for i in samples
        ],
        # Every frame's detail over its source frame's: where along the shot a fade starts.
        "detail_vs_source": [
            round(detail(frame) / max(detail(source), 1e-6), 3)
            for frame, source in zip(uint8, images, strict=True)
        ],
        "frames": frames,
    }


def save_grid(
    path: Path,
    images: list[np.ndarray],
    fresh: dict[int, torch.Tensor],
    results: list[dict[str, Any]],
    shown: list[int],
) -> None:
    """Rows: source, fresh (where rendered), then each variant; columns: the `shown` frames."""
    from PIL import Image  # noqa: PLC0415

    height, width = images[0].shape[:2]
    blank = np.full((height, width, 3), 255, np.uint8)
    rows = [[images[i] for i in shown]]
    rows.append([tensor_to_image(fresh[i]) if i in fresh else blank for i in shown])
    rows += [[tensor_to_image(r["frames"][i]) for i in shown] for r in results]
    gap = 4
    grid = np.full(
        (len(rows) * (height + gap) - gap, len(shown) * (width + gap) - gap, 3), 255, np.uint8
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + gap), c * (width + gap)
            grid[y : y + height, x : x + width] = image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def print_table(results: list[dict[str, Any]], independent_e_warp: float, samples: list[int]):
    head = " ".join(f"{f'f{i} detail/style':>17}" for i in samples)
    header = (
        f"{'variant':<22} {'iter/frame':>10} {'s/frame':>8} {'CPU s':>6} {'E_warp':>9} "
        f"{'vs indep':>8} {'trail':>6} {head}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        cells = " ".join(
            format("{:.2f} / {:.2f}".format(x["detail_ratio"], x["style_ratio"]), ">17")
            for x in r["retention"]
        )
        trail = "-" if r["trail_ratio"] is None else f"{r['trail_ratio']:.2f}"
        print(
            f"{r['variant']:<22} {r['iterations_per_frame']:>10.1f} "
            f"{r['seconds_per_frame']:>8.2f} {r['cpu_seconds_per_frame']:>6.2f} "
            f"{r['e_warp']:>9.2e} {r['e_warp_sampled'] / independent_e_warp:>7.2f}x "
            f"{trail:>6} {cells}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--vgg-weights", help="VGG checkpoint (e.g. a pretrained VGG-16)")
    parser.add_argument("--preset", default="quality")
    parser.add_argument("--size", type=int, help="long side (default: the preset's)")
    parser.add_argument("--iterations", type=int, help="later frames' budget (the preset's)")
    parser.add_argument("--frames", type=int, default=72)
    parser.add_argument("--samples", default="15,30,45,60", help="frames to measure retention at")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument(
        "--also-smooth",
        help="other smoothing strengths (e.g. 0.25,0) to measure each variant's frames at too",
    )
    parser.add_argument("--grid", type=Path, help="PNG: source / fresh / each variant")
    parser.add_argument("--grid-frames", default="0,15,30,45,60")
    parser.add_argument(
        "--fresh-cache",
        type=Path,
        help="file keeping the fresh frames between runs of the same clip and settings",
    )
    parser.add_argument(
        "--fresh-only", action="store_true", help="render the fresh frames into the cache only"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "auto", "bf16", "fp16"],
        help="the loss network's precision, as a render's --precision (default: fp32)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "retention.json")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    overrides: dict[str, Any] = {
        "size": args.size,
        "device": args.device,
        "iterations": args.iterations,
        "precision": args.precision,
    }
    if args.vgg_weights:
        overrides.update(features="pretrained", vgg_weights=args.vgg_weights)
    settings = resolve_settings(args.preset, overrides=overrides)
    samples = [int(s) for s in args.samples.split(",")]
    images = decode(args.clip, settings.size, args.frames)
    if max(samples) >= len(images) or min(samples) < 1:
        parser.error(f"--samples must lie in 1..{len(images) - 1}")
    height, width = images[0].shape[:2]
    loss = build_loss(settings, device)
    precision = loss_network_precision(loss, settings.precision, device, (width, height))
    print(f"loss network precision: {precision.name}", file=sys.stderr)
    style = style_tensor(
        load_style_image(args.style), (width, height), settings.style_scale, device
    )
    loss.set_style([style])
    distance = StyleDistance(loss, [style])

    # What the fresh frames depend on: a cache made for another clip or other settings is
    # refused rather than compared with.
    cold = dataclasses.replace(settings, iterations=0, temporal_weight=0.0, smooth=0.0)
    fresh_key = f"{args.clip.resolve()} | {args.style.resolve()} | {cold}"
    fresh: dict[int, torch.Tensor] = {}
    if args.fresh_cache and args.fresh_cache.exists():
        cached = torch.load(args.fresh_cache)
        if cached.get("key") != fresh_key:
            parser.error(f"--fresh-cache {args.fresh_cache} was made for another clip or settings")
        fresh = cached["frames"]
    rendered, started = 0, time.perf_counter()
    for index in sorted({i for s in samples for i in (s - 1, s)} - set(fresh)):
        print(f"  fresh frame {index} ...", file=sys.stderr, flush=True)
        fresh[index] = fresh_render(images, index, loss, settings, device)
        rendered += 1
    if rendered:
        print(
            f"fresh frames: {(time.perf_counter() - started) / rendered:.1f} s a frame",
            file=sys.stderr,
        )
    if args.fresh_cache:
        torch.save({"key": fresh_key, "frames": fresh}, args.fresh_cache)
    if args.fresh_only:
        return 0
    independent = sampled_warping_error(
        images,
        [(tensor_to_image(fresh[i - 1]), tensor_to_image(fresh[i]), i) for i in samples],
        settings.flow_preset,
    )
    also_smooth = [float(v) for v in args.also_smooth.split(",")] if args.also_smooth else []
    results = [
        row
        for name in args.variant or ["default"]
        for row in bench_variant(
            name, images, loss, distance, settings, device, samples, fresh, also_smooth
        )
    ]
    print(f"\n## {args.clip}: {width}x{height}, {len(images)} frames, preset {args.preset}")
    print(f"independent frames: E_warp {independent:.2e} on the sampled pairs")
    print_table(results, independent, samples)
    if args.grid:
        shown = [int(s) for s in args.grid_frames.split(",")]
        save_grid(args.grid, images, fresh, results, shown)
        print(f"wrote {args.grid}")

    machine = {
        "device": str(device),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()),
        "loss network precision": precision.describe(),
    }
    report = {
        "benchmark": "retention",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "clip": str(args.clip),
        "settings": dataclasses.asdict(settings),
        "independent_e_warp_sampled": independent,
        "results": [{k: v for k, v in r.items() if k != "frames"} for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"machine: {machine}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
