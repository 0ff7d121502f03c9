"""Every bad input: one line naming the file and what to do, a non-zero exit code,
no partial output, and no earlier output lost."""

from __future__ import annotations

import errno
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import mediagen
import numpy as np
import pytest
from clitools import FAST, frame_count, run

from vidstyle import atomic
from vidstyle.media import probe, read_frames
from vidstyle.render.workdir import WorkDir, work_dir_for

EARLIER = b"an earlier render"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) with its contents."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path, style_image: Path) -> Path:
    """A folder with a good clip, a style image, and an earlier render in out/."""
    mediagen.make_video(tmp_path / "clip.mp4", frames=6)
    shutil.copy(style_image, tmp_path / "style.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "earlier.mp4").write_bytes(EARLIER)
    return tmp_path


def _truncated(folder: Path) -> Path:
    data = (folder / "clip.mp4").read_bytes()  # the index (moov) is at the end: cut it off
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    return folder / "cut.mp4"


def _undecodable(folder: Path) -> Path:
    data = bytearray((folder / "clip.mp4").read_bytes())
    start, end = data.index(b"mdat") + 4, data.index(b"moov") - 4
    data[start:end] = bytes(end - start)  # the index is intact, every frame is zeros
    (folder / "zeros.mp4").write_bytes(bytes(data))
    return folder / "zeros.mp4"


def _no_videos(folder: Path) -> Path:
    (folder / "docs").mkdir()
    (folder / "docs" / "readme.txt").write_text("no videos here")
    return folder / "docs"


def _text(folder: Path) -> Path:
    (folder / "notes.mp4").write_text("hello, I am not a video")
    return folder / "notes.mp4"


def _empty(folder: Path) -> Path:
    (folder / "empty.mp4").write_bytes(b"")
    return folder / "empty.mp4"


@pytest.mark.parametrize(
    ("make_input", "words"),
    [
        pytest.param(lambda d: d / "missing.mp4", "not found; check the path", id="missing"),
        pytest.param(_no_videos, "no video files", id="folder-without-videos"),
        pytest.param(_empty, "empty (0 bytes)", id="zero-bytes"),
        pytest.param(_truncated, "not a video ffmpeg can read", id="truncated-no-moov"),
        pytest.param(_text, "not a video ffmpeg can read", id="text-named-mp4"),
        pytest.param(_undecodable, "no decodable video frames", id="no-decodable-frames"),
        pytest.param(
            lambda d: mediagen.make_audio_only(d / "song.mp4"), "no video stream", id="audio-only"
        ),
    ],
)
def test_bad_input_gives_one_line_exit_1_and_writes_nothing(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    make_input: Callable[[Path], Path],
    words: str,
) -> None:
    path = make_input(folder)
    before = snapshot(folder)
    code = run([path, "-s", folder / "style.png", "-o", folder / "out", "--overwrite", "-q", *FAST])
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert str(path) in line and words in line.lower()
    assert snapshot(folder) == before  # no output, no work folder, the earlier render intact


@pytest.mark.parametrize(
    ("make_style", "words"),
    [
        pytest.param(
            lambda d: (d / "s.jpg").write_text("not a jpeg") and d / "s.jpg",
            "pass a png or jpeg",
            id="unreadable",
        ),
        pytest.param(lambda d: d / "clip.mp4", "is a video", id="a-video"),
        pytest.param(lambda d: d / "nowhere.png", "not found", id="missing"),
    ],
)
def test_bad_style_is_a_usage_error_before_any_work(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    make_style: Callable[[Path], Path],
    words: str,
) -> None:
    style = make_style(folder)
    before = snapshot(folder)
    # Two inputs: a batch stops at once too, since every input would fail the same way.
    code = run(
        [folder / "clip.mp4", folder / "clip.mp4", "-s", style, "-o", folder / "out", "-q", *FAST]
    )
    line = one_line(capsys.readouterr().err)
    assert code == 2
    assert str(style) in line and words in line.lower()
    assert snapshot(folder) == before


def test_corrupt_packets_mid_stream_keep_the_frame_count_by_repeating_frames(
    tmp_path: Path, style_image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=16, audio=False)
    data = bytearray(clip.read_bytes())
    start = int(data.index(b"moov") * 0.6)  # inside the frames, past the first keyframe
    data[start : start + 200] = np.random.default_rng(7).integers(0, 256, 200, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    frames = list(read_frames(probe(damaged)))
    assert len(frames) == 16 and any(f.repeat for f in frames)  # the damage is where intended

    out = tmp_path / "out.mp4"
    assert run([damaged, "-s", style_image, "-o", out, "-q", *FAST]) == 0
    assert frame_count(out) == 16
    assert probe(out).duration == pytest.approx(probe(clip).duration, abs=1e-3)
    err = capsys.readouterr().err
    # (The log wraps long lines at the terminal's width, paths included.)
    assert "damaged.mp4" in "".join(err.split())
    assert "the previous frame stands in for each" in " ".join(err.split())


def _read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make `folder` refuse new files (chmod does not stop root, who runs CI containers)."""
    real = tempfile.NamedTemporaryFile

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == folder:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)


@pytest.mark.parametrize("batch", [False, True], ids=["one-file", "batch"])
def test_output_folder_not_writable(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    batch: bool,
) -> None:
    _read_only(monkeypatch, folder / "out")
    shutil.copy(folder / "clip.mp4", folder / "clip2.mp4")
    before = snapshot(folder)
    inputs = [folder / "clip.mp4", folder / "clip2.mp4"] if batch else [folder / "clip.mp4"]
    target = folder / "out" if batch else folder / "out" / "new.mp4"
    # A batch fails once, before any render, not once per file.
    code = run([*inputs, "-s", folder / "style.png", "-o", target, "-q", *FAST])
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert "out" in line and "permission denied" in line.lower() and "another folder" in line
    assert snapshot(folder) == before


def _fill_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes of the video segments in the work folder hit ENOSPC."""
    real = atomic.temp_path_for

    def full(path: Path) -> Path:
        temp = real(path)
        if path.name.startswith("seg-"):
            temp.unlink(missing_ok=True)
            temp.symlink_to("/dev/full")
        return temp

    monkeypatch.setattr(atomic, "temp_path_for", full)


def _fill_resume_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage states saved with each segment (torch.save) hit ENOSPC."""
    real = WorkDir.next_segment_path

    def full(self: WorkDir) -> Path:
        path = real(self)
        carry = atomic.temp_path_for(self.path / f"carry-{len(self.segments):06d}.pt")
        carry.unlink(missing_ok=True)
        carry.symlink_to("/dev/full")
        return path

    monkeypatch.setattr(WorkDir, "next_segment_path", full)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("fill", [_fill_segments, _fill_resume_state], ids=["segments", "state"])
def test_disk_full_while_rendering_is_one_line_and_leaves_nothing(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fill: Callable[[pytest.MonkeyPatch], None],
) -> None:
    fill(monkeypatch)
    out = folder / "out" / "earlier.mp4"
    before = snapshot(folder)  # the earlier output, hidden work folders: all kept as they were
    code = run(
        [folder / "clip.mp4", "-s", folder / "style.png", "-o", out, "--overwrite", "-q", *FAST]
    )
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert "earlier.mp4" in line and "disk full" in line and "free some space" in line
    assert snapshot(folder) == before
    assert not work_dir_for(out).exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.slow
def test_disk_full_when_joining_keeps_the_frames_for_the_next_run(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = folder / "out" / "earlier.mp4"
    atomic.temp_path_for(out).symlink_to("/dev/full")
    args = [folder / "clip.mp4", "-s", folder / "style.png", "-o", out, "--overwrite", *FAST]
    assert run([*args, "-q"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "earlier.mp4" in line and "disk full" in line
    assert out.read_bytes() == EARLIER
    assert not atomic.temp_path_for(out).exists()
    assert work_dir_for(out).exists()  # every frame is saved

    # Space freed: the same command only joins the saved segments.
    assert run([*args, "-v"]) == 0
    assert "resuming after frame 6" in " ".join(capsys.readouterr().err.split())
    assert frame_count(out) == 6 and not work_dir_for(out).exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 120 kB tmpfs: room for the first segments of a render, not for its resume state."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # -l: even if busy


def test_disk_full_while_saving_progress_is_one_line(
    folder: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_disk / "out.mp4"
    args = [folder / "clip.mp4", "-s", folder / "style.png", "-o", out, "--segment-frames", "2"]
    assert run([*args, "-q", *FAST]) == 1
    line = one_line(capsys.readouterr().err)
    assert "out.mp4" in line and "disk full" in line and "free some space" in line
    assert not out.exists()


def test_frame_too_large_for_memory_fails_before_any_work_and_suggests_size(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vidstyle.config import RenderSettings
    from vidstyle.media import plan_size
    from vidstyle.render import memory, pipeline

    settings = RenderSettings()
    fits_32 = memory.estimate_bytes(
        plan_size((64, 48), 32)[0], pipeline.torch.device("cpu"), mode=settings.mode
    )
    # Free memory for 32-px frames (with the 10% headroom), not for the asked-for 48 px.
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(fits_32 / 0.9) + 1)

    def no_model(*args, **kwargs):
        raise AssertionError("the VGG network was built before the memory check")

    monkeypatch.setattr(pipeline, "build_loss", no_model)
    before = snapshot(folder)
    code = run([folder / "clip.mp4", "-s", folder / "style.png", "-o", folder / "out", "-q", *FAST])
    line = one_line(capsys.readouterr().err)
    assert code == 1
    assert "clip.mp4" in line and "48x36" in line and "--size 32" in line
    assert snapshot(folder) == before
