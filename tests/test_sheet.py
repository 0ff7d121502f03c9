"""`vidstyle sheet`: one frame in every combination, one labelled PNG, and a picture's options
copied into a render command give that picture."""

from __future__ import annotations

import re
from pathlib import Path

import mediagen
import numpy as np
import pytest
import torch
from clitools import run
from PIL import Image

from vidstyle.batch.sheet import make_sheet, parse_time, parse_vary, plan_cells, source_pictures
from vidstyle.errors import ConfigError
from vidstyle.nets.models import save_model
from vidstyle.nets.transformer import TransformerNet

QUICK = {"features": "random", "size": "32"}
QUICK_OPTIONS = ["--features", "random", "--size", "32"]


@pytest.fixture
def folder(workdir: Path) -> Path:
    mediagen.make_image(workdir / "waves.png", (48, 48), seed=3)
    config = workdir / "quick.toml"  # two iterations: the look is not the point here
    config.write_text("first-iterations = 2\niterations = 1\n")
    return workdir


def test_vary_and_time_are_checked_as_the_command_line_checks_them() -> None:
    assert parse_vary(["style-weight=1,2,5", "preserve-colors=none"]) == [
        ("style-weight", ["1", "2", "5"]),
        ("preserve-colors", ["none"]),
    ]
    for bad, words in [
        ("style-weight", "OPTION=VALUE"),
        ("style-weight=1,x", "--style-weight must be a number (got 'x')"),
        ("colour=1", "not a render setting"),
        ("style-layers=relu1_1", "list setting"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            parse_vary([bad])
    # A flag is varied on and off, and labelled as a render command takes it.
    flags = parse_vary(["coarse-to-fine=on,off"])
    assert flags == [("coarse-to-fine", [True, False])]
    cells = plan_cells([Path("style.png")], [], flags, preset=None, config=None, overrides={})
    assert [c.options[2:] for c in cells] == [("--coarse-to-fine",), ("--no-coarse-to-fine",)]
    assert parse_time("12.5") == 12.5 and parse_time("1:02.5") == 62.5
    assert parse_time("0:01:02") == 62.0
    with pytest.raises(ConfigError, match="--at"):
        parse_time("soon")


def test_every_style_in_every_combination_then_each_model_at_one_size(folder: Path) -> None:
    styles = [folder / "style.png", folder / "waves.png"]
    vary = parse_vary(["style-weight=1,5", "tv-weight=0,20"])
    cells = plan_cells(styles, ["starry"], vary, preset=None, config=None, overrides=QUICK)
    assert len(cells) == 2 * 4 + 1
    quality = cells[:-1]
    assert {(c.settings.style_weight, c.settings.tv_weight) for c in quality} == {
        (1.0, 0.0),
        (1.0, 20.0),
        (5.0, 0.0),
        (5.0, 20.0),
    }
    assert all(c.settings.mode == "quality" for c in quality)
    style = str(folder / "style.png")  # as given, to be copied into a render command
    assert cells[0].options == ("-s", style, "--style-weight", "1", "--tv-weight", "0")
    model = cells[-1]
    assert model.options == ("--model", "starry") and model.settings.mode == "fast"
    assert {c.settings.size for c in cells} == {32}  # the fast preset's 1920 does not apply
    assert (model.row, model.column) == (0, 1) and (cells[-2].row, cells[-2].column) == (2, 4)


def test_the_frame_is_the_one_on_screen_at_the_time_asked(clip: Path) -> None:
    # 24 fps: frame 12 is on screen from 0.5 s until 0.5417 s.
    for at, label in [(0.5, "frame 12 (0.50 s)"), (0.54, "frame 12"), (0.49, "frame 11")]:
        assert source_pictures(clip, [], at=at, frame=None).label.startswith(label)
    assert source_pictures(clip, [], at=None, frame=None).label.startswith("frame 12")  # middle
    assert source_pictures(clip, [], at=None, frame=3).label.startswith("frame 3 (0.12 s)")


def test_a_pictures_options_copied_into_a_render_give_that_picture(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)  # the labels name the style image as given: style.png
    photo = mediagen.make_image(folder / "photo.png", (64, 48), seed=5)
    result = make_sheet(
        photo,
        folder / "sheet.png",
        styles=[Path("style.png")],
        models=[],
        vary=["style-weight=1,5"],
        at=None,
        frame=None,
        preset=None,
        config=folder / "quick.toml",
        overrides=QUICK,
        jobs=1,
    )
    cell = next(c for c in result.cells if "5" in c.cell.options)
    assert cell.cell.options == ("-s", "style.png", "--style-weight", "5")
    out = folder / "photo.out.png"
    render = [photo, *cell.cell.options, *QUICK_OPTIONS, "--config", "quick.toml"]
    assert run([*render, "-o", out, "-q"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out).convert("RGB")), cell.image)
    other = next(c for c in result.cells if "1" in c.cell.options)
    assert not np.array_equal(other.image, cell.image)  # the varied option made a difference


# Worker processes, each importing torch: the whole suite only; the quick set renders sheets in
# this process (the tests above).
@pytest.mark.slow
def test_sheet_command_renders_in_parallel_and_writes_one_labelled_png(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    save_model(folder / "dots.pth", TransformerNet("small").eval(), style="dots.png", training={})
    out = folder / "sheet.png"
    args = ["sheet", folder / "clip.mp4", "-s", folder / "style.png", "-s", folder / "waves.png"]
    args += ["--vary", "style-weight=1,5", "--model", folder / "dots.pth", "--frame", "5"]
    args += ["--config", folder / "quick.toml", *QUICK_OPTIONS, "-j", "2", "-o", out]
    assert run(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    # Time per picture, each named by its options; then the total.
    timed = re.findall(r"\d/5 (.+): [\d.]+ s on cpu", captured.err)
    assert sorted(timed) == sorted(
        [f"-s {folder / s} --style-weight {w}" for s in ("style.png", "waves.png") for w in (1, 5)]
        + [f"--model {folder / 'dots.pth'}"]
    )
    assert "frame 5 (" in captured.err and "5 pictures in" in captured.err
    # Three rows (source and model; a row per style) of three boxes (the source, the style
    # image, then the pictures), each box the pictures' size (32x24), labels below.
    sheet = Image.open(out)
    assert sheet.format == "PNG"
    assert 3 * 32 < sheet.width < 3 * 32 + 4 * 8 + 5 and sheet.height > 3 * (24 + 2 * 17)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([], "needs at least one --style IMAGE or --model NAME"),
        (["-s", "style.png", "--at", "1", "--frame", "2"], "--at and --frame"),
        (["-s", "style.png", "--frame", "999"], "ends before --frame 999"),
        (["-s", "missing.png"], "missing.png"),
        (["-s", "style.png", "--model", "nosuch"], "model not found"),
        (["-s", "style.png", "-o", "sheet.jpg"], "a contact sheet is a PNG"),
    ],
)
def test_bad_sheet_commands_are_one_error_line(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    words: str,
) -> None:
    monkeypatch.chdir(folder)
    monkeypatch.setenv("VIDSTYLE_MODELS", str(folder / "models"))
    code = run(["sheet", "clip.mp4", *extra, *QUICK_OPTIONS])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert words in lines[0]
    assert not list(folder.glob("*.png")) or {p.name for p in folder.glob("*.png")} == {
        "style.png",
        "waves.png",
    }
