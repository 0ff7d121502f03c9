"""`vidstyle eval` and `vidstyle.metrics`: warping error against the floor, style distance,
and what smoothing does to a real render, measured end to end."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import mediagen
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from clitools import run

from vidstyle.config import RenderSettings
from vidstyle.metrics import (
    StyleDistance,
    TrailRatio,
    detail,
    evaluate_videos,
    retention,
    warping_error,
)
from vidstyle.nets.vgg import VGGFeatures
from vidstyle.render.pipeline import stylize_video
from vidstyle.stylize.losses import LossWeights, PerceptualLoss

SIZE = (96, 64)


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 24) -> Path:
    """Encode arbitrary RGB frames (near-)losslessly, as mediagen does for its own."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def pan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("eval")
    return mediagen.make_video(folder / "pan.mp4", frames=10, size=SIZE, audio=False)


@pytest.fixture(scope="module")
def style_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mediagen.make_image(tmp_path_factory.mktemp("style") / "style.png", SIZE)


def test_a_video_against_itself_gives_the_floor(
    pan: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evaluate_videos(pan, pan, RenderSettings())
    assert result.frames == 10 and result.pairs == 9 and result.cuts == 0
    assert result.size == SIZE
    assert result.warping_error_original is not None
    assert result.warping_error_styled == result.warping_error_original
    assert result.warping_error_ratio == pytest.approx(1.0)
    # A lossless pan warps almost exactly: the floor is tiny.
    assert result.warping_error_original < 1e-4

    assert run(["eval", pan, pan, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)  # one JSON object, nothing else on stdout
    assert data["warping_error_styled"] == data["warping_error_original"]
    assert data["warping_error_original"] == pytest.approx(result.warping_error_original)
    assert data["frames"] == 10 and data["style_distance"] is None


def test_an_unstable_video_is_far_above_the_floor_and_the_table_says_so(
    pan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every frame gets its own colour cast: flicker the flow of the original cannot explain.
    rng = np.random.default_rng(0)
    frames = mediagen.make_frames(frames=10, size=SIZE, motion="pan")
    flicker = [
        np.clip(f.astype(int) + rng.integers(-25, 26, size=3), 0, 255).astype(np.uint8)
        for f in frames
    ]
    styled = write_frames(tmp_path / "flicker.mp4", flicker)
    result = evaluate_videos(pan, styled, RenderSettings())
    assert result.warping_error_styled is not None and result.warping_error_original is not None
    assert result.warping_error_styled > 100 * result.warping_error_original
    # Same number as the in-memory function on the same frames (decoding is near-lossless).
    direct = warping_error(frames, flicker)
    assert result.warping_error_styled == pytest.approx(direct, rel=0.1)

    assert run(["eval", pan, styled]) == 0
    table = capsys.readouterr().out
    assert "warping error (E_warp)" in table and "x the original" in table
    assert f"{result.warping_error_styled:.4g}" in table


def test_style_distance_is_lower_for_a_video_that_looks_like_the_style(
    pan: Path, style_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Three frames are enough (eval compares up to the shorter video) and keep VGG cheap.
    painting = mediagen.make_style_array(SIZE)
    like_style = write_frames(tmp_path / "like.mp4", [painting] * 3)
    short = write_frames(tmp_path / "short.mp4", mediagen.make_frames(frames=3, size=SIZE))
    args = ["--style", style_png, "--features", "random", "--json"]
    assert run(["eval", pan, short, *args]) == 0
    unlike = json.loads(capsys.readouterr().out)["style_distance"]
    assert run(["eval", pan, like_style, *args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["features"] == "VGG-19 with random init (seed 0)"
    assert 0 <= data["style_distance"] < 0.1 * unlike


def test_user_errors_are_one_line_with_exit_codes(
    pan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.mp4"
    assert run(["eval", missing, pan]) == 1
    assert str(missing) in capsys.readouterr().err

    square = mediagen.make_video(tmp_path / "square.mp4", frames=3, size=(64, 64), audio=False)
    assert run(["eval", pan, square]) == 1
    err = capsys.readouterr().err
    assert str(square) in err and "rendered from" in err

    assert run(["eval", pan, pan, "--style", tmp_path / "nope.png"]) == 2
    assert "nope.png" in capsys.readouterr().err

    assert run(["eval", pan, pan, "--flow-preset", "slow"]) == 2
    assert "flow-preset" in capsys.readouterr().err


@pytest.mark.slow
def test_smoothing_lowers_the_warping_error_of_a_render(
    pan: Path, style_png: Path, tmp_path: Path
) -> None:
    # Independent frames (the flickering baseline) rendered with and without smoothing. Adam's
    # first steps move every pixel by about the learning rate, differently in every frame, so
    # three iterations already flicker (three L-BFGS iterations barely leave the start). A
    # strong TV term would make the first steps follow the (moving) content: keep it weak.
    settings = RenderSettings(
        features="random",
        style_weight=5.0,
        tv_weight=0.01,
        size=96,
        init="content",
        optimizer="adam",
        learning_rate=0.05,
        first_iterations=3,
        crf=0,  # no coding noise: measure the stylization's own flicker
        encoder_preset="ultrafast",
        max_frames=4,
    )
    errors = {}
    for smooth in (0.0, 0.8):
        out = tmp_path / f"smooth{smooth}.mp4"
        result = stylize_video(pan, [style_png], settings.replace(smooth=smooth), output=out)
        assert result.frames == 4
        errors[smooth] = evaluate_videos(pan, out, RenderSettings()).warping_error_styled
    floor = evaluate_videos(pan, pan, RenderSettings()).warping_error_original
    assert errors[0.0] > 100 * floor  # type: ignore[operator]  # it does flicker
    assert errors[0.8] < 0.5 * errors[0.0]  # type: ignore[operator]


def test_trail_ratio_sees_a_ghost_that_the_warping_error_rewards() -> None:
    """A render that keeps an object's old colour where it has gone (a ghost) is perfectly
    stable, but locally it is far from an independent render of the same frames."""
    rng = np.random.default_rng(0)
    height, width = 24, 32
    independent = [rng.uniform(0, 255, (height, width, 3)) for _ in range(4)]
    swept = np.zeros((height, width), dtype=bool)
    swept[8:16, 4:20] = True  # where the object went across
    masks = [None] + [np.where(swept, 0.0, 1.0).astype(np.float32)] * 3
    # Rendered like any other region: differences the same size everywhere.
    honest = [frame + rng.normal(0, 10, frame.shape) for frame in independent]
    ghost = [frame.copy() for frame in honest]
    for frame in ghost[1:]:
        frame[swept] = (230, 20, 20)  # the object's colour, left behind
    ratios = []
    for render in (honest, ghost):
        meter = TrailRatio()
        for mask, frame, reference in zip(masks, render, independent, strict=True):
            meter.add(mask, frame, reference)
        ratios.append(meter.value())
    assert ratios[0] is not None and 0.8 < ratios[0] < 1.25
    assert ratios[1] is not None and ratios[1] > 3


def test_retention_sees_a_frame_that_faded_towards_the_photo() -> None:
    """A coherent frame as painted as the fresh one keeps ratios of 1; one whose strokes were
    blurred away (steady, and evenly faded: E_warp and the trail ratio both pass it) does not."""
    torch.manual_seed(0)
    features = VGGFeatures(["relu1_1", "relu2_1"], weights="random", seed=0)
    loss = PerceptualLoss(
        features,
        weights=LossWeights(1.0, 1.0, 0.0),
        style_layers=("relu1_1", "relu2_1"),
        content_layers=("relu2_1",),
    )
    style = torch.rand(1, 3, 32, 48)
    distance = StyleDistance(loss, [style])
    fresh = (0.5 + 0.4 * (torch.rand(1, 3, 32, 48) - 0.5)).clamp(0, 1)
    faded = F.avg_pool2d(F.pad(fresh, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    same = retention(7, fresh, fresh.clone(), distance)
    assert same.index == 7
    assert same.detail_ratio == pytest.approx(1.0) and same.style_ratio == pytest.approx(1.0)
    blurred = retention(7, faded, fresh, distance)
    assert blurred.detail_ratio < 0.6
    assert detail(np.zeros((8, 8, 3), np.uint8)) == 0.0
