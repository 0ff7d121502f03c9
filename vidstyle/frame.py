"""The record that flows between pipeline stages.

Every stage is an iterator transformer `Iterator[FrameRecord] -> Iterator[FrameRecord]`; a stage
fills in its own fields with `dataclasses.replace` and never modifies the tensors it was given.
Tensors follow the project convention: float32, 1×3×H×W, RGB in [0, 1], on the compute device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from vidstyle.media import VideoInfo, image_to_tensor, read_frames


@dataclass(frozen=True)
class FrameRecord:
    index: int  # 0-based frame number in the output
    pts: int  # source timestamp, in the source video stream's time base
    content: Tensor  # source frame at the rendering size
    styled: Tensor | None = None  # set by the stylize stage
    # Set by the flow stage (vidstyle.temporal.flow.FlowStage); None/False when it did not run.
    flow: Tensor | None = None  # 1×2×H×W, pixels, from this frame to the previous one
    reliable: Tensor | None = None  # 1×1×H×W in {0, 1}: where `flow` can be trusted
    new_shot: bool = False  # first frame or after a scene cut: nothing may come from before
    # The decoded H×W×3 uint8 frame `content` was made from, in host memory: what optical flow
    # reads, so a frame on a GPU need not be copied back for it. None: not kept.
    rgb8: np.ndarray | None = field(default=None, repr=False, compare=False)


def decode_records(
    info: VideoInfo,
    size: tuple[int, int],
    max_frames: int | None,
    device: torch.device,
    start: int = 0,
) -> Iterator[FrameRecord]:
    """The video's frames at `size` on `device`, as records, from frame `start` (frames before
    it are decoded to count them, not converted to tensors) up to `max_frames`."""
    for frame in read_frames(info, size=size, max_frames=max_frames):
        if frame.index < start:
            continue  # finished by an earlier run (resume), or another part's
        yield FrameRecord(
            index=frame.index,
            pts=frame.pts,
            content=image_to_tensor(frame.image, device),
            rgb8=frame.image,
        )
