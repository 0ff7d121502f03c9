"""Resumable renders: progress is kept beside the output in finished segments and joined at the end.

A render writes its frames into a hidden work folder beside the output,

    <output folder>/.<output name>.vidstyle-work/
        seg-000000.mp4, ...  finished, closed video segments (video only, timestamps from 0)
        carry-000003.pt      what the frame after the last segment needs (`Resumable` stages'
                             state: the previous output, smoothing's previous frame, RNG state)
        state.json           the commit record: settings fingerprint and the list of segments

and when every frame is done, stream-copies the segments into the final file with the source's
audio (`VideoWriter.write_packets`), then removes the folder. Every render goes this way, so an
interrupted-and-resumed render and an uninterrupted one produce the same frames, timestamps and
audio: there is no second code path to drift apart.

Every file is written under a temporary name and renamed into place, and state.json is written
last: a kill at any moment (SIGKILL, power loss) leaves the previous consistent state, and loses
at most the segment being written. Ctrl-C closes the current segment early and saves it, so it
loses nothing.

A re-run of the same command finds the folder and resumes after the last saved frame; a command
whose settings would change the pixels (another style, size, mode, a changed input file; see
`fingerprint`) starts over and says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import av
import av.error
import torch

from vidstyle import __version__
from vidstyle.background import BackgroundConsumer
from vidstyle.closing import CloseOrAbort
from vidstyle.config import RenderSettings
from vidstyle.errors import InputError, OutputError
from vidstyle.frame import FrameRecord
from vidstyle.media import VideoInfo, VideoWriter, output_error, tensor_to_image
from vidstyle.provenance import metadata_tags

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
_FORMAT = 1  # of state.json; another value is not resumed
# Segments are MP4 whatever the output's container: MP4 keeps every timestamp exactly in the
# stream's own time scale (Matroska rounds to milliseconds), and holds all of VIDEO_CODECS.
_SEGMENT_SUFFIX = ".mp4"

# Settings that do not change a single output pixel, so changing them keeps earlier progress:
# where it runs, how it is scheduled, and what happens only when the segments are joined (audio).
# Files named by settings (model, VGG weights) enter the fingerprint by identity instead.
_NOT_IN_FINGERPRINT = frozenset(
    {
        "device",
        "overwrite",
        "resume",
        "segment_frames",
        "audio",
        "batch_size",
        "models_dir",
        "model",
        "vgg_weights",
    }
)


def work_dir_for(output: Path) -> Path:
    """The hidden work folder of a render to `output` (beside it, on the same file system)."""
    return output.with_name(f".{output.name}.vidstyle-work")


# --------------------------------------------------------------------------------------------
# What a stage must keep across a restart


@runtime_checkable
class Resumable(Protocol):
    """A pipeline stage whose output depends on earlier frames (warm start, smoothing).

    `get_resume_state()` is called after the stage has yielded a frame and describes what the
    *next* frame needs (tensors, ints, RNG states; anything `torch.save` stores with
    `weights_only`). A resumed render calls `set_resume_state()` on a fresh stage before its
    first frame; the stage then behaves as if it had just yielded that frame. Stateless stages
    (fast mode, flow) need neither.
    """

    def get_resume_state(self) -> dict[str, Any]: ...

    def set_resume_state(self, state: Mapping[str, Any]) -> None: ...


def capture(stages: Sequence[object]) -> dict[str, Any]:
    """The state of every resumable stage (references, not copies: cheap enough per frame)."""
    carry: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    for key, stage in _keyed(stages):
        carry[key] = stage.get_resume_state()
    return carry


def restore(stages: Sequence[object], carry: Mapping[str, Any] | None) -> None:
    """Hand each resumable stage its saved state (`capture`'s output after a restart)."""
    if carry is None:
        return
    if "torch_rng" in carry:
        torch.set_rng_state(carry["torch_rng"])
    for key, stage in _keyed(stages):
        if key in carry:
            stage.set_resume_state(carry[key])


def _keyed(stages: Sequence[object]) -> Iterator[tuple[str, Resumable]]:
    for i, stage in enumerate(stages):
        if isinstance(stage, Resumable):
            yield f"{i}:{type(stage).__name__}", stage


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def skip_before(records: Iterable[FrameRecord], index: int) -> Iterator[FrameRecord]:
    """Drop the records before `index` (frames a resumed render has already finished)."""
    for record in records:
        if record.index >= index:
            yield record


# --------------------------------------------------------------------------------------------
# Fingerprint: when earlier progress may be reused


def file_digest(path: Path, length: int = 32) -> str:
    """The first `length` hex digits of the file's SHA-256 (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def fingerprint(
    input_path: Path,
    styles: Sequence[Path],
    settings: RenderSettings,
    *,
    files: Sequence[Path] = (),
    features: str | None = None,
) -> dict[str, str]:
    """Everything that decides the output's pixels, as strings (stored in state.json).

    The input by name, size and modification time (hashing a long video would take minutes);
    style images by content (a re-exported image with the same name is another style); other
    files the settings name (`files`: a fast-mode model, VGG weights, often hundreds of MB) by
    size and modification time; the VGG-19 features actually used (`features="auto"` falls
    back to random weights offline, and finds pretrained ones once they are downloaded); and
    every setting except those in `_NOT_IN_FINGERPRINT`, so a setting added later is covered
    without anyone remembering to add it here.
    """
    stat = input_path.stat()
    result = {
        "vidstyle": __version__,
        "input": f"{input_path.name} {stat.st_size} bytes, mtime {stat.st_mtime_ns}",
    }
    for i, style in enumerate(styles):
        result[f"style {i + 1}"] = f"{style.name} sha256:{file_digest(style)}"
    for path in files:
        st = path.stat()
        result[f"file {path.name}"] = f"{st.st_size} bytes, mtime {st.st_mtime_ns}"
    if features is not None:
        result["features in use"] = features
    for field in dataclasses.fields(settings):
        if field.name not in _NOT_IN_FINGERPRINT:
            result[field.name] = repr(getattr(settings, field.name))
    return result


def settings_files(settings: RenderSettings) -> list[Path]:
    """Files the settings name whose contents decide the pixels: the fast-mode model, and an
    explicit VGG-19 checkpoint."""
    files = []
    if settings.mode == "fast" and settings.model:
        from vidstyle.models import resolve_model  # fast mode only

        files.append(resolve_model(settings.model, settings.models_dir))
    if settings.vgg_weights and settings.mode == "quality":
        files.append(Path(settings.vgg_weights))
    return [path for path in files if path.is_file()]


def _changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


# --------------------------------------------------------------------------------------------
# The work folder


@dataclass(frozen=True)
class Segment:
    file: str  # name inside the work folder
    first_index: int  # output frame index of its first frame
    frames: int
    first_pts: int  # source pts of its first frame (the segment's own timestamps start at 0)
    last_pts: int  # source pts of its last frame


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_tensors(value: Any, path: Path) -> None:
    # torch.save reports a full disk as a RuntimeError from its C++ zip writer ("unexpected
    # pos ..."); through a Python file the write's OSError (ENOSPC) is at hand, raised instead.
    with path.open("wb") as file:
        try:
            torch.save(value, file)
        except RuntimeError as err:
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temp)`, flush it to disk, then rename over `path`: `path` is old or new, never
    half-written, even after a power loss."""
    temp = path.with_name(f".{path.name}.tmp")
    try:
        write(temp)
        _fsync(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


class WorkDir:
    """The resumable state of one render (see the module docstring for the layout)."""

    def __init__(self, output: Path, fingerprint: Mapping[str, str]) -> None:
        self.output = output
        self.path = work_dir_for(output)
        self.fingerprint = dict(fingerprint)
        self.segments: list[Segment] = []
        self.carry: dict[str, Any] | None = None  # stage states saved with the last segment
        self._carry_file: str | None = None

    @property
    def next_index(self) -> int:
        """Index of the first frame not yet saved."""
        return sum(segment.frames for segment in self.segments)

    @property
    def last_pts(self) -> int | None:
        return self.segments[-1].last_pts if self.segments else None

    @classmethod
    def open(cls, output: Path, fingerprint: Mapping[str, str], *, resume: bool = True) -> WorkDir:
        """The work folder for `output`: earlier progress if it may be reused, else empty.

        Says what it did: resumed, or why earlier progress was discarded.
        """
        work = cls(output, fingerprint)
        if not work.path.exists():
            return work
        state = work._read_state()
        if state is None:
            work.discard()  # a render killed before its first segment; nothing to keep
            return work
        try:
            done = sum(int(s["frames"]) for s in state["segments"])
        except (KeyError, TypeError, ValueError):
            log.warning("%s: %s is damaged; starting over", output.name, work.path / STATE_FILE)
            work.discard()
            return work
        if not resume:
            log.info("%s: discarding earlier progress (%d frames) as asked", output.name, done)
            work.discard()
            return work
        changed = _changed(state.get("fingerprint", {}), work.fingerprint)
        if changed:
            log.warning(
                "%s: earlier progress (%d frames) was made with a different %s; starting over",
                output.name,
                done,
                ", ".join(changed),
            )
            work.discard()
            return work
        try:
            work._load(state)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            log.warning(
                "%s: the work folder %s is damaged (%s); starting over", output.name, work.path, err
            )
            work.discard()
            return work
        log.info(
            "%s: resuming after frame %d (%d segment(s) saved earlier; --no-resume starts over)",
            output.name,
            work.next_index,
            len(work.segments),
        )
        return work

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("%s: unreadable %s (%s); starting over", self.output.name, STATE_FILE, err)
            return None
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            return None
        return state

    def _load(self, state: Mapping[str, Any]) -> None:
        segments = [Segment(**item) for item in state["segments"]]
        for segment in segments:
            if not (self.path / segment.file).is_file():
                raise ValueError(f"{segment.file} is missing")
        carry_file = state.get("carry")
        carry = None
        if carry_file:
            carry = torch.load(self.path / carry_file, map_location="cpu", weights_only=True)
        self.segments, self.carry, self._carry_file = segments, carry, carry_file
        # Leftovers of the run that stopped: a half-written segment, unreferenced files.
        keep = {STATE_FILE, carry_file, *(s.file for s in segments)}
        for item in self.path.iterdir():
            if item.name not in keep:
                with contextlib.suppress(OSError):
                    shutil.rmtree(item) if item.is_dir() else item.unlink()

    def discard(self) -> None:
        """Forget all progress (remove the folder)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.segments, self.carry, self._carry_file = [], None, None

    def next_segment_path(self) -> Path:
        self.path.mkdir(exist_ok=True)
        return self.path / f"seg-{len(self.segments):06d}{_SEGMENT_SUFFIX}"

    def add_segment(self, segment: Segment, carry: Mapping[str, Any]) -> None:
        """Commit a finished segment file with the stage states after its last frame.

        Raises `OutputError` when the work folder cannot take them (disk full); the state
        committed before stays as it was.
        """
        carry_file = f"carry-{len(self.segments):06d}.pt"
        segments = [*self.segments, segment]
        state = {
            "format": _FORMAT,
            "output": self.output.name,
            "fingerprint": self.fingerprint,
            "segments": [dataclasses.asdict(s) for s in segments],
            "carry": carry_file,
        }
        text = json.dumps(state, indent=1)
        try:
            _fsync(self.path / segment.file)
            _atomic_write(self.path / carry_file, lambda p: _save_tensors(_to_cpu(carry), p))
            _atomic_write(self.path / STATE_FILE, lambda p: p.write_text(text, encoding="utf-8"))
        except OSError as err:
            raise output_error(err, self.output) from err
        old_carry, self._carry_file = self._carry_file, carry_file
        self.segments, self.carry = segments, dict(carry)
        if old_carry and old_carry != carry_file:
            with contextlib.suppress(OSError):
                (self.path / old_carry).unlink()
        log.debug(
            "%s: saved frames %d-%d",
            self.output.name,
            segment.first_index,
            segment.first_index + segment.frames - 1,
        )

    def remove_if_empty(self) -> None:
        """After a failure: drop the folder unless it holds a saved segment."""
        if self.path.exists() and not self.segments:
            shutil.rmtree(self.path, ignore_errors=True)

    def join(
        self,
        info: VideoInfo,
        size: tuple[int, int],
        settings: RenderSettings,
        *,
        end_pts: int | None = None,
    ) -> int:
        """Write the output: every segment stream-copied, in order, with the source's audio
        (copied, cut at `end_pts` if given); renamed into place when complete. Returns the
        number of frames. The work folder is removed afterwards."""
        if not self.segments:
            raise OutputError(
                "no frames were written (the input gave none); check the input", self.output
            )
        first_path = self.path / self.segments[0].file
        try:
            with av.open(str(first_path)) as first:
                writer = VideoWriter(
                    self.output,
                    info,
                    size,
                    codec=settings.codec,
                    crf=settings.crf,
                    encoder_preset=settings.encoder_preset,
                    audio=settings.audio,
                    end_pts=end_pts,
                    copy_video_from=first.streams.video[0],
                    # What made it, so a later run with other settings can call it stale.
                    tags=metadata_tags(self.fingerprint),
                )
            with writer:
                plan = _JoinPlan(self, writer, info)
                for segment, shift in zip(self.segments, plan.shifts, strict=True):
                    with av.open(str(self.path / segment.file)) as container:
                        for packet in _packets(container):
                            packet.pts += shift
                            packet.dts = plan.next_dts()
                            writer.mux_packet(packet)
        except (av.error.FFmpegError, ValueError, IndexError) as err:
            # The segments were written and closed by us; this means the disk lost them.
            raise InputError(
                f"the saved segments in {self.path.name} are damaged ({err}); run again with "
                "--no-resume to start over",
                self.output,
            ) from err
        frames = self.next_index
        shutil.rmtree(self.path, ignore_errors=True)
        return frames


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

    def __init__(self, work: WorkDir, writer: VideoWriter, info: VideoInfo) -> None:
        self.shifts: list[int] = []
        pts: list[int] = []
        delay = 0
        time_base = None
        lead: list[int] = []  # the first segment's decode times before its first pts
        for segment in work.segments:
            with av.open(str(work.path / segment.file)) as container:
                packets = [(p.pts, p.dts) for p in _packets(container)]
                tb = container.streams.video[0].time_base
            if len(packets) != segment.frames:
                raise ValueError(f"{segment.file} holds {len(packets)} of {segment.frames} frames")
            if time_base is None:
                time_base = tb
            elif tb != time_base:
                raise ValueError(f"{segment.file} has time base {tb}, not {time_base}")
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


# --------------------------------------------------------------------------------------------
# Writing segments


class SegmentedWriter(CloseOrAbort):
    """Encodes frames into the work folder's segments on a background thread, and commits each
    full segment (`segment_frames`) together with the stages' state after its last frame.

    As a context manager: a normal exit commits the last, shorter segment; Ctrl-C
    (KeyboardInterrupt) also commits what was written so far, so an interrupted render keeps all
    its finished frames; any other error discards the unfinished segment (its temporary file is
    deleted) and keeps the committed ones.
    """

    def __init__(
        self,
        work: WorkDir,
        info: VideoInfo,
        size: tuple[int, int],
        settings: RenderSettings,
        *,
        snapshot: Callable[[], dict[str, Any]],
        queue_size: int = 8,
    ) -> None:
        self.work = work
        # Segments hold video only, each timed from 0 (see VideoWriter.write_packets): the
        # timeline's start offset and the audio are the joined file's business.
        self._info = dataclasses.replace(info, start_time=0.0, audio=())
        self._size = size
        self._settings = settings
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
        return self.work.next_index + self._submitted

    def write(self, image: torch.Tensor, pts: int) -> None:
        """Queue one stylized frame (1×3×H×W in [0, 1]) shown at source time `pts`."""
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
        if (self._first_index + count) % self._settings.segment_frames == 0:
            self.commit()

    def _open(self, pts: int) -> None:
        path = self.work.next_segment_path()
        self._writer = VideoWriter(
            path,
            self._info,
            self._size,
            codec=self._settings.codec,
            crf=self._settings.crf,
            encoder_preset=self._settings.encoder_preset,
            audio=False,
        )
        writer = self._writer

        def encode(item: tuple[torch.Tensor, int]) -> None:
            writer.write(tensor_to_image(item[0]), item[1])

        self._encoder = BackgroundConsumer(
            encode, queue_size=self._queue_size, name="vidstyle-encode"
        )
        self._first_index = self.work.next_index
        self._first_pts = pts
        self._submitted = 0
        self._done = {}

    def commit(self) -> None:
        """Close the current segment and save it with the state after its last frame."""
        if self._writer is None or self._encoder is None:
            return
        writer, encoder = self._writer, self._encoder
        encoder.close()  # every submitted frame encoded (raises the encoder's error, if any)
        frames = writer.frames_written
        self._writer = self._encoder = None
        if frames == 0:
            writer.abort()
            return
        writer.close()
        pts, carry = self._done[frames]
        segment = Segment(
            file=writer.path.name,
            first_index=self._first_index,
            frames=frames,
            first_pts=self._first_pts,
            last_pts=pts,
        )
        self.work.add_segment(segment, carry)
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
        """Save the segment in progress (`with` does this when its block ends normally)."""
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
