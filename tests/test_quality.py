"""Quality mode: losses, the optimiser, warm starts, style images."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import mediagen
import pytest
import torch

from vidstyle.config import RenderSettings
from vidstyle.errors import StyleImageError
from vidstyle.frame import FrameRecord
from vidstyle.media import image_to_tensor
from vidstyle.nets.vgg import VGGFeatures
from vidstyle.render.pipeline import quality_config
from vidstyle.stylize.losses import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    LossWeights,
    PerceptualLoss,
    gram_matrix,
    region_gram_matrix,
)
from vidstyle.stylize.optimize import Curvature, optimize_image
from vidstyle.stylize.palette import Palette, recolour
from vidstyle.stylize.quality import (
    NEW_PIXEL_STEP,
    QualityStylizer,
    carried_curvature,
    new_pixel_steps,
    new_pixel_style_layers,
    warm_budget,
)
from vidstyle.stylize.style_image import load_style_image, style_tensor

SIZE = (48, 40)


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    layers = sorted(set(DEFAULT_STYLE_LAYERS) | set(DEFAULT_CONTENT_LAYERS))
    features = VGGFeatures(layers, weights="random", seed=0)
    perceptual = PerceptualLoss(features, weights=LossWeights(content=1.0, style=5.0, tv=1e-2))
    style = mediagen.make_frames(frames=1, size=(48, 48), motion="static", seed=5)[0]
    perceptual.set_style([image_to_tensor(style)])
    return perceptual


@pytest.fixture(scope="module")
def frames() -> list[torch.Tensor]:
    return [image_to_tensor(f) for f in mediagen.make_frames(frames=3, size=SIZE, pan_px=1)]


def test_gram_matrix_is_size_independent_for_a_repeated_pattern() -> None:
    small = torch.rand(1, 4, 8, 8)
    tiled = small.repeat(1, 1, 2, 2)
    assert torch.allclose(gram_matrix(small), gram_matrix(tiled), atol=1e-6)


def test_a_regions_gram_matrix_is_that_of_the_texture_inside_it() -> None:
    texture, other = torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8) + 1.0
    features = torch.cat((texture.repeat(1, 1, 1, 2), other), dim=3)  # 8×24: texture | other
    region = torch.zeros(1, 1, 8, 24)
    region[..., :16] = 1.0
    # Only what lies inside counts, whatever the region's size, as if it were a frame of its own.
    torch.testing.assert_close(region_gram_matrix(features, region), gram_matrix(texture))
    whole = torch.ones(1, 1, 8, 24)
    torch.testing.assert_close(region_gram_matrix(features, whole), gram_matrix(features))
    # A region given at the image's size is averaged down to the layer's.
    torch.testing.assert_close(
        region_gram_matrix(features, region.repeat_interleave(4, 2).repeat_interleave(4, 3)),
        gram_matrix(texture),
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_matrix_and_its_gradient_are_the_plain_products(channels_last: bool) -> None:
    """The Gram matrix has its own backward (one product instead of two): same values and
    gradients as autograd of F·Fᵀ, for features in either memory format."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 6, 7, generator=generator)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(2, 5, 5, generator=generator)  # not symmetric: both halves matter
    ours = features.clone().requires_grad_(True)
    (gram_matrix(ours) * upstream).sum().backward()
    plain = features.clone().requires_grad_(True)
    flat = plain.reshape(2, 5, 42)
    reference = torch.bmm(flat, flat.transpose(1, 2)) / (5 * 6 * 7)
    (reference * upstream).sum().backward()
    torch.testing.assert_close(gram_matrix(features), reference.detach())
    torch.testing.assert_close(ours.grad, plain.grad)


def test_the_loss_does_not_depend_on_the_memory_format_of_the_image(
    loss: PerceptualLoss, frames: list[torch.Tensor]
) -> None:
    loss.set_content(frames[0])
    image = frames[1].clone()
    contiguous = loss(image).total
    channels_last = loss(image.contiguous(memory_format=torch.channels_last)).total
    torch.testing.assert_close(contiguous, channels_last)
    assert image.is_contiguous()  # the caller's tensor is left as it was


def test_new_pixels_start_in_the_colours_of_the_shots_painting() -> None:
    content = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(1))
    # A painting in other colours than the photo: channels swapped, darker, less contrast.
    painting = (content[:, [2, 0, 1]] * 0.6 + 0.2).clamp(0, 1)
    start = recolour(content, Palette.of(painting))
    recoloured = Palette.of(start)
    torch.testing.assert_close(recoloured.mean, Palette.of(painting).mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        recoloured.covariance, Palette.of(painting).covariance, atol=1e-4, rtol=0
    )
    # The photo's structure is kept: the start is an affine map of the content's colours
    # (nothing but colour changes), and an increasing one: of two pixels, the one that is
    # further along any colour direction in the photo is further along it in the start too.
    pixels = content.flatten(2)[0].T
    design = torch.cat((pixels, torch.ones_like(pixels[:, :1])), dim=1)
    mapping = torch.linalg.lstsq(design, start.flatten(2)[0].T).solution
    torch.testing.assert_close(design @ mapping, start.flatten(2)[0].T, atol=1e-4, rtol=0)
    linear = mapping[:3]
    assert torch.linalg.eigvalsh((linear + linear.T) / 2).min() > 0
    # A flat frame has a singular covariance: still a finite start, in the palette's mean.
    flat = torch.full((1, 3, 8, 8), 0.3)
    flat_start = recolour(flat, Palette.of(painting))
    assert torch.isfinite(flat_start).all()
    torch.testing.assert_close(
        flat_start.mean((2, 3)).flatten(), Palette.of(painting).mean.flatten(), atol=1e-4, rtol=0
    )


def test_the_new_pixels_style_term_reads_the_shallow_style_layers_only() -> None:
    # The deep layers carry a style's large swirls, which over a patch of sky became rings.
    default = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert new_pixel_style_layers(default) == ("relu1_1", "relu2_1", "relu3_1")
    assert new_pixel_style_layers(("conv3_2", "relu4_2", "pool3")) == ("conv3_2", "pool3")
    assert new_pixel_style_layers(("relu4_1", "relu5_1")) == ()


def test_warm_budget_grows_with_the_new_share_by_a_fifth_of_a_fresh_frames_extra() -> None:
    assert warm_budget(12, 100, 0.0) == 12
    assert 12 < warm_budget(12, 100, 0.1) < warm_budget(12, 100, 0.5) < warm_budget(12, 100, 1.0)
    assert warm_budget(12, 100, 0.5) == 21 and warm_budget(12, 100, 1.0) == 30
    assert warm_budget(12, 10, 0.9) == 12  # never fewer than the warm budget


def test_a_larger_step_scale_moves_a_pixel_further_in_the_first_step() -> None:
    """step_scale k: the optimiser works on x = image / k, so the same gradient moves the image
    k² as far there (L-BFGS's first step is a scaled gradient step)."""
    target = torch.tensor([0.9, 0.9]).view(1, 2, 1, 1)
    scale = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    result = optimize_image(
        lambda x: 1e-3 * (x - target).pow(2).sum(),
        torch.full((1, 2, 1, 1), 0.1),
        iterations=2,
        stop_tolerance=0,
        step_scale=scale,
    )
    moved = (result.image - 0.1).flatten()
    torch.testing.assert_close(moved[1], 9.0 * moved[0])
    assert float(moved[0]) > 0 and float(result.image.max()) <= 1.0


def test_new_pixel_steps_fall_to_1_as_pixels_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    anchor = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)
    # The product takes the same steps everywhere; bench/retention.py's "before" rule sets 3.
    assert NEW_PIXEL_STEP == 1.0
    assert new_pixel_steps(anchor).flatten().tolist() == [1.0, 1.0, 1.0]
    monkeypatch.setattr("vidstyle.stylize.quality.NEW_PIXEL_STEP", 3.0)
    assert new_pixel_steps(anchor).flatten().tolist() == [3.0, 2.0, 1.0]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_goes_down(loss: PerceptualLoss, frames: list[torch.Tensor], optimizer: str) -> None:
    loss.set_content(frames[0])
    result = optimize_image(
        lambda x: loss(x).total,
        frames[0],
        iterations=25,
        optimizer=optimizer,
        learning_rate=0.05,
        stop_tolerance=0,
    )
    assert result.iterations == 25
    assert result.final_loss < 0.5 * result.losses[0]
    assert result.image.min() >= 0 and result.image.max() <= 1


# Three 20-iteration optimisations compared with bench/bounds.py's alternatives: the whole
# suite only.
@pytest.mark.slow
def test_pixels_kept_in_range_by_clamping_in_place_still_move_where_others_get_stuck(
    loss: PerceptualLoss,
) -> None:
    """The default bounds handling (the image clamped in place before each evaluation) on a
    high-contrast frame, a third of it at 0 or 1: optimising a free variable seen through a
    clamp leaves every pixel that steps outside with no gradient to bring it back, and a sigmoid
    has almost none at saturated pixels, so both end far above it (bench/bounds.py compares
    them on real frames, where the differences are within 2%)."""
    frame = image_to_tensor(mediagen.make_frames(frames=1, size=SIZE, pan_px=1)[0])
    content = ((frame - 0.5) * 4 + 0.5).clamp(0, 1)
    loss.set_content(content)

    result = optimize_image(lambda x: loss(x).total, content, iterations=20, stop_tolerance=0)
    bench = _bounds_bench()

    def final(bounds: str) -> float:
        image = bench.optimize_bounded(lambda x: loss(x).total, content, 20, bounds)
        with torch.no_grad():
            return float(loss(image).total)

    with torch.no_grad():
        default = float(loss(result.image).total)
    assert default < 0.9 * final("forward")
    assert default < 0.9 * final("sigmoid")


def _bounds_bench() -> Any:
    """bench/bounds.py, where the alternatives to clamping in place live."""
    path = Path(__file__).resolve().parent.parent / "bench" / "bounds.py"
    spec = importlib.util.spec_from_file_location("bounds_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_optimiser_does_not_modify_its_start_image(
    loss: PerceptualLoss, frames: list[torch.Tensor]
) -> None:
    start = frames[0].clone()
    loss.set_content(frames[0])
    optimize_image(lambda x: loss(x).total, frames[0], iterations=3)
    assert torch.equal(start, frames[0])


def test_early_stop_when_loss_stalls() -> None:
    # A loss already at its minimum: relative change is 0 from the start.
    flat = torch.zeros(1, 3, 4, 4)
    result = optimize_image(
        lambda x: (x * 0).sum() + 1.0,
        flat,
        iterations=100,
        optimizer="adam",
        stop_tolerance=1e-4,
        stop_window=5,
    )
    assert result.stopped_early
    assert result.iterations == 6


@pytest.mark.slow
def test_warm_start_reaches_the_cold_start_loss_in_fewer_iterations(
    loss: PerceptualLoss, frames: list[torch.Tensor]
) -> None:
    """Ruder et al. 2016: frame 2 started from frame 1's output beats starting from scratch."""
    budget = 20
    loss.set_content(frames[0])
    # Frame 1 gets the larger first-frame budget, as in a render.
    first = optimize_image(
        lambda x: loss(x).total, frames[0], iterations=2 * budget, stop_tolerance=0
    )
    loss.set_content(frames[1])
    cold = optimize_image(lambda x: loss(x).total, frames[1], iterations=budget, stop_tolerance=0)
    warm = optimize_image(lambda x: loss(x).total, first.image, iterations=budget, stop_tolerance=0)
    reached = next((i for i, value in enumerate(warm.losses, 1) if value <= cold.final_loss), None)
    assert reached is not None and reached <= 0.75 * budget, (reached, cold.final_loss)
    assert warm.losses[0] < 0.25 * cold.losses[0]


def test_stylizer_warm_starts_later_frames_with_the_smaller_budget(
    loss: PerceptualLoss, frames: list[torch.Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    settings = RenderSettings(first_iterations=6, iterations=2, stop_tolerance=0)
    stylizer = QualityStylizer(loss, quality_config(settings))
    records = [FrameRecord(index=i, pts=i, content=f) for i, f in enumerate(frames)]
    with caplog.at_level("DEBUG", logger="vidstyle"):
        out = list(stylizer(iter(records)))
    assert [r.index for r in out] == [0, 1, 2]
    assert all(r.styled is not None and r.styled.shape == r.content.shape for r in out)
    assert [(s.warm_started, s.iterations) for s in stylizer.stats] == [
        (False, 6),
        (True, 2),
        (True, 2),
    ]
    # -v shows what every frame cost.
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("frame 0: 6 iterations from scratch, loss ") for m in messages)
    assert any(m.startswith("frame 2: 2 iterations from the previous output") for m in messages)


def test_noise_first_init_is_seeded(loss: PerceptualLoss, frames: list[torch.Tensor]) -> None:
    settings = RenderSettings(first_init="noise", first_iterations=2, seed=3)
    record = FrameRecord(index=0, pts=0, content=frames[0])
    a = next(QualityStylizer(loss, quality_config(settings))(iter([record]))).styled
    b = next(QualityStylizer(loss, quality_config(settings))(iter([record]))).styled
    c = next(QualityStylizer(loss, quality_config(settings.replace(seed=4)))(iter([record]))).styled
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("RGB", ".png"), ("RGBA", ".png"), ("P", ".png"), ("L", ".png"), ("CMYK", ".jpg")],
)
def test_style_images_of_any_mode_load_as_rgb(tmp_path: Path, mode: str, suffix: str) -> None:
    path = mediagen.make_image(tmp_path / f"style{suffix}", (40, 30), mode=mode)
    image = load_style_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)
    tensor = style_tensor(image, (100, 60), 0.5, torch.device("cpu"))
    assert tensor.shape == (1, 3, 38, 50)  # long side = 0.5 × 100, aspect kept
    assert float(tensor.min()) >= 0 and float(tensor.max()) <= 1


@pytest.mark.parametrize("name", ["missing.png", "notes.txt", "clip.mp4", "folder"])
def test_unusable_style_paths_fail_with_the_path_in_the_message(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name == "notes.txt":
        path.write_text("not an image")
    elif name == "clip.mp4":
        path.write_bytes(b"\x00" * 100)
    elif name == "folder":
        path.mkdir()
    with pytest.raises(StyleImageError) as caught:
        load_style_image(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_optimiser_returns_the_best_image_it_evaluated() -> None:
    """A loss that gets worse after its 3rd evaluation: the 3rd point is returned, not the last."""
    calls = {"n": 0}
    seen: list[torch.Tensor] = []

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        seen.append(x.detach().clone())
        penalty = 0.0 if calls["n"] <= 3 else float(calls["n"])
        return (x - 0.5).pow(2).sum() * (1.0 / calls["n"]) + penalty

    result = optimize_image(
        loss_fn,
        torch.zeros(1, 3, 2, 2),
        iterations=6,
        optimizer="adam",
        learning_rate=0.1,
        stop_tolerance=0,
    )
    best = min(range(len(result.losses)), key=result.losses.__getitem__)
    assert best == 2
    assert result.final_loss == result.losses[2]
    assert torch.equal(result.image, seen[2])


def _ill_conditioned(centre: torch.Tensor) -> Any:
    """A quadratic whose curvature spans three orders of magnitude across the pixels."""
    stiffness = torch.logspace(0, 3, centre.numel()).view_as(centre)
    return lambda x: 0.5 * (stiffness * (x - centre) ** 2).sum()


def test_lbfgs_started_with_the_last_frames_memory_gets_further_in_a_few_iterations() -> None:
    generator = torch.Generator().manual_seed(0)
    centre = torch.rand(1, 3, 8, 8, generator=generator) * 0.5 + 0.25
    loss = _ill_conditioned(centre)
    # The "previous frame": the same curvature, another start; its memory is what is carried.
    previous = optimize_image(
        loss, torch.full_like(centre, 0.5), iterations=30, stop_tolerance=0, curvature=Curvature()
    )
    assert previous.curvature is not None and len(previous.curvature.pairs) > 5
    start = (centre + 0.1 * torch.rand(centre.shape, generator=generator)).clamp(0, 1)
    empty = optimize_image(loss, start, iterations=6, stop_tolerance=0, curvature=Curvature())
    carried = optimize_image(
        loss, start, iterations=6, stop_tolerance=0, curvature=previous.curvature
    )
    assert carried.final_loss < 0.7 * empty.final_loss, (carried.final_loss, empty.final_loss)
    # Without a memory to carry the optimiser is exactly the plain one.
    plain = optimize_image(loss, start, iterations=6, stop_tolerance=0)
    assert torch.equal(plain.image, empty.image) and plain.curvature is None


def test_the_memory_is_returned_also_when_the_stop_rule_ends_the_run() -> None:
    centre = torch.full((1, 3, 4, 4), 0.5)
    quadratic = _ill_conditioned(centre)
    result = optimize_image(
        lambda x: quadratic(x) + 1.0,  # the relative change stalls once the quadratic is ~0
        torch.full_like(centre, 0.2),
        iterations=200,
        stop_tolerance=1e-3,
        stop_window=3,
        curvature=Curvature(),
    )
    assert result.stopped_early
    assert result.curvature is not None and 0 < len(result.curvature.pairs) < result.iterations


def test_the_memory_moves_with_the_image_and_is_zero_where_it_comes_from_outside() -> None:
    image = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    memory = Curvature(((image[:1], image[1:]),)).map(lambda t: t.to(torch.bfloat16))
    flow = torch.zeros(1, 2, 4, 6)
    flow[:, 0] = 2.0  # every pixel comes from two to its right
    ((s, y),) = carried_curvature(memory, flow, torch.zeros(1, 3, 4, 6)).pairs
    assert s.dtype == torch.float32
    assert torch.equal(s[..., :4], image[:1, ..., 2:].to(torch.bfloat16).float())
    assert torch.equal(s[..., 4:], torch.zeros(1, 3, 4, 2))
    assert carried_curvature(None, flow, s).pairs == ()


def test_a_warm_frame_hands_its_memory_to_the_next_and_a_new_shot_drops_it(
    loss: PerceptualLoss, frames: list[torch.Tensor]
) -> None:
    settings = RenderSettings(first_iterations=4, iterations=3, stop_tolerance=0)
    stylizer = QualityStylizer(loss, quality_config(settings))
    records = [FrameRecord(index=i, pts=i, content=f) for i, f in enumerate(frames)]
    memories = []
    for _ in stylizer(iter(records)):
        memories.append(stylizer.get_resume_state()["curvature"])
    # The fresh frame's memory is not carried; each warm frame's is, in bf16.
    assert memories[0] is None
    assert memories[1] and memories[2]
    assert all(t.dtype == torch.bfloat16 for pair in memories[2] for t in pair)
    restarted = [FrameRecord(index=3, pts=3, content=frames[0], new_shot=True)]
    list(stylizer(iter(restarted)))
    assert stylizer.get_resume_state()["curvature"] is None
