"""Progress displays as a user sees them: in a real terminal, and in a log file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from terminal import run_in_terminal

FRAME_ONE_ITERATIONS = ["--first-iterations", "20", "--iterations", "1"]


@pytest.fixture
def workdir(tmp_path: Path, clip: Path, style_image: Path) -> Path:
    shutil.copy(clip, tmp_path / "clip.mp4")
    shutil.copy(style_image, tmp_path / "style.png")
    return tmp_path


def test_render_bar_in_a_terminal(workdir: Path) -> None:
    args = ["clip.mp4", "-s", "style.png", "-o", "out.mp4", "--max-frames", "3"]
    args += ["--features", "random", "--size", "48", "--encoder-preset", "ultrafast"]
    run = run_in_terminal([*args, *FRAME_ONE_ITERATIONS], cwd=workdir)
    assert run.code == 0, run.plain
    screen = run.screen
    # The output path is a line of its own, the last one, below the bar.
    assert screen[-1] == "out.mp4"
    bar = screen[-2]
    assert bar.startswith("clip.mp4 ") and " 3/3 " in bar
    # The finished bar's frames/s is the one the render reports.
    done = re.search(r"3 frames in [\d.]+ s \(([\d.]+) frames/s\)", run.plain)
    assert done is not None, screen
    assert f" {done.group(1)} frames/s" in bar
    # During frame 1 (20 iterations) the bar already has a rate and an ETA.
    assert re.search(r"0/3 [\d.]+ frames/s ETA \d+:\d\d:\d\d", run.plain), run.plain[-1500:]
