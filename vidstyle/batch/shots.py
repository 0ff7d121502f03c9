"""One video as independent parts: split where a render starts afresh, render in parallel, join.

A render carries state from frame to frame (the warped previous output, smoothing's average),
and drops all of it at a scene cut: the first frame of a shot is rendered like frame 1
(`FrameRecord.new_shot`). So the shots of a video are independent renders, and the frames of
each are exactly those of a render of the whole video, if three things hold, all of which the
whole render guarantees too:

- the cuts are found by the same test on the same frames (`find_cuts` runs the render's own
  flow stage over the video at the rendering size);
- a saved segment never spans a cut (`SegmentedWriter` starts one at every new shot), so each
  shot's segments are encoded from the same frames as the whole render's, byte for byte;
- nothing in a frame depends on anything before its shot (noise starts are seeded per frame,
  fast mode's batches start at every new shot and at multiples of the batch size).

A render with no state at all (fast mode without smoothing) has no shots to find: every frame
is independent, so it is cut at segment boundaries instead, where its batches also start.

Each part renders into its own folder inside the output's work folder, so it resumes on its
own; the output is the parts' segments stream-copied in order with the source's audio.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from vidstyle.config import RenderSettings
from vidstyle.errors import OutputError
from vidstyle.frame import decode_records
from vidstyle.media import VideoInfo, read_frames
from vidstyle.media.segments import join_segments, preview_end_pts
from vidstyle.render.pipeline import flow_needed, flow_stage
from vidstyle.render.prepare import Shot
from vidstyle.render.provenance import metadata_tags
from vidstyle.render.workdir import PART_KEY, WorkDir, work_dir_for

log = logging.getLogger(__name__)

_SHOTS_FILE = "shots.json"  # the parts found, kept in the output's work folder for a re-run


def carries_state(settings: RenderSettings) -> bool:
    """Whether a frame of a render with `settings` may depend on the frames before it.

    Flow-based stages (warm start, temporal loss, smoothing) do, within a shot; so does quality
    mode without them, which fits its colour targets to a shot's first frame."""

    return flow_needed(settings) or settings.mode == "quality"


def split_step(settings: RenderSettings) -> int:
    """The frame count a stateless render's parts are a multiple of: where both its segments
    and its batches start."""
    return math.lcm(settings.segment_frames, max(1, settings.batch_size))


def plan_shots(cuts: list[int], total: int) -> list[Shot]:
    """Shots from the indices of the frames that start a new shot (frame 0 always does)."""
    starts = sorted({0, *(cut for cut in cuts if 0 < cut < total)})
    stops = [*starts[1:], total]
    return [
        Shot(number=i + 1, count=len(starts), first=a, stop=b)
        for i, (a, b) in enumerate(zip(starts, stops, strict=True))
    ]


def plan_chunks(total: int, step: int, parts: int) -> list[Shot]:
    """About `parts` pieces of a stateless render, each a multiple of `step` frames long."""
    per_part = max(step, math.ceil(total / max(1, parts) / step) * step)
    firsts = range(0, total, per_part)
    return [
        Shot(number=i + 1, count=len(firsts), first=first, stop=min(total, first + per_part))
        for i, first in enumerate(firsts)
    ]


def find_cuts(
    info: VideoInfo, size: tuple[int, int], settings: RenderSettings
) -> tuple[list[int], int]:
    """The frames a render with `settings` treats as a new shot, and the frame count.

    Runs the render's own flow stage over the decoded frames, so the cuts are the render's."""

    # On the CPU, whatever the render's device: flow runs on the CPU (OpenCV) either way.
    cpu = torch.device("cpu")
    stage = flow_stage(settings, cpu)
    total = 0
    for record in stage(decode_records(info, size, settings.max_frames, cpu)):
        total = record.index + 1
    return list(stage.cuts), total


def count_frames(info: VideoInfo, size: tuple[int, int], settings: RenderSettings) -> int:
    total = 0
    for frame in read_frames(info, size=size, max_frames=settings.max_frames):
        total = frame.index + 1
    return total


def find_shots(
    info: VideoInfo,
    size: tuple[int, int],
    settings: RenderSettings,
    *,
    parts: int,
) -> list[Shot]:
    """The independent parts of a render of `info` (see the module docstring); empty when the
    video renders as one part."""

    if carries_state(settings):
        if not flow_needed(settings):
            # Quality mode without flow (--init content, --smooth 0) never detects a cut, and
            # fits its colour targets to frame 1: the whole video is one shot, no need to look.
            log.info("%s: no cuts are looked for without optical flow; one part", info.path.name)
            return []
        cuts, total = find_cuts(info, size, settings)
        shots = plan_shots(cuts, total)
        log.info(
            "%s: %d shot(s) (cuts before frame %s)",
            info.path.name,
            len(shots),
            ", ".join(str(shot.first) for shot in shots[1:]) or "none",
        )
        return shots
    total = count_frames(info, size, settings)
    chunks = plan_chunks(total, split_step(settings), parts)
    log.info(
        "%s: frames are independent; %d part(s) of up to %d frames",
        info.path.name,
        len(chunks),
        chunks[0].frames if chunks else 0,
    )
    return chunks


def save_shots(folder: Path, shots: list[Shot], identity: Mapping[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"fingerprint": dict(identity), "shots": [asdict(s) for s in shots]})
    (folder / _SHOTS_FILE).write_text(text, encoding="utf-8")


def load_shots(folder: Path, identity: Mapping[str, str]) -> list[Shot] | None:
    """The parts an earlier run of the same command found, or None."""
    try:
        state = json.loads((folder / _SHOTS_FILE).read_text(encoding="utf-8"))
        if state.get("fingerprint") != dict(identity):
            return None
        return [Shot(**item) for item in state["shots"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def join_shots(
    output: Path,
    shots: Sequence[Shot],
    info: VideoInfo,
    *,
    audio: bool,
    max_frames: int | None,
) -> int:
    """Write `output` from the finished parts' segments, with the fingerprint the parts
    recorded (less their frame range) in its metadata; remove the work folder. Returns the
    number of frames."""
    parts = []
    for shot in shots:
        work = WorkDir.saved(output, shot.folder(output), shot.first)
        if work is None or work.next_index != shot.stop:
            done = 0 if work is None else work.saved_frames
            raise OutputError(
                f"frames {shot.first}-{shot.stop - 1} are not all rendered ({done} of "
                f"{shot.frames}); run the same command again to finish them",
                output,
            )
        parts.append(work)
    segments = [segment for work in parts for segment in work.segments]
    end_pts = None if max_frames is None else preview_end_pts(segments[-1].last_pts, info)
    identity = {k: v for k, v in parts[0].fingerprint.items() if k != PART_KEY}
    frames = join_segments(
        segments, output, info, audio=audio, end_pts=end_pts, tags=metadata_tags(identity)
    )
    shutil.rmtree(work_dir_for(output), ignore_errors=True)
    return frames
