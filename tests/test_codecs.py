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
from vidstyle.render.workdir import work_dir_for

# The stream's codec as a decoder names it, for each encoder.
_DECODED_AS = {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9", "libsvtav1": "av1"}


@pytest.fixture
def folder(tmp_path: Path, style_image: Path) -> Path:
    # Six frames in two 3-frame segments. (libx265 in this FFmpeg build corrupts the heap now
    # and then when an encode holds only one or two frames, so no segment here is that short.)
    mediagen.make_video(tmp_path / "clip.mp4", frames=6)
    shutil.copy(style_image, tmp_path / "style.png")
    return tmp_path


def _render(args: list[object], codec: str) -> None:
    """`vidstyle ARGS... --codec CODEC -q`, which must succeed; for libx265 in a child process.

    A child, because libx265 in this PyAV build now and then corrupts the heap when it encodes
    beside a render (glibc aborts: "malloc_consolidate(): invalid chunk size"); that is a known
    defect of the encoder build, reported as an expected failure rather than killing the suite.
    The other encoders render in this process (a child costs seconds of imports).
    """
    args = [*args, "--codec", codec, *FAST, "-q"]
    if codec != "libx265":
        assert run(args) == 0
        return
    done = subprocess.run(
        [sys.executable, "-m", "vidstyle", *map(str, args)],
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


# The quick set (`-m "not slow"`) renders each codec that renders in this process once, in its
# usual container; libx265 (in a fresh process, seconds) and every other pair only in the whole
# suite. (tests/test_media.py encodes with each codec, HEVC's hvc1 tag checked, in the quick set.)
_USUAL = {("libx264", ".mp4"), ("libvpx-vp9", ".webm"), ("libsvtav1", ".mp4")}
_PAIR_PARAMS = [
    pytest.param(codec, suffix, marks=() if (codec, suffix) in _USUAL else pytest.mark.slow)
    for codec, suffix in _PAIRS
]


@pytest.mark.parametrize(("codec", "suffix"), _PAIR_PARAMS)
def test_every_codec_renders_and_joins_in_every_container_that_holds_it(
    folder: Path, codec: str, suffix: str
) -> None:
    _needs(codec)
    out = folder / f"out{suffix}"
    # Two segments, so the join copies more than one.
    args = ["-s", folder / "style.png", "-o", out, "--segment-frames", "3"]
    _render([folder / "clip.mp4", *args], codec)
    assert frame_count(out) == 6
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name in (
            _DECODED_AS[codec],
            f"lib{_DECODED_AS[codec]}",  # FFmpeg may pick an external decoder (libdav1d)
            "libdav1d",
        )
        if codec == "libx265" and suffix in (".mp4", ".mov"):
            assert video.codec_tag == "hvc1"  # what Apple's players need to play HEVC
    assert not work_dir_for(out).exists()


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
