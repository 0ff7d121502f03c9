"""Temporal coherence: optical flow, warping, the reliability mask, and the smoothing stage."""

from vidstyle.temporal.flow import (
    FLOW_PRESETS,
    FlowEstimator,
    FlowStage,
    flow_needed,
    reliability_mask,
    warp,
    warp_previous,
)
from vidstyle.temporal.smooth import TemporalSmoother

__all__ = [
    "FLOW_PRESETS",
    "FlowEstimator",
    "FlowStage",
    "TemporalSmoother",
    "flow_needed",
    "reliability_mask",
    "warp",
    "warp_previous",
]
