"""What the command says: version report, suggestions for near-miss option values, and the
lines around errors."""

from __future__ import annotations

import os
import subprocess
import sys

import av
import pytest
import torch
from clitools import run

from vidstyle import __version__


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_reports_the_libraries_and_the_device(
    flag: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run([flag]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"vidstyle {__version__}"
    assert f"torch {torch.__version__}" in out
    assert f"PyAV {av.__version__}" in out
    assert f"FFmpeg {av.ffmpeg_version_info}" in out
    assert any(line.startswith("device: cpu") for line in lines)


def test_version_names_the_cuda_device_auto_would_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Props:
        name = "Test GPU 9000"
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Props())
    assert run(["--version"]) == 0
    device = [line for line in capsys.readouterr().out.splitlines() if line.startswith("device")]
    assert device == ["device: cuda:0 (Test GPU 9000, 80 GiB; 2 CUDA devices)"]


@pytest.fixture
def inputs(clip, style_image) -> list[object]:
    return [clip, "-s", style_image]


def test_an_encoder_preset_given_to_preset_points_at_encoder_preset(
    inputs: list[object], tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*inputs, "-o", tmp_path / "out.mp4", "--preset", "veryfast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown preset 'veryfast'" in err and "--encoder-preset veryfast" in err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    ("name", "encoder"),
    [("h264", "libx264"), ("hevc", "libx265"), ("vp9", "libvpx-vp9"), ("av1", "libsvtav1")],
)
def test_a_codec_name_suggests_its_encoder(
    name: str, encoder: str, inputs: list[object], tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*inputs, "-o", tmp_path / "out.mp4", "--codec", name, "--features", "random"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--codec {encoder}" in err
    assert not (tmp_path / "out.mp4").exists()


def test_svt_av1_prints_no_banner(clip, tmp_path) -> None:
    # SVT-AV1 reads its log level once per process, so this runs in a fresh one, without the
    # SVT_LOG the test session sets.
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from vidstyle.media import VideoWriter, probe\n"
        "info = probe(Path(sys.argv[1]))\n"
        "with VideoWriter(Path(sys.argv[2]), info, (64, 48), codec='libsvtav1',\n"
        "                 encoder_preset='ultrafast', audio=False) as writer:\n"
        "    for i in range(3):\n"
        "        writer.write(np.zeros((48, 64, 3), np.uint8), i * 512)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SVT_LOG"}
    out = tmp_path / "av1.mkv"
    done = subprocess.run(
        [sys.executable, "-c", script, str(clip), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0
    assert "Svt[" not in done.stderr and done.stderr.strip() == ""


def test_an_unknown_model_is_refused_before_the_render_is_announced(
    clip, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [clip, "--model", "nosuchmodel", "--models-dir", tmp_path, "-o", tmp_path / "o.mp4"]
    assert run(args) == 2
    err = capsys.readouterr().err
    # Not -q: still nothing but the error, on the first line (no blank line, no render log).
    assert err.splitlines() == [err.strip()]
    assert err.startswith("error: nosuchmodel: model not found")


def test_an_error_line_is_not_preceded_by_a_blank_line(
    tmp_path, style_image, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([tmp_path / "missing.mp4", "-s", style_image, "--features", "random"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
