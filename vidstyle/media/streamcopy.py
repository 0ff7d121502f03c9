"""Copy encoded video packets into an output video, without encoding them again (with the
source's audio, finished atomically: see `vidstyle.media.output`)."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import av

from vidstyle.errors import ConfigError
from vidstyle.media.output import OutputVideo
from vidstyle.media.probe import VideoInfo


class StreamCopyWriter(OutputVideo):
    """An output whose video stream takes its codec parameters from `template` (a stream of an
    encoded file being read) and whose packets are muxed as they are (`mux_packet`)."""

    def __init__(
        self,
        path: Path,
        source: VideoInfo,
        template: av.video.stream.VideoStream,
        *,
        audio: bool = True,
        end_pts: int | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self._template = template
        super().__init__(path, source, audio=audio, end_pts=end_pts, tags=tags)

    def _add_video(self) -> av.video.stream.VideoStream:
        # The template comes from a file being read, so its codec context holds a decoder
        # (libdav1d for AV1); opaque=True keeps that codec object instead of looking up an
        # encoder of the same name, which need not exist. Muxing never uses it to encode.
        codec = self._template.codec_context.codec.canonical_name
        try:
            stream = self._out.add_stream_from_template(self._template, opaque=True)
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
        """Where (seconds) the frame shown at source time `first_pts` sits on this file's
        timeline, as an encode of the source's frames would put it (the same retimer: a
        30000/1001 source with millisecond timestamps lands on the exact frame grid). Call it
        for each copied run's first frame, in order."""
        return self._retime(first_pts) * self._retime.time_base

    def mux_packet(self, packet: av.Packet) -> None:
        """Mux one encoded video packet (timestamps already on this file's timeline, in
        `packet.time_base`; dts increasing), with the audio up to it."""
        if self._finished:
            raise RuntimeError("StreamCopyWriter is closed")
        until = packet.dts * packet.time_base
        packet.stream = self._video
        self._mux([packet], until=until)
        self._frames += 1
