"""The work folder of a resumable render: its progress, kept beside the output.

    <output folder>/.<output name>.vidstyle-work/
        seg-000000.mp4, ...  finished, closed video segments (`vidstyle.media.segments`)
        carry-000003.pt      what the frame after the last segment needs (the pipeline stages'
                             state, `vidstyle.render.resume`: the previous output, smoothing's
                             previous frame, RNG state)
        state.json           the commit record: the render's fingerprint and the segments

When every frame is done, the segments are joined into the output with the source's audio and
the folder is removed. Every render goes this way, so an interrupted-and-resumed render and an
uninterrupted one produce the same frames, timestamps and audio: there is no second code path
to drift apart.

Every file is written atomically (`vidstyle.atomic`), and state.json last: a kill at any moment
(SIGKILL, power loss) leaves the previous consistent state, and loses at most the segment being
written. A re-run of the same command resumes after the last saved frame; one whose fingerprint
differs (another style, size, mode, a changed input file: `vidstyle.fingerprint`) starts over
and says why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vidstyle.atomic import output_error, write_atomically
from vidstyle.fingerprint import differences
from vidstyle.media import VideoInfo
from vidstyle.media.segments import SEGMENT_SUFFIX, Segment, join_segments
from vidstyle.nets.models import torch_save
from vidstyle.render.provenance import describe_difference, metadata_tags

# The key a part's frame range has in its work folder's fingerprint (beside the render's).
PART_KEY = "frames"

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
_FORMAT = 1  # of state.json; another value is not resumed


def work_dir_for(output: Path) -> Path:
    """The hidden work folder of a render to `output` (beside it, on the same file system)."""
    return output.with_name(f".{output.name}.vidstyle-work")


def saved_frames(output: Path) -> int:
    """Frames an interrupted render to `output` has saved (resumed if the fingerprint matches;
    `WorkDir.open` decides). 0 when there is no readable progress."""
    try:
        state = _read_state(work_dir_for(output))
        return 0 if state is None else _frames_in(state)
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _read_state(folder: Path) -> dict[str, Any] | None:
    """The folder's state.json; None if there is none or it is of another format. Raises
    `OSError` or `ValueError` if it cannot be read."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        return None
    return state


def _frames_in(state: Mapping[str, Any]) -> int:
    return sum(int(item["frames"]) for item in state["segments"])


class WorkDir:
    """The resumable state of one render: `open` it, write segments into it (it is the
    `SegmentStore` of a `SegmentedWriter`), then `join` it into the output."""

    def __init__(
        self,
        output: Path,
        fingerprint: Mapping[str, str],
        *,
        first_index: int = 0,
        path: Path | None = None,
    ) -> None:
        """`first_index`: the source frame this render starts at (a part of a video rendered
        in parts); segments are numbered by their frames' place in the source. `path`: the
        folder, if not the output's own (a part's, inside it)."""
        self.output = output
        self.first_index = first_index
        self.path = path or work_dir_for(output)
        self.fingerprint = dict(fingerprint)
        self._segments: list[Segment] = []
        self._carry: dict[str, Any] | None = None
        self._carry_file: str | None = None

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The committed segments, in order."""
        return tuple(self._segments)

    @property
    def carry(self) -> dict[str, Any] | None:
        """The stages' state saved with the last segment (None when nothing is saved)."""
        return self._carry

    @property
    def next_index(self) -> int:
        """Source index of the first frame not yet saved."""
        if not self._segments:
            return self.first_index
        last = self._segments[-1]
        return last.first_index + last.frames

    @property
    def saved_frames(self) -> int:
        """How many frames are saved."""
        return sum(segment.frames for segment in self._segments)

    @property
    def last_pts(self) -> int | None:
        """Source pts of the last frame saved."""
        return self._segments[-1].last_pts if self._segments else None

    @classmethod
    def open(
        cls,
        output: Path,
        fingerprint: Mapping[str, str],
        *,
        resume: bool = True,
        first_index: int = 0,
        path: Path | None = None,
    ) -> WorkDir:
        """The work folder for `output`: earlier progress if it may be reused, else empty.

        Says what it did: resumed, or why earlier progress was discarded.
        """
        work = cls(output, fingerprint, first_index=first_index, path=path)
        if not work.path.exists():
            return work
        try:
            state = _read_state(work.path)
        except (OSError, ValueError) as err:
            log.warning("%s: unreadable %s (%s); starting over", output.name, STATE_FILE, err)
            state = None
        if state is None:
            work.discard()  # a render killed before its first segment; nothing to keep
            return work
        try:
            done = _frames_in(state)
        except (KeyError, TypeError, ValueError):
            log.warning("%s: %s is damaged; starting over", output.name, work.path / STATE_FILE)
            work.discard()
            return work
        if not resume:
            log.info("%s: discarding earlier progress (%d frames) as asked", output.name, done)
            work.discard()
            return work
        before = state.get("fingerprint", {})
        changed = differences(before, work.fingerprint)
        if changed:
            log.warning(
                "%s: earlier progress (%d frames) was made with other settings: %s; starting over",
                output.name,
                done,
                ", ".join(
                    describe_difference(key, before.get(key), work.fingerprint.get(key))
                    for key in changed
                ),
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
            len(work._segments),
        )
        return work

    @classmethod
    def saved(cls, output: Path, path: Path, first_index: int) -> WorkDir | None:
        """What the renders into `path` (a part of a video rendered in parts) have saved, with
        the fingerprint they recorded; None if nothing readable is saved there."""
        work = cls(output, {}, first_index=first_index, path=path)
        try:
            state = _read_state(path)
            if state is None:
                return None
            work.fingerprint = dict(state.get("fingerprint", {}))
            work._load(state)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None
        return work

    def _load(self, state: Mapping[str, Any]) -> None:
        segments = [
            Segment(
                path=self.path / item["file"],
                first_index=int(item["first_index"]),
                frames=int(item["frames"]),
                first_pts=int(item["first_pts"]),
                last_pts=int(item["last_pts"]),
            )
            for item in state["segments"]
        ]
        expected = self.first_index
        for segment in segments:
            if not segment.path.is_file():
                raise ValueError(f"{segment.path.name} is missing")
            if segment.first_index != expected:
                raise ValueError(f"{segment.path.name} does not start at frame {expected}")
            expected += segment.frames
        carry_file = state.get("carry")
        carry = None
        if carry_file:
            carry = torch.load(self.path / carry_file, map_location="cpu", weights_only=True)
        self._segments, self._carry, self._carry_file = segments, carry, carry_file
        # Leftovers of the run that stopped: a half-written segment, unreferenced files.
        keep = {STATE_FILE, carry_file, *(s.path.name for s in segments)}
        for item in self.path.iterdir():
            if item.name not in keep:
                with contextlib.suppress(OSError):
                    shutil.rmtree(item) if item.is_dir() else item.unlink()

    def discard(self) -> None:
        """Forget all progress (remove the folder)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._segments, self._carry, self._carry_file = [], None, None

    def next_segment_path(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path / f"seg-{len(self._segments):06d}{SEGMENT_SUFFIX}"

    def add_segment(self, segment: Segment, state: Mapping[str, Any]) -> None:
        """Commit a finished segment file (in this folder, on disk) with the stages' `state`
        after its last frame.

        Raises `OutputError` when the work folder cannot take them (disk full); the state
        committed before stays as it was.
        """
        if segment.path.parent != self.path:
            raise ValueError(f"{segment.path} is not in {self.path}")
        carry_file = f"carry-{len(self._segments):06d}.pt"
        segments = [*self._segments, segment]
        record = {
            "format": _FORMAT,
            "output": self.output.name,
            "fingerprint": self.fingerprint,
            "segments": [_as_record(s) for s in segments],
            "carry": carry_file,
        }
        text = json.dumps(record, indent=1).encode("utf-8")
        try:
            write_atomically(self.path / carry_file, lambda f: torch_save(_to_cpu(state), f))
            write_atomically(self.path / STATE_FILE, lambda f: f.write(text))
        except OSError as err:
            raise output_error(err, self.output) from err
        old_carry, self._carry_file = self._carry_file, carry_file
        self._segments, self._carry = segments, dict(state)
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
        if self.path.exists() and not self._segments:
            shutil.rmtree(self.path, ignore_errors=True)

    def join(self, info: VideoInfo, *, audio: bool = True, end_pts: int | None = None) -> int:
        """Write the output from this folder's segments (`join_segments`, with the render's
        fingerprint in its metadata, so a later run with other settings can call it stale),
        then remove the folder. Returns the number of frames."""
        frames = join_segments(
            self._segments,
            self.output,
            info,
            audio=audio,
            end_pts=end_pts,
            tags=metadata_tags(self.fingerprint),
        )
        shutil.rmtree(self.path, ignore_errors=True)
        return frames


def _as_record(segment: Segment) -> dict[str, Any]:
    # The file by name: the folder may be moved (with its output) between runs.
    return {
        "file": segment.path.name,
        "first_index": segment.first_index,
        "frames": segment.frames,
        "first_pts": segment.first_pts,
        "last_pts": segment.last_pts,
    }


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
