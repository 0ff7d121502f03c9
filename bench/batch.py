"""Batch/resume benchmark: peak memory against clip length, and the time a kill costs.

1. Peak memory (RSS). The same render of a short and a long clip (default 100 and 1,000
   frames), each in a fresh `vidstyle` process; its peak resident set size comes from the
   kernel (`wait4`). The pipeline streams (bounded queues, one segment's encoder, stage state of
   one frame), so the ratio long/short should stay at most 1.1.

2. Time lost to a kill. The long clip is rendered once uninterrupted (time T). Then a render
   is killed with SIGKILL when it reaches a random frame (seeded), and the same command is run
   again; the killed run's time plus the re-run's, minus T, is the time the kill cost, and the
   frames the killed run had finished but not yet saved in a segment are the re-done frames
   (at most `--segment-frames`). The re-run's output is compared frame by frame with the
   uninterrupted one.

Renders use fast mode with a seeded random-init `--arch small` network (speed and memory do not
depend on the weights) on small generated clips, so the whole benchmark takes a few minutes on
a CPU; `--mode quality` runs quality mode with one iteration per frame instead (much slower).
Prints a Markdown table and writes bench/results/batch-<mode>.json.

    python bench/batch.py
    python bench/batch.py --frames 100 1000 --size 64 --segment-frames 120 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the generated-media factory the tests use

import av  # noqa: E402
import mediagen  # noqa: E402
import numpy as np  # noqa: E402


def render_args(args: argparse.Namespace, folder: Path, clip: Path, output: Path) -> list[str]:
    common = [
        "-o",
        str(output),
        "--overwrite",
        "--segment-frames",
        str(args.segment_frames),
        "--size",
        str(args.size),
        "--device",
        "cpu",
        "--encoder-preset",
        "ultrafast",
    ]
    if args.mode == "fast":
        return [str(clip), "--model", str(folder / "bench.pth"), *common]
    return [
        str(clip),
        "-s",
        str(folder / "style.png"),
        "--features",
        "random",
        "--first-iterations",
        "1",
        "--iterations",
        "1",
        "--flow-preset",
        "ultrafast",
        *common,
    ]


def peak_rss(command: list[str]) -> tuple[float, float]:
    """Run `command`; (seconds, peak RSS in MiB) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def counted_render(
    args: argparse.Namespace, folder: Path, clip: Path, output: Path, counter: Path
) -> list[str]:
    """A render in a child process that writes its frame count to `counter` as it goes."""
    return [
        sys.executable,
        __file__,
        "--child",
        str(counter),
        "--",
        *render_args(args, folder, clip, output),
        "-q",
    ]


def child(counter: Path, cli_args: list[str]) -> None:
    """`--child`: the real CLI, with every finished frame counted in a file."""
    from vidstyle.console import BatchProgress

    shown = BatchProgress.frame_done
    count = {"frames": 0}

    def counting(self: BatchProgress, event: Any, job: Any) -> None:
        count["frames"] += event.frames
        temp = counter.with_suffix(".tmp")
        temp.write_text(str(count["frames"]))
        os.replace(temp, counter)
        shown(self, event, job)

    BatchProgress.frame_done = counting  # type: ignore[method-assign]
    from vidstyle.cli import main

    main(cli_args)


def timed_render(
    command: list[str], counter: Path, stop_at: int | None = None
) -> tuple[float, float | None, int]:
    """Run a counted render; (seconds, seconds to its first finished frame, exit status).
    With `stop_at`, SIGKILL it once that many frames are finished."""
    started = time.perf_counter()
    first: float | None = None
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    while process.poll() is None:
        done = int(counter.read_text()) if counter.exists() else 0
        if done and first is None:
            first = time.perf_counter() - started
        if stop_at is not None and done >= stop_at:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.01)
    return time.perf_counter() - started, first, process.returncode


def kill_and_resume(args: argparse.Namespace, folder: Path, clip: Path, frames: int) -> dict:
    whole = folder / "whole.mp4"
    uninterrupted, startup, status = timed_render(
        counted_render(args, folder, clip, whole, folder / "c0"), folder / "c0"
    )
    assert status == 0 and startup is not None
    per_frame = (uninterrupted - startup) / max(1, frames - 1)

    rng = random.Random(args.seed)
    kill_at = rng.randint(frames // 5, frames * 4 // 5)
    out = folder / "out.mp4"
    killed_seconds, _, _ = timed_render(
        counted_render(args, folder, clip, out, folder / "c1"), folder / "c1", stop_at=kill_at
    )
    rendered = int((folder / "c1").read_text())
    state = folder / f".{out.name}.vidstyle-work" / "state.json"
    saved = (
        sum(s["frames"] for s in json.loads(state.read_text())["segments"])
        if (state.exists())
        else 0
    )

    rerun, rerun_first, status = timed_render(
        counted_render(args, folder, clip, out, folder / "c2"), folder / "c2"
    )
    assert status == 0 and rerun_first is not None
    a, b = frames_of(whole), frames_of(out)
    return {
        "frames": frames,
        "segment_frames": args.segment_frames,
        "uninterrupted_s": round(uninterrupted, 2),
        "startup_s": round(startup, 2),
        "seconds_per_frame": round(per_frame, 4),
        "killed_at_frame": rendered,
        "saved_at_kill": saved,
        "redone_frames": rendered - saved,
        "killed_run_s": round(killed_seconds, 2),
        "rerun_s": round(rerun, 2),
        # Wall-clock difference: noisy on a shared machine, hence the breakdown below.
        "time_lost_s": round(killed_seconds + rerun - uninterrupted, 2),
        # The re-run's start (process, model, decoding the finished frames) up to its first
        # new frame, and the re-done frames at the uninterrupted render's pace.
        "rerun_to_first_frame_s": round(rerun_first, 2),
        "redone_frames_s": round((rendered - saved) * per_frame, 2),
        "output_frames": len(b),
        "identical_to_uninterrupted": len(a) == len(b)
        and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)),
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("fast", "quality"), default="fast")
    parser.add_argument(
        "--frames", type=int, nargs=2, default=(100, 1000), metavar=("SHORT", "LONG")
    )
    parser.add_argument("--size", type=int, default=64, help="long side of the clips")
    parser.add_argument("--segment-frames", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1, help="chooses the kill frame")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from vidstyle.nets.models import save_model
    from vidstyle.nets.transformer import TransformerNet

    short, long = args.frames
    size = (args.size, args.size * 3 // 4 // 2 * 2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        save_model(folder / "bench.pth", TransformerNet("small"), style="random", training={})
        mediagen.make_image(folder / "style.png", (64, 64))
        memory = []
        for frames in (short, long):
            clip = mediagen.make_video(
                folder / f"clip{frames}.mp4", frames=frames, size=size, motion="object", pan_px=2
            )
            command = [
                sys.executable,
                "-m",
                "vidstyle",
                *render_args(args, folder, clip, folder / f"out{frames}.mp4"),
                "-q",
            ]
            seconds, rss = peak_rss(command)
            memory.append(
                {"frames": frames, "seconds": round(seconds, 2), "peak_rss_mib": round(rss, 1)}
            )
        ratio = memory[1]["peak_rss_mib"] / memory[0]["peak_rss_mib"]
        resume = kill_and_resume(args, folder, folder / f"clip{long}.mp4", long)

    result = {
        "mode": args.mode,
        "size": list(size),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "memory": memory,
        "rss_ratio": round(ratio, 3),
        "rss_target": 1.1,
        "resume": resume,
    }
    print(
        f"vidstyle batch benchmark: {args.mode} mode, {size[0]}x{size[1]} clips, CPU "
        f"({os.cpu_count()} cores, shared)\n"
    )
    print("| clip | render (s) | peak RSS (MiB) |")
    print("|---:|---:|---:|")
    for row in memory:
        print(f"| {row['frames']} frames | {row['seconds']} | {row['peak_rss_mib']} |")
    print(f"\nRSS ratio {long}/{short} frames: {ratio:.3f} (target ≤ 1.1)\n")
    r = resume
    print(
        "| kill at frame | saved | re-done frames | uninterrupted (s) | killed + re-run (s) "
        "| lost, wall (s) | re-run start (s) | re-done (s) | identical |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    print(
        f"| {r['killed_at_frame']} of {r['frames']} | {r['saved_at_kill']} | "
        f"{r['redone_frames']} | {r['uninterrupted_s']} | "
        f"{r['killed_run_s']} + {r['rerun_s']} | {r['time_lost_s']} | "
        f"{r['rerun_to_first_frame_s']} | {r['redone_frames_s']} | "
        f"{'yes' if r['identical_to_uninterrupted'] else 'NO'} |"
    )
    print(
        f"\n(uninterrupted: {r['startup_s']} s to the first frame, then "
        f"{r['seconds_per_frame']} s/frame)"
    )
    out = args.out or ROOT / "bench" / "results" / f"batch-{args.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
