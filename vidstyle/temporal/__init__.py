"""Temporal coherence: optical flow, warping, the reliability mask, and the smoothing stage."""

from vidstyle.temporal.flow import (
    FLOW_PRESETS,
    FlowEstimator,
    FlowStage,
    flow_needed,
    flow_stage,
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
    "flow_stage",
    "reliability_mask",
    "warp",
    "warp_previous",
]
