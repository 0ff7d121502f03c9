"""The benchmark scripts' own promises that hold on any machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


# The script in a fresh process (importing torch): the whole suite only.
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_gpu_bench_says_in_one_line_that_it_needs_cuda() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "CUDA" in lines[0] and "Traceback" not in done.stderr


def _gpu_bench() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "bench" / "gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gpu_report(**changes: object) -> dict:
    fast = {
        "size": "1920x1080",
        "precision": "fp16",
        "network_fps": 120.0,
        "end_to_end_fps": 41.0,
        "network_bytes_per_px": 600.0,
        "estimate_bytes_per_px": 780,
        "end_to_end_peak_gib": 5.1,
        "end_to_end_estimate_gib": 7.4,
    }
    layouts = [
        {"size": "1920x1080", "channels_last": cl, "autotune": tune, "network_fps": 100.0}
        for cl in ("on", "off")
        for tune in (False, True)
    ]
    quality = {
        "size": "1280x720",
        "features": "random",
        "first_iterations": 100,
        "iterations": 12,
        "frame_1_s": 3.0,
        "warm_frame_s": 0.4,
        "peak_gib": 3.0,
        "estimate_gib": 3.9,
    }
    machine = {"device": "GPU", "memory_gib": 80, "torch": "2", "cuda": "13", "cpus": 16}
    report = {
        "machine": machine,
        "batch_size": 4,
        "frames": 120,
        "repeats": 2,
        "errors": {},
        "fast": [fast],
        "layouts": layouts,
        "quality": quality,
        "lbfgs": [{"history": 10, "seconds": 2.5}, {"history": 50, "seconds": 2.75}],
        "tests": {"exit_code": 0, "summary": "9 passed", "failures": []},
        "seconds": 200.0,
    }
    report.update(changes)
    return report


def test_gpu_bench_passes_a_clean_run_and_names_what_failed_otherwise() -> None:
    bench = _gpu_bench()
    report = _gpu_report()
    assert bench.failures(report) == []
    text = bench.tables(report)
    assert "| 1920x1080 | fp16 | 120.0 | 41.0 | 600 / 780 | 5.10 / 7.40 |" in text
    assert "| 1920x1080 | off | 100.0 | 100.0 |" in text
    assert "goal fast 1080p >= 30 frames/s end to end: met" in text
    assert "history 10: 2.50 s, history 50: 2.75 s" in text

    over = dict(report["fast"][0], network_bytes_per_px=900.0)
    failed = _gpu_report(
        fast=[over],
        errors={"layouts": "RuntimeError: cuDNN error"},
        tests={"exit_code": 1, "summary": "1 failed, 8 passed", "failures": ["FAILED x"]},
    )
    problems = bench.failures(failed)
    assert len(problems) == 3
    assert "layouts did not run (RuntimeError: cuDNN error)" in problems
    assert "gpu tests: 1 failed, 8 passed" in problems
    assert "fast fp16 1920x1080 used 900 B/px, the memory check assumes 780" in problems
    # A part that did not run leaves its table out, not the others.
    del failed["layouts"]
    assert "autotuning" not in bench.tables(failed) and "quality mode" in bench.tables(failed)
