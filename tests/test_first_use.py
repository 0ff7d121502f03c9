"""What a new user meets first: errors that say what a file is and name the option as typed,
checks made before the render is announced, the container choosing its codec, a truncated
input, and help that reads at 80 columns."""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest
import torch
from clitools import FAST, frame_count, run

from vidstyle.config import RenderSettings, option_name

ANNOUNCE = "→"  # the INFO line that starts a render: "clip.mp4 → clip.style.mp4: ..."


def _error_line(err: str) -> str:
    """The command's stderr is exactly one `error:` line (no announcement before it)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_an_image_as_vgg_weights_is_called_an_image(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    style = workdir / "style.png"
    assert run([workdir / "clip.mp4", "-s", style, "--vgg-weights", style, *FAST[2:]]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"{style}: is a PNG image, not VGG weights" in line and "--style" in line
    assert "PyTorch 2.6" not in line and "weights_only" not in line


def test_a_checkpoint_that_is_not_vgg_fails_before_the_render_is_announced(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = workdir / "other.pth"
    torch.save({"weight": torch.zeros(2, 2)}, other)  # readable, but no VGG in it
    args = [workdir / "clip.mp4", "-s", workdir / "style.png", "--vgg-weights", other]
    assert run([*args, "--size", "48", "--max-frames", "2"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(other) in line and "not a VGG" in line


def test_an_image_as_model_fails_before_the_render_is_announced(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([workdir / "clip.mp4", "--model", workdir / "style.png"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "is a PNG image, not a model file" in line
    assert ANNOUNCE not in line


@pytest.mark.parametrize("name", ["missing.pth", "style.png"])
def test_weights_check_of_an_unusable_file_exits_non_zero(
    workdir: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert run(["weights", "--vgg-weights", workdir / name]) == 2
    captured = capsys.readouterr()
    assert "fail with the error above" in captured.out  # the report is still printed
    assert _error_line(captured.err).startswith(f"error: {workdir / name}: ")


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--size", "abc"], "error: --size must be a whole number (got 'abc')"),
        (["--size", "8"], "error: --size must be at least 16 (got 8)"),
        (["--style-weight", "x"], "error: --style-weight must be a number (got 'x')"),
        (["--preserve-colors", "sepia"], "error: --preserve-colors must be one of none,"),
        (["--sise", "64"], "error: no such option: --sise"),
    ],
)
def test_bad_values_are_one_error_line_naming_the_option_as_typed(
    workdir: Path, capsys: pytest.CaptureFixture[str], option: list[str], expected: str
) -> None:
    assert run([workdir / "clip.mp4", "-s", workdir / "style.png", *option]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(expected), line
    assert "setting '" not in line and "╭" not in line


def test_config_file_errors_name_the_file_and_key_and_suggest_a_near_miss(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "my.toml"
    args = [workdir / "clip.mp4", "-s", workdir / "style.png", "--config", config]
    config.write_text("size = 8\n")
    assert run(args) == 2
    assert f"error: {config}: key 'size' must be at least 16" in capsys.readouterr().err
    config.write_text("stlye-weight = 3\n")
    assert run(args) == 2
    line = _error_line(capsys.readouterr().err)
    assert "unknown key 'stlye-weight'; did you mean 'style-weight'?" in line


def test_a_webm_output_without_codec_is_encoded_in_vp9(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = workdir / "out.webm"
    args = [workdir / "clip.mp4", "-s", workdir / "style.png", "-o", out, "--max-frames", "3"]
    assert run([*args, "-q", *FAST]) == 0
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
    assert frame_count(out) == 3
    # An MP4 keeps H.264, and an explicit codec is used as given.
    assert RenderSettings().codec == "auto"


def _faststart_truncated(workdir: Path) -> Path:
    """The clip with its index (moov) moved to the front, then cut in half: the index lists
    every frame, the data of the later ones is missing (a download cut short)."""
    whole = workdir / "faststart.mp4"
    with (
        av.open(str(workdir / "clip.mp4")) as src,
        av.open(str(whole), "w", options={"movflags": "faststart"}) as dst,
    ):
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    data = whole.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    cut = workdir / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_a_truncated_mp4_fails_before_any_work_and_its_first_frames_still_render(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = _faststart_truncated(workdir)
    out = workdir / "out.mp4"
    assert run([cut, "-s", workdir / "style.png", "-o", out, *FAST]) == 1
    line = _error_line(capsys.readouterr().err)
    assert f"{cut}: file is truncated" in line and "--max-frames" in line
    assert not out.exists()
    # The frames that are there render with --max-frames, without a warning.
    assert run([cut, "-s", workdir / "style.png", "-o", out, "--max-frames", "3", *FAST]) == 0
    assert frame_count(out) == 3
    assert "WARNING" not in capsys.readouterr().err


def test_render_help_reads_at_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert run(["render", "--help"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "Usage: vidstyle render [OPTIONS] INPUT..."
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in text
    for spec in RenderSettings.__dataclass_fields__.values():
        name = option_name(spec)  # every option name whole, at the start of its own line
        assert re.search(rf"^  (-\w, )?--{name}\b", text, re.MULTILINE), name
        choices = spec.metadata["choices"]
        if choices:  # a choice list whole, on the option's line
            assert f"--{name} [{'|'.join(choices)}]" in text
    assert "VGG-19 features" not in text and "VGG features:" in text
