"""Resumable renders: segments, state, SIGKILL and Ctrl-C, changed commands, joining."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import mediagen
import numpy as np
import pytest
from clitools import FAST, decoded, interrupt_after, run

from vidstyle.atomic import temp_path_for
from vidstyle.media import VideoWriter, image_to_tensor, probe, read_frames
from vidstyle.media.segments import SegmentedWriter, join_segments
from vidstyle.render.workdir import STATE_FILE, WorkDir, work_dir_for

ULTRAFAST = {"codec": "libx264", "crf": 18, "encoder_preset": "ultrafast"}

# clitools.FAST keeps smoothing and flow-warped warm starts on (the defaults): they are what a
# resume must carry over.


def frame_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.pts * stream.time_base for f in container.decode(stream)]


def same_video(a: Path, b: Path) -> None:
    """Same frame count, rate, duration, frame times and audio packets."""
    info_a, info_b = probe(a), probe(b)
    assert info_a.fps == info_b.fps
    assert info_a.duration == pytest.approx(info_b.duration, abs=1e-6)
    assert frame_times(a) == frame_times(b)
    assert mediagen.read_audio_packets(a) == mediagen.read_audio_packets(b)


@pytest.fixture
def folder(tmp_path: Path, style_image: Path) -> Path:
    mediagen.make_video(tmp_path / "clip.mp4", frames=8)
    shutil.copy(style_image, tmp_path / "style.png")
    return tmp_path


def test_ctrl_c_saves_progress_exits_130_and_the_rerun_matches_an_uninterrupted_render(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # crf 0: x264 is lossless in YUV, so the comparison sees the stylized frames themselves
    # (the segment Ctrl-C cut short puts a keyframe where the uninterrupted render has none).
    args = [
        folder / "clip.mp4",
        "-s",
        folder / "style.png",
        "--segment-frames",
        "3",
        "--crf",
        "0",
        *FAST,
        # Three iterations a warm frame: each hands L-BFGS's memory to the next, which the
        # saved state must carry across the interruption too.
        "--iterations",
        "3",
    ]
    assert run([*args, "-o", folder / "whole.mp4"]) == 0

    out = folder / "out.mp4"
    interrupt_after(monkeypatch, 5)
    assert run([*args, "-o", out]) == 130
    assert not out.exists()
    work = work_dir_for(out)
    state = json.loads((work / STATE_FILE).read_text())
    # Frames 0-4 are saved: a full segment and the one Ctrl-C closed early.
    assert [(s["first_index"], s["frames"]) for s in state["segments"]] == [(0, 3), (3, 2)]

    assert "5 frames are saved, run the same command to resume" in capsys.readouterr().err

    monkeypatch.undo()
    assert run([*args, "-o", out, "-v"]) == 0
    assert "resuming after frame 5" in capsys.readouterr().err
    assert not work.exists()
    same_video(out, folder / "whole.mp4")
    assert all(
        np.array_equal(a, b)
        for a, b in zip(decoded(out), decoded(folder / "whole.mp4"), strict=True)
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "clip.mp4",
        "out.mp4",
        "style.png",
        "whole.mp4",
    ]


def _render_cmd(folder: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vidstyle",
        str(folder / "clip.mp4"),
        "-s",
        str(folder / "style.png"),
        "-o",
        str(output),
        "--segment-frames",
        "2",
        *FAST,
    ]


@pytest.mark.slow
def test_sigkill_mid_render_then_rerun_gives_the_uninterrupted_result(folder: Path) -> None:
    whole = folder / "whole.mp4"
    subprocess.run(_render_cmd(folder, whole), check=True, capture_output=True, timeout=300)

    out = folder / "out.mp4"
    state = work_dir_for(out) / STATE_FILE
    process = subprocess.Popen(
        _render_cmd(folder, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not state.exists():  # the first segment is saved: kill it mid-way
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    saved = sum(s["frames"] for s in json.loads(state.read_text())["segments"])
    assert 2 <= saved < 8

    rerun = subprocess.run(
        [*_render_cmd(folder, out), "-v"], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming after frame" in rerun.stderr
    assert not work_dir_for(out).exists()
    same_video(out, whole)
    # Segments end at the same frames in both runs, so even the encoding is the same.
    assert all(np.array_equal(a, b) for a, b in zip(decoded(out), decoded(whole), strict=True))


def test_a_changed_command_starts_over_and_says_why(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = folder / "out.mp4"
    args = [
        folder / "clip.mp4",
        "-s",
        folder / "style.png",
        "-o",
        out,
        "--segment-frames",
        "2",
        *FAST,
    ]
    interrupt_after(monkeypatch, 3)
    assert run(args) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert run([*args, "--style-weight", "9", "-v"]) == 0
    messages = " ".join(capsys.readouterr().err.split())
    assert "other settings: --style-weight 2 (now 9); starting over" in messages
    assert "resuming" not in messages
    assert len(decoded(out)) == 8


def interrupted_preview(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[object], Path]:
    """A 4-frame preview in segments of 2, Ctrl-C after frame 3: its command and output."""
    out = folder / "out.mp4"
    args = [folder / "clip.mp4", "-s", folder / "style.png", "-o", out, "--segment-frames", "2"]
    args += ["--max-frames", "4", *FAST]
    interrupt_after(monkeypatch, 3)
    assert run(args) == 130
    return args, out


def test_changed_style_image_content_is_a_changed_command(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args, out = interrupted_preview(folder, monkeypatch)
    monkeypatch.undo()
    mediagen.make_image(folder / "style.png", (64, 64), seed=5)  # same name, other picture
    capsys.readouterr()
    assert run([*args, "-v"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "other settings: style 1 (another image); starting over" in err


def test_no_resume_discards_earlier_progress(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args, out = interrupted_preview(folder, monkeypatch)
    assert work_dir_for(out).exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert run([*args, "--no-resume", "-v"]) == 0
    messages = " ".join(capsys.readouterr().err.split())
    assert "discarding earlier progress (3 frames)" in messages and "resuming" not in messages
    assert len(decoded(out)) == 4 and not work_dir_for(out).exists()


def test_dry_run_shows_saved_progress_only_when_a_rerun_would_resume_it(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args, out = interrupted_preview(folder, monkeypatch)
    monkeypatch.undo()
    capsys.readouterr()
    assert run([*args, "--dry-run"]) == 0
    assert "resume at frame 3" in capsys.readouterr().out

    # A work folder of another format (another vidstyle version) is never resumed.
    state = work_dir_for(out) / STATE_FILE
    state.write_text(json.dumps({**json.loads(state.read_text()), "format": 99}))
    assert run([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "resume" not in plan and "render" in plan


def test_a_damaged_state_file_starts_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.mp4"
    work = work_dir_for(out)
    work.mkdir()
    (work / STATE_FILE).write_text("{ not json")
    (work / "seg-000000.mp4").write_bytes(b"half")
    with caplog.at_level(logging.WARNING, logger="vidstyle"):
        opened = WorkDir.open(out, {"a": "1"})
    assert opened.next_index == 0 and opened.carry is None
    assert not work.exists()
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_a_render_killed_before_its_first_segment_leaves_nothing_to_resume(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.mp4"
    work = work_dir_for(out)
    work.mkdir()
    (work / ".seg-000000.mp4.vidstyle-part.mp4").write_bytes(b"half")  # no state.json
    opened = WorkDir.open(out, {"a": "1"})
    assert opened.next_index == 0 and not work.exists()


# ------------------------------------------------------------------------------ joining


@pytest.mark.parametrize(
    ("fps", "vfr", "source", "output", "codec"),
    [
        (Fraction(30000, 1001), False, ".mp4", ".mp4", "libx264"),
        (Fraction(24), True, ".mp4", ".mp4", "libx264"),
        (Fraction(30000, 1001), False, ".mkv", ".mkv", "libx264"),  # millisecond timestamps
        (Fraction(24), False, ".mkv", ".webm", "libvpx-vp9"),  # audio re-encoded to Opus
    ],
)
def test_joined_segments_keep_the_timing_and_audio_of_one_encode(
    tmp_path: Path, fps: Fraction, vfr: bool, source: str, output: str, codec: str
) -> None:
    clip = mediagen.make_video(tmp_path / f"clip{source}", frames=14, fps=fps, vfr=vfr)
    info = probe(clip)
    frames = list(read_frames(info))
    encoding = {"codec": codec, "crf": 20, "encoder_preset": "medium", "segment_frames": 4}

    direct = tmp_path / f"direct{output}"
    with VideoWriter(direct, info, info.size, codec=codec, crf=20, encoder_preset="medium") as w:
        for frame in frames:
            w.write(frame.image, frame.pts)

    joined = tmp_path / f"joined{output}"
    work = WorkDir(joined, {"test": "1"})
    with SegmentedWriter(work, info, info.size, **encoding, snapshot=dict) as segments:
        for frame in frames:
            segments.write(image_to_tensor(frame.image), frame.pts)
    assert [s.frames for s in work.segments] == [4, 4, 4, 2]
    assert work.join(info) == 14
    assert not work.path.exists()

    assert len(decoded(joined)) == 14
    info_d, info_j = probe(direct), probe(joined)
    assert info_j.fps == info_d.fps
    assert frame_times(joined) == frame_times(direct)
    assert info_j.duration == pytest.approx(info_d.duration, abs=1e-6)
    if output != ".webm":  # a re-encoded track is compared by duration only
        assert mediagen.read_audio_packets(joined) == mediagen.read_audio_packets(clip)


def test_segments_of_several_work_folders_join_into_one_encode(tmp_path: Path) -> None:
    # A video rendered in parts (frames 0-5 and 6-13, each into its own work folder, each part's
    # encoder starting afresh) joins with the timing and audio of one encode of every frame.
    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=14, fps=Fraction(30000, 1001))
    info = probe(clip)
    frames = list(read_frames(info))
    direct = tmp_path / "direct.mp4"
    with VideoWriter(direct, info, info.size, **ULTRAFAST) as writer:
        for frame in frames:
            writer.write(frame.image, frame.pts)

    parts = [
        WorkDir(tmp_path / "part1.mp4", {}),
        WorkDir(tmp_path / "part2.mp4", {}, first_index=6),
    ]
    for work, part in zip(parts, (frames[:6], frames[6:]), strict=True):
        with SegmentedWriter(
            work, info, info.size, **ULTRAFAST, segment_frames=4, snapshot=dict
        ) as part_writer:
            for frame in part:
                part_writer.write(image_to_tensor(frame.image), frame.pts)
    assert parts[1].next_index == 14 and parts[1].saved_frames == 8
    segments = [*parts[0].segments, *parts[1].segments]
    # Numbered by their place in the source, ending where one render's segments end.
    expected = [(0, 4), (4, 2), (6, 2), (8, 4), (12, 2)]
    assert [(s.first_index, s.frames) for s in segments] == expected

    joined = tmp_path / "joined.mp4"
    with pytest.raises(ValueError, match="out of order"):
        join_segments(segments[::-1], joined, info)
    assert not joined.exists() and not temp_path_for(joined).exists()
    assert join_segments(segments, joined, info) == 14
    assert len(decoded(joined)) == 14
    assert frame_times(joined) == frame_times(direct)
    assert probe(joined).fps == probe(direct).fps
    assert probe(joined).duration == pytest.approx(probe(direct).duration, abs=1e-6)
    assert mediagen.read_audio_packets(joined) == mediagen.read_audio_packets(clip)


def test_segment_writer_keeps_committed_segments_on_an_error(tmp_path: Path, clip: Path) -> None:
    info = probe(clip)
    work = WorkDir(tmp_path / "out.mp4", {"test": "1"})
    frames = list(read_frames(info, max_frames=5))
    with (
        pytest.raises(RuntimeError, match="boom"),
        SegmentedWriter(
            work, info, info.size, **ULTRAFAST, segment_frames=3, snapshot=lambda: {"n": 1}
        ) as segments,
    ):
        for frame in frames:
            segments.write(image_to_tensor(frame.image), frame.pts)
        raise RuntimeError("boom")
    assert [s.frames for s in work.segments] == [3]
    assert sorted(p.name for p in work.path.iterdir()) == [
        "carry-000000.pt",
        "seg-000000.mp4",
        STATE_FILE,
    ]
    reopened = WorkDir.open(work.output, {"test": "1"})
    assert reopened.next_index == 3 and reopened.carry == {"n": 1}
    assert reopened.last_pts == frames[2].pts


# ------------------------------------------------------------------------------ several segments


@pytest.fixture
def long_folder(tmp_path: Path, style_image: Path) -> Path:
    """16 frames: with 5-frame segments, boundaries after frames 4, 9 and 14."""
    mediagen.make_video(tmp_path / "clip.mp4", frames=16)
    shutil.copy(style_image, tmp_path / "style.png")
    return tmp_path


def _long_args(folder: Path, segment_frames: int) -> list[object]:
    # crf 0: x264 is lossless in YUV, so decoded frames compare the stylized frames themselves,
    # wherever each render put its keyframes.
    return [
        folder / "clip.mp4",
        "-s",
        folder / "style.png",
        "--segment-frames",
        segment_frames,
        "--crf",
        "0",
        *FAST,
        "-q",
    ]


@pytest.mark.slow
def test_the_same_command_gives_the_same_frames_across_several_segments(
    long_folder: Path,
) -> None:
    first, second, whole = (long_folder / name for name in ("a.mp4", "b.mp4", "whole.mp4"))
    assert run([*_long_args(long_folder, 5), "-o", first]) == 0
    assert run([*_long_args(long_folder, 5), "-o", second]) == 0
    assert run([*_long_args(long_folder, 1000), "-o", whole]) == 0  # one segment
    frames = decoded(first)
    assert len(frames) == 16
    assert all(np.array_equal(a, b) for a, b in zip(frames, decoded(second), strict=True))
    # Segment boundaries change nothing but where the keyframes are.
    assert all(np.array_equal(a, b) for a, b in zip(frames, decoded(whole), strict=True))


@pytest.mark.slow
def test_a_render_interrupted_twice_resumes_to_the_uninterrupted_frames(
    long_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, out = long_folder / "whole.mp4", long_folder / "out.mp4"
    assert run([*_long_args(long_folder, 5), "-o", whole]) == 0
    # Ctrl-C inside the second segment, then inside the third of the resumed run: the work
    # folder holds segments cut short at both places.
    interrupt_after(monkeypatch, 7)
    assert run([*_long_args(long_folder, 5), "-o", out]) == 130
    monkeypatch.undo()
    interrupt_after(monkeypatch, 6)
    assert run([*_long_args(long_folder, 5), "-o", out]) == 130
    monkeypatch.undo()
    state = json.loads((work_dir_for(out) / STATE_FILE).read_text())
    assert [(s["first_index"], s["frames"]) for s in state["segments"]] == [
        (0, 5),
        (5, 2),
        (7, 3),
        (10, 3),
    ]
    capsys.readouterr()
    verbose = [arg for arg in _long_args(long_folder, 5) if arg != "-q"]
    assert run([*verbose, "-o", out, "-v"]) == 0
    assert "resuming after frame 13" in " ".join(capsys.readouterr().err.split())
    same_video(out, whole)
    assert all(np.array_equal(a, b) for a, b in zip(decoded(out), decoded(whole), strict=True))
