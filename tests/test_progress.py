"""Progress displays as a user sees them: in a real terminal, and in a log file."""

from __future__ import annotations

import re
from pathlib import Path

import mediagen
import pytest
from clitools import run
from terminal import run_in_terminal

# Frame 1 long enough (no early stop) for the display to refresh during it on a fast machine.
FRAME_ONE_ITERATIONS = ["--first-iterations", "150", "--iterations", "1", "--stop-tolerance", "0"]


# A render in a fresh process on a pseudo-terminal, with a long first frame: the whole suite
# only. The quick set checks the progress lines written to a log file (tests/test_cli.py).
@pytest.mark.slow
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
    # During frame 1 (150 iterations) the bar already has a rate and an ETA.
    assert re.search(r"0/3 [\d.]+ frames/s ETA \d+:\d\d:\d\d", run.plain), run.plain[-1500:]


def test_training_progress_in_a_log_file_is_whole_lines_and_ends_before_wrote(
    tmp_path: Path,
    clip: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Captured stderr is not a terminal, as with `2> train.log`; a long style name makes the
    # progress row wider than 80 columns.
    monkeypatch.setattr("vidstyle.console.PLAIN_PROGRESS_INTERVAL_S", 0.0)
    style = mediagen.make_image(tmp_path / "a_rather_long_style_image_name.png", (48, 48))
    out = tmp_path / "model.pth"
    args = ["train", "-s", style, "--data", clip, "-o", out, "--frames-per-video", "4"]
    args += ["--arch", "small", "--size", "32", "--batch-size", "1", "--steps", "3"]
    assert run([*args, "--features", "random", "--checkpoint-every", "0"]) == 0
    lines = capsys.readouterr().err.splitlines()
    rows = [line for line in lines if " a_rather_long_style_image_name " in line]
    assert rows, lines
    for row in rows:  # every field whole: steps, elapsed, ETA and the losses
        # Plain and timestamped like the log lines: no bar glyphs.
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO    a_rather", row), row
        assert not re.search("[━╸╺─]", row), row
        assert "…" not in row and re.search(r"\d/3 steps \d+:\d\d:\d\d ETA", row), row
        number = r"[\d.e+-]+"
        assert re.search(rf"loss {number} content {number} style {number} tv {number}$", row), row
    final = max(i for i, line in enumerate(lines) if " 3/3 steps " in line)
    wrote = next(i for i, line in enumerate(lines) if f"Wrote {out}" in line)
    assert final < wrote
