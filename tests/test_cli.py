"""The `vidstyle` command end to end: default command, outputs, exit codes, one-line errors."""

from __future__ import annotations

from dataclasses import fields
from fractions import Fraction
from pathlib import Path

import av
import mediagen
import numpy as np
import pytest
from clitools import FAST, decoded, interrupt_after, run

from vidstyle import __version__
from vidstyle.cli import main
from vidstyle.config import RenderSettings
from vidstyle.media import probe


def audio_packets(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(p.pts, bytes(p)) for p in container.demux(stream) if p.size]


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_default_command_writes_stem_dot_style_beside_the_input(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run([workdir / "clip.mp4", "--style", workdir / "style.png", "-q", *FAST])
    out = workdir / "clip.style.mp4"
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)  # stdout: just the output path
    source, result = probe(workdir / "clip.mp4"), probe(out)
    assert len(decoded(out)) == len(decoded(workdir / "clip.mp4")) == 24
    assert result.fps == source.fps == Fraction(24)
    assert abs(result.duration - source.duration) <= 1 / 24
    assert max(result.size) == 48
    assert audio_packets(out) == audio_packets(workdir / "clip.mp4")
    assert files_in(workdir) == {"clip.mp4", "style.png", "clip.style.mp4"}


def test_ntsc_rate_survives_into_mkv(tmp_path: Path, style_image: Path) -> None:
    clip_ntsc = mediagen.make_video(tmp_path / "ntsc.mp4", frames=3, fps=Fraction(30000, 1001))
    out = tmp_path / "out.mkv"
    assert run([clip_ntsc, "-s", style_image, "-o", out, "-q", "--no-audio", *FAST]) == 0
    info = probe(out)
    assert info.fps == Fraction(30000, 1001)
    assert info.audio == ()
    assert len(decoded(out)) == 3


def test_max_frames_previews_trim_audio_to_match(workdir: Path) -> None:
    out = workdir / "preview.mp4"
    code = run(
        [
            workdir / "clip.mp4",
            "-s",
            workdir / "style.png",
            "-o",
            out,
            "--max-frames",
            "6",
            "-q",
            *FAST,
        ]
    )
    assert code == 0
    assert len(decoded(out)) == 6
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        last = max(p.pts + p.duration for p in container.demux(audio) if p.size)
        audio_end = float(last * audio.time_base)
    assert audio_end == pytest.approx(6 / 24, abs=0.03)


def test_progress_goes_to_a_log_file_as_lines_with_an_eta(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Captured stderr is not a terminal, as when a render's log goes to a file or CI.
    monkeypatch.setattr("vidstyle.console.PLAIN_PROGRESS_INTERVAL_S", 0.0)
    out = workdir / "preview.mp4"
    args = [workdir / "clip.mp4", "-s", workdir / "style.png", "-o", out, "--max-frames", "4"]
    assert run([*args, *FAST]) == 0
    err = capsys.readouterr().err
    for done in ("1/4", "2/4", "3/4", "4/4"):
        assert f"{done} " in err
    assert "frames/s" in err and "ETA" in err
    # Log lines too: one line each with time and level, not wrapped at 80 columns.
    assert any(
        " INFO " in line and line.endswith(f"clip.mp4 → {out}: 48x36, 24 fps, quality mode on cpu")
        for line in err.splitlines()
    )
    # -q: no progress at all.
    assert run([*args, "--overwrite", "-q", *FAST]) == 0
    assert "ETA" not in capsys.readouterr().err


def test_same_command_same_output(workdir: Path) -> None:
    args = [workdir / "clip.mp4", "-s", workdir / "style.png", "-q", "--max-frames", "3", *FAST]
    assert run([*args, "-o", workdir / "a.mp4"]) == 0
    assert run([*args, "-o", workdir / "b.mp4"]) == 0
    assert all(
        np.array_equal(a, b)
        for a, b in zip(decoded(workdir / "a.mp4"), decoded(workdir / "b.mp4"), strict=True)
    )


def test_existing_output_is_skipped_unless_overwrite(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = workdir / "clip.style.mp4"
    out.write_bytes(b"earlier render")
    assert run([workdir / "clip.mp4", "-s", workdir / "style.png", *FAST]) == 0
    assert out.read_bytes() == b"earlier render"
    assert (
        run(
            [
                workdir / "clip.mp4",
                "-s",
                workdir / "style.png",
                "--overwrite",
                "-q",
                "--max-frames",
                "2",
                *FAST,
            ]
        )
        == 0
    )
    assert len(decoded(out)) == 2


@pytest.mark.parametrize(
    ("make_input", "code", "words"),
    [
        (lambda d: d / "missing.mp4", 1, "not found"),
        (lambda d: (d / "notes.mp4").write_text("hello") and d / "notes.mp4", 1, "video"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", 1, "empty"),
    ],
)
def test_bad_input_is_one_line_exit_code_and_no_output(
    workdir: Path, capsys: pytest.CaptureFixture[str], make_input, code: int, words: str
) -> None:
    path = make_input(workdir)
    before = files_in(workdir)
    assert run([path, "-s", workdir / "style.png", *FAST]) == code
    err = capsys.readouterr().err.strip()
    assert str(path.name) in err and words in err.lower()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert files_in(workdir) == before


def test_unreadable_style_image_is_a_usage_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = workdir / "style.jpg"
    bad.write_text("not really a jpeg")
    assert run([workdir / "clip.mp4", "-s", bad, *FAST]) == 2
    err = capsys.readouterr().err
    assert "style.jpg" in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "clip.style.mp4").exists()


def test_unwritable_output_folder(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = workdir / "no" / "such" / "dir" / "out.mp4"
    assert run([workdir / "clip.mp4", "-s", workdir / "style.png", "-o", target, *FAST]) == 1
    err = capsys.readouterr().err.strip()
    # One line naming the missing folder; nothing created on the way.
    assert len(err.splitlines()) == 1 and str(target.parent) in err
    assert files_in(workdir) == {"clip.mp4", "style.png"}


def test_bad_option_value_names_the_setting(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([workdir / "clip.mp4", "-s", workdir / "style.png", "--optimizer", "sgd"]) == 2
    assert "optimizer" in capsys.readouterr().err


def test_crash_mid_render_leaves_nothing_under_the_final_name(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupt_after(monkeypatch, 3, RuntimeError)
    with pytest.raises(RuntimeError, match="simulated"):
        main([str(workdir / "clip.mp4"), "-s", str(workdir / "style.png"), "-q", *FAST])
    assert files_in(workdir) == {"clip.mp4", "style.png"}


def test_ctrl_c_exits_130_and_leaves_nothing(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupt_after(monkeypatch, 2)
    assert run([workdir / "clip.mp4", "-s", workdir / "style.png", "-q", *FAST]) == 130
    # Nothing under the final name: at most the hidden work folder the next run resumes from.
    assert files_in(workdir) == {"clip.mp4", "style.png", ".clip.style.mp4.vidstyle-work"}
    assert "2 frames are saved" in capsys.readouterr().err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert run(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "render" in help_text and "weights" in help_text


def test_help_shows_defaults_written_in_brackets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rich treats "[...]" as markup and would silently drop it from the help text.
    monkeypatch.setenv("COLUMNS", "250")
    assert run(["render", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "Output file [default: <stem>.<style>.mp4 beside the input]." in help_text
    assert "[default: quality]" in help_text


def test_render_help_shows_every_setting_with_choices_ranges_and_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    assert run(["render", "--help"]) == 0
    help_text = capsys.readouterr().out
    for spec in fields(RenderSettings):
        option = f"--{spec.name.replace('_', '-')}"
        rows = (line.lstrip("│ ") for line in help_text.splitlines())
        line = next((row for row in rows if row.startswith(f"{option} ")), "")
        assert spec.metadata["help"][:30] in line, option  # every option has its help
    assert "[quality|fast]" in help_text and "[lbfgs|adam]" in help_text  # choices
    assert "[range: 16 to 8192]" in help_text  # ranges
    # Defaults, with each preset's value where it differs.
    assert "[default: 512; balanced: 384; fast: 1920; preview: 256]" in help_text
    assert "[default: 18; balanced: 20; fast: 20; preview: 23]" in help_text


def test_weights_command_says_what_auto_would_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("VIDSTYLE_VGG_WEIGHTS", raising=False)
    assert run(["weights"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out


def test_committed_samples_are_usable() -> None:
    # The README's main command uses the committed samples; they must exist and be videos/images.
    root = Path(__file__).parent.parent / "samples"
    info = probe(root / "clip.mp4")
    assert max(info.size) <= 320 and info.audio
    assert (root / "style.png").stat().st_size > 0
