"""Every codec the README offers, through the whole render path: segments, join, final file."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import mediagen
import pytest
from clitools import FAST, frame_count, run

from vidstyle.media import VIDEO_CODECS, available_codecs
from vidstyle.workdir import work_dir_for

# The stream's codec as a decoder names it, for each encoder.
_DECODED_AS = {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9", "libsvtav1": "av1"}


@pytest.fixture
def folder(tmp_path: Path, style_image: Path) -> Path:
    # Six frames in two 3-frame segments. (libx265 in this FFmpeg build corrupts the heap now
    # and then when an encode holds only one or two frames, so no segment here is that short.)
    mediagen.make_video(tmp_path / "clip.mp4", frames=6)
    shutil.copy(style_image, tmp_path / "style.png")
    return tmp_path


def _render(args: list[object]) -> None:
    """`vidstyle ARGS... -q` in a child process, which must succeed.

    A child, because libx265 in this PyAV build now and then corrupts the heap when it encodes
    beside a render (glibc aborts: "malloc_consolidate(): invalid chunk size"); that is a known
    defect of the encoder build, reported as an expected failure rather than killing the suite.
    """
    done = subprocess.run(
        [sys.executable, "-m", "vidstyle", *map(str, args), *FAST, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode == -signal.SIGABRT:
        pytest.xfail(f"the encoder aborted the process: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr


def _needs(codec: str) -> None:
    if not available_codecs().get(codec, False):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")


# The containers that hold each codec (WebM: VP9 and AV1 only; MOV: H.264 and HEVC only).
_PAIRS = [
    (codec, suffix)
    for codec in VIDEO_CODECS
    for suffix in (".mp4", ".mkv", ".webm", ".mov")
    if not (suffix == ".webm" and codec in ("libx264", "libx265"))
    and not (suffix == ".mov" and codec in ("libvpx-vp9", "libsvtav1"))
]


# Every pair is a render of its own in a fresh process (seconds each): the whole suite only. The
# quick set (`-m "not slow"`) encodes with each codec, and checks HEVC's hvc1 tag, in this
# process (tests/test_media.py), and renders and joins segments of the default codec in many
# tests.
@pytest.mark.slow
@pytest.mark.parametrize(("codec", "suffix"), _PAIRS)
def test_every_codec_renders_and_joins_in_every_container_that_holds_it(
    folder: Path, codec: str, suffix: str
) -> None:
    _needs(codec)
    out = folder / f"out{suffix}"
    # Two segments, so the join copies more than one.
    args = ["-s", folder / "style.png", "-o", out, "--codec", codec, "--segment-frames", "3"]
    _render([folder / "clip.mp4", *args])
    assert frame_count(out) == 6
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name in (
            _DECODED_AS[codec],
            f"lib{_DECODED_AS[codec]}",  # FFmpeg may pick an external decoder (libdav1d)
            "libdav1d",
        )
    assert not work_dir_for(out).exists()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_hevc_in_mp4_and_mov_is_tagged_hvc1_for_apple_players(folder: Path, suffix: str) -> None:
    _needs("libx265")
    out = folder / f"out{suffix}"
    args = ["-s", folder / "style.png", "-o", out, "--codec", "libx265", "--segment-frames", "3"]
    _render([folder / "clip.mp4", *args])
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_tag == "hvc1"


def _no_frame_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    from vidstyle.stylize import quality

    def fail(*args, **kwargs):
        raise AssertionError("a frame was rendered before the codec/container check")

    monkeypatch.setattr(quality, "optimize_image", fail)


@pytest.mark.parametrize(
    ("codec", "suffix", "hint"),
    [("libx264", ".webm", "--codec libvpx-vp9"), ("libvpx-vp9", ".mov", "--codec libx264")],
)
@pytest.mark.parametrize("batch", [False, True], ids=["one-file", "batch"])
def test_a_codec_the_container_cannot_hold_fails_before_the_first_frame(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    batch: bool,
    codec: str,
    suffix: str,
    hint: str,
) -> None:
    _needs(codec)
    _no_frame_rendered(monkeypatch)
    shutil.copy(folder / "clip.mp4", folder / "clip2.mp4")
    before = sorted(p.name for p in folder.iterdir())
    if batch:
        args = [folder / "clip.mp4", folder / "clip2.mp4", "-o", folder / "out"]
        args += ["--name", "{stem}" + suffix]
    else:
        args = [folder / "clip.mp4", "-o", folder / f"out{suffix}"]
    code = run([*args, "-s", folder / "style.png", "--codec", codec, "-q", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"a {suffix} file cannot hold {codec}" in err and hint in err
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written, no work folder
