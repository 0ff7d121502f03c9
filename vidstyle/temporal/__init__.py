"""Temporal coherence: optical flow, warping, the reliability mask, and the smoothing stage."""

from vidstyle.temporal.flow import (
    FLOW_PRESETS,
    FlowEstimator,
    FlowStage,
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
    "reliability_mask",
    "warp",
    "warp_previous",
]
