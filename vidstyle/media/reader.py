"""Decode a video into upright RGB frames on a background thread.

Decoding, colour conversion and scaling run on one worker thread that feeds a bounded queue, so
they overlap with stylization in the consumer (PyAV and swscale release the GIL while they
work) and memory stays at `queue_size` frames however long the video is. FFmpeg's own frame
threading (`thread_type="AUTO"`) spreads the decoding itself over the cores.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import av
import av.container
import av.error
import numpy as np
from av.video.reformatter import Colorspace, Interpolation, VideoReformatter

from vidstyle.background import Output, produce_in_background
from vidstyle.errors import InputError
from vidstyle.media.probe import VideoInfo, open_input, video_stream

log = logging.getLogger(__name__)

_AVCOL_SPC_UNSPECIFIED = 2  # FFmpeg's AVColorSpace value for "no tag"


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame, ready for the models."""

    index: int  # 0-based output frame index
    image: np.ndarray  # H×W×3 uint8 RGB, upright, at the requested size (C-contiguous)
    pts: int  # source pts in VideoInfo.time_base; strictly increasing
    repeat: bool = False  # a lost (undecodable) frame, filled with the previous good frame


def read_frames(
    info: VideoInfo,
    *,
    size: tuple[int, int] | None = None,
    max_frames: int | None = None,
    queue_size: int = 8,
) -> Iterator[DecodedFrame]:
    """Decode `info.path`, yielding upright RGB frames at `size` (w, h; default: source size).

    The file is opened here, so a file that cannot be opened raises `InputError` at the call;
    decoding starts at the first `next()`. Close the returned generator (or break out of a for
    loop, or drop it) to stop early: the worker thread is stopped and the file closed.

    Damaged packets in the middle are skipped and counted, with one warning at the end; the
    frames they carried are replaced by the last good frame at their own timestamps (see
    `_LostFrames`), so the frame count and timing stay the source's. Frames
    without a timestamp (or with one not after the previous frame's) get the previous
    timestamp plus one frame at `info.fps`, so the writer always sees increasing pts.
    """
    if size is not None and (size[0] < 1 or size[1] < 1):
        raise ValueError(f"size must be positive, got {size}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    container = open_input(info.path)
    try:
        stream = _stream_for(container, info)
        stream.thread_type = "AUTO"  # frame + slice threading inside FFmpeg
    except BaseException:
        container.close()
        raise
    return _iterate(container, stream, info, size or info.size, max_frames, queue_size)


# Containers whose index (MP4/MOV's moov) lists every frame's place in the file, so a file cut
# short with its index intact can be told from the index alone.
_INDEXED_FORMATS = ("mov", "mp4")


def check_not_truncated(info: VideoInfo) -> None:
    """InputError when `info.path` is an MP4/MOV whose index lists frames past the end of its
    data (a download or copy cut short, with the index at the front): its last frame cannot be
    read. Cheap: one seek and one packet, not a decode."""
    container = open_input(info.path)
    try:
        if not any(name in _INDEXED_FORMATS for name in container.format.name.split(",")):
            return
        stream = _stream_for(container, info)
        if not stream.frames or stream.duration is None:
            return
        last = (stream.start_time or 0) + stream.duration - 1
        try:
            container.seek(last, stream=stream, backward=True, any_frame=True)
            packet = next(container.demux(stream), None)
        except (av.error.FFmpegError, StopIteration):
            return  # a seek this file does not allow says nothing about its end
        if packet is None or packet.size == 0:
            raise InputError(
                f"file is truncated: its index lists {stream.frames} frames but the data ends "
                "before the last one (a copy or download cut short?); copy it again, or render "
                "the frames there are with --max-frames N",
                info.path,
            )
    finally:
        container.close()


def _stream_for(
    container: av.container.InputContainer, info: VideoInfo
) -> av.video.stream.VideoStream:
    for stream in container.streams.video:
        if stream.index == info.stream_index:
            return stream
    return video_stream(container, info.path)


def _iterate(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: VideoInfo,
    size: tuple[int, int],
    max_frames: int | None,
    queue_size: int,
) -> Iterator[DecodedFrame]:
    try:
        yield from produce_in_background(
            lambda output: _Decoding(container, stream, info, size, max_frames, output).run(),
            queue_size=queue_size,
            name=f"vidstyle-decode:{info.path.name}",
        )
    finally:
        # On normal end, on an error, and on generator close (consumer stopped early); the
        # decode thread has finished by now.
        container.close()


class _Decoding:
    """One decode of a video, on `read_frames`' worker thread: frames converted and put in
    order, damaged packets skipped and counted, lost frames filled (`_LostFrames`), timestamps
    made increasing, and a file whose data ends early refused."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        info: VideoInfo,
        size: tuple[int, int],
        max_frames: int | None,
        output: Output[DecodedFrame],
    ) -> None:
        self.container, self.stream, self.info, self.size = container, stream, info, size
        self.max_frames, self.output = max_frames, output
        self.skipped = 0  # packets that could not be decoded
        self.lost = _LostFrames()
        self.index = 0  # frames put so far
        self.last_pts: int | None = None
        self.previous: np.ndarray | None = None  # the last good frame, to stand in for lost ones
        self.step = 1  # one frame, in time_base units

    def run(self) -> None:
        truncated = False
        try:
            if self.max_frames == 0:
                return
            convert = _Converter(self.info, self.size)
            self.step = max(1, round(1 / (self.info.fps * self.info.time_base)))
            if not self._decode_packets(convert) or not self._fill_end():
                return
            if self._ends_early():
                # The data ends early (a file cut short; damaged containers often end demuxing
                # without any error): a render of it would be short of the source's frames and
                # duration, so it fails like any input that cannot be read whole.
                truncated = True
                raise InputError(
                    f"file is truncated or damaged: its data ends after {self.index} of the "
                    f"about {self.info.frame_count} frames it lists; copy it again, or render "
                    f"the frames there are with --max-frames {self.index}",
                    self.info.path,
                )
        except av.error.FFmpegError as err:
            raise InputError(
                f"decoding failed ({err}); the file may be damaged", self.info.path
            ) from err
        finally:
            # Also when the consumer stopped early (--max-frames); not when the file is cut
            # short, which the error says.
            if not truncated and (self.skipped or self.lost.filled):
                log.warning(
                    "%s: %s", self.info.path, _damage_report(self.skipped, self.lost.filled)
                )

    def _decode_packets(self, convert: _Converter) -> bool:
        """Every packet's frames, then the decoder's last ones; False once no more are wanted."""
        path = self.info.path
        packets = self.container.demux(self.stream)
        while not self.output.stopped:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as err:
                # The container itself is damaged past here (e.g. truncated): keep what we
                # decoded, flush the decoder, and say so.
                log.warning("%s: stopped reading at frame %d: %s", path, self.index, err)
                packet = None
            if packet is not None:
                self.lost.demuxed(packet)
            try:
                decoded = (
                    packet.decode()
                    if packet is not None
                    else self.stream.codec_context.decode(None)
                )
            except av.error.FFmpegError as err:
                self.skipped += 1
                pts = packet and packet.pts
                log.debug("%s: skipping damaged packet (pts %s): %s", path, pts, err)
                continue
            for frame in decoded:
                if not self._emit(convert(frame), frame):
                    return False
            if packet is None:
                break
        return True

    def _emit(self, image: np.ndarray, frame: av.VideoFrame) -> bool:
        """Put `image`, the decoded `frame`, after the frames lost before it (the previous good
        frame again, at their times); False once no more are wanted."""
        last_pts = self.last_pts
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None or (last_pts is not None and pts <= last_pts):
            self.lost.usable = False  # invented timestamps cannot be matched to packets
            pts = 0 if last_pts is None else last_pts + self.step
        fills = [p for p in self.lost.before(pts) if last_pts is not None and p > last_pts]
        for fill_pts in fills:
            assert self.previous is not None  # a frame was put before: last_pts is set
            if not self._put(self.previous, fill_pts, repeat=True):
                return False
        if not self._put(image, pts, repeat=False):
            return False
        self.last_pts = pts
        self.previous = image
        return True

    def _fill_end(self) -> bool:
        """Frames lost at the very end (the container lists them, nothing decoded them)."""
        if self.previous is None:
            return True
        for fill_pts in self.lost.after(self.last_pts):
            if self.output.stopped:
                break
            if not self._put(self.previous, fill_pts, repeat=True):
                return False
        return True

    def _put(self, image: np.ndarray, pts: int, *, repeat: bool) -> bool:
        """Put one frame; False once no more are wanted (consumer gone, or `max_frames`)."""
        item = DecodedFrame(index=self.index, image=image, pts=pts, repeat=repeat)
        if not self.output.put(item):
            return False
        self.index += 1
        self.lost.filled += repeat
        return self.max_frames is None or self.index < self.max_frames

    def _ends_early(self) -> bool:
        """Whether far fewer frames came out than the container lists (and were wanted)."""
        info, max_frames = self.info, self.max_frames
        wanted = info.frame_count if max_frames is None else min(max_frames, info.frame_count or 0)
        return not self.output.stopped and bool(wanted) and self.index < 0.9 * wanted - 1


def _damage_report(skipped: int, filled: int) -> str:
    """What damage decoding met and what was done about it, in one consistent sentence."""
    damaged = f"{skipped} damaged packet(s) could not be decoded" if skipped else ""
    missing = (
        f"{filled} frame(s) were missing; the previous frame stands in for each, so the frame "
        "count and timing are the source's"
        if filled
        else ""
    )
    if damaged and missing:
        return f"{damaged} and {missing}"
    return damaged + ("; they were skipped" if damaged else "") or missing


class _LostFrames:
    """Timestamps of frames the container lists but the decoder never returned.

    Every video packet carries one frame, and a decoder returns frames in display order: when
    the frame shown at `pts` comes out, every frame shown before it has come out too, unless its
    packet was damaged. So the demuxed pts below `pts` that never came out are exactly the lost
    frames, whichever packet the decoder reported an error for (with frame threading it reports
    it one or two packets late).

    Lost frames are filled with the previous good frame rather than dropped: the output keeps
    the source's frame count and constant frame rate (a dropped frame would leave a gap that
    turns a constant-rate file into a variable-rate one), the batch plan's frame estimates and
    resume's frame indices stay right, and the temporal stages see a still frame, not a jump.
    """

    def __init__(self) -> None:
        self._pending: list[int] = []  # heap of demuxed pts not yet decoded
        self._count: Counter[int] = Counter()
        self.usable = True  # False once timestamps cannot be trusted to match packets
        self.filled = 0

    def demuxed(self, packet: av.Packet) -> None:
        if packet.size == 0 or packet.is_discard:  # end marker; cut by an edit list
            return
        if packet.pts is None:
            self.usable = False
            return
        heapq.heappush(self._pending, packet.pts)
        self._count[packet.pts] += 1

    def _pop(self) -> int:
        pts = heapq.heappop(self._pending)
        self._count[pts] -= 1
        return pts

    def before(self, pts: int) -> list[int]:
        """The lost frames shown before the decoded frame at `pts` (removed from the list)."""
        if not self.usable:
            return []
        if self._count[pts] <= 0:
            # A frame no packet announced: these timestamps do not follow the rule above.
            self.usable = False
            return []
        lost = []
        while self._pending[0] < pts:
            lost.append(self._pop())
        self._pop()  # the frame itself
        return sorted(set(lost))

    def after(self, last_pts: int | None) -> list[int]:
        """The lost frames after the last decoded one (damage at the very end)."""
        if not self.usable or last_pts is None:
            return []
        return sorted({pts for pts in self._pending if pts > last_pts})


class _Converter:
    """Decoded frame -> upright RGB array of the requested size."""

    def __init__(self, info: VideoInfo, size: tuple[int, int]) -> None:
        self.turns = info.rotation // 90  # clockwise quarter turns to apply
        self.size = size
        src_w, src_h = info.size
        # An odd source rendered one pixel smaller (see plan_size) is cropped, not resampled:
        # scaling 321 -> 320 px would blur every frame by a fraction of a pixel.
        self.crop = (
            size != (src_w, src_h) and 0 <= src_w - size[0] <= 1 and 0 <= src_h - size[1] <= 1
        )
        out_w, out_h = (src_w, src_h) if self.crop else size
        # swscale works on the stored picture, which is turned a quarter for 90/270.
        self.coded_size = (out_h, out_w) if self.turns % 2 else (out_w, out_h)
        shrinking = out_w <= src_w and out_h <= src_h
        # Area averaging is the anti-aliased choice for downscaling; bicubic for enlarging.
        self.interpolation = Interpolation.AREA if shrinking else Interpolation.BICUBIC
        # One reformatter for the whole video: it keeps its swscale context between frames.
        self.reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = self.coded_size
        colorspace = None  # the frame's own tag
        if frame.colorspace == _AVCOL_SPC_UNSPECIFIED and min(frame.width, frame.height) >= 720:
            # Untagged HD is BT.709 by convention (what players assume), not swscale's BT.601.
            colorspace = Colorspace.ITU709
        rgb = self.reformatter.reformat(
            frame,
            width=width,
            height=height,
            format="rgb24",
            src_colorspace=colorspace,
            interpolation=self.interpolation,
            # Pass the range on: FFmpeg 8 marks full-range YUV here (not with yuvj formats),
            # and the default (unspecified = limited) would wash out full-range sources.
            src_color_range=frame.color_range or None,
        )
        image = rgb.to_ndarray()
        if self.turns:
            image = np.rot90(image, k=-self.turns)  # negative k: clockwise
        if self.crop:
            image = image[: self.size[1], : self.size[0]]
        return np.ascontiguousarray(image)
