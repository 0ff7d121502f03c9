"""The source's audio in an output file: copied untouched, in step with the video.

Both ways of writing an output (encoding frames, `VideoWriter`; copying encoded packets,
`StreamCopyWriter`) take their audio from here. Packets are read from the source lazily, as the
video advances, so memory stays bounded however long the file is, and handed back for the
writer to interleave with its video. A codec the output container cannot hold is re-encoded
(and the log says so); `--max-frames` previews cut the audio where their video ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.error

from vidstyle.errors import ConfigError
from vidstyle.media.probe import VideoInfo, open_input, usable_audio_streams

log = logging.getLogger(__name__)

# Audio encoders to fall back on, best first, when the container cannot hold the source codec.
_FALLBACK_AUDIO = ("aac", "libopus", "opus", "libvorbis", "flac")
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)
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


@dataclass
class _Route:
    source: av.audio.stream.AudioStream
    output: av.audio.stream.AudioStream
    reencode: bool
    finished: bool = False  # a packet at or past the end has been seen


class SourceAudio:
    """The audio streams of `source`, added to the output container `out` (written to `path`).

    `packets(until)` gives the packets to mux up to a point of the video; `rest()` the remaining
    ones at the end. `end` (seconds, or None) is where the audio stops; it may change until
    `rest()`. `close()` closes the source's second demuxer.
    """

    def __init__(self, out: av.container.OutputContainer, source: VideoInfo, path: Path) -> None:
        self._out = out
        self._source = source
        self._path = path
        self.end: Fraction | None = None
        self._routes: dict[int, _Route] = {}
        self._pending: av.Packet | None = None
        self._input: av.container.InputContainer | None = open_input(source.path)
        try:  # a second demuxer, for audio only
            for stream in usable_audio_streams(self._input, source.path):
                self._routes[stream.index] = self._add_route(stream)
            self._packets: Iterator[av.Packet] | None = self._input.demux(
                *[route.source for route in self._routes.values()]
            )
        except BaseException:
            self.close()
            raise

    def _add_route(self, source: av.audio.stream.AudioStream) -> _Route:
        route: _Route | None = None
        if source.codec_context.codec.canonical_name in self._out.supported_codecs:
            with contextlib.suppress(ValueError):  # container refused after all
                route = _Route(source, self._out.add_stream_from_template(source), reencode=False)
        if route is None:
            route = self._add_reencoded(source)
        for key in ("language", "title"):
            if key in source.metadata:
                route.output.metadata[key] = source.metadata[key]
        return route

    def _add_reencoded(self, source: av.audio.stream.AudioStream) -> _Route:
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
                self._path,
                self._path.suffix,
                codec_name,
                source.index,
                encoder,
            )
            return _Route(source, output, reencode=True)
        raise ConfigError(
            f"a {self._path.suffix} file cannot hold {codec_name} audio and no encoder fits; "
            "use .mkv or drop audio",
            self._path,
        )

    def packets(self, until: Fraction | None) -> Iterator[av.Packet]:
        """The output packets of source audio that starts at or before `until` seconds (None:
        all of it), in order."""
        while self._packets is not None:
            packet = self._next()
            if packet is None:
                break
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            route = self._routes[packet.stream.index]
            when = _packet_time(packet)
            if self.end is not None and when is not None and when >= self.end:
                # Past the end of a shortened (--max-frames) render: drop, and stop reading
                # the source once every stream has got there.
                route.finished = True
                if all(r.finished for r in self._routes.values()):
                    self._packets = None
                continue
            if until is not None and when is not None and when > until:
                self._pending = packet  # belongs after a later video frame
                break
            if not route.finished:
                yield from self._convert(route, packet)

    def _next(self) -> av.Packet | None:
        packet, self._pending = self._pending, None
        if packet is not None:
            return packet
        assert self._packets is not None
        try:
            return next(self._packets)
        except StopIteration:
            pass
        except av.error.FFmpegError as err:
            log.warning(
                "%s: audio could not be read past this point (%s); it ends early",
                self._source.path,
                err,
            )
        self._packets = None
        return None

    def _convert(self, route: _Route, packet: av.Packet) -> Iterator[av.Packet]:
        if not route.reencode:
            packet.stream = route.output
            yield packet
            return
        try:
            frames = route.source.codec_context.decode(packet)
        except av.error.FFmpegError as err:
            log.debug("%s: skipping damaged audio packet: %s", self._source.path, err)
            return
        for frame in frames:
            yield from route.output.encode(frame)

    def rest(self) -> Iterator[av.Packet]:
        """Every packet still to mux, re-encoders flushed."""
        yield from self.packets(until=None)
        for route in self._routes.values():
            if route.reencode:
                for frame in route.source.codec_context.decode(None):
                    yield from route.output.encode(frame)
                yield from route.output.encode(None)

    def close(self) -> None:
        self._packets = None
        self._pending = None
        if self._input is not None:
            with contextlib.suppress(Exception):
                self._input.close()
            self._input = None


def _ordered_layout(layout: av.AudioLayout | None, channels: int) -> av.AudioLayout | str:
    if layout is not None and not layout.name.endswith("channels"):
        return layout
    return _DEFAULT_LAYOUTS.get(channels, "stereo")


def _packet_time(packet: av.Packet) -> Fraction | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None:
        return None
    return ts * packet.time_base
