"""Artistic controls: colour preservation, blended styles, coarse-to-fine, layer
settings. Random VGG features and tiny frames keep every test to a few seconds on a CPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import av
import mediagen
import pytest
import torch
from clitools import run
from PIL import Image
from tomlcompat import tomllib
from torch import nn

from vidstyle.config import (
    VGG19_LAYER_NAMES,
    RenderSettings,
    preset_names,
    resolve_settings,
    validate_layer,
)
from vidstyle.errors import ConfigError
from vidstyle.frame import FrameRecord
from vidstyle.media import image_to_tensor
from vidstyle.nets.models import save_model
from vidstyle.nets.transformer import TransformerNet
from vidstyle.nets.vgg import VGG_LAYER_NAMES, VGGFeatures
from vidstyle.render.pipeline import build_loss, quality_config, stylize_video
from vidstyle.stylize import quality
from vidstyle.stylize.color import (
    LuminanceFeatures,
    PreserveColors,
    color_stats,
    luminance,
    match_color,
    match_luminance,
    preserve_colors_stage,
    rgb_to_yiq,
    yiq_to_rgb,
)
from vidstyle.stylize.losses import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, PerceptualLoss
from vidstyle.stylize.multiscale import scale_sizes, split_budget
from vidstyle.stylize.quality import QualityStylizer
from vidstyle.stylize.style_image import style_tensor
from vidstyle.stylize.targets import StyleTargets, blend_weights

CPU = torch.device("cpu")
CONFIGS = Path(__file__).parent.parent / "vidstyle" / "configs"

# Shallow layers and a handful of iterations: the behaviour under test does not need depth.
SMALL = RenderSettings(
    features="random",
    size=48,
    style_layers=("relu1_1", "relu2_1", "relu3_1"),
    style_layer_weights=(1.0, 1.0, 1.0),
    content_layers=("relu3_1",),
    style_weight=20.0,
    first_iterations=8,
    iterations=3,
    stop_tolerance=0.0,
    init="prev",
    smooth=0.0,
    temporal_weight=0.0,
    encoder_preset="ultrafast",
    audio=False,
)


def style_pil(seed: int = 0, size: tuple[int, int] = (48, 48)) -> Image.Image:
    return Image.fromarray(mediagen.make_style_array(size, seed=seed))


def frame_tensor(size: tuple[int, int] = (48, 40), seed: int = 1) -> torch.Tensor:
    return image_to_tensor(mediagen.texture(size[0], size[1], seed=seed))


def records(count: int, size: tuple[int, int] = (48, 40), new_shot: Sequence[int] = ()) -> list:
    frames = mediagen.make_frames(frames=count, size=size, pan_px=1, seed=3)
    return [
        FrameRecord(index=i, pts=i, content=image_to_tensor(f), new_shot=i in new_shot)
        for i, f in enumerate(frames)
    ]


def chroma(image: torch.Tensor) -> torch.Tensor:
    return rgb_to_yiq(image)[:, 1:]


def decoded(path: Path) -> list[torch.Tensor]:
    with av.open(str(path)) as container:
        return [image_to_tensor(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def style_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("styles")
    a, b = folder / "waves.png", folder / "strokes.png"
    style_pil(0).save(a)
    style_pil(7).rotate(90).save(b)
    return a, b


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Colourful, 4:4:4 so the source's chroma is not already blurred by subsampling."""
    return mediagen.make_video(
        tmp_path_factory.mktemp("clips") / "clip.mkv",
        frames=3,
        size=(48, 32),
        motion="pan",
        pan_px=1,
        audio=False,
        pix_fmt="yuv444p",
    )


# ----------------------------------------------------------------------- colour: luminance


def test_yiq_round_trips_and_grey_has_no_chroma() -> None:
    image = torch.rand(2, 3, 8, 9)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(image)), image, atol=1e-6)
    grey = torch.rand(1, 1, 4, 4).expand(-1, 3, -1, -1)
    assert chroma(grey).abs().max() < 1e-6
    assert torch.allclose(luminance(grey), grey[:, :1], atol=1e-6)


def test_style_luminance_is_matched_to_the_content() -> None:
    style = image_to_tensor(mediagen.make_style_array((40, 40))) * 0.3  # a dark painting
    content = frame_tensor()
    matched = match_luminance(style, content)
    y, yc = luminance(matched), luminance(content)
    assert abs(luminance(style).mean() - yc.mean()) > 0.1  # there was something to match
    assert y.mean() == pytest.approx(float(yc.mean()), abs=1e-5)
    assert y.std() == pytest.approx(float(yc.std()), abs=1e-5)
    assert chroma(matched).abs().max() < 1e-6  # luminance only: grey


def test_luminance_features_see_no_chroma() -> None:
    features = LuminanceFeatures(VGGFeatures(["relu1_1", "relu2_1"], weights="random"))
    a = torch.rand(1, 3, 24, 24)
    # Same luminance, other chroma (out of [0, 1] is fine for the network).
    b = yiq_to_rgb(torch.cat([rgb_to_yiq(a)[:, :1], torch.rand(1, 2, 24, 24) - 0.5], dim=1))
    fa, fb = features(a), features(b)
    for layer in fa:
        assert torch.allclose(fa[layer], fb[layer], atol=1e-4)
    assert features.source.kind == "random"  # the wrapper still says where weights came from


def test_luminance_transfer_leaves_the_source_chroma_unchanged() -> None:
    settings = replace(SMALL, preserve_colors="luminance")
    stylized: dict[str, list[FrameRecord]] = {}
    for mode in ("luminance", "none"):
        loss = build_loss(settings, CPU, luminance_only=mode == "luminance")
        targets = StyleTargets(loss, [style_pil()], preserve_colors=mode)
        stage = QualityStylizer(loss, quality_config(settings), style_targets=targets)
        out = stage(records(2))
        post = preserve_colors_stage(mode, "quality")
        stylized[mode] = list(post(out) if post else out)
    for kept, plain in zip(stylized["luminance"], stylized["none"], strict=True):
        assert kept.styled is not None and plain.styled is not None
        assert (chroma(kept.styled) - chroma(kept.content)).abs().max() < 1e-4
        # The style did change the luminance, and without preservation it changes chroma too
        # (so the check above is not trivially met).
        assert (luminance(kept.styled) - luminance(kept.content)).abs().mean() > 0.01
        assert (chroma(plain.styled) - chroma(plain.content)).abs().mean() > 0.01
        assert kept.styled.min() >= 0 and kept.styled.max() <= 1


def test_chroma_restore_clamps_luminance_not_hue() -> None:
    source = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)  # saturated red
    bright = torch.ones(1, 3, 1, 1)  # a styled pixel far brighter than red can be
    restored = PreserveColors("luminance").apply(bright, source)
    assert (chroma(restored) - chroma(source)).abs().max() < 1e-5
    assert luminance(restored) > luminance(source)  # as bright as that hue allows


# ----------------------------------------------------------------------- colour: histogram


@pytest.mark.parametrize("method", ["eigen", "cholesky"])
def test_histogram_matching_gives_the_style_the_contents_mean_and_covariance(method: str) -> None:
    style = image_to_tensor(mediagen.make_style_array((56, 40), seed=2))
    content = frame_tensor(seed=4)
    mean_c, cov_c = color_stats(content)
    mean_s, cov_s = color_stats(style)
    assert (mean_s - mean_c).abs().max() > 0.05 and (cov_s - cov_c).abs().max() > 0.01
    mean_m, cov_m = color_stats(match_color(style, content, method))
    assert torch.allclose(mean_m, mean_c, atol=1e-5)
    assert torch.allclose(cov_m, cov_c, atol=1e-5)


def test_histogram_targets_follow_each_shots_colours() -> None:
    loss = build_loss(SMALL, CPU)
    targets = StyleTargets(loss, [style_pil()], preserve_colors="histogram")
    warm, cold = frame_tensor(seed=1), frame_tensor(seed=1).flip(1)  # same texture, RGB → BGR
    grams_warm, grams_cold = targets.grams(warm), targets.grams(cold)
    expected = loss.style_grams([match_color(style_tensor(style_pil(), (48, 40), 1.0, CPU), warm)])
    for layer in grams_warm:
        assert torch.allclose(grams_warm[layer], expected[layer], rtol=1e-4, atol=1e-7)
        assert not torch.allclose(grams_warm[layer], grams_cold[layer], rtol=1e-2)


def test_fast_mode_histogram_post_process_moves_output_colours_to_the_source() -> None:
    content = frame_tensor(seed=5)
    styled = (frame_tensor(seed=6) * torch.tensor([1.0, 0.4, 0.2]).view(1, 3, 1, 1)).clamp(0, 1)
    record = FrameRecord(index=0, pts=0, content=content, styled=styled)
    stage = preserve_colors_stage("histogram", "fast")
    assert stage is not None and preserve_colors_stage("histogram", "quality") is None
    (out,) = stage([record])
    assert out.styled is not None and out.styled.min() >= 0 and out.styled.max() <= 1
    mean_o, cov_o = color_stats(out.styled)
    mean_c, cov_c = color_stats(content)
    mean_s, _ = color_stats(styled)
    # Clamping to [0, 1] bends the match a little; without the transfer the means are far off.
    assert (mean_o - mean_c).abs().max() < 0.02 < (mean_s - mean_c).abs().max()
    assert (cov_o - cov_c).abs().max() < 0.01
    assert record.styled is styled and torch.equal(record.styled, styled)  # input untouched


def seeded_net() -> TransformerNet:
    torch.manual_seed(0)
    net = TransformerNet("small").eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.bias.uniform_(-0.3, 0.3)  # colour casts for preservation to undo
    return net


@pytest.mark.parametrize("mode", ["quality", "fast"])
def test_rendered_video_keeps_the_source_chroma(
    mode: str, still_clip: Path, style_files: tuple[Path, Path], tmp_path: Path
) -> None:
    settings = replace(SMALL, crf=0, size=48)
    styles: list[Path] = [style_files[0]]
    if mode == "fast":
        model = tmp_path / "net.pth"
        save_model(model, seeded_net(), style="x.png", training={"steps": 1, "size": 32})
        settings = replace(settings, mode="fast", model=str(model))
        styles = []
    errors = {}
    for preserve in ("luminance", "none"):
        out = tmp_path / f"{preserve}.mkv"
        stylize_video(still_clip, styles, replace(settings, preserve_colors=preserve), output=out)
        errors[preserve] = float(
            sum(
                (chroma(a) - chroma(b)).abs().mean()
                for a, b in zip(decoded(out), decoded(still_clip), strict=True)
            )
            / 3
        )
    # What is left is the encoder's 4:2:0 chroma subsampling of the output.
    assert errors["luminance"] < 0.02
    assert errors["luminance"] < 0.3 * errors["none"]


# ----------------------------------------------------------------------- blended styles


def test_blend_weights_are_normalised_and_checked() -> None:
    assert blend_weights([7, 3], 2) == pytest.approx([0.7, 0.3])
    assert blend_weights(None, 4) == [0.25] * 4
    with pytest.raises(ConfigError, match="--style-blend has 3 weight.* 2 --style"):
        blend_weights([1, 1, 1], 2)
    with pytest.raises(ConfigError, match="--style-blend"):
        blend_weights([0, 0], 2)
    with pytest.raises(ConfigError, match="--style-blend"):
        blend_weights([1, -1], 2)


def test_blend_of_one_and_zero_has_the_single_styles_gram_targets() -> None:
    loss = build_loss(SMALL, CPU)
    content = frame_tensor()
    a, b = style_pil(0), style_pil(7).rotate(90)
    single = StyleTargets(loss, [a]).grams(content)
    one_zero = StyleTargets(loss, [a, b], blend=[1, 0]).grams(content)
    mixed = StyleTargets(loss, [a, b], blend=[7, 3]).grams(content)
    only_b = StyleTargets(loss, [b]).grams(content)
    for layer in single:
        assert torch.equal(one_zero[layer], single[layer])
        assert torch.allclose(mixed[layer], 0.7 * single[layer] + 0.3 * only_b[layer], atol=1e-7)
        assert not torch.allclose(mixed[layer], single[layer], rtol=1e-2)


def test_blend_of_one_and_zero_renders_the_single_style(
    still_clip: Path, style_files: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = style_files
    folder = tmp_path / "out"
    folder.mkdir()
    clip = folder / still_clip.name
    clip.write_bytes(still_clip.read_bytes())
    single = stylize_video(clip, [a], SMALL)
    blended = stylize_video(clip, [a, b], replace(SMALL, style_blend=(1.0, 0.0)))
    assert blended.output.name == "clip.waves+strokes.mp4"  # one video, named after both
    assert single.output.name == "clip.waves.mp4"
    frames_single, frames_blend = decoded(single.output), decoded(blended.output)
    assert len(frames_single) == len(frames_blend) == 3
    for x, y in zip(frames_single, frames_blend, strict=True):
        assert torch.equal(x, y)


def test_blend_weight_count_is_checked_before_rendering(
    still_clip: Path, style_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "o.mkv"
    with pytest.raises(ConfigError, match="--style-blend"):
        stylize_video(still_clip, list(style_files), replace(SMALL, style_blend=(1.0,)), output=out)
    assert not out.exists()


# ----------------------------------------------------------------------- coarse-to-fine


@pytest.mark.parametrize(
    ("size", "min_size"), [((512, 288), 128), ((48, 40), 16), ((333, 500), 64), ((100, 60), 128)]
)
def test_scales_grow_by_root_two_and_end_exactly_at_the_requested_size(
    size: tuple[int, int], min_size: int
) -> None:
    sizes = scale_sizes(size, min_size)
    assert sizes[-1] == size
    longs = [max(s) for s in sizes]
    assert longs == sorted(longs) and len(set(longs)) == len(longs)
    if max(size) > min_size:
        assert longs[0] == min_size
        for small, big in zip(longs[:-2], longs[1:-1], strict=True):
            assert big / small == pytest.approx(2**0.5, rel=0.02)
    else:
        assert sizes == [size]
    if size == (512, 288):
        assert longs == [128, 181, 256, 362, 512]


@pytest.mark.parametrize("budget", [1, 2, 5, 9, 200, 301])
def test_budget_split_spends_exactly_the_budget_half_at_full_size(budget: int) -> None:
    counts = split_budget(budget, 5)
    assert sum(counts) == budget and min(counts) >= 1 and len(counts) <= 5
    if budget >= 9:
        assert len(counts) == 5 and counts[-1] == round(budget / 2)
        assert max(counts[:-1]) - min(counts[:-1]) <= 1


def test_coarse_to_fine_runs_on_fresh_frames_and_ends_at_the_requested_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = replace(SMALL, coarse_to_fine=True, coarse_min_size=16, first_iterations=12)
    loss = build_loss(settings, CPU)
    targets = StyleTargets(loss, [style_pil()])
    applied: list[tuple[int, int]] = []
    original_apply = targets.apply
    monkeypatch.setattr(
        targets, "apply", lambda c: (applied.append((c.shape[-1], c.shape[-2])), original_apply(c))
    )
    starts: list = []
    original = quality.coarse_start

    def spy(*args: object, **kwargs: object):  # noqa: ANN202 - pass-through
        result = original(*args, **kwargs)
        starts.append(result)
        return result

    monkeypatch.setattr(quality, "coarse_start", spy)
    stage = QualityStylizer(loss, quality_config(settings), style_targets=targets)
    frames = records(4, size=(48, 40), new_shot=(2,))
    out = list(stage(frames))
    assert len(starts) == 2  # frame 0 and the new shot at frame 2; warm frames run at full size
    for start in starts:
        assert start.sizes == [(16, 16), (23, 19), (32, 27), (48, 40)]
        assert start.image.shape == (1, 3, 40, 48)
        assert start.iterations > 0 and start.iterations + start.remaining == 12
    for record in out:
        assert record.styled is not None and record.styled.shape == record.content.shape
    assert [s.iterations for s in stage.stats] == [12, 3, 12, 3]  # the budget, all scales in
    # Style targets were made for every coarse scale, and the full size set last each time.
    assert applied == [(16, 16), (23, 19), (32, 27), (48, 40)] * 2


# ----------------------------------------------------------------------- layer settings


def test_layer_defaults_are_the_losses_and_config_knows_vggs_layers() -> None:
    defaults = RenderSettings()
    assert defaults.style_layers == DEFAULT_STYLE_LAYERS
    assert defaults.content_layers == DEFAULT_CONTENT_LAYERS
    assert len(defaults.style_layer_weights) == len(defaults.style_layers)
    assert VGG19_LAYER_NAMES == VGG_LAYER_NAMES


def test_reference_writes_out_the_new_keys() -> None:
    data = tomllib.loads((CONFIGS / "reference.toml").read_text())
    for key in (
        "style-layers",
        "content-layers",
        "style-layer-weights",
        "preserve-colors",
        "coarse-to-fine",
        "coarse-min-size",
    ):
        assert key in data, key
    assert "# style-blend = " in (CONFIGS / "reference.toml").read_text()


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ({"style_layers": ["relu1_1", "relu9_9"]}, r"'style-layers'.*unknown VGG-19 .*'relu9_9'"),
        ({"content-layers": "relu4_2,conv6_1"}, r"'content-layers'.*'conv6_1'"),
        ({"style_layers": []}, r"'style-layers' must be a non-empty list"),
        ({"style_layers": ["relu1_1", "relu1_1"]}, r"'style-layers' names a layer twice"),
        ({"content_layers": "relu4_2"}, None),
        ({"style_layer_weights": [1, "x"]}, r"'style-layer-weights' must be a list of numbers"),
        ({"style_layer_weights": [0, 0, 0, 0, 0]}, r"'style-layer-weights' must be numbers >= 0"),
        ({"style_blend": [0.5, -1]}, r"'style-blend' must be numbers >= 0"),
        ({"style_blend": "0.7,x"}, r"'style-blend' must be a list of numbers"),
        ({"preserve_colors": "sepia"}, r"'preserve-colors' must be one of none, luminance"),
        ({"coarse_to_fine": "yes"}, r"'coarse-to-fine' must be true or false"),
        ({"coarse_min_size": 8}, r"'coarse-min-size' must be at least 16"),
    ],
)
def test_new_keys_are_validated_naming_the_key(values: dict, pattern: str | None) -> None:
    if pattern is None:
        assert validate_layer(values, "test") == {"content_layers": ("relu4_2",)}
        return
    with pytest.raises(ConfigError, match=pattern):
        validate_layer(values, "test")


def test_every_control_is_settable_from_a_config_file_and_the_command_line(
    tmp_path: Path,
) -> None:
    config = tmp_path / "controls.toml"
    config.write_text(
        'preserve-colors = "histogram"\nstyle-blend = [2, 1]\ncoarse-to-fine = true\n'
        'coarse-min-size = 96\nstyle-layers = ["relu1_1", "relu3_1"]\n'
        'style-layer-weights = [3, 1]\ncontent-layers = ["relu3_1"]\n'
    )
    settings = resolve_settings("balanced", config)
    assert settings.preserve_colors == "histogram" and settings.style_blend == (2.0, 1.0)
    assert settings.coarse_to_fine and settings.coarse_min_size == 96
    assert settings.style_layers == ("relu1_1", "relu3_1")
    assert settings.style_layer_weights == (3.0, 1.0)
    assert settings.content_layers == ("relu3_1",)
    # The command line overrides the file; new style layers without weights weigh equally
    # instead of inheriting the file's weights for other layers.
    cli = resolve_settings(
        "balanced",
        config,
        {"style_layers": "relu1_1,relu2_1,relu4_1", "preserve_colors": "luminance"},
    )
    assert cli.style_layer_weights == (1.0, 1.0, 1.0) and cli.preserve_colors == "luminance"


@pytest.mark.parametrize("preset", preset_names())
def test_style_layers_chosen_over_any_preset_are_weighted_equally(
    preset: str, tmp_path: Path
) -> None:
    # A preset's (or the defaults') weights were written for its own layers: choosing other
    # layers, in a file or on the command line, without weights must weight them equally.
    config = tmp_path / "layers.toml"
    config.write_text('style-layers = ["relu1_1", "relu3_1"]\n')
    from_file = resolve_settings(preset, config)
    from_cli = resolve_settings(preset, overrides={"style_layers": "relu2_1,relu3_1,relu4_1"})
    assert from_file.style_layer_weights == (1.0, 1.0)
    assert from_cli.style_layer_weights == (1.0, 1.0, 1.0)
    # Weights given with the layers are kept.
    config.write_text('style-layers = ["relu1_1", "relu3_1"]\nstyle-layer-weights = [3, 1]\n')
    assert resolve_settings(preset, config).style_layer_weights == (3.0, 1.0)


def test_weights_that_do_not_fit_the_layers_name_both_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('style-layers = ["relu1_1", "relu2_1"]\nstyle-layer-weights = [1, 2, 3]\n')
    with pytest.raises(ConfigError, match="'style-layer-weights' has 3 .*'style-layers' names 2"):
        resolve_settings(config_file=config)
    with pytest.raises(ConfigError, match="style-layer-weights"):
        build_loss(RenderSettings(features="random", style_layers=("relu1_1",)), CPU)


def test_loss_uses_the_configured_layers_and_weights() -> None:
    settings = replace(
        SMALL,
        style_layers=("relu1_1", "relu2_1"),
        style_layer_weights=(3.0, 1.0),
        content_layers=("relu2_1",),
    )
    loss = build_loss(settings, CPU)
    assert isinstance(loss, PerceptualLoss)
    assert loss.style_layers == ("relu1_1", "relu2_1")
    assert loss.content_layers == ("relu2_1",)
    assert loss.style_layer_weights == pytest.approx([0.75, 0.25])


# ----------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    ("blend", "message"),
    [
        ("0.7,0.2,0.1", "--style-blend has 3 weight"),
        ("0.7,abc", "style-blend"),
        ("0,0", "style-blend"),
    ],
)
def test_bad_style_blend_is_a_usage_error_naming_the_option(
    blend: str,
    message: str,
    still_clip: Path,
    style_files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out.mp4"
    code = run(
        [
            still_clip,
            "--style",
            style_files[0],
            "--style",
            style_files[1],
            "--style-blend",
            blend,
            "-o",
            out,
            "--features",
            "random",
            "-q",
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_help_explains_several_styles(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["render", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in (
        "--preserve-colors",
        "--style-blend",
        "--coarse-to-fine",
        "--style-layers",
        "--content-layers",
    ):
        assert option in text
    assert "every style" in text or "each style" in text


def test_several_styles_mean_one_render_each_unless_blended(
    still_clip: Path,
    style_files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(still_clip.read_bytes())
    quick = [
        "--features",
        "random",
        "--size",
        "32",
        "--first-iterations",
        "2",
        "--iterations",
        "1",
        "--encoder-preset",
        "ultrafast",
        "--no-audio",
        "-q",
    ]
    a, b = style_files
    assert run([clip, "-s", a, "-s", b, *quick]) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "clip.waves.mp4"),
        str(tmp_path / "clip.strokes.mp4"),
    ]
    assert run([clip, "-s", a, "-s", b, "--style-blend", "3,1", *quick]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "clip.waves+strokes.mp4")]


def test_bad_style_blend_with_several_inputs_is_still_a_usage_error(
    still_clip: Path,
    style_files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    second = tmp_path / "second.mkv"
    second.write_bytes(still_clip.read_bytes())
    code = run(
        [
            still_clip,
            second,
            "--style",
            style_files[0],
            "--style",
            style_files[1],
            "--style-blend",
            "1",
            "--features",
            "random",
            "-q",
        ]
    )
    assert code == 2
    assert "--style-blend has 1 weight" in capsys.readouterr().err
    assert {p.name for p in tmp_path.iterdir()} == {"second.mkv"}
