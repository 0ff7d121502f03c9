"""Encode stylized frames, copy the source's audio alongside, and finish atomically.

The output is written to a hidden temporary file beside the target (same folder, so the final
`os.replace` is an atomic rename on one file system) and only renamed when complete: a crash,
an exception or Ctrl-C never leaves a half-written file under the final name.

Timing comes from the source: the encoder runs in the source video's time base and every frame
keeps its source pts, so variable-frame-rate input keeps its timing and the average rate
(30000/1001 stays 30000/1001) and duration match. Audio packets are copied untouched and
interleaved as the video advances, reading the source lazily so memory stays bounded however
long the file is; they are re-encoded only when the output container cannot hold the codec.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.error
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from vidstyle.closing import CloseOrAbort
from vidstyle.errors import ConfigError, OutputError
from vidstyle.media.probe import VideoInfo, open_input, usable_audio_streams

log = logging.getLogger(__name__)

#: Video encoders vidstyle knows how to configure.
VIDEO_CODECS: tuple[str, ...] = ("libx264", "libx265", "libvpx-vp9", "libsvtav1")
#: What ffmpeg users also call these codecs (`-c:v h264` picks FFmpeg's default encoder; here
#: the encoder is named), so `--codec h264` can suggest the name vidstyle takes.
CODEC_ALIASES: dict[str, str] = {
    "h264": "libx264",
    "avc": "libx264",
    "x264": "libx264",
    "hevc": "libx265",
    "h265": "libx265",
    "x265": "libx265",
    "vp9": "libvpx-vp9",
    "libvpx": "libvpx-vp9",
    "av1": "libsvtav1",
    "svtav1": "libsvtav1",
    "libaom-av1": "libsvtav1",
}
#: x264/x265 preset names, fastest first; mapped onto the other encoders' speed settings.
ENCODER_PRESETS: tuple[str, ...] = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_CRF_RANGE: dict[str, tuple[int, int]] = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "libvpx-vp9": (0, 63),
    "libsvtav1": (1, 63),
}
# libvpx-vp9 (deadline, cpu-used) and SVT-AV1 preset numbers for each x264 preset name.
_VP9_SPEED: dict[str, tuple[str, int]] = {
    "ultrafast": ("realtime", 8),
    "superfast": ("realtime", 7),
    "veryfast": ("good", 5),
    "faster": ("good", 4),
    "fast": ("good", 3),
    "medium": ("good", 2),
    "slow": ("good", 1),
    "slower": ("good", 0),
    "veryslow": ("best", 0),
    "placebo": ("best", 0),
}
_SVTAV1_PRESET: dict[str, int] = {
    "ultrafast": 12,
    "superfast": 11,
    "veryfast": 10,
    "faster": 9,
    "fast": 8,
    "medium": 7,
    "slow": 5,
    "slower": 4,
    "veryslow": 2,
    "placebo": 1,
}
_CONTAINER_FORMATS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}
# Audio encoders to fall back on, best first, when the container cannot hold the source codec.
_FALLBACK_AUDIO = ("aac", "libopus", "opus", "libvorbis", "flac")
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)


def available_codecs() -> dict[str, bool]:
    """Which of the video encoders vidstyle supports this PyAV/FFmpeg build has."""
    return {name: name in av.codecs_available for name in VIDEO_CODECS}


# FFmpeg's mov muxer writes VP9 and AV1 only in MP4 mode and fails at the header otherwise,
# though avformat_query_codec does not rule them out for MOV.
_REFUSED_CODECS: dict[str, frozenset[str]] = {"mov": frozenset({"libvpx-vp9", "libsvtav1"})}


@functools.cache
def _container_codecs(fmt: str) -> frozenset[str]:
    out = av.open(io.BytesIO(), mode="w", format=fmt)
    try:
        return frozenset(out.supported_codecs) - _REFUSED_CODECS.get(fmt, frozenset())
    finally:
        with contextlib.suppress(Exception):
            out.close()


def check_container_holds(path: Path, codec: str) -> None:
    """Raise `ConfigError` if `path`'s container cannot hold `codec` video (a WebM file holds
    VP9 and AV1 only), so a render fails before its first frame rather than at the join."""
    fmt = _CONTAINER_FORMATS.get(Path(path).suffix.lower())
    if fmt is None or codec not in av.codecs_available:
        return  # VideoWriter names the extensions that work; encoder_options, the codecs
    supported = _container_codecs(fmt)
    if codec in supported:
        return
    fits = [name for name, ok in available_codecs().items() if ok and name in supported]
    hint = f"use --codec {' or '.join(fits)}, or " if fits else ""
    raise ConfigError(
        f"a {Path(path).suffix} file cannot hold {codec} video; {hint}another extension "
        "(.mkv holds all of them)",
        path,
    )


def check_output_writable(path: Path) -> None:
    """Raise `OutputError` unless a file can be created in `path`'s folder.

    Probes with a real temporary file, which also catches read-only mounts and ACLs that
    permission bits do not show.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise OutputError("is a folder; give an output file name such as out.mp4", path)
    if not folder.exists():
        raise OutputError(f"output folder {folder} does not exist; create it first", path)
    if not folder.is_dir():
        raise OutputError(f"{folder} is not a folder; choose another output path", path)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vidstyle-check-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise OutputError(
            f"cannot write to folder {folder} ({reason}); choose another folder", path
        ) from err


def temp_path_for(path: Path) -> Path:
    """Hidden temporary name beside `path`, keeping the real extension for the muxer."""
    path = Path(path)
    return path.with_name(f".{path.name}.vidstyle-part{path.suffix}")


@dataclass
class _AudioRoute:
    source: av.audio.stream.AudioStream
    output: av.audio.stream.AudioStream
    reencode: bool
    finished: bool = False  # a packet at or past the end has been seen


class VideoWriter(CloseOrAbort):
    """Encode upright RGB frames to `path`, with the source's audio copied alongside.

    Use as a context manager: leaving the block normally calls `close` (finish and rename),
    leaving it by an exception (including KeyboardInterrupt) calls `abort`, so nothing ever
    appears under `path` unless the file is complete.
    """

    def __init__(
        self,
        path: Path,
        source: VideoInfo,
        size: tuple[int, int],
        *,
        codec: str = "libx264",
        crf: int = 18,
        encoder_preset: str = "medium",
        audio: bool = True,
        end_pts: int | None = None,
        copy_video_from: av.video.stream.VideoStream | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """`copy_video_from`: stream-copy mode. The video stream takes its codec parameters from
        this (already encoded) stream and `mux_packet` muxes encoded packets into it; used to
        join a resumable render's segments (`vidstyle.resume`) without encoding them again.
        `tags`: container metadata to write (`vidstyle.provenance` records the render's
        settings there)."""
        self.path = Path(path)
        self.temp_path = temp_path_for(self.path)
        self._copying = copy_video_from is not None
        self.source = source
        self.size = (int(size[0]), int(size[1]))
        width, height = self.size
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(
                f"size must be even and at least 2x2 for yuv420p, got {width}x{height}"
            )
        options = encoder_options(codec, crf, encoder_preset)
        self._end: Fraction | None = None
        self.end_pts = end_pts
        self._retime = _Retimer(source.time_base, source.fps)
        self._reformatter = VideoReformatter()  # keeps its swscale context between frames
        self._frames = 0
        # libx265 (through FFmpeg) hands out packets whose decode times are uninitialised
        # memory (a constant offset of up to 2^63 on every packet) in about half the encodes of
        # two frames, which the MP4 muxer refuses ("pts/dts pair unsupported"); its packets are
        # held and given decode times at close (`_decode_times`). Held packets are bounded by a
        # segment's length (vidstyle.resume).
        self._hold = codec == "libx265" and copy_video_from is None
        self._held: list[av.Packet] = []
        self._last_pts: int | None = None
        self._finished = True  # nothing to clean up until the temporary file is opened
        self._audio_in: av.container.InputContainer | None = None
        self._audio_packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None
        self._routes: dict[int, _AudioRoute] = {}

        fmt = _CONTAINER_FORMATS.get(self.path.suffix.lower())
        container_options = {}
        if fmt in ("mp4", "mov"):
            # Index at the front so players and browsers can start before the whole file loads;
            # metadata as key/value tags, so keys beyond iTunes' fixed set (`tags`) are kept.
            container_options["movflags"] = "+faststart+use_metadata_tags"
        if source.start_time > 0:
            # A timeline starting late (MPEG-TS, some editors) would become a leading gap, which
            # MP4 players show as a frozen or black start. Shift every stream back by the same
            # amount, so A/V sync and all relative timing are unchanged.
            container_options["output_ts_offset"] = f"{-source.start_time:.6f}"
        check_output_writable(self.path)  # clear messages for a missing or read-only folder
        self._finished = False
        try:
            self._out = av.open(
                str(self.temp_path), mode="w", format=fmt, options=container_options
            )
            self._out.metadata.update(tags or {})
        except OSError as err:  # includes PyAV's errno-based errors
            self.abort()
            raise output_error(err, self.path) from err
        except (av.error.FFmpegError, ValueError) as err:  # no muxer for this extension
            self.abort()
            kind = self.path.suffix or "extensionless"
            raise OutputError(
                f"cannot write a {kind} file; use .mp4, .mkv, .webm or .mov", self.path
            ) from err

        try:
            if copy_video_from is not None:
                self._video = self._copy_video_stream(copy_video_from)
            else:
                self._video = self._add_video_stream(codec, options)
            if audio and source.audio:
                self._add_audio_streams()
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------------------------ setup

    def _add_video_stream(self, codec: str, options: dict[str, str]) -> av.video.stream.VideoStream:
        try:
            stream = self._out.add_stream(codec, rate=self.source.fps)
        except ValueError as err:  # the container cannot hold this codec
            raise ConfigError(
                f"a {self.path.suffix} file cannot hold {codec} video; choose another codec or "
                "output extension (.mkv holds all of them)",
                self.path,
            ) from err
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        # Encode with the source's pts (in its time base, or a finer one, see _Retimer): VFR
        # timing survives and the muxer can reproduce the source's exact average rate.
        stream.codec_context.time_base = self._retime.time_base
        stream.time_base = self._retime.time_base
        stream.options = options
        # Frames are converted with the BT.709 matrix (see write); say so, or players guess
        # BT.601 for small frames and shift the colours.
        ctx = stream.codec_context
        ctx.colorspace = 1  # AVCOL_SPC_BT709
        ctx.color_primaries = 1  # AVCOL_PRI_BT709
        ctx.color_trc = 1  # AVCOL_TRC_BT709
        ctx.color_range = 1  # AVCOL_RANGE_MPEG (limited, as players expect)
        self._tag_for_apple(stream, codec)
        return stream

    def _tag_for_apple(self, stream: av.video.stream.VideoStream, codec: str) -> None:
        # HEVC in MP4/MOV may be tagged hev1 (FFmpeg's default) or hvc1; Apple players only
        # play hvc1. A stream copy resets the tag, so the join sets it again.
        if codec in ("libx265", "hevc") and self._out.format.name in ("mp4", "mov"):
            stream.codec_tag = "hvc1"

    def _copy_video_stream(
        self, template: av.video.stream.VideoStream
    ) -> av.video.stream.VideoStream:
        # The template comes from a file being read, so its codec context holds a decoder
        # (libdav1d for AV1); opaque=True keeps that codec object instead of looking up an
        # encoder of the same name, which need not exist. Muxing never uses it to encode.
        codec = template.codec_context.codec.canonical_name
        try:
            stream = self._out.add_stream_from_template(template, opaque=True)
        except ValueError as err:
            raise ConfigError(
                f"a {self.path.suffix} file cannot hold {codec} video; choose another codec "
                "or output extension (.mkv holds all of them)",
                self.path,
            ) from err
        self._tag_for_apple(stream, codec)
        stream.time_base = self._retime.time_base
        # The stream's average rate comes from the codec context's frame rate, as when encoding
        # (Matroska writes it as the default frame duration).
        stream.codec_context.framerate = self.source.fps
        return stream

    def place(self, first_pts: int) -> Fraction:
        """Stream-copy mode: where (seconds) the frame shown at source time `first_pts` sits on
        this file's timeline, as an uninterrupted encode would put it (same retimer: a
        30000/1001 source with millisecond timestamps lands on the exact frame grid). Call it
        for each segment's first frame, in order."""
        return self._retime(first_pts) * self._retime.time_base

    def mux_packet(self, packet: av.Packet) -> None:
        """Stream-copy mode: mux one encoded video packet (timestamps already on this file's
        timeline, in `packet.time_base`; dts increasing), with the audio up to it."""
        if self._finished or not self._copying:
            raise RuntimeError("mux_packet needs an open VideoWriter in stream-copy mode")
        try:
            self._pump_audio(until=packet.dts * packet.time_base)
            packet.stream = self._video
            self._out.mux(packet)
        except OSError as err:
            self.abort()
            raise output_error(err, self.path) from err
        self._frames += 1

    def _add_audio_streams(self) -> None:
        self._audio_in = open_input(self.source.path)  # a second demuxer, for audio only
        supported = self._out.supported_codecs
        for source in usable_audio_streams(self._audio_in, self.source.path):
            name = source.codec_context.codec.canonical_name
            route: _AudioRoute | None = None
            if name in supported:
                with contextlib.suppress(ValueError):  # container refused after all
                    output = self._out.add_stream_from_template(source)
                    route = _AudioRoute(source, output, reencode=False)
            if route is None:
                route = self._add_reencoded_audio(source)
            for key in ("language", "title"):
                if key in source.metadata:
                    route.output.metadata[key] = source.metadata[key]
            self._routes[source.index] = route
        self._audio_packets = self._audio_in.demux(*[r.source for r in self._routes.values()])

    def _add_reencoded_audio(self, source: av.audio.stream.AudioStream) -> _AudioRoute:
        supported = self._out.supported_codecs
        codec_name = source.codec_context.codec.canonical_name
        candidates = [c for c in _FALLBACK_AUDIO if c in supported and c in av.codecs_available]
        for encoder in candidates:
            rate = source.codec_context.sample_rate or 48000
            if "opus" in encoder and rate not in _OPUS_RATES:
                rate = 48000
            try:
                output = self._out.add_stream(encoder, rate=rate)
            except (ValueError, av.error.FFmpegError):
                continue
            channels = max(1, source.codec_context.channels)
            # Some sources (e.g. PCM in Matroska) carry a channel count without an order
            # ("2 channels"), which encoders reject; use FFmpeg's default order for the count.
            output.codec_context.layout = _ordered_layout(source.codec_context.layout, channels)
            if encoder != "flac":
                output.codec_context.bit_rate = min(512_000, 96_000 * channels)
            log.info(
                "%s: a %s file cannot hold %s audio; re-encoding audio stream #%d to %s",
                self.path,
                self.path.suffix,
                codec_name,
                source.index,
                encoder,
            )
            return _AudioRoute(source, output, reencode=True)
        raise ConfigError(
            f"a {self.path.suffix} file cannot hold {codec_name} audio and no encoder fits; "
            "use .mkv or drop audio",
            self.path,
        )

    # ------------------------------------------------------------------------------ writing

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one upright H×W×3 uint8 RGB frame of `size`, shown at source time `pts`."""
        if self._finished:
            raise RuntimeError("VideoWriter is closed")
        if self._copying:
            raise RuntimeError("this VideoWriter copies encoded packets; use mux_packet")
        width, height = self.size
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"expected a {height}×{width}×3 uint8 image, got {image.shape} {image.dtype}"
            )
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"pts must increase: {pts} after {self._last_pts}")
        try:
            self._pump_audio(until=pts * self.source.time_base)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            # Convert here rather than letting the encoder do it, to pick the matrix and range.
            frame = self._reformatter.reformat(
                frame,
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
            )
            frame.pts = self._retime(pts)
            frame.time_base = self._retime.time_base
            self._mux_video(self._video.encode(frame))
        except OSError as err:
            self.abort()
            raise output_error(err, self.path) from err
        self._last_pts = pts
        self._frames += 1

    def _mux_video(self, packets: list[av.Packet]) -> None:
        if self._hold:
            self._held.extend(packets)
        else:
            self._out.mux(packets)

    def _pump_audio(self, until: Fraction | None) -> None:
        """Mux source audio packets that start at or before `until` seconds (None: all)."""
        while self._audio_packets is not None:
            packet = self._pending
            self._pending = None
            if packet is None:
                try:
                    packet = next(self._audio_packets)
                except StopIteration:
                    packet = None
                except av.error.FFmpegError as err:
                    log.warning(
                        "%s: audio could not be read past this point (%s); it ends early",
                        self.source.path,
                        err,
                    )
                    packet = None
                if packet is None:
                    self._audio_packets = None
                    break
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            route = self._routes[packet.stream.index]
            when = _packet_time(packet)
            if self._end is not None and when is not None and when >= self._end:
                # Past the end of a shortened (--max-frames) render: drop, and stop reading
                # the source once every stream has got there.
                route.finished = True
                if all(r.finished for r in self._routes.values()):
                    self._audio_packets = None
                continue
            if until is not None and when is not None and when > until:
                self._pending = packet  # belongs after a later video frame
                break
            if route.finished:
                continue
            self._mux_audio(route, packet)

    def _mux_audio(self, route: _AudioRoute, packet: av.Packet) -> None:
        if not route.reencode:
            packet.stream = route.output
            self._out.mux(packet)
            return
        try:
            frames = route.source.codec_context.decode(packet)
        except av.error.FFmpegError as err:
            log.debug("%s: skipping damaged audio packet: %s", self.source.path, err)
            return
        for frame in frames:
            self._out.mux(route.output.encode(frame))

    def close(self) -> None:
        """Flush the encoder, mux the remaining audio, close, and rename into place."""
        if self._finished:
            return
        if self._frames == 0:
            self.abort()
            raise OutputError(
                "no frames were written (the input gave none); check the input", self.path
            )
        try:
            if not self._copying:
                self._mux_video(self._video.encode(None))
                if self._held:
                    for packet, dts in zip(self._held, _decode_times(self._held), strict=True):
                        packet.dts = dts
                        self._out.mux(packet)
                    self._held = []
            self._pump_audio(until=None)
            for route in self._routes.values():
                if route.reencode:
                    for frame in route.source.codec_context.decode(None):
                        self._out.mux(route.output.encode(frame))
                    self._out.mux(route.output.encode(None))
            self._out.close()
            self._close_audio_input()
            os.replace(self.temp_path, self.path)
        except OSError as err:
            self.abort()
            raise output_error(err, self.path) from err
        except BaseException:
            self.abort()
            raise
        self._finished = True
        log.debug("%s: wrote %d frames", self.path, self._frames)

    def abort(self) -> None:
        """Stop, close everything and delete the temporary file; `path` is never touched."""
        if self._finished:
            return
        self._finished = True
        out = getattr(self, "_out", None)
        if out is not None:
            # Closing writes a trailer, which can itself fail (disk full); the file is going
            # away, so any error here is irrelevant.
            with contextlib.suppress(Exception):
                out.close()
        self._close_audio_input()
        self._remove_temp()

    def _close_audio_input(self) -> None:
        self._audio_packets = None
        self._pending = None
        if self._audio_in is not None:
            with contextlib.suppress(Exception):
                self._audio_in.close()
            self._audio_in = None

    def _remove_temp(self) -> None:
        try:
            self.temp_path.unlink(missing_ok=True)
        except OSError as err:  # pragma: no cover - e.g. the folder vanished
            log.warning("could not remove temporary file %s: %s", self.temp_path, err)

    @property
    def frames_written(self) -> int:
        return self._frames

    @property
    def end_pts(self) -> int | None:
        """Source video time (in `source.time_base`) where the output ends; audio is cut there.

        May be set (or changed) any time before `close`: audio is only muxed up to the newest
        video frame, so a caller that learns the end only when its frames run out (a
        --max-frames preview of a shorter clip) can set it after the last `write`.
        """
        return self._end_pts

    @end_pts.setter
    def end_pts(self, value: int | None) -> None:
        self._end_pts = value
        self._end = None if value is None else value * self.source.time_base

    def __del__(self) -> None:
        # A writer dropped without close/abort (e.g. a generator pipeline torn down) must not
        # leave its temporary file behind.
        if not getattr(self, "_finished", True):
            with contextlib.suppress(Exception):
                self.abort()


class _Retimer:
    """Maps source pts to the encoder's time base, recovering exact constant-rate timing.

    Usually the identity. Matroska/WebM store times in whole milliseconds, so a 30000/1001 fps
    source has pts 0, 33, 67, 100, ...; written to MP4 as they are, the average rate would come
    out as 24000/801-ish instead of 30000/1001. When a frame period is not a whole number of
    source ticks, the encoder runs in a finer time base (1/lcm(tick, fps numerator)) where the
    exact frame grid is representable, and pts within one source tick of the grid (measured
    from the first frame) are snapped onto it. Other pts (variable-rate input) are converted
    exactly, so their timing is kept to the source's precision.
    """

    def __init__(self, time_base: Fraction, fps: Fraction) -> None:
        self.source_time_base = time_base
        self.time_base = time_base
        self.fps = fps
        ticks_per_frame = 1 / (fps * time_base)
        # Snap only when ticks are fine compared with frames, so "within a tick" is unambiguous.
        self.snap = (
            ticks_per_frame.denominator != 1 and time_base.numerator == 1 and ticks_per_frame > 4
        )
        if self.snap:
            self.time_base = Fraction(1, math.lcm(time_base.denominator, fps.numerator))
        self._origin: Fraction | None = None
        self._last: int | None = None

    def __call__(self, pts: int) -> int:
        t = pts * self.source_time_base
        exact = int(t / self.time_base)  # integral: the new time base divides the old one
        out = exact
        if self.snap:
            if self._origin is None:
                self._origin = t
            grid = self._origin + round((t - self._origin) * self.fps) / self.fps
            if abs(t - grid) <= self.source_time_base:
                out = int(grid / self.time_base)
        if self._last is not None and out <= self._last:
            out = max(exact, self._last + 1)  # never let snapping reorder or merge frames
        self._last = out
        return out


def _quiet_svt_av1() -> None:
    """SVT-AV1 prints a 20-line banner and its configuration to stderr, through its own logger
    rather than FFmpeg's; its `SVT_LOG` variable (1: errors only) silences it. The library reads
    it once per process, at the first encoder, so it is set before that; a value the user set
    is kept."""
    os.environ.setdefault("SVT_LOG", "1")


def encoder_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    """FFmpeg options giving constant-quality encoding at `crf` and speed `preset`.

    `preset` is an x264 preset name (mapped onto libvpx-vp9's deadline/cpu-used and SVT-AV1's
    preset numbers) or, for libsvtav1, a number. Raises `ConfigError` for values the codec
    cannot take, or a codec this FFmpeg lacks.
    """
    if codec not in av.codecs_available:
        have = ", ".join(c for c, ok in available_codecs().items() if ok) or "none"
        raise ConfigError(
            f"video codec {codec!r} is not available in this FFmpeg build (available: {have})"
        )
    low, high = _CRF_RANGE.get(codec, (0, 63))
    if not low <= crf <= high:
        raise ConfigError(f"crf {crf} is out of range for {codec}; use {low}..{high}")
    if codec == "libsvtav1" and preset.isdigit():
        _quiet_svt_av1()
        return {"crf": str(crf), "preset": preset}
    if preset not in ENCODER_PRESETS:
        raise ConfigError(
            f"unknown encoder preset {preset!r}; use one of {', '.join(ENCODER_PRESETS)}"
        )
    if codec == "libx264":
        return {"crf": str(crf), "preset": preset}
    if codec == "libx265":
        # x265 prints a banner and statistics to stderr by default.
        return {"crf": str(crf), "preset": preset, "x265-params": "log-level=error"}
    if codec == "libvpx-vp9":
        deadline, cpu_used = _VP9_SPEED[preset]
        # b=0 with crf selects constant-quality mode; without it crf is only a cap.
        return {
            "crf": str(crf),
            "b": "0",
            "deadline": deadline,
            "cpu-used": str(cpu_used),
            "row-mt": "1",
        }
    if codec == "libsvtav1":
        _quiet_svt_av1()
        return {"crf": str(crf), "preset": str(_SVTAV1_PRESET[preset])}
    log.info("codec %s: crf and preset are not applied (unknown option names)", codec)
    return {}


_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "4.0",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


def _ordered_layout(layout: av.AudioLayout | None, channels: int) -> av.AudioLayout | str:
    if layout is not None and not layout.name.endswith("channels"):
        return layout
    return _DEFAULT_LAYOUTS.get(channels, "stereo")


def _decode_times(packets: list[av.Packet]) -> list[int]:
    """Decode times for an encoder's packets (in output order) from their pts alone.

    The k-th decode time is the (k - D)-th smallest pts, with D the smallest delay that keeps
    every decode time at or before its own pts: what x264 writes, strictly increasing. The
    first D continue the first frame step backwards.
    """
    pts = [int(packet.pts) for packet in packets]
    order = sorted(pts)
    rank = {value: i for i, value in enumerate(order)}
    delay = max(0, *(k - rank[value] for k, value in enumerate(pts)))
    step = order[1] - order[0] if len(order) > 1 else 1
    return [
        order[k - delay] if k >= delay else order[0] - (delay - k) * step for k in range(len(pts))
    ]


def _packet_time(packet: av.Packet) -> Fraction | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None:
        return None
    return ts * packet.time_base


def output_error(err: OSError, path: Path) -> OutputError:
    """The one-line error for a failed write of `path` (disk full, permission denied, ...)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(
            "disk full while writing; free some space or choose another folder", path
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError("cannot write here (permission denied); choose another folder", path)
    reason = err.strerror or str(err)
    return OutputError(f"writing failed ({reason}); check the output folder", path)
