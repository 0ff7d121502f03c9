"""How good is a stylized video: temporal warping error and distance to the style.

- Warping error E_warp (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018,
  eq. 9): for each pair of consecutive frames, flow is computed on the ORIGINAL video from frame
  t to t+1, the STYLED frame t+1 is warped back onto frame t, and the squared difference is
  averaged over the pixels the reliability mask trusts (non-occluded, not on a motion boundary,
  not leaving the frame). Values are RGB in [0, 1], squared differences averaged over the three
  channels; the result is the mean over pairs. The same number for the original video is the
  floor: what flow error, interpolation and occlusions leave even for a perfectly stable video.
  Pairs across a scene cut (reliable fraction below `scene_cut_threshold`) are skipped: there is
  no motion to follow there, in the original or in the stylization.
- Style distance: the Gram-matrix term of the rendering loss (same VGG-19 features, layers,
  layer weights and target normalisation, style image scaled the same way relative to the
  frame), averaged over frames. Lower is closer to the style; comparing it between renders shows
  what temporal smoothing costs in style.
- Trail ratio (`TrailRatio`): E_warp cannot see a ghost (an object's colour left behind is
  perfectly stable) and any global distance rewards under-stylised frames. So a temporally
  coherent render is compared with an independent per-frame render of the same frames
  *locally*: the mean difference between the two where something moved or was uncovered
  earlier in the shot (every pixel the reliability mask has rejected so far), over the same
  difference where nothing moved. About 1: the swept region is rendered like any other; well
  above 1: a ghost (the old object carried) or a wake (the uncovered background left
  unstylised).
- Retention (`retention`): along a moving shot a warm-started frame can fade back towards the
  photo, which neither E_warp nor the trail ratio sees (a faded frame is steady, and faded
  evenly). So a coherent frame is compared with a fresh render of the same frame alone (cold
  start, frame-1 budget, same settings): its detail (`detail`: mean |image − Gaussian blur|,
  the fine structure a painting's strokes add) and its style distance, each as a ratio to the
  fresh frame's. A detail ratio near 1 and a style ratio near 1: the frame is as painted as a
  fresh one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from vidstyle.config import RenderSettings
from vidstyle.device import resolve_device
from vidstyle.errors import InputError
from vidstyle.media import image_to_tensor, probe, read_frames, tensor_to_image
from vidstyle.stylize.losses import PerceptualLoss, gram_matrix
from vidstyle.temporal.flow import FlowEstimator, sample_along_flow

log = logging.getLogger(__name__)

# Aspect ratios may differ by the rounding to even sizes a render does, but not by more.
_ASPECT_TOLERANCE = 0.03


def pair_warping_error(
    frame_t: np.ndarray, frame_next: np.ndarray, flow: np.ndarray, mask: np.ndarray
) -> float:
    """E_warp of one pair: uint8 H×W×3 frames t and t+1, flow t → t+1, mask on frame t."""
    a = frame_t.astype(np.float32) / 255.0
    warped = sample_along_flow(frame_next.astype(np.float32) / 255.0, flow)
    squared = np.square(a - warped).mean(-1)
    return float((squared * mask).sum() / max(float(mask.sum()), 1.0))


class WarpingError:
    """Accumulates E_warp over a video, pair by pair, for several renderings at once.

    `add(original, styled_1, styled_2, ...)` takes frame t of the original and of each
    rendering (H×W×3 uint8 RGB, all the same size); flow comes from the originals only, so every
    rendering is measured along the same motion. `values()` gives E_warp of the original (the
    floor) followed by each rendering's, or None where no pair was measured.
    """

    def __init__(
        self, count: int = 1, *, preset: str = "medium", scene_cut_threshold: float = 0.5
    ) -> None:
        self.count = count
        self.scene_cut_threshold = scene_cut_threshold
        self._estimator = FlowEstimator(preset)
        self._previous: tuple[np.ndarray, tuple[np.ndarray, ...]] | None = None
        self._sums = [0.0] * (count + 1)
        self.pairs = 0
        self.cuts = 0

    def add(self, original: np.ndarray, *styled: np.ndarray) -> None:
        if len(styled) != self.count:
            raise ValueError(f"expected {self.count} styled frame(s), got {len(styled)}")
        for frame in styled:
            if frame.shape != original.shape:
                raise ValueError(f"styled frame {frame.shape} vs original {original.shape}")
        if self._previous is not None:
            prev_original, prev_styled = self._previous
            flow, mask = self._estimator.flow_and_mask(prev_original, original)
            if mask.mean() < self.scene_cut_threshold:
                self.cuts += 1
            else:
                self.pairs += 1
                frames = zip((prev_original, *prev_styled), (original, *styled), strict=True)
                for i, (then, now) in enumerate(frames):
                    self._sums[i] += pair_warping_error(then, now, flow, mask)
        self._previous = (original, styled)

    def values(self) -> list[float | None]:
        return [s / self.pairs if self.pairs else None for s in self._sums]


def warping_error(
    original: Sequence[np.ndarray], styled: Sequence[np.ndarray], *, preset: str = "medium"
) -> float | None:
    """E_warp of `styled` frames along the motion of `original` frames (uint8 H×W×3 lists)."""
    if len(original) != len(styled):
        raise ValueError(f"{len(original)} original frames but {len(styled)} styled frames")
    meter = WarpingError(1, preset=preset)
    for a, b in zip(original, styled, strict=True):
        meter.add(a, b)
    return meter.values()[1]


# Blur of `detail`: strokes and texture are finer than this, object shapes are coarser.
DETAIL_BLUR_SIGMA = 2.0


def detail(image: np.ndarray) -> float:
    """Mean |image − Gaussian blur (σ DETAIL_BLUR_SIGMA px)| of an H×W×3 image (uint8 or float;
    the result is in the image's own scale)."""
    values = image.astype(np.float32)
    return float(np.abs(values - cv2.GaussianBlur(values, (0, 0), DETAIL_BLUR_SIGMA)).mean())


@dataclass(frozen=True)
class Retention:
    """How painted a coherent frame is, against a fresh render of the same frame alone."""

    index: int
    detail_ratio: float  # detail(coherent) / detail(fresh): below 1, faded towards the photo
    style_ratio: float  # style distance(coherent) / style distance(fresh): above 1, less styled


def retention(
    index: int,
    coherent: Tensor,
    fresh: Tensor,
    distance: StyleDistance,
) -> Retention:
    """`Retention` of frame `index`: `coherent` and `fresh` are 1×3×H×W renders in [0, 1]."""
    fresh_detail = detail(tensor_to_image(fresh))
    return Retention(
        index=index,
        detail_ratio=detail(tensor_to_image(coherent)) / max(fresh_detail, 1e-6),
        style_ratio=distance(coherent) / max(distance(fresh), 1e-12),
    )


class TrailRatio:
    """Accumulates the trail ratio (module docstring) of a coherent render against an
    independent one, frame by frame.

    `add(reliable, coherent, independent)`: the frame's reliability mask (H×W, 1 = carried from
    the previous frame; None for the first frame of a shot, which resets the swept region) and
    the two renders of the frame (H×W×3, any float or uint8 scale, the same for both).
    """

    def __init__(self) -> None:
        self._swept: np.ndarray | None = None
        self._sums = {"swept": 0.0, "still": 0.0}
        self._counts = {"swept": 0, "still": 0}

    def add(
        self, reliable: np.ndarray | None, coherent: np.ndarray, independent: np.ndarray
    ) -> None:
        if not self.sweep(reliable):
            return
        assert self._swept is not None
        difference = np.abs(coherent.astype(np.float32) - independent.astype(np.float32))
        difference = difference.mean(axis=-1)
        for name, where in (("swept", self._swept), ("still", ~self._swept)):
            self._sums[name] += float(difference[where].sum())
            self._counts[name] += int(where.sum())

    def sweep(self, reliable: np.ndarray | None) -> bool:
        """Only grow the swept region by a frame's rejected pixels (for frames that have no
        independent render to compare with). False for the first frame of a shot."""
        if reliable is None:
            self._swept = None  # a new shot: nothing has moved in it yet
            return False
        rejected = reliable < 0.5
        self._swept = rejected if self._swept is None else self._swept | rejected
        return True

    @property
    def swept_fraction(self) -> float:
        total = self._counts["swept"] + self._counts["still"]
        return self._counts["swept"] / total if total else 0.0

    def value(self) -> float | None:
        """Mean difference in the swept region over that in the still region (None if either
        is empty)."""
        if not self._counts["swept"] or not self._counts["still"]:
            return None
        swept = self._sums["swept"] / self._counts["swept"]
        still = self._sums["still"] / self._counts["still"]
        return swept / still if still > 0 else None


class StyleDistance:
    """The style term of `loss` (Gram distance, target-normalised) of frames to fixed styles.

    Several styles are one blended target, as in rendering (`blend`: weights summing to 1,
    equal when None).
    """

    def __init__(
        self,
        loss: PerceptualLoss,
        styles: Sequence[Tensor],
        blend: Sequence[float] | None = None,
    ) -> None:
        self.loss = loss
        self.targets = loss.style_grams(styles, blend)
        self._norms = {k: v.pow(2).mean().clamp_min(1e-8) for k, v in self.targets.items()}

    @torch.no_grad()
    def __call__(self, frame: Tensor) -> float:
        feats = self.loss.features(frame)
        return float(
            sum(
                w
                * (gram_matrix(feats[layer]) - self.targets[layer]).pow(2).mean()
                / self._norms[layer]
                for layer, w in zip(
                    self.loss.style_layers, self.loss.style_layer_weights, strict=True
                )
            )
        )


@dataclass(frozen=True)
class EvalResult:
    original: Path
    styled: Path
    frames: int  # frames compared (the shorter of the two videos)
    pairs: int  # consecutive pairs measured (cuts excluded)
    cuts: int  # pairs skipped as scene cuts
    size: tuple[int, int]  # (width, height) the comparison ran at: the styled video's
    flow_preset: str
    warping_error_original: float | None  # the floor
    warping_error_styled: float | None
    style_distance: float | None = None  # with styles only
    features: str | None = None  # which VGG and weights measured the style, with styles only

    @property
    def warping_error_ratio(self) -> float | None:
        """E_warp of the stylization over the floor (1.0: as stable as the source)."""
        floor, styled = self.warping_error_original, self.warping_error_styled
        if floor is None or styled is None or floor <= 0:
            return None
        return styled / floor

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["original"], data["styled"] = str(self.original), str(self.styled)
        data["size"] = list(self.size)
        data["warping_error_ratio"] = self.warping_error_ratio
        return data


def evaluate_videos(
    original: Path,
    styled: Path,
    settings: RenderSettings,
    *,
    styles: Sequence[Path] = (),
) -> EvalResult:
    """Compare a stylized video with its source: E_warp of both and, with styles, style distance.

    The original is decoded at the styled video's size, so flow follows the frames as rendered.
    Raises InputError (or another VidstyleError) for files a user can fix.
    """
    info_o, info_s = probe(original), probe(styled)
    aspect_o, aspect_s = info_o.width / info_o.height, info_s.width / info_s.height
    if abs(aspect_s - aspect_o) > _ASPECT_TOLERANCE * aspect_o:
        raise InputError(
            f"is {info_s.width}x{info_s.height} but the original is "
            f"{info_o.width}x{info_o.height}; pass the video it was rendered from",
            styled,
        )
    if info_o.frame_count and info_s.frame_count and info_o.frame_count != info_s.frame_count:
        log.info(
            "%s has %d frames, %s has %d; comparing the first %d",
            original.name,
            info_o.frame_count,
            styled.name,
            info_s.frame_count,
            min(info_o.frame_count, info_s.frame_count),
        )
    size = info_s.size

    distance: StyleDistance | None = None
    features: str | None = None
    device = resolve_device(settings.device)
    if styles:
        # Imported here: building the loss pulls in the pipeline's VGG set-up, which a plain
        # warping-error evaluation does not need.
        from vidstyle.render.pipeline import build_loss
        from vidstyle.stylize.style_image import load_style_image, style_tensor
        from vidstyle.stylize.targets import blend_weights

        images = [load_style_image(path) for path in styles]
        loss = build_loss(settings, device)
        features = loss.features.source.describe()
        distance = StyleDistance(
            loss,
            [style_tensor(image, size, settings.style_scale, device) for image in images],
            blend_weights(settings.style_blend, len(images)),
        )

    meter = WarpingError(
        1, preset=settings.flow_preset, scene_cut_threshold=settings.scene_cut_threshold
    )
    frames = 0
    style_sum = 0.0
    with (
        contextlib.closing(read_frames(info_o, size=size)) as source,
        contextlib.closing(read_frames(info_s)) as rendered,
    ):
        for a, b in zip(source, rendered, strict=False):
            meter.add(a.image, b.image)
            if distance is not None:
                style_sum += distance(image_to_tensor(b.image, device))
            frames += 1
    if frames == 0:
        raise InputError("has no frames to compare", styled)
    floor, value = meter.values()
    return EvalResult(
        original=original,
        styled=styled,
        frames=frames,
        pairs=meter.pairs,
        cuts=meter.cuts,
        size=size,
        flow_preset=settings.flow_preset,
        warping_error_original=floor,
        warping_error_styled=value,
        style_distance=style_sum / frames if distance is not None else None,
        features=features,
    )
