"""`vidstyle train` in fp32 against bf16: seconds per step, and whether the two networks render
alike.

1. Step time: `--step-rounds` rounds of `--step-count` training steps in each precision,
   alternating (fp32 first in odd rounds, last in even ones), through `vidstyle.stylize.train`
   itself (the model written to a scratch folder); the median wall and CPU seconds per step
   of each precision (the first step of a run, which carries the warm-up, is left out).
   `--threads 1` measures the arithmetic on a machine other work keeps busy: with a torch
   thread per core, every operation waits for whichever of its threads the OS put aside.
2. The renders: two networks trained on the same data with the same steps and seed, one per
   precision, then both rendered in fp32 (fast mode, so only the training precision differs)
   on the clip's first `--frames` frames: mean and largest pixel difference, the loss each
   reached, and `--grid` saves a PNG (source, fp32-trained, bf16-trained, difference x4).
   Two trainings drift apart from any difference in the last bits, so `--control` also trains
   the fp32 network from initial weights one unit in the last place away: the difference
   rounding alone makes, to read the bf16 one against.

    python bench/train_precision.py --vgg-weights vgg16.pth --data samples/clip.mp4 \
        --style samples/style.png --size 128 --steps 150 --grid docs/images/train-bf16.png \
        --control
    python bench/train_precision.py --vgg-weights vgg16.pth --threads 1 --no-models

Prints a Markdown table with the load average; writes bench/results/train_precision.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from precision import cpu_flags, grid  # noqa: E402

from vidstyle.config import TrainSettings  # noqa: E402
from vidstyle.device import cpu_model  # noqa: E402
from vidstyle.frame import FrameRecord  # noqa: E402
from vidstyle.media import image_to_tensor, probe, read_frames, tensor_to_image  # noqa: E402
from vidstyle.nets.models import load_model  # noqa: E402
from vidstyle.nets.transformer import TransformerNet  # noqa: E402
from vidstyle.stylize import train as train_module  # noqa: E402
from vidstyle.stylize.feedforward import FeedForwardStylizer, InferenceOptions  # noqa: E402
from vidstyle.stylize.train import StepReport, train  # noqa: E402

NAMES = ("fp32", "bf16")
CONTROL = "fp32-1ulp"


def settings_for(args: argparse.Namespace, precision: str, steps: int) -> TrainSettings:
    return TrainSettings(
        arch=args.arch,
        size=args.size,
        batch_size=args.batch_size,
        steps=steps,
        checkpoint_every=0,
        device="cpu",
        precision=precision,
        features="pretrained" if args.vgg_weights else "random",
        vgg_weights=str(args.vgg_weights) if args.vgg_weights else None,
        frames_per_video=args.frames_per_video,
    )


def step_times(
    args: argparse.Namespace, folder: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[float]]:
    """Median wall and CPU seconds per step of each run, by precision, and the load average
    at the start of each run. CPU time is the process's between two steps' reports (the data
    thread's share is small); it moves less than wall time with other work on the machine,
    except that waiting OpenMP threads spin, so it too grows with load when threads > 1."""
    times: dict[str, list[float]] = {name: [] for name in NAMES}
    cpu: dict[str, list[float]] = {name: [] for name in NAMES}
    loads = []
    for round_ in range(args.step_rounds):
        for name in NAMES if round_ % 2 == 0 else NAMES[::-1]:
            loads.append(os.getloadavg()[0])
            reports: list[StepReport] = []
            cpu_marks: list[float] = []

            def record(report: StepReport, reports=reports, cpu_marks=cpu_marks) -> None:
                reports.append(report)
                cpu_marks.append(time.process_time())

            out = folder / f"step-{name}-{round_}.pth"
            train(
                args.style,
                args.data,
                out,
                settings_for(args, name, args.step_count),
                restart=True,
                on_step=record,
            )
            # The first step carries the warm-up: left out of both.
            per_step = statistics.median(r.seconds for r in reports[1:])
            cpu_step = statistics.median(b - a for a, b in itertools.pairwise(cpu_marks))
            times[name].append(per_step)
            cpu[name].append(cpu_step)
            print(
                f"  round {round_ + 1} {name}: {per_step:.3f} s/step, CPU {cpu_step:.3f} s, "
                f"load {loads[-1]:.1f}",
                file=sys.stderr,
            )
    return times, cpu, loads


def render(model: Path, records: list[FrameRecord]) -> list[np.ndarray]:
    net, _ = load_model(model, torch.device("cpu"))
    stage = FeedForwardStylizer(net, InferenceOptions(batch_size=4))  # fp32 inference
    return [tensor_to_image(r.styled) for r in stage(iter(records))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=[ROOT / "samples" / "clip.mp4"])
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "style.png")
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "clip.mp4")
    parser.add_argument("--arch", default="small")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames-per-video", type=int, default=24)
    parser.add_argument("--steps", type=int, default=150, help="steps of each compared network")
    parser.add_argument("--step-count", type=int, default=6, help="steps per timing run")
    parser.add_argument("--step-rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--vgg-weights", type=Path)
    parser.add_argument("--grid", type=Path)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's, one per core); on a machine other work keeps "
        "busy, fewer threads than cores avoid waiting at every operation for a thread the OS "
        "has put aside",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="also train fp32 from initial weights one unit in the last place away: how far "
        "two runs drift apart from rounding alone",
    )
    parser.add_argument(
        "--no-models", action="store_true", help="time the steps only; train and render nothing"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "train_precision.json"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        times, cpu, loads = step_times(args, folder)
        models = None if args.no_models else compare_models(args, folder)
    median = {name: statistics.median(values) for name, values in times.items()}
    speedup = median["fp32"] / median["bf16"]
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    cpu_speedup = median_cpu["fp32"] / median_cpu["bf16"]
    report = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "s_per_step": times,
        "median_s_per_step": median,
        "speedup": speedup,
        "speedup_per_round": [f / b for f, b in zip(times["fp32"], times["bf16"], strict=True)],
        "cpu_s_per_step": cpu,
        "median_cpu_s_per_step": median_cpu,
        "cpu_speedup": cpu_speedup,
        "load_average": [min(loads), max(loads)],
        **(models or {}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    rounds = ", ".join(f"{r:.2f}" for r in report["speedup_per_round"])
    print(
        f"{report['cpu']} ({report['cpu_flags']}), {report['threads']} threads; {args.arch} "
        f"network, {args.batch_size} crops of {args.size} px, load {min(loads):.1f}-"
        f"{max(loads):.1f}\n\n"
        "| | fp32 | bf16 |\n|---|---:|---:|\n"
        f"| s/step (median of {args.step_rounds} runs) | {median['fp32']:.3f} | "
        f"{median['bf16']:.3f} ({speedup:.2f}x; per round {rounds}) |\n"
        f"| CPU s/step (median) | {median_cpu['fp32']:.3f} | {median_cpu['bf16']:.3f} "
        f"({cpu_speedup:.2f}x) |"
    )
    if models is None:
        return
    losses = models["final_losses"]
    print(
        f"| loss after {args.steps} steps | {losses['fp32']['loss']:.4g} | "
        f"{losses['bf16']['loss']:.4g} |\n"
    )
    for name in models["render_diff_mean_grey_levels"]:
        what = "the bf16-trained" if name == "bf16" else "the fp32 network 1 ulp away at start"
        print(
            f"renders (fp32 inference) of the fp32-trained network and {what} differ by "
            f"{models['render_diff_mean_grey_levels'][name]:.2f} grey levels on average, "
            f"{models['render_diff_max_grey_levels'][name]} at most"
            + (f" (its loss {losses[name]['loss']:.4g})" if name == CONTROL else "")
        )


class _NudgedNet(TransformerNet):
    """The network `train` builds, every initial weight moved by one unit in the last place: a
    float32 run that differs from the fp32 one by rounding alone, to show how far two runs
    drift apart from any difference in the last bits."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.nextafter(p, torch.full_like(p, math.inf)))


def train_model(args: argparse.Namespace, folder: Path, name: str) -> tuple[Path, dict]:
    precision = "bf16" if name == "bf16" else "fp32"
    nudged = name == CONTROL
    with mock.patch.object(train_module, "TransformerNet", _NudgedNet) if nudged else _nothing():
        result = train(
            args.style,
            args.data,
            folder / f"{name}.pth",
            settings_for(args, precision, args.steps),
            restart=True,
        )
    return result.model, result.losses


def compare_models(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    """Train a network in each precision (same data, steps and seed), render the clip's first
    frames with both in fp32, and compare; `--control` also trains the fp32 network from
    initial weights one unit in the last place away; `--grid` saves the pictures."""
    names = (*NAMES, CONTROL) if args.control else NAMES
    models, losses = {}, {}
    for name in names:
        models[name], losses[name] = train_model(args, folder, name)
    info = probe(args.clip)
    records = [
        FrameRecord(f.index, f.pts, image_to_tensor(f.image, torch.device("cpu")))
        for f in read_frames(info, max_frames=args.frames)
    ]
    outputs = {name: render(models[name], records) for name in names}
    source = [tensor_to_image(r.content) for r in records]
    diffs = {name: _diff(outputs["fp32"], outputs[name]) for name in names if name != "fp32"}
    if args.grid:
        rows = [source, outputs["fp32"], outputs["bf16"], _amplified(diffs["bf16"])]
        labels = ["source", "trained in fp32", "trained in bf16", "|fp32 - bf16| x4"]
        if args.control:
            rows += [outputs[CONTROL], _amplified(diffs[CONTROL])]
            labels += [
                "trained in fp32, initial weights 1 ulp away",
                "|fp32 - fp32 1 ulp away| x4",
            ]
        grid(rows, labels, args.grid)
    return {
        "final_losses": losses,
        "render_diff_mean_grey_levels": {
            name: float(np.mean([d.mean() for d in diff])) for name, diff in diffs.items()
        },
        "render_diff_max_grey_levels": {
            name: int(max(d.max() for d in diff)) for name, diff in diffs.items()
        },
    }


def _diff(a: list[np.ndarray], b: list[np.ndarray]) -> list[np.ndarray]:
    return [np.abs(x.astype(np.int16) - y.astype(np.int16)) for x, y in zip(a, b, strict=True)]


def _amplified(diff: list[np.ndarray]) -> list[np.ndarray]:
    return [np.clip(d * 4, 0, 255).astype(np.uint8) for d in diff]


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
