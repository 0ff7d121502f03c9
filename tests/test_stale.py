"""An existing output made with other settings is stale: reported as such, naming what differs,
and still not overwritten without --overwrite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from clitools import FAST, frame_count, run

from vidstyle.render.provenance import recorded_settings


def test_a_preview_is_reported_stale_by_the_full_render(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = workdir / "clip.style.mp4"
    render = [workdir / "clip.mp4", "-s", workdir / "style.png", *FAST]
    assert run([*render, "--max-frames", "3", "-q"]) == 0
    recorded = recorded_settings(out)
    assert recorded is not None and recorded["max_frames"] == "3"
    capsys.readouterr()

    # The same command again: up to date, skipped as before.
    assert run([*render, "--max-frames", "3"]) == 0
    err = capsys.readouterr().err
    assert "exists; skipping" in err and "stale" not in err

    # Other settings: stale, named, even with -q; the preview is left as it is.
    before = out.stat().st_mtime_ns
    assert run([*render, "--size", "32", "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert "clip.style.mp4" in line and "stale" in line
    assert "--max-frames 3 (now unset), --size 48 (now 32)" in line and "--overwrite" in line
    assert out.stat().st_mtime_ns == before and frame_count(out) == 3

    # --overwrite renders what was asked.
    assert run([*render, "--size", "32", "-q", "--overwrite", "--max-frames", "4"]) == 0
    assert frame_count(out) == 4


def test_a_batch_lists_stale_outputs_in_its_summary(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    styles = ["-s", workdir / "style.png", "-s", workdir / "style2.png"]
    shutil.copy(workdir / "style.png", workdir / "style2.png")
    render = [workdir / "clip.mp4", *styles, "-o", workdir / "out", "--max-frames", "2", *FAST]
    assert run([*render, "-q"]) == 0
    capsys.readouterr()
    (workdir / "style2.png").write_bytes((workdir / "style.png").read_bytes() + b"\0")
    assert run(render) == 0
    err = capsys.readouterr().err
    assert "1 skipped, 1 stale" in err
    row = next(line for line in err.splitlines() if "style2" in line and "stale" in line)
    assert "style 1" in row  # what differs: the (first and only) style image of that render


def test_dry_run_says_stale(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    render = [workdir / "clip.mp4", "-s", workdir / "style.png", *FAST]
    assert run([*render, "--max-frames", "2", "-q"]) == 0
    capsys.readouterr()
    assert run([*render, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--max-frames 2 (now unset) (stale; --overwrite renders it again)" in out
    assert out.splitlines()[-1].startswith("0 to render (0 frames), 1 to skip (1 stale), ")


def test_the_python_api_reports_a_stale_output(workdir: Path) -> None:
    from vidstyle import resolve_settings, stylize_video

    out = workdir / "clip.style.mp4"
    render = [workdir / "clip.mp4", "-s", workdir / "style.png", *FAST]
    assert run([*render, "--max-frames", "2", "-q"]) == 0
    settings = resolve_settings("preview", overrides={"features": "random"})
    result = stylize_video(workdir / "clip.mp4", [workdir / "style.png"], settings, output=out)
    assert result.status == "stale" and frame_count(out) == 2
