"""The benchmark scripts' own promises that hold on any machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


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
