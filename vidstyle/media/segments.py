"""A render's frames as a sequence of closed video segments, and the join that makes them one
output video without encoding them again.

A segment holds a run of consecutive frames of the source, video only, timed from 0; it
remembers where its first frame sits in the source (`first_index`, `first_pts`), so segments
written at different times, by different processes or into different work folders join into
one file with the source's timing and audio, as if it had been encoded in one go. A resumable
render writes its frames this way (`vidstyle.render.workdir` keeps the segments and what the
next frame needs); each segment ends at a multiple of `segment_frames`, so the keyframes fall
where an uninterrupted render puts them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import av.error
import torch

from vidstyle.background import BackgroundConsumer
from vidstyle.closing import CloseOrAbort
from vidstyle.errors import InputError, OutputError
from vidstyle.media.frames import tensor_to_image
from vidstyle.media.probe import VideoInfo
from vidstyle.media.streamcopy import StreamCopyWriter
from vidstyle.media.writer import VideoWriter

log = logging.getLogger(__name__)

#: Segments are MP4 whatever the output's container: MP4 keeps every timestamp exactly in the
#: stream's own time scale (Matroska rounds to milliseconds), and holds all of VIDEO_CODECS.
SEGMENT_SUFFIX = ".mp4"


@dataclass(frozen=True)
class Segment:
    """A closed segment file and where its frames sit in the source."""

    path: Path
    first_index: int  # index in the source (output) of its first frame
    frames: int
    first_pts: int  # source pts of its first frame (the file's own timestamps start at 0)
    last_pts: int  # source pts of its last frame


class SegmentStore(Protocol):
    """Where a `SegmentedWriter` puts its segments (`vidstyle.render.workdir.WorkDir`)."""

    @property
    def next_index(self) -> int:
        """Index of the first frame not yet in a committed segment."""
        ...

    def next_segment_path(self) -> Path: ...

    def add_segment(self, segment: Segment, state: Mapping[str, Any]) -> None:
        """Commit a closed segment together with `state`, what the frame after it needs."""
        ...


class SegmentedWriter(CloseOrAbort):
    """Encodes frames into segments on a background thread, and commits each full segment
    (`segment_frames`) to `store` together with the `snapshot()` taken after its last frame.

    As a context manager: a normal exit commits the last, shorter segment; Ctrl-C
    (KeyboardInterrupt) also commits what was written so far, so an interrupted render keeps all
    its finished frames; any other error discards the unfinished segment (its temporary file is
    deleted) and keeps the committed ones.
    """

    def __init__(
        self,
        store: SegmentStore,
        info: VideoInfo,
        size: tuple[int, int],
        *,
        codec: str,
        crf: int,
        encoder_preset: str,
        segment_frames: int,
        snapshot: Callable[[], dict[str, Any]],
        queue_size: int = 8,
    ) -> None:
        self.store = store
        # Segments hold video only, each timed from 0: the timeline's start offset and the
        # audio are the joined file's business.
        self._info = dataclasses.replace(info, start_time=0.0, audio=())
        self._size = size
        self._encoding = {"codec": codec, "crf": crf, "encoder_preset": encoder_preset}
        self._segment_frames = segment_frames
        self._snapshot = snapshot
        self._queue_size = queue_size
        self._writer: VideoWriter | None = None
        self._encoder: BackgroundConsumer[tuple[torch.Tensor, int]] | None = None
        self._first_index = 0
        self._first_pts = 0
        self._submitted = 0
        # Frame count -> (pts, stage states) for the last two frames submitted: whichever of
        # them the encoder holds when Ctrl-C lands, its state is at hand (see commit).
        self._done: dict[int, tuple[int, dict[str, Any]]] = {}

    @property
    def frames(self) -> int:
        """Frames saved or submitted, earlier runs included."""
        return self.store.next_index + self._submitted

    def write(self, image: torch.Tensor, pts: int, *, new_shot: bool = False) -> None:
        """Queue one stylized frame (1×3×H×W in [0, 1]) shown at source time `pts`.

        A new shot's first frame (`new_shot`) starts a segment: a video split at its shots
        (vidstyle.batch.shots) then writes exactly the segments, and so the bytes, of a whole
        render.
        """
        if new_shot and self._submitted:
            self.commit()
        if self._writer is None:
            self._open(pts)
        assert self._encoder is not None
        count = self._submitted + 1
        # State first, then the frame: an interrupt between the two leaves the frame unsent.
        self._done[count] = (pts, self._snapshot())
        self._done.pop(count - 2, None)
        self._encoder.submit((image, pts - self._first_pts))
        self._submitted = count
        # Segments end at multiples of segment_frames, also after a segment Ctrl-C cut short,
        # so keyframes fall where an uninterrupted render puts them.
        if (self._first_index + count) % self._segment_frames == 0:
            self.commit()

    def _open(self, pts: int) -> None:
        path = self.store.next_segment_path()
        self._writer = VideoWriter(path, self._info, self._size, audio=False, **self._encoding)
        writer = self._writer

        def encode(item: tuple[torch.Tensor, int]) -> None:
            writer.write(tensor_to_image(item[0]), item[1])

        self._encoder = BackgroundConsumer(
            encode, queue_size=self._queue_size, name="vidstyle-encode"
        )
        self._first_index = self.store.next_index
        self._first_pts = pts
        self._submitted = 0
        self._done = {}

    def commit(self) -> None:
        """Close the current segment and commit it with the state after its last frame."""
        if self._writer is None or self._encoder is None:
            return
        writer, encoder = self._writer, self._encoder
        encoder.close()  # every submitted frame encoded (raises the encoder's error, if any)
        frames = writer.frames_written
        self._writer = self._encoder = None
        if frames == 0:
            writer.abort()
            return
        writer.close()  # renamed into place, on disk
        pts, state = self._done[frames]
        segment = Segment(
            path=writer.path,
            first_index=self._first_index,
            frames=frames,
            first_pts=self._first_pts,
            last_pts=pts,
        )
        self.store.add_segment(segment, state)
        self._submitted = 0
        self._done = {}

    def abort(self) -> None:
        """Drop the unfinished segment; committed ones stay."""
        if self._encoder is not None:
            self._encoder.abort()
        if self._writer is not None:
            self._writer.abort()
        self._writer = self._encoder = None
        self._submitted = 0

    def close(self) -> None:
        """Commit the segment in progress (`with` does this when its block ends normally)."""
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise

    def interrupted(self) -> None:
        try:
            self.commit()  # keep every frame finished before Ctrl-C
        except BaseException as err:  # a second Ctrl-C, or the encoder's own error
            log.debug("could not save the interrupted segment: %s", err)
            self.abort()
        else:
            self.abort()


# ------------------------------------------------------------------------------------ joining


def preview_end_pts(last_pts: int, source: VideoInfo) -> int:
    """Where a preview's audio ends (`--max-frames`): at the end of its last frame, shown at
    `last_pts`."""
    frame = Fraction(1) / (source.fps * source.time_base) if source.fps else Fraction(1)
    return last_pts + round(frame)


def join_segments(
    segments: Sequence[Segment],
    output: Path,
    source: VideoInfo,
    *,
    audio: bool = True,
    end_pts: int | None = None,
    tags: Mapping[str, str] | None = None,
) -> int:
    """Write `output`: the segments' packets, in the order given, stream-copied each to where
    its frames sit in `source`, with the source's audio (copied, cut at `end_pts` if given);
    renamed into place when complete. Returns the number of frames.

    The segments may come from several work folders (a video rendered in parts), but must be
    in source order, with no frame twice. Raises `InputError` if a segment file is damaged.
    """
    if not segments:
        raise OutputError("no frames were written (the input gave none); check the input", output)
    for before, after in zip(segments, segments[1:], strict=False):
        if after.first_pts <= before.last_pts:
            raise ValueError(
                f"segments out of order: {after.path} starts at pts {after.first_pts}, "
                f"not after {before.path} (ends at pts {before.last_pts})"
            )
    try:
        with av.open(str(segments[0].path)) as first:
            writer = StreamCopyWriter(
                output, source, first.streams.video[0], audio=audio, end_pts=end_pts, tags=tags
            )
        with writer:
            plan = _JoinPlan(segments, writer, source)
            for segment, shift in zip(segments, plan.shifts, strict=True):
                with av.open(str(segment.path)) as container:
                    for packet in _packets(container):
                        packet.pts += shift
                        packet.dts = plan.next_dts()
                        writer.mux_packet(packet)
    except (av.error.FFmpegError, ValueError, IndexError) as err:
        # The segments were written and closed by us; this means the disk lost them.
        folders = ", ".join(sorted({segment.path.parent.name for segment in segments}))
        raise InputError(
            f"the saved segments in {folders} are damaged ({err}); run again with "
            "--no-resume to start over",
            output,
        ) from err
    return sum(segment.frames for segment in segments)


def _packets(container: av.container.InputContainer) -> Iterator[av.Packet]:
    stream = container.streams.video[0]
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None and packet.dts is not None:
            yield packet


class _JoinPlan:
    """Timestamps of the joined stream: every segment's pts shifted to where its first frame
    belongs, and one decode-time sequence for the whole stream.

    Each segment's encoder starts afresh, and how far its decode times run ahead of its
    presentation times (the B-frame delay) depends on the segment: a segment of two frames has
    no B-frames at all. Copied as they are, the decode times of consecutive segments would
    jump, and MP4, which stores a frame's duration as the step to the next decode time, would
    stretch the frame before the jump. So the decode times are made again for the whole stream
    the way the encoder makes them: the k-th decode time is the (k - D)-th smallest pts, with D
    the largest delay of any segment. That never puts a decode time after its own pts, and it
    is exactly what one uninterrupted encode writes.
    """

    def __init__(
        self, segments: Sequence[Segment], writer: StreamCopyWriter, info: VideoInfo
    ) -> None:
        self.shifts: list[int] = []
        pts: list[int] = []
        delay = 0
        time_base = None
        lead: list[int] = []  # the first segment's decode times before its first pts
        for segment in segments:
            with av.open(str(segment.path)) as container:
                packets = [(p.pts, p.dts) for p in _packets(container)]
                tb = container.streams.video[0].time_base
            if len(packets) != segment.frames:
                raise ValueError(
                    f"{segment.path.name} holds {len(packets)} of {segment.frames} frames"
                )
            if time_base is None:
                time_base = tb
            elif tb != time_base:
                raise ValueError(f"{segment.path.name} has time base {tb}, not {time_base}")
            shift = round(writer.place(segment.first_pts) / tb)
            self.shifts.append(shift)
            first = min(p for p, _ in packets)
            delay = max(delay, sum(d < first for _, d in packets))
            if not pts:
                lead = [d + shift for _, d in packets if d < first]
            pts.extend(p + shift for p, _ in packets)
        pts.sort()
        assert time_base is not None
        if len(lead) != delay:
            # Before the first frame: continue the first frame's step backwards.
            step = pts[1] - pts[0] if len(pts) > 1 else max(1, round(1 / (info.fps * time_base)))
            lead = [pts[0] - (delay - k) * step for k in range(delay)]
        # (Else the first segment's own, which are the uninterrupted encode's: its encoder saw
        # the same first frames.)
        self._dts = lead + pts[: len(pts) - delay]
        self._next = 0

    def next_dts(self) -> int:
        dts = self._dts[self._next]
        self._next += 1
        return dts
