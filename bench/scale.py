"""Scale-out benchmark: a batch of clips on a local Ray cluster with 1, 2 and 4 workers, beside
the same batch with `--jobs` worker processes, and the per-task overhead of Ray.

For each worker count N, a Ray head is started on 127.0.0.1 with N CPU slots (`ray start
--head --num-cpus N`), and `vidstyle <folder> -o <out> --cluster <head> --threads 1` renders
the batch (N tasks at a time, one torch thread each); then `vidstyle <folder> -o <out> --jobs N`
renders it in N local worker processes (`--threads 1` for both). Each is a fresh
`vidstyle` process, timed from start to exit, so process start, model loading and the join are
in the figures, as a user sees them. Both renders give the same files; the script checks that.

The per-task overhead is (Ray's wall time - `--jobs`'s wall time) / clips, at the same N: what
submitting, scheduling, starting a Ray worker and relaying progress cost per render, beyond
what a local worker process costs.

Renders use fast mode with a seeded random-init `--arch small` network (`--mode quality`: quality
mode, random features, few iterations), so the figures are about scheduling, not the network.
Prints a Markdown table and writes bench/results/scale-<mode>.json.

    python bench/scale.py
    python bench/scale.py --clips 4 --frames 48 --size 96 --workers 1 2 4 --mode fast
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the generated media and the local Ray head

import av  # noqa: E402
import mediagen  # noqa: E402
import numpy as np  # noqa: E402
from raycluster import local_head  # noqa: E402


def make_inputs(folder: Path, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The clips, and the render options every run shares."""
    clips = folder / "clips"
    clips.mkdir()
    for i in range(args.clips):
        mediagen.make_video(clips / f"clip{i}.mp4", frames=args.frames, size=(160, 90), seed=i)
    # One thread per render either way: the same work, and (quality mode) the same pixels.
    common = ["--size", str(args.size), "--device", "cpu", "--threads", "1"]
    common += ["--encoder-preset", "ultrafast", "-q"]
    if args.mode == "fast":
        import torch

        from vidstyle.nets.models import save_model
        from vidstyle.nets.transformer import TransformerNet

        torch.manual_seed(0)
        model = folder / "small.pth"
        save_model(model, TransformerNet("small"), style="random", training={})
        return clips, [*common, "--model", str(model), "--smooth", "0.5"]
    mediagen.make_image(folder / "style.png", (64, 64), seed=1)
    quality = ["--features", "random", "--first-iterations", "4", "--iterations", "2"]
    return clips, [*common, "-s", str(folder / "style.png"), *quality]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def frames_of(folder: Path) -> dict[str, list[np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("*.mp4")):
        with av.open(str(path)) as container:
            out[path.name] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return out


def same_outputs(a: Path, b: Path) -> bool:
    fa, fb = frames_of(a), frames_of(b)
    return fa.keys() == fb.keys() and all(
        len(fa[k]) == len(fb[k])
        and all(np.array_equal(x, y) for x, y in zip(fa[k], fb[k], strict=True))
        for k in fa
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--mode", choices=("fast", "quality"), default="fast")
    args = parser.parse_args()
    vidstyle = [sys.executable, "-m", "vidstyle"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips, common = make_inputs(folder, args)
        for workers in args.workers:
            ray_out, jobs_out = folder / f"ray{workers}", folder / f"jobs{workers}"
            with local_head(workers, folder / f"head{workers}.log") as address:
                ray_s = timed(
                    [*vidstyle, str(clips), "-o", str(ray_out), *common] + ["--cluster", address]
                )
            jobs_s = timed(
                [*vidstyle, str(clips), "-o", str(jobs_out), *common] + ["--jobs", str(workers)]
            )
            rows.append(
                {
                    "workers": workers,
                    "ray_s": ray_s,
                    "jobs_s": jobs_s,
                    "overhead_per_task_s": (ray_s - jobs_s) / args.clips,
                    "same_files": same_outputs(ray_out, jobs_out),
                }
            )
            print(f"workers {workers}: ray {ray_s:.1f} s, --jobs {jobs_s:.1f} s", file=sys.stderr)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    print(
        f"\n{args.clips} clips x {args.frames} frames, {args.mode} mode, --size {args.size}; "
        f"{machine}\n"
    )
    print("| workers | Ray wall (s) | --jobs wall (s) | Ray overhead per task (s) | same files |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['workers']} | {row['ray_s']:.1f} | {row['jobs_s']:.1f} | "
            f"{row['overhead_per_task_s']:+.2f} | {'yes' if row['same_files'] else 'NO'} |"
        )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    report = {"args": vars(args), "machine": machine, "rows": rows}
    (results / f"scale-{args.mode}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
