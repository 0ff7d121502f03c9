"""Optical flow between consecutive source frames, backward warping, and the reliability mask.

Conventions (used everywhere in `vidstyle.temporal` and `vidstyle.metrics`):

- A flow field `w` "from frame a to frame b" is given in pixels at every pixel x of frame a and
  says where that point is in frame b: ``b(x + w(x)) ≈ a(x)``. As an array it is H×W×2 float32
  (OpenCV's layout, channel 0 = horizontal); as a tensor it is 1×2×H×W on the compute device.
- `warp(image_b, w)` resamples frame b at ``x + w(x)``, which brings it onto frame a's pixel grid
  ("backward warping"). The pipeline uses the flow from frame t to frame t−1 to carry the
  previous output onto frame t.
- The reliability mask of a flow is 1 where the warped value can be trusted and 0 where it
  cannot: disoccluded pixels, motion boundaries, points that leave the frame, and pixels where
  the previous source frame carried along the flow does not look like the current one (the
  flow missed something there). Every user of the previous output (warm start, temporal loss,
  smoothing) uses this one mask: carrying a pixel that fails any test is how ghosts are made.

Flow is computed with OpenCV's DIS optical flow (Kroeger et al. 2016) on the *source* frames at
the rendering size. `FlowStage` runs it on a background thread: OpenCV and numpy release the GIL
while they work, so the flow of the next frames is computed while the current frame is being
stylized instead of adding to its time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidstyle.background import Output, produce_in_background
from vidstyle.frame import FrameRecord

log = logging.getLogger(__name__)

FLOW_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Flow is estimated at most this many pixels on the long side and scaled up to the frame. DIS
# cost grows with the pixel count (medium: ~50 ms at 512x288 but ~1.1 s at 1920x1080 on two
# CPU threads), which would make flow, not the network, the bottleneck of fast mode at full
# HD; the motion that smoothing and warm starts need is the coarse one, and 640 px keeps
# quality mode's default 512 px at full resolution.
FLOW_MAX_SIDE = 640

# Weight of DIS's variational refinement's smoothness term (OpenCV's default: 20). At 20 the flow
# over smooth, grainy regions (sky, hillsides) is noisy enough for the motion-boundary check to
# reject a quarter of a panning landscape every frame, and rejected pixels are painted again
# from a fresh start; 50 keeps them (docs/quality.md, the reliability of the flow).
FLOW_SMOOTHNESS = 50.0

# Photometric check (ReCoNet, Gao et al. 2018; Lai et al. 2018): a pixel whose previous *source*
# colour, carried along the flow, differs from its current source colour by more than this
# (max over RGB channels, 0-255) is not carried. Forward-backward consistency cannot see a
# small fast object the flow missed: both directions agree on "no motion" and the object's old
# colour would be carried forever. Both frames are blurred first (Gaussian, PHOTO_BLUR_SIGMA px)
# so that resampling a fine texture (tens of levels at sub-pixel shifts) does not fail the
# check; objects are larger than that. 24 levels (~9%) is above compression noise and below
# the difference of any object worth seeing.
PHOTO_MAX_DIFFERENCE = 24.0
PHOTO_BLUR_SIGMA = 1.0
# Unreliable regions are grown by this many pixels (at flow resolution), so the rim of an
# object that left, half-blended into the background by the resampling, is not carried as a
# halo. 2 px was measured too: at 128 px it rejected a sixth of a panning texture, and the
# rejected pixels' restyling made video less steady with no fewer trails.
MASK_GROW_PX = 1


# --------------------------------------------------------------------------------------------
# Flow and mask (numpy, CPU; safe to call from a worker thread)


def to_gray(image: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 RGB -> H×W uint8 luma, the input DIS works on."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def tensor_to_rgb8(frame: Tensor) -> np.ndarray:
    """1×3×H×W float tensor in [0, 1] (any device) -> H×W×3 uint8 RGB on the host."""
    if frame.device.type == "cpu":
        # With numpy, not torch: this runs on the flow thread, where a torch op would start a
        # second OpenMP thread team competing with the stylizer's for the cores.
        rgb = frame.detach()[0].permute(1, 2, 0).numpy()
        return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    # Quantised on the device so only uint8 crosses back to the host.
    rgb = frame.detach()[0].clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return rgb.permute(1, 2, 0).contiguous().cpu().numpy()


class FlowEstimator:
    """DIS optical flow with one OpenCV object (not thread-safe: one estimator per thread).

    `flow_and_mask` takes H×W×3 uint8 RGB frames, works at most `max_side` pixels on the long
    side (None: always at full size) and returns full-size results. `smoothness`: the weight of
    DIS's variational smoothness term (None: FLOW_SMOOTHNESS).
    """

    def __init__(
        self,
        preset: str = "medium",
        *,
        max_side: int | None = FLOW_MAX_SIDE,
        smoothness: float | None = None,
    ) -> None:
        if preset not in FLOW_PRESETS:
            raise ValueError(f"unknown flow preset {preset!r}; use {', '.join(FLOW_PRESETS)}")
        self.preset = preset
        self.max_side = max_side
        self._dis = cv2.DISOpticalFlow_create(FLOW_PRESETS[preset])
        self._dis.setVariationalRefinementAlpha(
            FLOW_SMOOTHNESS if smoothness is None else smoothness
        )

    def __call__(self, gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
        """Flow from frame a to frame b (H×W×2 float32, pixels): ``b(x + w(x)) ≈ a(x)``."""
        # calc(I0, I1) returns the flow with I0(x) ≈ I1(x + w(x)), i.e. from I0 to I1.
        return self._dis.calc(gray_a, gray_b, None)

    def flow_and_mask(self, rgb_a: np.ndarray, rgb_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flow from a to b and its reliability mask on a's grid (H×W float32 in {0, 1})."""
        h, w = rgb_a.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return self._flow_and_mask(rgb_a, rgb_b)
        scale = self.max_side / max(h, w)
        small = (max(1, round(w * scale)), max(1, round(h * scale)))
        a = cv2.resize(rgb_a, small, interpolation=cv2.INTER_AREA)
        b = cv2.resize(rgb_b, small, interpolation=cv2.INTER_AREA)
        # The mask's thresholds are in pixels of the size it is computed at (a little stricter
        # than at full size, which errs on the safe side).
        a_to_b, mask = self._flow_and_mask(a, b)
        full = cv2.resize(a_to_b, (w, h), interpolation=cv2.INTER_LINEAR)
        full[..., 0] *= w / small[0]
        full[..., 1] *= h / small[1]
        return full, cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)

    def _flow_and_mask(self, rgb_a: np.ndarray, rgb_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gray_a, gray_b = to_gray(rgb_a), to_gray(rgb_b)
        a_to_b = self(gray_a, gray_b)
        mask = reliability_mask(a_to_b, self(gray_b, gray_a))
        mask *= photometric_mask(rgb_a, rgb_b, a_to_b)
        return a_to_b, grow_unreliable(mask, MASK_GROW_PX)


def sample_along_flow(field: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`field` (on frame b's grid) bilinearly sampled at x + flow(x) (on frame a's grid)."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        field,
        xs + flow[..., 0],
        ys + flow[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def reliability_mask(a_to_b: np.ndarray, b_to_a: np.ndarray) -> np.ndarray:
    """Where the flow from frame a to frame b can be trusted (1) or not (0), on a's grid.

    The checks and thresholds are those of Ruder, Dosovitskiy and Brox, "Artistic style transfer
    for videos", GCPR 2016, section 3.2, written for our flow ŵ = `a_to_b` with w̃ = the reverse
    flow `b_to_a` carried onto a's grid (w̃(x) = b_to_a(x + ŵ(x))):

    - disocclusion: forward and backward flow disagree, |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5
      (a point visible in a but not in b has no consistent way back);
    - motion boundary: |∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002, where the flow of the object and of
      what is behind it mix and neither is right;
    - leaving the frame: x + ŵ(x) outside frame b (the point was not filmed there), an addition
      to the paper's two checks that the warp would otherwise fill with border colour.
    """
    h, w = a_to_b.shape[:2]
    # Contiguous component planes: arithmetic on them is several times faster than reducing
    # over the interleaved last axis of size 2 (this runs for every frame).
    u, v = cv2.split(a_to_b)
    bu, bv = cv2.split(sample_along_flow(b_to_a, a_to_b))  # w̃
    magnitude = u * u + v * v
    su, sv = bu + u, bv + v
    disoccluded = su * su + sv * sv > 0.01 * (bu * bu + bv * bv + magnitude) + 0.5

    # Central differences in the interior, one-sided at the border (np.gradient), per component.
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    boundary = du_dx * du_dx + du_dy * du_dy + dv_dx * dv_dx + dv_dy * dv_dy > (
        0.01 * magnitude + 0.002
    )

    xs = np.arange(w, dtype=np.float32)[None, :] + u
    ys = np.arange(h, dtype=np.float32)[:, None] + v
    outside = (xs < 0) | (xs > w - 1) | (ys < 0) | (ys > h - 1)

    return (~(disoccluded | boundary | outside)).astype(np.float32)


def photometric_mask(rgb_a: np.ndarray, rgb_b: np.ndarray, a_to_b: np.ndarray) -> np.ndarray:
    """1 where frame b carried along the flow looks like frame a (see PHOTO_MAX_DIFFERENCE)."""
    blur_a = cv2.GaussianBlur(rgb_a, (0, 0), PHOTO_BLUR_SIGMA).astype(np.float32)
    blur_b = cv2.GaussianBlur(rgb_b, (0, 0), PHOTO_BLUR_SIGMA).astype(np.float32)
    difference = np.abs(sample_along_flow(blur_b, a_to_b) - blur_a).max(axis=2)
    return (difference <= PHOTO_MAX_DIFFERENCE).astype(np.float32)


def grow_unreliable(mask: np.ndarray, pixels: int) -> np.ndarray:
    """`mask` with its unreliable (0) regions grown by `pixels` in every direction."""
    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    # Erosion of the reliable set; border pixels are not eroded by the outside of the frame.
    return cv2.erode(mask, kernel, borderType=cv2.BORDER_REPLICATE)


# --------------------------------------------------------------------------------------------
# Warping (torch, on the compute device)


def flow_to_tensor(flow: np.ndarray, device: torch.device | str) -> Tensor:
    """H×W×2 float32 array -> new 1×2×H×W tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))).unsqueeze(0).to(device)


def mask_to_tensor(mask: np.ndarray, device: torch.device | str) -> Tensor:
    """H×W float32 array -> new 1×1×H×W tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(mask))[None, None].to(device)


def warp(image: Tensor, flow: Tensor, *, mode: str = "bilinear") -> Tensor:
    """Backward warp: ``out(x) = image(x + flow(x))``, as a new tensor.

    image: N×C×H×W (frame b); flow: N×2×H×W in pixels, from frame a to frame b (broadcasts
    over N when it has a batch of 1). mode: grid_sample's "bilinear" or "bicubic" (sharper,
    but may overshoot the input's range). Points outside the image take the nearest border
    value; the reliability mask marks them, so callers replace them rather than trust them.
    """
    n, _, h, w = image.shape
    if flow.shape[-2:] != (h, w):
        raise ValueError(f"flow is {tuple(flow.shape[-2:])}, image is {(h, w)}")
    x, y = _sampled_positions(flow)
    # grid_sample takes positions in [-1, 1]; with align_corners=True, -1 and 1 are the centres
    # of the first and last pixels, so pixel x maps to 2x/(W-1) - 1.
    gx = x * (2.0 / max(w - 1, 1)) - 1.0
    gy = y * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1).expand(n, h, w, 2).to(image.dtype)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)


def inside_frame(flow: Tensor) -> Tensor:
    """1 where `warp` samples inside the image, 0 where it takes a border value (N×1×H×W)."""
    h, w = flow.shape[-2:]
    x, y = _sampled_positions(flow)
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(flow.dtype).unsqueeze(1)


def _sampled_positions(flow: Tensor) -> tuple[Tensor, Tensor]:
    """The pixel positions `warp` samples, x + flow(x): two N×H×W tensors (x and y)."""
    h, w = flow.shape[-2:]
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    return xs + flow[:, 0], ys + flow[:, 1]


def warp_previous(previous: Tensor, record: FrameRecord) -> tuple[Tensor, Tensor] | None:
    """The previous frame's image carried onto `record`'s grid, and where it is reliable.

    None when `record` starts a new shot: nothing of the previous shot may be reused. A record
    without flow (the flow stage did not run) is treated as still: zero flow, all reliable.
    `previous` is an image in [0, 1].
    """
    if record.new_shot:
        return None
    if record.flow is None or record.reliable is None:
        return previous, torch.ones_like(previous[:, :1])
    # Bicubic, not bilinear: smoothing warps its own output again every frame, and bilinear
    # resampling at sub-pixel motion blurs fine strokes a little more each time (on the sample
    # clip smoothing cost +33% style distance with bilinear, +18% with bicubic, at about the
    # same warping error). Clamped because bicubic may overshoot [0, 1].
    return warp(previous, record.flow, mode="bicubic").clamp(0.0, 1.0), record.reliable


# --------------------------------------------------------------------------------------------
# The pipeline stage


@dataclass(frozen=True)
class _FlowResult:
    record: FrameRecord
    flow: np.ndarray | None  # from this frame to the previous one
    mask: np.ndarray | None
    reliable_fraction: float
    # flow and mask as 1×2×H×W and 1×1×H×W tensors in page-locked memory, for a GPU: the flow
    # thread pins them, so the main thread's upload is queued rather than waited for.
    pinned: tuple[Tensor, Tensor] | None = None


class FlowStage:
    """Iterator stage: adds `flow` (t → t−1), `reliable` and `new_shot` to every FrameRecord.

    The first frame, and any frame whose reliable fraction falls below `scene_cut_threshold`,
    is a new shot: it gets no flow and no mask, so no later stage warps the previous shot into
    it. Flow runs `lookahead` frames ahead of the consumer on a worker thread.
    """

    def __init__(
        self,
        preset: str = "medium",
        *,
        scene_cut_threshold: float = 0.5,
        lookahead: int = 4,
        opencv_threads: int | None = None,
    ) -> None:
        FlowEstimator(preset)  # fail here, in the caller's thread, on a bad preset
        self.preset = preset
        # None keeps OpenCV's own choice (all cores). A CPU render passes 1: torch already uses
        # every core, and OpenCV's extra threads waking once a frame stall torch's OpenMP team
        # for far longer than the flow itself takes. (Process-wide: OpenCV has no per-thread
        # setting; only flow and metrics use OpenCV.)
        self.opencv_threads = opencv_threads
        self.scene_cut_threshold = scene_cut_threshold
        self.lookahead = lookahead
        self.cuts: list[int] = []  # indices of frames detected as the start of a new shot

    def __call__(self, frames: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        upstream = iter(frames)
        results = produce_in_background(
            lambda output: self._work(upstream, output),
            queue_size=self.lookahead,
            name="vidstyle-flow",
        )
        # closing: when this stage is closed early, stop and reap the worker at once.
        with contextlib.closing(results):
            for item in results:
                yield self._finish(item)

    def _finish(self, item: _FlowResult) -> FrameRecord:
        record = item.record
        if item.flow is None or item.mask is None:
            return replace(record, flow=None, reliable=None, new_shot=True)
        if item.reliable_fraction < self.scene_cut_threshold:
            self.cuts.append(record.index)
            log.info(
                "frame %d: new shot (%.0f%% of pixels follow the previous frame)",
                record.index,
                100 * item.reliable_fraction,
            )
            return replace(record, flow=None, reliable=None, new_shot=True)
        device = record.content.device
        if item.pinned is not None:
            flow, reliable = (t.to(device, non_blocking=True) for t in item.pinned)
        else:
            flow, reliable = flow_to_tensor(item.flow, device), mask_to_tensor(item.mask, device)
        return replace(record, flow=flow, reliable=reliable, new_shot=False)

    def _work(self, frames: Iterator[FrameRecord], output: Output[_FlowResult]) -> None:
        if self.opencv_threads is not None:
            cv2.setNumThreads(self.opencv_threads)
        estimator = FlowEstimator(self.preset)
        previous: np.ndarray | None = None
        try:
            for record in frames:
                if output.stopped:
                    return
                # The decoder's own uint8 frame where the record has it: the same bytes as
                # the content quantised again, without a copy back from a GPU.
                rgb = record.rgb8 if record.rgb8 is not None else tensor_to_rgb8(record.content)
                if previous is None or previous.shape != rgb.shape:
                    item = _FlowResult(record, None, None, 0.0)
                else:
                    flow, mask = estimator.flow_and_mask(rgb, previous)
                    pinned = None
                    if record.content.device.type == "cuda":
                        pinned = (
                            flow_to_tensor(flow, "cpu").pin_memory(),
                            mask_to_tensor(mask, "cpu").pin_memory(),
                        )
                    item = _FlowResult(record, flow, mask, float(mask.mean()), pinned)
                previous = rgb
                if not output.put(item):
                    return
        finally:
            # Close the upstream stages (the decoder) from this thread, which is iterating them.
            close = getattr(frames, "close", None)
            if close is not None:
                close()
