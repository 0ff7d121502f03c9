"""Media I/O: what a user relies on when a video goes through vidstyle.

Frame count, exact frame rate, duration, timestamps and audio must survive a decode/encode
round trip; odd, rotated and variable-rate inputs must come out right; failures must name the
file and never leave a half-written output behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import mediagen
import numpy as np
import pytest
import torch
from PIL import Image

from vidstyle.atomic import temp_path_for
from vidstyle.errors import ConfigError, InputError, OutputError
from vidstyle.media import (
    VIDEO_CODECS,
    DecodedFrame,
    VideoInfo,
    VideoWriter,
    available_codecs,
    check_output_writable,
    image_to_tensor,
    plan_size,
    probe,
    read_frames,
    tensor_to_image,
)
from vidstyle.media.still import write_image

DATA = Path(__file__).parent / "data"

NTSC = Fraction(30000, 1001)


# ------------------------------------------------------------------------------------ helpers


def transcode(
    source: Path,
    output: Path,
    *,
    size: tuple[int, int] | None = None,
    max_frames: int | None = None,
    **writer_options: object,
) -> tuple[VideoInfo, list[DecodedFrame]]:
    """Decode `source` and encode it to `output` unchanged, as the pipeline does."""
    info = probe(source)
    if size is None:
        size, _ = plan_size(info.size, 4096)
    writer_options.setdefault("encoder_preset", "ultrafast")
    frames = list(read_frames(info, size=size, max_frames=max_frames))
    with VideoWriter(output, info, size, **writer_options) as writer:
        for frame in frames:
            writer.write(frame.image, frame.pts)
    return info, frames


def decoded_times(path: Path) -> list[Fraction]:
    """Presentation time in seconds of every frame of `path`, decoded."""
    info = probe(path)
    return [f.pts * info.time_base for f in read_frames(info)]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def video_start(path: Path) -> float:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return float(frame.pts * frame.time_base)
    raise AssertionError("no frames")


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vidstyle-decode")]


# -------------------------------------------------------------------------------------- probe


def test_probe_describes_clip(clip: Path) -> None:
    info = probe(clip)
    assert info.path == clip
    assert info.size == (64, 48)
    assert info.fps == 24
    assert info.frame_count == 24
    assert info.duration == pytest.approx(1.0, abs=1e-3)
    assert info.rotation == 0
    assert info.codec == "h264"
    assert len(info.audio) == 1
    audio = info.audio[0]
    assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 48_000, 2)


def test_probe_keeps_ntsc_rate_exact(clip_ntsc: Path) -> None:
    info = probe(clip_ntsc)
    assert info.fps == NTSC  # a Fraction, not 29.97
    assert isinstance(info.fps, Fraction)
    assert info.duration == pytest.approx(24 * 1001 / 30000, abs=1e-3)


def test_probe_matroska_estimates_frame_count(tmp_path: Path) -> None:
    # Matroska stores no frame count and starts video after the AAC priming shift.
    path = mediagen.make_video(tmp_path / "clip.mkv", frames=30)
    info = probe(path)
    assert info.frame_count == 30
    assert info.duration == pytest.approx(30 / 24, abs=1 / 24)


def _missing(tmp: Path) -> Path:
    return tmp / "nope.mp4"


def _folder(tmp: Path) -> Path:
    (tmp / "folder.mp4").mkdir()
    return tmp / "folder.mp4"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.mp4").write_bytes(b"")
    return tmp / "empty.mp4"


def _text(tmp: Path) -> Path:
    (tmp / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    return tmp / "notes.mp4"


def _truncated(tmp: Path) -> Path:
    full = mediagen.make_video(tmp / "full.mp4")
    data = full.read_bytes()
    (tmp / "half.mp4").write_bytes(data[: len(data) // 2])
    return tmp / "half.mp4"


def _audio_only(tmp: Path) -> Path:
    return mediagen.make_audio_only(tmp / "song.m4a")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_missing, "not found"),
        (_folder, "folder"),
        (_empty, "empty"),
        (_text, "not a video"),
        (_truncated, "not a video"),
        (_audio_only, "no video stream"),
    ],
    ids=["missing", "directory", "zero-byte", "text-file", "truncated", "audio-only"],
)
def test_probe_rejects_bad_input(tmp_path: Path, make, words: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        probe(path)
    message = str(caught.value)
    assert words in message
    assert str(path) in message  # the message names the file
    assert "\n" not in message
    assert caught.value.path == path


# ---------------------------------------------------------------------------------- plan_size


@pytest.mark.parametrize(
    ("source", "long_side", "expected"),
    [
        ((1920, 1080), 512, (512, 288)),
        ((1080, 1920), 512, (288, 512)),  # portrait keeps its orientation
        ((640, 360), 1024, (640, 360)),  # never upscale
        ((1000, 333), 500, (500, 166)),  # short side rounded to even
        ((100, 100), 51, (50, 50)),  # odd request: even and not above it
        ((1920, 1080), 1920, (1920, 1080)),
    ],
)
def test_plan_size(source: tuple[int, int], long_side: int, expected: tuple[int, int]) -> None:
    size, note = plan_size(source, long_side)
    assert size == expected
    assert note is None
    assert size[0] % 2 == 0 and size[1] % 2 == 0


@pytest.mark.parametrize(
    ("source", "expected"),
    [((321, 241), (320, 240)), ((67, 45), (66, 44)), ((1921, 1080), (1920, 1080))],
)
def test_plan_size_odd_source_gets_note(source: tuple[int, int], expected: tuple[int, int]) -> None:
    size, note = plan_size(source, 4096)
    assert size == expected
    assert note == (
        f"source is {source[0]}x{source[1]} (odd); "
        f"rendering at {expected[0]}x{expected[1]} (1 px cropped)"
    )


def test_plan_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        plan_size((0, 10), 512)
    with pytest.raises(ValueError):
        plan_size((10, 10), 1)


# ----------------------------------------------------------------------------- tensor <-> image


def test_image_tensor_round_trip() -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 3, 5, 7)
    assert tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    assert np.array_equal(tensor_to_image(tensor), image)
    assert np.array_equal(tensor_to_image(tensor.half()), image)  # fp16 models
    tensor.zero_()  # a new tensor: changing it leaves the image alone
    assert image.any()


def test_image_to_tensor_accepts_views() -> None:
    image = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    view = np.rot90(image)  # negative strides
    assert np.array_equal(tensor_to_image(image_to_tensor(view)), view)


def test_tensor_to_image_clamps_rounds_and_leaves_input_alone() -> None:
    t = torch.tensor([-0.5, 0.0, 0.5 / 255, 0.7 / 255, 1.0, 1.5]).reshape(1, 3, 1, 2)
    before = t.clone()
    image = tensor_to_image(t)
    assert image.dtype == np.uint8 and image.shape == (1, 2, 3)
    assert image.reshape(-1, 3).T.ravel().tolist() == [0, 0, 0, 1, 255, 255]
    assert torch.equal(t, before)


def test_image_to_tensor_rejects_wrong_layout() -> None:
    with pytest.raises(ValueError):
        image_to_tensor(np.zeros((3, 4, 4), np.uint8)[..., :2])
    with pytest.raises(ValueError):
        image_to_tensor(np.zeros((4, 4, 3), np.float32))


# ------------------------------------------------------------------------------------- reader


def test_read_frames_match_the_source(clip: Path) -> None:
    info = probe(clip)
    frames = list(read_frames(info))
    expected = mediagen.make_frames(frames=24)
    assert [f.index for f in frames] == list(range(24))
    assert [f.pts * info.time_base for f in frames] == mediagen.frame_times(24, 24)
    for got, want in zip(frames, expected, strict=True):
        assert got.image.shape == (48, 64, 3) and got.image.dtype == np.uint8
        assert got.image.flags.c_contiguous
        assert mean_abs_diff(got.image, want) < 3.0


def test_read_frames_scales(clip: Path) -> None:
    frames = list(read_frames(probe(clip), size=(32, 24), max_frames=3))
    assert len(frames) == 3
    assert all(f.image.shape == (24, 32, 3) for f in frames)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_input_comes_out_upright(tmp_path: Path, rotation: int) -> None:
    path = mediagen.make_video(tmp_path / "phone.mp4", frames=4, size=(64, 48), rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    assert info.size == (64, 48)  # as displayed
    expected = mediagen.make_frames(frames=4, size=(64, 48))
    frames = list(read_frames(info))
    for got, want in zip(frames, expected, strict=True):
        assert mean_abs_diff(got.image, want) < 3.0
    scaled = next(iter(read_frames(info, size=(32, 24))))
    assert scaled.image.shape == (24, 32, 3)


def test_odd_source_is_cropped_not_resampled(tmp_path: Path) -> None:
    path = mediagen.make_video(tmp_path / "odd.mp4", frames=3, size=(67, 45))
    info = probe(path)
    size, note = plan_size(info.size, 512)
    assert size == (66, 44) and note is not None
    expected = mediagen.make_frames(frames=3, size=(67, 45))
    for got, want in zip(read_frames(info, size=size), expected, strict=True):
        assert got.image.shape == (44, 66, 3)
        assert mean_abs_diff(got.image, want[:44, :66]) < 1.5  # same pixels, not resampled


def test_read_frames_stops_cleanly_when_consumer_stops(tmp_path: Path) -> None:
    path = mediagen.make_video(tmp_path / "long.mp4", frames=48, audio=False)
    info = probe(path)
    frames = read_frames(info, queue_size=1)
    assert next(frames).index == 0
    assert next(frames).index == 1
    assert decode_threads()  # the worker is blocked on the full queue
    frames.close()
    assert not decode_threads()

    for frame in read_frames(info, queue_size=2):  # break out of a for loop
        if frame.index == 5:
            break
    del frame
    assert not decode_threads()


def test_read_frames_max_frames(clip: Path) -> None:
    info = probe(clip)
    assert [f.index for f in read_frames(info, max_frames=5)] == [0, 1, 2, 3, 4]
    assert list(read_frames(info, max_frames=0)) == []


def test_read_frames_open_error_is_input_error(tmp_path: Path) -> None:
    path = mediagen.make_video(tmp_path / "gone.mp4", frames=2, audio=False)
    info = probe(path)
    path.unlink()
    with pytest.raises(InputError, match="not found"):
        read_frames(info)  # raised at the call, not at the first next()


def test_read_frames_skips_damaged_packets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = mediagen.make_video(tmp_path / "good.mp4", frames=48, audio=False)
    data = bytearray(path.read_bytes())
    # Garbage in the middle of the (front) mdat box: a couple of frames become undecodable.
    start = int(len(data) * 0.3)
    data[start : start + 300] = np.random.default_rng(1).integers(0, 256, 300, np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="vidstyle.media.reader"):
        frames = list(read_frames(probe(damaged)))
    # Lost frames are filled with the previous good frame at their own timestamps:
    # the frame count and timing stay the source's.
    assert len(frames) == 48
    assert 1 <= sum(f.repeat for f in frames) <= 8
    assert any("damaged packet" in r.getMessage() for r in caplog.records)
    assert [f.pts for f in frames] == [f.pts for f in read_frames(probe(path))]
    for before, frame in zip(frames, frames[1:], strict=False):
        if frame.repeat:
            assert np.array_equal(frame.image, before.image)


def test_frames_without_timestamps_get_them_from_the_rate(tmp_path: Path) -> None:
    # A raw H.264 stream has no container timestamps at all.
    path = mediagen.make_video(tmp_path / "raw.h264", frames=6, audio=False)
    info = probe(path)
    pts = [f.pts for f in read_frames(info)]
    assert len(pts) == 6
    step = pts[1] - pts[0]
    assert step > 0 and pts == [pts[0] + i * step for i in range(6)]


# ------------------------------------------------------------------------------------- writer


@pytest.mark.parametrize("fps", [Fraction(24), NTSC], ids=["24", "ntsc"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_round_trip_keeps_count_rate_duration_and_timestamps(
    tmp_path: Path, fps: Fraction, suffix: str
) -> None:
    source = mediagen.make_video(tmp_path / f"source{suffix}", frames=24, fps=fps)
    output = tmp_path / f"out{suffix}"
    info, frames = transcode(source, output)
    out = probe(output)
    assert len(frames) == 24
    assert out.fps == info.fps == fps  # exact: 30000/1001 stays 30000/1001
    assert out.size == info.size
    with av.open(str(output)) as container:
        assert container.streams.video[0].average_rate == fps
    times = decoded_times(output)
    assert len(times) == 24  # frame count
    assert out.duration == pytest.approx(info.duration, abs=float(1 / fps))
    # Timestamps: exact in MP4; Matroska stores whole milliseconds.
    expected = [f.pts * info.time_base for f in frames]
    tolerance = 0 if suffix == ".mp4" else Fraction(1, 1000)
    assert all(abs(a - b) <= tolerance for a, b in zip(times, expected, strict=True))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_packets_are_copied_untouched(tmp_path: Path, suffix: str) -> None:
    source = mediagen.make_video(tmp_path / f"source{suffix}", frames=24)
    output = tmp_path / f"out{suffix}"
    transcode(source, output)
    before, after = mediagen.read_audio_packets(source), mediagen.read_audio_packets(output)
    assert len(before) == len(after) == 1
    assert len(after[0]) == len(before[0]) > 40
    assert after == before  # every packet's bytes and pts


def test_audio_sync_survives_a_container_change(tmp_path: Path, clip: Path) -> None:
    # MP4 -> MKV: Matroska shifts the AAC priming (negative pts) to zero, for every stream.
    output = tmp_path / "out.mkv"
    transcode(clip, output)
    before, after = mediagen.read_audio_packets(clip)[0], mediagen.read_audio_packets(output)[0]
    assert [p for _, p in after] == [p for _, p in before]
    offset_before = [t - video_start(clip) for t, _ in before]
    offset_after = [t - video_start(output) for t, _ in after]
    assert offset_after == pytest.approx(offset_before, abs=1e-3)


def test_audio_is_muxed_as_the_video_advances(tmp_path: Path, clip: Path) -> None:
    # Memory stays bounded only if audio is read lazily, in step with the video, rather than
    # all at once or all at close. White-box: watch what the writer hands to the muxer.
    info = probe(clip)
    audio_times: list[float] = []
    with VideoWriter(tmp_path / "out.mp4", info, info.size, encoder_preset="ultrafast") as writer:
        real = writer._out

        class Spy:
            def mux(self, packets: av.Packet | list[av.Packet]) -> None:
                for p in [packets] if isinstance(packets, av.Packet) else packets:
                    if p.stream.type == "audio":
                        audio_times.append(float(p.pts * p.time_base))
                real.mux(packets)

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

        writer._out = Spy()  # type: ignore[assignment]
        for frame in read_frames(info):
            writer.write(frame.image, frame.pts)
            now = float(frame.pts * info.time_base)
            assert max(audio_times, default=-1.0) <= now  # never ahead of the video
            assert max(audio_times) >= now - 0.05  # and never far behind
    assert len(audio_times) == len(mediagen.read_audio_packets(clip)[0])


def test_audio_can_be_dropped(tmp_path: Path, clip: Path) -> None:
    transcode(clip, tmp_path / "mute.mp4", audio=False)
    assert probe(tmp_path / "mute.mp4").audio == ()


def test_source_without_audio(tmp_path: Path) -> None:
    source = mediagen.make_video(tmp_path / "silent.mp4", frames=6, audio=False)
    transcode(source, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert out.audio == () and out.frame_count == 6


def test_audio_the_container_cannot_hold_is_reencoded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # MP4 cannot hold unsigned 8-bit PCM; Matroska can.
    source = mediagen.make_video(tmp_path / "pcm.mkv", frames=24, audio_codec="pcm_u8")
    assert probe(source).audio[0].codec == "pcm_u8"
    output = tmp_path / "out.mp4"
    with caplog.at_level(logging.INFO, logger="vidstyle.media.audio"):
        transcode(source, output)
    out = probe(output)
    assert [a.codec for a in out.audio] == ["aac"]
    assert out.audio[0].channels == 2 and out.audio[0].sample_rate == 48_000
    messages = [r.getMessage() for r in caplog.records]
    assert any("re-encoding" in m and "pcm_u8" in m for m in messages)
    packets = mediagen.read_audio_packets(output)[0]
    assert packets[-1][0] == pytest.approx(1.0, abs=0.05)  # audio still spans the video
    assert out.fps == 24  # from a millisecond time base to an exact MP4 rate


def test_ntsc_matroska_to_mp4_keeps_exact_rate(tmp_path: Path) -> None:
    # Matroska rounds 33.367 ms frame times to whole ms; the writer recovers the exact grid.
    source = mediagen.make_video(tmp_path / "ntsc.mkv", frames=24, fps=NTSC)
    assert probe(source).time_base == Fraction(1, 1000)
    output = tmp_path / "out.mp4"
    transcode(source, output)
    assert probe(output).fps == NTSC
    assert decoded_times(output) == [i / NTSC for i in range(24)]


def test_variable_frame_rate_keeps_its_timestamps(tmp_path: Path) -> None:
    source = mediagen.make_video(tmp_path / "vfr.mp4", frames=20, vfr=True)
    assert decoded_times(source) == mediagen.frame_times(20, 24, vfr=True)
    output = tmp_path / "out.mp4"
    transcode(source, output)
    assert decoded_times(output) == mediagen.frame_times(20, 24, vfr=True)


def test_late_starting_timeline_is_shifted_to_zero(tmp_path: Path) -> None:
    # E.g. MPEG-TS, or a clip cut from a longer recording: in MP4 a late start would become a
    # frozen or black lead-in. Everything moves back by the same amount; sync is kept.
    source = mediagen.make_video(tmp_path / "late.mp4", frames=12, start=2)
    info = probe(source)
    assert info.start_time == pytest.approx(2.0, abs=0.05)  # AAC priming starts a bit earlier
    output = tmp_path / "out.mp4"
    transcode(source, output)
    out = probe(output)
    assert out.start_time == pytest.approx(0.0, abs=1e-3)
    before, after = decoded_times(source), decoded_times(output)
    assert after[0] < 0.05
    assert [t - after[0] for t in after] == [t - before[0] for t in before]  # exact spacing
    audio_before = mediagen.read_audio_packets(source)[0]
    audio_after = mediagen.read_audio_packets(output)[0]
    assert [p for _, p in audio_after] == [p for _, p in audio_before]
    # A/V sync: each audio packet sits where it did relative to the first frame (MP4 edit
    # lists round to the millisecond).
    sync_before = [t - float(before[0]) for t, _ in audio_before]
    sync_after = [t - float(after[0]) for t, _ in audio_after]
    assert sync_after == pytest.approx(sync_before, abs=2e-3)


def test_odd_size_round_trip(tmp_path: Path) -> None:
    source = mediagen.make_video(tmp_path / "odd.mp4", frames=6, size=(67, 45))
    transcode(source, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert out.size == (66, 44)
    assert out.frame_count == 6


def test_rotated_round_trip_is_upright_without_rotation(tmp_path: Path) -> None:
    source = mediagen.make_video(tmp_path / "phone.mp4", frames=6, rotation=90)
    transcode(source, tmp_path / "out.mp4", crf=0)
    out = probe(tmp_path / "out.mp4")
    assert out.rotation == 0 and out.size == (64, 48)
    expected = mediagen.make_frames(frames=6)
    for got, want in zip(read_frames(out), expected, strict=True):
        assert mean_abs_diff(got.image, want) < 4.0


def test_max_frames_preview_trims_audio(tmp_path: Path, clip: Path) -> None:
    info = probe(clip)
    frames = list(read_frames(info, max_frames=12))
    step = frames[1].pts - frames[0].pts
    end_pts = frames[-1].pts + step
    output = tmp_path / "preview.mp4"
    with VideoWriter(output, info, info.size, encoder_preset="ultrafast", end_pts=end_pts) as w:
        for frame in frames:
            w.write(frame.image, frame.pts)
    out = probe(output)
    assert out.frame_count == 12
    assert out.duration == pytest.approx(0.5, abs=1 / 24)
    before, after = mediagen.read_audio_packets(clip)[0], mediagen.read_audio_packets(output)[0]
    end = float(end_pts * info.time_base)
    assert after == [p for p in before if p[0] < end]  # untouched packets, cut at the end
    assert len(after) < len(before)


def test_end_pts_can_be_set_after_the_last_frame(tmp_path: Path, clip: Path) -> None:
    # A caller may only learn where the preview ends when its frames run out.
    info = probe(clip)
    output = tmp_path / "preview.mp4"
    with VideoWriter(output, info, info.size, encoder_preset="ultrafast") as writer:
        for frame in read_frames(info, max_frames=6):
            writer.write(frame.image, frame.pts)
        writer.end_pts = frame.pts + round(1 / (info.fps * info.time_base))  # end of frame 5
    packets = mediagen.read_audio_packets(output)[0]
    assert packets[-1][0] < 0.25 <= packets[-1][0] + 1024 / 48_000 + 1e-6


CODEC_CONTAINERS = {
    "libx264": (".mp4", "h264"),
    "libx265": (".mp4", "hevc"),
    "libvpx-vp9": (".webm", "vp9"),
    "libsvtav1": (".mkv", "av1"),
}


def test_available_codecs_lists_the_supported_ones() -> None:
    codecs = available_codecs()
    assert set(codecs) == set(VIDEO_CODECS) == set(CODEC_CONTAINERS)
    assert codecs["libx264"] is ("libx264" in av.codecs_available)


@pytest.mark.parametrize("codec", VIDEO_CODECS)
def test_each_available_codec_encodes(tmp_path: Path, clip: Path, codec: str) -> None:
    if not available_codecs()[codec]:
        pytest.skip(f"{codec} is not in this FFmpeg build")
    suffix, decoder = CODEC_CONTAINERS[codec]
    output = tmp_path / f"out{suffix}"
    transcode(clip, output, codec=codec, crf=20)
    out = probe(output)
    assert out.codec == decoder
    assert out.fps == 24
    assert len(decoded_times(output)) == 24
    assert out.audio  # AAC copied, or re-encoded to Opus for WebM
    if suffix == ".webm":
        assert out.audio[0].codec == "opus"
    expected = mediagen.make_frames(frames=24)
    for got, want in zip(read_frames(out), expected, strict=True):
        assert mean_abs_diff(got.image, want) < 8.0


def test_hevc_in_mp4_is_tagged_for_apple_players(tmp_path: Path, clip: Path) -> None:
    if not available_codecs()["libx265"]:
        pytest.skip("libx265 is not in this FFmpeg build")
    transcode(clip, tmp_path / "out.mp4", codec="libx265")
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_tag == "hvc1"


def _write_then_fail(path: Path, info: VideoInfo, error: BaseException) -> None:
    frames = read_frames(info)
    with VideoWriter(path, info, info.size, encoder_preset="ultrafast") as writer:
        for frame in frames:
            writer.write(frame.image, frame.pts)
            if frame.index == 5:
                assert temp_path_for(path).exists()  # work in progress, under a hidden name
                raise error


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_inside_with_leaves_nothing(
    tmp_path: Path, clip: Path, error: BaseException
) -> None:
    output = tmp_path / "out.mp4"
    with pytest.raises(type(error)):
        _write_then_fail(output, probe(clip), error)
    assert sorted(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_output(tmp_path: Path, clip: Path) -> None:
    output = tmp_path / "out.mp4"
    output.write_bytes(b"previous render")
    with pytest.raises(RuntimeError):
        _write_then_fail(output, probe(clip), RuntimeError("boom"))
    assert output.read_bytes() == b"previous render"
    assert sorted(tmp_path.iterdir()) == [output]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_is_an_output_error(tmp_path: Path, clip: Path) -> None:
    output = tmp_path / "out.mkv"
    # Writes to /dev/full fail with ENOSPC: point the temporary name at it.
    temp_path_for(output).symlink_to("/dev/full")
    info = probe(clip)
    with (
        pytest.raises(OutputError, match="disk full") as caught,
        VideoWriter(output, info, info.size, encoder_preset="ultrafast") as writer,
    ):
        for frame in read_frames(info):
            writer.write(frame.image, frame.pts)
    assert caught.value.path == output
    assert sorted(tmp_path.iterdir()) == []  # no output, temporary removed


def test_close_without_frames_leaves_nothing(tmp_path: Path, clip: Path) -> None:
    info = probe(clip)
    with (
        pytest.raises(OutputError, match="no frames"),
        VideoWriter(tmp_path / "out.mp4", info, info.size),
    ):
        pass
    assert sorted(tmp_path.iterdir()) == []


def test_writer_rejects_bad_settings(tmp_path: Path, clip: Path) -> None:
    info = probe(clip)
    with pytest.raises(OutputError, match="cannot write a .xyz file"):
        VideoWriter(tmp_path / "out.xyz", info, info.size)
    with pytest.raises(ConfigError, match="cannot hold libx264"):
        VideoWriter(tmp_path / "out.webm", info, info.size)
    with pytest.raises(ConfigError, match="preset"):
        VideoWriter(tmp_path / "out.mp4", info, info.size, encoder_preset="warp9")
    with pytest.raises(ConfigError, match="crf"):
        VideoWriter(tmp_path / "out.mp4", info, info.size, crf=60)
    with pytest.raises(ConfigError, match="not available"):
        VideoWriter(tmp_path / "out.mp4", info, info.size, codec="no-such-codec")
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "out.mp4", info, (63, 48))
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "out.mp4", info, info.size)
    assert sorted(tmp_path.iterdir()) == []


def test_writer_checks_frames(tmp_path: Path, clip: Path) -> None:
    info = probe(clip)
    with pytest.raises(ValueError), VideoWriter(tmp_path / "out.mp4", info, info.size) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8), 0)
        writer.write(np.zeros((48, 64, 3), np.uint8), 0)  # pts must increase
    with pytest.raises(ValueError), VideoWriter(tmp_path / "out.mp4", info, info.size) as writer:
        writer.write(np.zeros((48, 64, 4), np.uint8), 0)
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.mp4", "out.png"])
def test_an_output_gets_the_umask_mode_over_a_leftover_temporary_file(
    tmp_path: Path, clip: Path, name: str
) -> None:
    # A killed run leaves its temporary file behind, with whatever mode it had; the next
    # output written through it must still get the mode any new file of the user's gets.
    output = tmp_path / name
    temp_path_for(output).write_bytes(b"left by a killed run")
    temp_path_for(output).chmod(0o600)
    old = os.umask(0o022)
    try:
        if output.suffix == ".mp4":
            transcode(clip, output, max_frames=2)
        else:
            write_image(np.zeros((8, 8, 3), np.uint8), output)
    finally:
        os.umask(old)
    assert stat.S_IMODE(output.stat().st_mode) == 0o644
    assert sorted(tmp_path.iterdir()) == [output]


def test_check_output_writable(tmp_path: Path) -> None:
    check_output_writable(tmp_path / "out.mp4")
    assert sorted(tmp_path.iterdir()) == []  # the probe file is gone
    with pytest.raises(OutputError, match="does not exist"):
        check_output_writable(tmp_path / "missing" / "out.mp4")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output_writable(tmp_path / "dir.mp4")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_check_output_writable_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            check_output_writable(folder / "out.mp4")
    finally:
        folder.chmod(0o700)


# ------------------------------------------------------------------------------------ mediagen


def test_mediagen_motion_is_as_documented() -> None:
    pan = mediagen.make_frames(frames=3, size=(32, 16), motion="pan", pan_px=3)
    assert np.array_equal(pan[1][:, 3:], pan[0][:, :-3])  # content moves right by pan_px
    boxes = mediagen.object_boxes(20, (32, 24), pan_px=4)
    obj = mediagen.make_frames(frames=20, size=(32, 24), motion="object", pan_px=4)
    x, y, w, h = boxes[1]
    assert boxes[1][0] - boxes[0][0] == 4
    assert not np.array_equal(obj[1][y : y + h, x : x + w], obj[0][y : y + h, x : x + w])
    assert all(0 <= b[0] <= 32 - b[2] for b in boxes)  # bounces, stays in view
    cut = mediagen.make_frames(frames=8, size=(32, 16), motion="cut", pan_px=1)
    c = mediagen.cut_index(8)
    assert mean_abs_diff(cut[c], cut[c - 1]) > 4 * mean_abs_diff(cut[c - 1], cut[c - 2])
    static = mediagen.make_frames(frames=2, motion="static")
    assert np.array_equal(static[0], static[1])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L", "CMYK"])
def test_mediagen_images(tmp_path: Path, mode: str) -> None:
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = mediagen.make_image(tmp_path / f"style{suffix}", (40, 30), mode=mode)
    with Image.open(path) as image:
        assert image.mode == mode and image.size == (40, 30)


def _iter_is_lazy(frames: Iterator[DecodedFrame]) -> bool:
    return iter(frames) is frames


def test_read_frames_returns_an_iterator(clip: Path) -> None:
    frames = read_frames(probe(clip), max_frames=1)
    assert _iter_is_lazy(frames)
    assert len(list(frames)) == 1


def test_the_same_frames_encode_to_the_same_bytes_every_time(tmp_path: Path) -> None:
    # Split and resumed renders promise a whole render's bytes. On a CPU with AVX-512, x264's
    # AVX-512 code made about one encode of these frames in three come out as other bytes
    # (tests/data/README.md); on other CPUs this holds without vidstyle's help.
    strip = np.asarray(Image.open(DATA / "x264_frames.png").convert("RGB"))
    images = np.split(strip, 3, axis=1)
    height, width = images[0].shape[:2]
    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=3, size=(width, height))
    info = dataclasses.replace(probe(clip), audio=())
    timestamps = [frame.pts for frame in read_frames(info)]

    def encode(path: Path) -> bytes:
        with VideoWriter(path, info, info.size) as writer:
            for image, pts in zip(images, timestamps, strict=True):
                writer.write(np.ascontiguousarray(image), pts)
        return path.read_bytes()

    encodes = {encode(tmp_path / f"out{attempt}.mp4") for attempt in range(16)}
    assert len(encodes) == 1
