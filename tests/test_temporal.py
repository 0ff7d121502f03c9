"""Temporal coherence: optical flow, warping, reliability mask, scene cuts, smoothing, and how
quality mode uses them (flow-warped warm start, temporal loss).

Frames come from `mediagen.make_frames`, whose motion is known exactly. Anything touching VGG
uses seeded random features truncated at relu3_1 and tiny frames, to stay fast on two cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import mediagen
import numpy as np
import pytest
import torch

from vidstyle.frame import FrameRecord
from vidstyle.media import image_to_tensor, tensor_to_image
from vidstyle.metrics import warping_error
from vidstyle.nets.vgg import VGGFeatures
from vidstyle.stylize import quality
from vidstyle.stylize.losses import LossWeights, PerceptualLoss
from vidstyle.stylize.optimize import OptimizerConfig
from vidstyle.stylize.palette import Palette, recolour
from vidstyle.stylize.quality import SETTLE_FRAMES, QualityConfig, QualityStylizer
from vidstyle.temporal import (
    FLOW_PRESETS,
    FlowEstimator,
    FlowStage,
    TemporalSmoother,
    warp,
    warp_previous,
)
from vidstyle.temporal.losses import temporal_loss


def records(frames: Sequence[np.ndarray]) -> list[FrameRecord]:
    return [FrameRecord(index=i, pts=i, content=image_to_tensor(f)) for i, f in enumerate(frames)]


def with_flow(frames: Sequence[np.ndarray], preset: str = "medium") -> list[FrameRecord]:
    return list(FlowStage(preset)(records(frames)))


# --------------------------------------------------------------------------------------------
# Flow, warp, mask


def dart_frames(frames: int = 4, step: int = 12) -> tuple[list[np.ndarray], list[int]]:
    """A small, fast red square (6 px, `step` px a frame) over a still texture: the flow misses
    it, so forward and backward flow agree on "no motion" where it was and where it goes.
    Returns the frames and the square's x in each."""
    background = mediagen.texture(96, 64, seed=3)
    xs = [10 + i * step for i in range(frames)]
    out = []
    for x in xs:
        frame = background.copy()
        frame[29:35, x : x + 6] = (230, 20, 20)
        out.append(frame)
    return out, xs


def test_nothing_is_carried_where_a_small_fast_object_was_or_went() -> None:
    frames, xs = dart_frames()
    out = with_flow(frames)
    for prev, record, x_then, x_now in zip(out, out[1:], xs, xs[1:], strict=False):
        assert record.reliable is not None and record.flow is not None
        reliable = record.reliable[0, 0].bool()
        # Where the square was and where it is now, nothing of the previous frame is reused...
        assert not reliable[29:35, x_then : x_then + 6].any(), "its old place would be a ghost"
        assert not reliable[29:35, x_now : x_now + 6].any(), "its new place would be background"
        # ...and everywhere that is carried, the carried source looks like the current source.
        carried = warp(prev.content, record.flow)
        difference = (carried - record.content).abs().amax(1)[0]
        assert float(difference[reliable].max()) < 0.25
        # The still background stays carried (the check does not throw everything away).
        assert float(record.reliable.mean()) > 0.8


def test_warp_follows_the_flow_convention() -> None:
    # out(x) = image(x + flow(x)): a flow of -3 px fetches from 3 px to the left, so the
    # content moves 3 px right, exactly for an integer flow.
    image = torch.rand(1, 3, 10, 16)
    before = image.clone()
    flow = torch.zeros(1, 2, 10, 16)
    flow[:, 0] = -3.0
    out = warp(image, flow)
    torch.testing.assert_close(out[..., 3:], image[..., :-3])
    assert torch.equal(image, before)  # the caller's frame is untouched
    assert out.data_ptr() != image.data_ptr()


@pytest.mark.parametrize("preset", sorted(FLOW_PRESETS))
@pytest.mark.parametrize("pan_px", [1, 4])
def test_flow_recovers_a_pan_within_half_a_pixel(preset: str, pan_px: int) -> None:
    frames = mediagen.make_frames(frames=3, size=(128, 96), motion="pan", pan_px=pan_px)
    out = with_flow(frames, preset)
    assert out[0].new_shot and out[0].flow is None and out[0].reliable is None
    for record in out[1:]:
        assert not record.new_shot
        assert record.flow is not None and record.flow.shape == (1, 2, 96, 128)
        # Content moves right by pan_px, so the flow back to the previous frame is (-pan_px, 0).
        interior = record.flow[0, :, 8:-8, 8 + pan_px : -8]
        error = (interior - torch.tensor([-pan_px, 0.0]).view(2, 1, 1)).abs()
        assert float(error.max()) < 0.5, f"{preset}: max flow error {float(error.max()):.2f} px"


def test_flow_of_large_frames_is_estimated_small_and_scaled_up() -> None:
    # 256 px wide frames with flow capped at 128 px: the 4 px pan is estimated as 2 px and
    # comes back as 4 px at full size, with a full-size mask.
    frames = mediagen.make_frames(frames=2, size=(256, 192), motion="pan", pan_px=4)
    flow, mask = FlowEstimator("medium", max_side=128).flow_and_mask(frames[1], frames[0])
    assert flow.shape == (192, 256, 2) and mask.shape == (192, 256)
    interior = flow[16:-16, 16:-16]
    assert np.abs(interior[..., 0] + 4).max() < 0.5 and np.abs(interior[..., 1]).max() < 0.5
    assert mask[:, :4].max() == 0 and mask[16:-16, 16:-16].mean() > 0.9


def test_warping_the_previous_frame_reproduces_the_current_one_on_reliable_pixels() -> None:
    frames = mediagen.make_frames(frames=4, size=(128, 96), motion="pan", pan_px=3)
    out = with_flow(frames)
    for prev, record in zip(out, out[1:], strict=False):
        assert record.flow is not None and record.reliable is not None
        mask = record.reliable.bool().expand_as(record.content)
        warped = warp(prev.content, record.flow)
        error = (warped - record.content).abs()[mask]
        unwarped = (prev.content - record.content).abs()[mask]
        assert float(record.reliable.mean()) > 0.9
        assert float(error.mean()) < 0.005 and float(error.max()) < 0.1
        assert float(unwarped.mean()) > 10 * float(error.mean())  # the warp is what did it
        # The columns entering at the left were not in the previous frame: unreliable.
        assert float(record.reliable[..., :, :3].max()) == 0.0


def test_mask_marks_the_disoccluded_strip_behind_a_moving_object() -> None:
    size, k = (256, 192), 6
    # A frame where the square is well inside the picture, so background surrounds it.
    t = size[0] // 3 // k + 1
    frames = mediagen.make_frames(frames=t + 1, size=size, motion="object", pan_px=k)
    boxes = mediagen.object_boxes(t + 1, size, k)
    (x, y, w, h), x_before = boxes[t], boxes[t - 1][0]
    assert x == x_before + k  # moving right: background uncovered at columns x_before..x
    record = with_flow(frames)[t]
    assert record.reliable is not None
    mask = record.reliable[0, 0].numpy()
    strip = mask[y + 2 : y + h - 2, x_before:x]  # uncovered: not visible in frame t-1
    background = np.ones_like(mask, dtype=bool)
    background[y - 4 : y + h + 4, x_before - 4 : x + w + 4] = False
    square = mask[y + 4 : y + h - 4, x + 4 : x + w - 4]
    assert strip.mean() < 0.3, f"only {1 - strip.mean():.0%} of the strip marked unreliable"
    assert mask[background].mean() > 0.9
    assert square.mean() > 0.9


def test_a_hard_cut_starts_a_new_shot() -> None:
    frames = mediagen.make_frames(frames=8, size=(96, 64), motion="cut", pan_px=2)
    stage = FlowStage("medium")
    out = list(stage(records(frames)))
    cut = mediagen.cut_index(8)
    assert [r.new_shot for r in out] == [i in (0, cut) for i in range(8)]
    assert stage.cuts == [cut]
    assert out[cut].flow is None and out[cut].reliable is None
    assert all(r.flow is not None for i, r in enumerate(out) if i not in (0, cut))


def test_flow_stage_stops_its_worker_when_the_consumer_stops() -> None:
    frames = mediagen.make_frames(frames=12, size=(64, 48), motion="pan")
    closed = []

    def source() -> object:
        try:
            yield from records(frames)
        finally:
            closed.append(True)

    stream = FlowStage("ultrafast", lookahead=2)(source())  # type: ignore[arg-type]
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert closed == [True]  # the upstream generator (the decoder) was closed too


def test_flow_stage_passes_errors_on() -> None:
    def source() -> object:
        yield from records(mediagen.make_frames(frames=2, size=(64, 48)))
        raise RuntimeError("decoder broke")

    with pytest.raises(RuntimeError, match="decoder broke"):
        list(FlowStage("ultrafast")(source()))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Smoothing


def flickering(out: Sequence[FrameRecord], seed: int = 0) -> list[FrameRecord]:
    """Per-frame stylization stand-in: the frame plus a colour shift and noise new every frame."""
    g = torch.Generator().manual_seed(seed)
    result = []
    for record in out:
        shift = (torch.rand(1, 3, 1, 1, generator=g) - 0.5) * 0.2
        noise = (torch.rand(record.content.shape, generator=g) - 0.5) * 0.1
        result.append(replace(record, styled=(record.content + shift + noise).clamp(0, 1)))
    return result


def test_smoothing_lowers_the_warping_error_of_a_flickering_sequence() -> None:
    frames = mediagen.make_frames(frames=8, size=(96, 64), motion="pan", pan_px=2)
    styled = flickering(with_flow(frames))
    before = [tensor_to_image(r.styled) for r in styled]  # type: ignore[arg-type]
    smoothed = list(TemporalSmoother(0.5)(styled))
    after = [tensor_to_image(r.styled) for r in smoothed]  # type: ignore[arg-type]
    e_before, e_after = warping_error(frames, before), warping_error(frames, after)
    assert e_before is not None and e_after is not None
    assert e_after < 0.5 * e_before
    # Stronger smoothing, more stable; zero strength changes nothing.
    stronger = [tensor_to_image(r.styled) for r in TemporalSmoother(0.8)(styled)]  # type: ignore[arg-type]
    assert warping_error(frames, stronger) < e_after  # type: ignore[operator]
    for a, b in zip(TemporalSmoother(0.0)(styled), styled, strict=True):
        assert torch.equal(a.styled, b.styled)  # type: ignore[arg-type]


def texture_contrast(image: torch.Tensor) -> float:
    """RMS deviation from the 5×5 local mean: how strong the fine texture is (second moments,
    which is what the Gram matrices of the style loss see)."""
    local_mean = torch.nn.functional.avg_pool2d(image, 5, 1, padding=2, count_include_pad=False)
    return float((image - local_mean)[..., 4:-4, 4:-4].square().mean().sqrt())


def test_smoothing_keeps_the_contrast_of_strokes_that_change_every_frame() -> None:
    # Independent stylizations of a pan: strong fine texture, new every frame (the flicker).
    # A plain average of two such frames has about 70% of their contrast; the smoothed frames
    # must keep the strokes' contrast while still following the previous output.
    frames = mediagen.make_frames(frames=8, size=(96, 64), motion="pan", pan_px=2)
    g = torch.Generator().manual_seed(1)
    styled = [
        replace(r, styled=(r.content * 0.5 + torch.rand(r.content.shape, generator=g) * 0.5))
        for r in with_flow(frames)
    ]
    smoothed = list(TemporalSmoother(0.5)(styled))
    before = [texture_contrast(r.styled) for r in styled]  # type: ignore[arg-type]
    after = [texture_contrast(r.styled) for r in smoothed]  # type: ignore[arg-type]
    plain = texture_contrast(styled[1].styled.lerp(styled[0].styled, 0.5))  # type: ignore[union-attr, arg-type]
    assert plain < 0.8 * before[1]  # what a plain average would lose
    for contrast_before, contrast_after in zip(before[1:], after[1:], strict=True):
        assert contrast_after > 0.9 * contrast_before
    e_before = warping_error(frames, [tensor_to_image(r.styled) for r in styled])  # type: ignore[arg-type]
    e_after = warping_error(frames, [tensor_to_image(r.styled) for r in smoothed])  # type: ignore[arg-type]
    assert e_before is not None and e_after is not None
    assert e_after < 0.6 * e_before


def test_smoothing_leaves_unreliable_pixels_alone_and_does_not_modify_its_input() -> None:
    frames = mediagen.make_frames(frames=3, size=(96, 64), motion="pan", pan_px=3)
    styled = flickering(with_flow(frames))
    copies = [r.styled.clone() for r in styled]  # type: ignore[union-attr]
    out = list(TemporalSmoother(0.7)(styled))
    for before, record, copy in zip(styled, out, copies, strict=True):
        assert torch.equal(before.styled, copy)  # type: ignore[arg-type]
        if record.reliable is not None:
            unreliable = (record.reliable == 0).expand_as(copy)
            assert unreliable.any()
            # No ghosting: where the flow has no answer the output is the stylized frame.
            assert torch.equal(record.styled[unreliable], copy[unreliable])  # type: ignore[index]
            assert not torch.equal(record.styled, copy)


def test_after_a_cut_the_smoothed_frame_has_no_trace_of_the_previous_shot() -> None:
    frames = mediagen.make_frames(frames=6, size=(96, 64), motion="cut", pan_px=2)
    cut = mediagen.cut_index(6)
    out = flickering(with_flow(frames))
    smoothed = list(TemporalSmoother(0.9)(out))
    assert torch.equal(smoothed[cut].styled, out[cut].styled)  # type: ignore[arg-type]
    assert not torch.equal(smoothed[cut + 1].styled, out[cut + 1].styled)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Quality mode: warm start and temporal loss

SIZE = (64, 48)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    features = VGGFeatures(list(STYLE_LAYERS), weights="random", seed=0)
    perceptual = PerceptualLoss(
        features,
        weights=LossWeights(content=1.0, style=5.0, tv=1e-2),
        style_layers=STYLE_LAYERS,
        content_layers=("relu3_1",),
    )
    perceptual.set_style([image_to_tensor(mediagen.make_style_array((48, 48)))])
    return perceptual


def config(**changes: object) -> QualityConfig:
    """The quality stage's config with small budgets and no early stop; `changes` override."""
    base = QualityConfig(
        first_init="content",
        init="warped",
        first_iterations=12,
        iterations=6,
        temporal_weight=5.0,
        coarse_to_fine=False,
        coarse_min_size=128,
        seed=0,
        optimizer=OptimizerConfig(
            optimizer="lbfgs", learning_rate=0.02, stop_tolerance=0.0, stop_window=10
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def stylize(loss: PerceptualLoss, frames: Sequence[FrameRecord], **changes: object) -> tuple:
    stylizer = QualityStylizer(loss, config(**changes))
    return list(stylizer(frames)), stylizer.stats


def test_warped_init_is_the_warped_previous_output_with_recoloured_content_where_unreliable(
    loss: PerceptualLoss,
) -> None:
    frames = with_flow(mediagen.make_frames(frames=2, size=(96, 64), motion="pan", pan_px=3))
    record = frames[1]
    assert record.flow is not None and record.reliable is not None
    previous = torch.rand(1, 3, 64, 96)
    stylizer = QualityStylizer(loss, config(init="warped"))
    init, warm = stylizer.initial_image(record, previous)
    assert warm
    reliable = record.reliable.bool().expand_as(init)
    assert (~reliable).any()
    warped, _ = warp_previous(previous, record)  # type: ignore[misc]
    torch.testing.assert_close(init[reliable], warped[reliable])
    # New pixels: the content in the colours of the previous output (recolour; a
    # stylizer that has rendered no fresh frame of the shot has no shot palette yet).
    recoloured = recolour(record.content, Palette.of(previous))
    torch.testing.assert_close(init[~reliable], recoloured[~reliable])

    # prev keeps the raw previous output; content and a new shot start from the frame itself.
    assert QualityStylizer(loss, config(init="prev")).initial_image(record, previous) == (
        previous,
        True,
    )
    init, warm = QualityStylizer(loss, config(init="content")).initial_image(record, previous)
    assert init is record.content and not warm
    cut = replace(record, flow=None, reliable=None, new_shot=True)
    init, warm = stylizer.initial_image(cut, previous)
    assert init is record.content and not warm


def test_temporal_loss_is_zero_at_the_target_and_ignores_unreliable_pixels() -> None:
    warped = torch.rand(1, 3, 8, 8)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., :4] = 0
    image = warped.clone()
    image[..., :4] += 0.5  # only unreliable pixels differ
    assert float(temporal_loss(image, warped, mask)) == 0.0
    image[..., 4:] += 0.1
    assert float(temporal_loss(image, warped, mask)) == pytest.approx(0.01 * 0.5, rel=1e-4)


def test_temporal_loss_and_warped_init_make_the_output_stable(loss: PerceptualLoss) -> None:
    # 80x60, not the module's 64x48: there what a 2 px pan brings in and what is still settling
    # from the frames before (still painted by its own style term) is most of the difference.
    originals = mediagen.make_frames(frames=4, size=(80, 60), motion="pan", pan_px=2)
    frames = with_flow(originals)

    def e_warp(**changes: object) -> float:
        out, _ = stylize(loss, frames, **changes)
        value = warping_error(originals, [tensor_to_image(r.styled) for r in out])
        assert value is not None
        return value

    independent = e_warp(init="content")
    raw_previous = e_warp(init="prev", temporal_weight=0.0)
    warped_only = e_warp(init="warped", temporal_weight=0.0)
    warped_temporal = e_warp(init="warped", temporal_weight=50.0)
    # The raw previous output lags the pan by 2 px per frame; warping puts it back in place.
    assert warped_only < 0.5 * raw_previous
    assert warped_only < 0.5 * independent
    assert warped_temporal < warped_only
    assert warped_temporal < 0.3 * independent  # the target: -70% against content


def test_after_a_cut_the_stylized_frame_has_no_trace_of_the_previous_shot(
    loss: PerceptualLoss,
) -> None:
    frames = with_flow(mediagen.make_frames(frames=4, size=SIZE, motion="cut", pan_px=2))
    cut = mediagen.cut_index(4)
    assert frames[cut].new_shot
    out, stats = stylize(loss, frames, init="warped", temporal_weight=50.0)
    assert [s.warm_started for s in stats] == [i not in (0, cut) for i in range(4)]
    # The frame after the cut, rendered as if the video started there, is bit for bit the same.
    alone, _ = stylize(loss, [replace(frames[cut], index=0)], init="warped", temporal_weight=50.0)
    assert torch.equal(out[cut].styled, alone[0].styled)  # type: ignore[arg-type]


def test_records_without_flow_treat_the_scene_as_still(loss: PerceptualLoss) -> None:
    # A stage composed without the flow stage (e.g. a library caller) still works: zero flow.
    frames = records(mediagen.make_frames(frames=2, size=SIZE, motion="static"))
    out, stats = stylize(loss, frames, init="warped", temporal_weight=50.0)
    assert [s.warm_started for s in stats] == [False, True]
    assert out[1].styled is not None and out[1].styled.shape == (1, 3, 48, 64)


def test_new_pixels_are_anchored_gradually_so_they_keep_converging(
    loss: PerceptualLoss,
) -> None:
    # Where the small square went is new in frame 1; in frame 2 the temporal term must not yet
    # hold those pixels at what frame 1's few iterations reached (that would freeze a wake),
    # while pixels that were never new are held fully.
    frames, xs = dart_frames(frames=3)
    out = with_flow(frames)
    stylizer = QualityStylizer(loss, config(init="warped", temporal_weight=50.0))
    anchors = []
    for record in out[1:]:
        assert record.reliable is not None
        anchors.append(stylizer._anchor(record, record.reliable))
    first, second = anchors
    new_in_first = out[1].reliable[0, 0] < 0.5
    carried_in_second = out[2].reliable[0, 0] > 0.5
    settling = new_in_first & carried_in_second
    assert settling.any()
    # Not anchored the frame after (bilinear resampling of the settled map blurs its edge).
    assert float(second[0, 0][settling].mean()) < 0.05
    assert float(second[0, 0][settling].max()) < 1.0 / SETTLE_FRAMES
    never_new = (out[1].reliable[0, 0] > 0.5) & carried_in_second
    assert float(second[0, 0][never_new].mean()) > 0.99
    assert torch.equal(first, out[1].reliable)  # after a fresh frame everything is settled


def test_a_warm_frame_starts_its_new_pixels_in_the_palette_of_the_shots_first_frame(
    loss: PerceptualLoss,
) -> None:
    """The palette is taken from the shot's fresh first frame and kept for the shot, not
    taken again from warm frames that have not yet repainted what entered."""
    frames = with_flow(mediagen.make_frames(frames=3, size=(48, 32), motion="pan", pan_px=3))
    stylizer = QualityStylizer(loss, config(init="warped", iterations=1, first_iterations=2))
    outputs = [r.styled for r in stylizer(frames)]
    first = Palette.of(outputs[0])
    torch.testing.assert_close(stylizer._palette.mean, first.mean)
    state = stylizer.get_resume_state()
    resumed = QualityStylizer(loss, config(init="warped", iterations=1, first_iterations=2))
    resumed.set_resume_state(state)
    torch.testing.assert_close(resumed._palette.covariance, first.covariance)


def test_pixels_entering_a_warm_frame_get_a_style_term_of_their_own(
    loss: PerceptualLoss, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What enters a moving shot is painted in its own right: with the second style term over
    the new pixels, the entering strip's texture ends nearer the style's than with the whole
    frame's Gram matrices alone, in the same iterations."""
    frames = with_flow(mediagen.make_frames(frames=2, size=(96, 64), motion="pan", pan_px=3))
    record = frames[1]
    assert record.reliable is not None
    new = 1.0 - record.reliable
    assert 0.05 < float(new.mean()) < 0.5

    def render(weight: float) -> torch.Tensor:
        monkeypatch.setattr(quality, "NEW_PIXEL_STYLE_WEIGHT", weight)
        stylizer = QualityStylizer(loss, config(init="warped", first_iterations=20, iterations=6))
        return [r.styled for r in stylizer(frames)][1]

    def strip_distance(image: torch.Tensor) -> float:
        terms = loss(image, new, 1.0)
        return float(terms.parts["region_style"])

    with_term, without = render(1.0), render(0.0)
    assert strip_distance(with_term) < 0.9 * strip_distance(without)
    # Where the style has no shallow layer to read, there is no such term: the same frames.
    monkeypatch.setattr(quality, "NEW_PIXEL_STYLE_BLOCKS", 0)
    torch.testing.assert_close(render(1.0), without, rtol=0, atol=0)
