"""Encode stylized frames into an output video (with the source's audio, finished atomically:
see `vidstyle.media.output`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from vidstyle.atomic import output_error
from vidstyle.errors import ConfigError
from vidstyle.media.codecs import encoder_options
from vidstyle.media.output import OutputVideo
from vidstyle.media.probe import VideoInfo


class VideoWriter(OutputVideo):
    """Encode upright RGB frames to `path` at constant quality, each at its source time."""

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
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        width, height = self.size
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(
                f"size must be even and at least 2x2 for yuv420p, got {width}x{height}"
            )
        self._codec = codec
        self._options = encoder_options(codec, crf, encoder_preset)
        self._reformatter = VideoReformatter()  # keeps its swscale context between frames
        # libx265 (through FFmpeg) hands out packets whose decode times are uninitialised
        # memory (a constant offset of up to 2^63 on every packet) in about half the encodes of
        # two frames, which the MP4 muxer refuses ("pts/dts pair unsupported"); its packets are
        # held and given decode times at close (`_decode_times`). Held packets are bounded by a
        # segment's length (`vidstyle.media.segments`).
        self._hold = codec == "libx265"
        self._held: list[av.Packet] = []
        self._last_pts: int | None = None
        super().__init__(path, source, audio=audio, end_pts=end_pts, tags=tags)

    def _add_video(self) -> av.video.stream.VideoStream:
        codec = self._codec
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
        # Encode with the source's pts (in its time base, or a finer one, see Retimer): VFR
        # timing survives and the muxer can reproduce the source's exact average rate.
        stream.codec_context.time_base = self._retime.time_base
        stream.time_base = self._retime.time_base
        stream.options = self._options
        # Frames are converted with the BT.709 matrix (see write); say so, or players guess
        # BT.601 for small frames and shift the colours.
        ctx = stream.codec_context
        ctx.colorspace = 1  # AVCOL_SPC_BT709
        ctx.color_primaries = 1  # AVCOL_PRI_BT709
        ctx.color_trc = 1  # AVCOL_TRC_BT709
        ctx.color_range = 1  # AVCOL_RANGE_MPEG (limited, as players expect)
        self._tag_for_apple(stream, codec)
        return stream

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one upright H×W×3 uint8 RGB frame of `size`, shown at source time `pts`."""
        if self._finished:
            raise RuntimeError("VideoWriter is closed")
        width, height = self.size
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"expected a {height}×{width}×3 uint8 image, got {image.shape} {image.dtype}"
            )
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"pts must increase: {pts} after {self._last_pts}")
        try:
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
            packets = self._video.encode(frame)
        except OSError as err:
            self.abort()
            raise output_error(err, self.path) from err
        self._mux(self._unless_held(packets), until=pts * self.source.time_base)
        self._last_pts = pts
        self._frames += 1

    def _unless_held(self, packets: list[av.Packet]) -> Iterable[av.Packet]:
        if not self._hold:
            return packets
        self._held.extend(packets)
        return ()

    def _finish_video(self) -> None:
        for packet in self._unless_held(self._video.encode(None)):
            self._out.mux(packet)
        for packet, dts in zip(self._held, _decode_times(self._held), strict=True):
            packet.dts = dts
            self._out.mux(packet)
        self._held = []


def _decode_times(packets: list[av.Packet]) -> list[int]:
    """Decode times for an encoder's packets (in output order) from their pts alone.

    The k-th decode time is the (k - D)-th smallest pts, with D the smallest delay that keeps
    every decode time at or before its own pts: what x264 writes, strictly increasing. The
    first D continue the first frame step backwards.
    """
    if not packets:
        return []
    pts = [int(packet.pts) for packet in packets]
    order = sorted(pts)
    rank = {value: i for i, value in enumerate(order)}
    delay = max(0, *(k - rank[value] for k, value in enumerate(pts)))
    step = order[1] - order[0] if len(order) > 1 else 1
    return [
        order[k - delay] if k >= delay else order[0] - (delay - k) * step for k in range(len(pts))
    ]
