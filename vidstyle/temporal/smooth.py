"""Temporal smoothing stage: blend each stylized frame with the flow-warped previous output.

Per-frame stylization (and the small residual differences left by warm-started optimisation)
flickers: a pixel that follows the same scene point changes colour from frame to frame. This
stage, between stylization and encoding, pulls every reliable pixel towards where the previous
*smoothed* output says that point was:

    out_t = styled_t                                     where the flow is unreliable
    out_t = (1 − s) · styled_t + s · warp(out_{t−1})     where it is reliable

Feeding back the smoothed output (an exponential moving average along the motion) damps flicker
over many frames, not just two. Unreliable pixels (disocclusions, motion boundaries, points
entering the frame) take the stylized frame alone, so nothing of what was there before is
dragged behind a moving object (no ghosting), and at a scene cut the average restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from torch import Tensor

from vidstyle.frame import FrameRecord
from vidstyle.temporal.flow import warp_previous


class TemporalSmoother:
    """Iterator stage: FrameRecord(styled, flow, reliable, new_shot) -> smoothed `styled`."""

    def __init__(self, strength: float) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"smoothing strength must be in [0, 1], got {strength}")
        self.strength = strength
        self._last: Tensor | None = None  # the last smoothed output (vidstyle.resume)
        self._resumed: Tensor | None = None

    def get_resume_state(self) -> dict[str, Any]:
        """What the next frame needs (`vidstyle.resume.Resumable`): the last smoothed output."""
        return {"previous": self._last}

    def set_resume_state(self, state: Mapping[str, Any]) -> None:
        self._resumed = state.get("previous")

    def __call__(self, frames: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        previous, self._resumed = self._resumed, None
        for record in frames:
            if record.styled is None:
                raise ValueError(f"frame {record.index} reaches smoothing without a styled image")
            if previous is not None:
                previous = previous.to(record.styled.device)
            smoothed = self.smooth(record, previous)
            previous = smoothed
            self._last = smoothed
            yield replace(record, styled=smoothed)

    def smooth(self, record: FrameRecord, previous: Tensor | None) -> Tensor:
        """The smoothed output of `record` given the previous smoothed output (or None)."""
        styled = record.styled
        assert styled is not None
        if previous is None or self.strength == 0.0:
            return styled
        carried = warp_previous(previous, record)
        if carried is None:  # a new shot: start the average again
            return styled
        warped, reliable = carried
        # lerp makes a new tensor: the caller's `styled` is never modified.
        return styled.lerp(warped, reliable * self.strength)
