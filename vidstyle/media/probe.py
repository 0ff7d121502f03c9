"""What is in a video file: size, frame rate, time base, rotation and audio streams.

`probe` opens the file with PyAV and decodes its first frame. Decoding is what tells us the
display rotation (FFmpeg attaches the container's display matrix to decoded frames) and it turns
files that open but cannot be decoded (truncated, wrong codec) into a clear `InputError` before
any work is scheduled for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.audio
import av.container
import av.error
import av.video

from vidstyle.errors import InputError

log = logging.getLogger(__name__)

#: FFmpeg's own fallback frame rate when a stream states none.
FALLBACK_FPS = Fraction(25)
# Packets to read while looking for the first decodable frame; beyond this the file is broken.
_PROBE_PACKET_LIMIT = 512


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of the source, to be copied into the output."""

    index: int  # stream index in the container
    codec: str  # FFmpeg's codec name ("aac", "opus"), not the decoder's ("libopus")
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoInfo:
    """The video stream `read_frames` decodes and `VideoWriter` takes its timing from."""

    path: Path
    width: int  # as displayed, i.e. after rotation
    height: int
    fps: Fraction  # average frame rate, exact (30000/1001 stays that)
    time_base: Fraction  # of the video stream; `DecodedFrame.pts` is in these units
    frame_count: int | None  # container's count if known, else estimated from the duration
    duration: float | None  # seconds
    # Clockwise degrees (0/90/180/270) the decoded picture is turned to come out upright: the
    # convention of the `rotate` tag phones write (portrait phone video is usually 90).
    rotation: int
    codec: str  # FFmpeg's codec name ("h264", "av1"), not the decoder's ("libdav1d")
    audio: tuple[AudioStreamInfo, ...]
    stream_index: int = 0  # which video stream of the container this describes
    # Seconds at which the container's timeline starts (earliest stream). MPEG-TS and some
    # editors start well after 0; the writer shifts such files back to 0, as ffmpeg does.
    start_time: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        return self.width, self.height


def open_input(path: Path) -> av.container.InputContainer:
    """Open `path` for reading, turning every failure into an `InputError` that says why."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found; check the path", path)
    if path.is_dir():
        raise InputError("is a folder, not a video file; give a video file", path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(
            f"cannot read the file ({err.strerror}); check its permissions", path
        ) from err
    if size == 0:
        raise InputError("file is empty (0 bytes); re-export or copy it again", path)
    try:
        return av.open(str(path), mode="r")
    except PermissionError as err:
        raise InputError(
            "cannot read the file (permission denied); check its permissions", path
        ) from err
    except (av.error.FFmpegError, OSError, ValueError) as err:
        log.debug("av.open(%s) failed: %s", path, err)
        raise InputError(
            "not a video FFmpeg can read (damaged, truncated, or not a video); check that it "
            "plays, or copy or re-export it again",
            path,
        ) from err


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first real video stream (cover art in music files does not count)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    what = "audio only" if container.streams.audio else "no video or audio"
    raise InputError(f"has no video stream ({what}); give a video file", path)


def usable_audio_streams(
    container: av.container.InputContainer, path: Path
) -> list[av.audio.stream.AudioStream]:
    """Audio streams PyAV can handle; ones with a codec this FFmpeg lacks are left out."""
    usable = []
    for stream in container.streams.audio:
        if stream.codec_context is None:
            log.warning(
                "%s: audio stream #%d has a codec FFmpeg lacks; it is left out", path, stream.index
            )
        else:
            usable.append(stream)
    return usable


def probe(path: Path) -> VideoInfo:
    """Describe the video in `path`; raises `InputError` if it is not a decodable video."""
    path = Path(path)
    with open_input(path) as container:
        stream = video_stream(container, path)
        first = _first_frame(container, stream, path)
        rotation = _clockwise_rotation(first.rotation, path)
        coded_w, coded_h = first.width, first.height
        width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)

        time_base = stream.time_base
        if time_base is None:  # pragma: no cover - demuxers always set one
            raise InputError("video stream has no time base; remux the file", path)
        fps = _frame_rate(stream, path)

        duration = _duration(container, stream)

        frame_count: int | None = stream.frames or None
        if frame_count is None and duration is not None:
            frame_count = round(duration * fps)

        audio = tuple(
            AudioStreamInfo(
                index=a.index,
                codec=a.codec_context.codec.canonical_name,
                sample_rate=a.codec_context.sample_rate,
                channels=a.codec_context.channels,
            )
            for a in usable_audio_streams(container, path)
        )
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=fps,
            time_base=Fraction(time_base),
            frame_count=frame_count,
            duration=duration,
            rotation=rotation,
            codec=stream.codec_context.codec.canonical_name,
            audio=audio,
            stream_index=stream.index,
            start_time=(container.start_time or 0) / av.time_base,
        )


def _duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    # Matroska/WebM store no per-stream duration. FFmpeg-written files carry a DURATION tag
    # per track (the track's end time); else the container's end, which covers all streams.
    # Matroska often starts video a little after audio (it shifts AAC priming to zero), so
    # measure from the video's own start.
    container_start = (container.start_time or 0) / av.time_base
    start = container_start
    if stream.start_time is not None and stream.time_base:
        start = float(stream.start_time * stream.time_base)
    end = _parse_clock(stream.metadata.get("DURATION", ""))
    if end is None and container.duration:
        end = container_start + container.duration / av.time_base
    return None if end is None else max(0.0, end - start)


def _parse_clock(text: str) -> float | None:
    """'HH:MM:SS.fraction' -> seconds, or None."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        return None
    try:
        hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def _first_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path
) -> av.VideoFrame:
    errors = 0
    try:
        for packet in _limited(container.demux(stream), _PROBE_PACKET_LIMIT):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                errors += 1  # a damaged packet; a later keyframe may still decode
                continue
            if frames:
                return frames[0]
    except av.error.FFmpegError as err:
        log.debug("demuxing %s failed: %s", path, err)
    detail = f" ({errors} damaged packets)" if errors else ""
    raise InputError(
        f"no decodable video frames{detail}; the file is damaged or truncated: copy or "
        "re-export it again",
        path,
    )


def _limited(packets: Iterator[av.Packet], limit: int) -> Iterator[av.Packet]:
    for count, packet in enumerate(packets):
        if count >= limit:
            return
        yield packet


def _clockwise_rotation(ccw_degrees: float | int, path: Path) -> int:
    # PyAV reports the display matrix as a counter-clockwise angle in [-180, 180].
    clockwise = -float(ccw_degrees) % 360
    snapped = int(round(clockwise / 90.0)) * 90 % 360
    if abs(clockwise - snapped) > 1 and abs(clockwise - snapped) < 359:
        log.warning(
            "%s: display rotation %.0f° is not a multiple of 90°; using %d°",
            path,
            clockwise,
            snapped,
        )
    return snapped


def _frame_rate(stream: av.video.stream.VideoStream, path: Path) -> Fraction:
    # average_rate is exact for MP4 (frames / duration in the track's own timescale), so NTSC
    # stays 30000/1001; guessed_rate covers containers that store no average (raw streams).
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    log.warning("%s: the video states no frame rate; assuming %s fps", path, FALLBACK_FPS)
    return FALLBACK_FPS
