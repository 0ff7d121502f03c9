"""What every output video shares, however its video gets there: an atomic finish, the source's
audio alongside, and the source's timing.

The file is written under a hidden temporary name beside the target (`vidstyle.atomic`) and
renamed only when complete: a crash, an exception or Ctrl-C never leaves a half-written file
under the final name. Timing comes from the source: the video runs in the source's time base
(or a finer one, see `Retimer`) and every frame keeps its source pts, so variable-frame-rate
input keeps its timing and the average rate (30000/1001 stays 30000/1001) and duration match.
Two kinds of writer build on this: `VideoWriter` encodes frames, `StreamCopyWriter` copies
packets that were encoded already (the segments of a resumable render).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.error

from vidstyle.atomic import AtomicFile, output_error
from vidstyle.closing import CloseOrAbort
from vidstyle.errors import OutputError
from vidstyle.media.audio import SourceAudio
from vidstyle.media.codecs import container_format
from vidstyle.media.probe import VideoInfo

log = logging.getLogger(__name__)


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


class OutputVideo(CloseOrAbort):
    """An output video being written to `path`: a subclass adds the video stream
    (`_add_video`) and its packets (`_mux`), and flushes its own state in `_finish_video`.

    Use as a context manager: leaving the block normally calls `close` (finish and rename),
    leaving it by an exception (including KeyboardInterrupt) calls `abort`, so nothing ever
    appears under `path` unless the file is complete.
    """

    def __init__(
        self,
        path: Path,
        source: VideoInfo,
        *,
        audio: bool = True,
        end_pts: int | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """`tags`: container metadata to write (`vidstyle.render.provenance` records the render's
        settings there). `end_pts`: see the property."""
        self.path = Path(path)
        self._file = AtomicFile(self.path)
        self.source = source
        self._retime = Retimer(source.time_base, source.fps)
        self._frames = 0
        self._audio: SourceAudio | None = None
        self._finished = True  # nothing to clean up until the temporary file is opened
        self.end_pts = end_pts

        fmt = container_format(self.path)
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
            self._video = self._add_video()
            if audio and source.audio:
                self._audio = SourceAudio(self._out, source, self.path)
                self._audio.end = self._end
        except BaseException:
            self.abort()
            raise

    # ---------------------------------------------------------------------- for subclasses

    def _add_video(self) -> av.video.stream.VideoStream:
        raise NotImplementedError

    def _finish_video(self) -> None:
        """Mux what the video side still holds (an encoder's delayed frames)."""

    def _mux(self, packets: Iterable[av.Packet], until: Fraction) -> None:
        """Mux the source's audio up to `until` seconds, then `packets`; a failed write aborts
        and raises the one-line `OutputError`."""
        try:
            if self._audio is not None:
                for packet in self._audio.packets(until):
                    self._out.mux(packet)
            for packet in packets:
                self._out.mux(packet)
        except OSError as err:
            self.abort()
            raise output_error(err, self.path) from err

    def _tag_for_apple(self, stream: av.video.stream.VideoStream, codec: str) -> None:
        # HEVC in MP4/MOV may be tagged hev1 (FFmpeg's default) or hvc1; Apple players only
        # play hvc1. A stream copy resets the tag, so the join sets it again.
        if codec in ("libx265", "hevc") and self._out.format.name in ("mp4", "mov"):
            stream.codec_tag = "hvc1"

    # ---------------------------------------------------------------------------- public

    @property
    def temp_path(self) -> Path:
        """Where the file is while it is written."""
        return self._file.temp

    @property
    def frames_written(self) -> int:
        return self._frames

    @property
    def end_pts(self) -> int | None:
        """Source video time (in `source.time_base`) where the output ends; audio is cut there.

        May be set (or changed) any time before `close`: audio is only muxed up to the newest
        video frame, so a caller that learns the end only when its frames run out (a
        --max-frames preview of a shorter clip) can set it after the last frame.
        """
        return self._end_pts

    @end_pts.setter
    def end_pts(self, value: int | None) -> None:
        self._end_pts = value
        self._end = None if value is None else value * self.source.time_base
        if self._audio is not None:
            self._audio.end = self._end

    def close(self) -> None:
        """Flush the video, mux the remaining audio, close, and rename into place."""
        if self._finished:
            return
        if self._frames == 0:
            self.abort()
            raise OutputError(
                "no frames were written (the input gave none); check the input", self.path
            )
        try:
            self._finish_video()
            if self._audio is not None:
                for packet in self._audio.rest():
                    self._out.mux(packet)
                self._audio.close()
            self._out.close()
            self._file.commit()
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
        if self._audio is not None:
            self._audio.close()
        self._file.discard()

    def __del__(self) -> None:
        # A writer dropped without close/abort (e.g. a generator pipeline torn down) must not
        # leave its temporary file behind.
        if not getattr(self, "_finished", True):
            with contextlib.suppress(Exception):
                self.abort()


class Retimer:
    """Maps source pts to the output's time base, recovering exact constant-rate timing.

    Usually the identity. Matroska/WebM store times in whole milliseconds, so a 30000/1001 fps
    source has pts 0, 33, 67, 100, ...; written to MP4 as they are, the average rate would come
    out as 24000/801-ish instead of 30000/1001. When a frame period is not a whole number of
    source ticks, the output runs in a finer time base (1/lcm(tick, fps numerator)) where the
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
