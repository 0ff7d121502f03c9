"""A still image as input renders to an image, in both modes, alone or in a batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import mediagen
import pytest
import torch
from clitools import FAST, run
from PIL import Image

from vidstyle.atomic import temp_path_for
from vidstyle.nets.models import save_model
from vidstyle.nets.transformer import TransformerNet


@pytest.fixture
def folder(tmp_path: Path, style_image: Path) -> Path:
    shutil.copy(style_image, tmp_path / "style.png")
    return tmp_path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_a_photo_renders_to_a_png_beside_it(
    folder: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    photo = mediagen.make_image(folder / f"photo{suffix}", (96, 64))
    assert run([photo, "-s", folder / "style.png", "-q", *FAST]) == 0
    out = folder / "photo.style.png"
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (48, 32)  # --size 48, aspect kept
    assert {p.name for p in folder.iterdir()} == {f"photo{suffix}", out.name, "style.png"}


@pytest.mark.parametrize(("suffix", "fmt"), [(".jpg", "JPEG"), (".webp", "WEBP"), (".png", "PNG")])
def test_the_output_suffix_chooses_the_image_format(folder: Path, suffix: str, fmt: str) -> None:
    photo = mediagen.make_image(folder / "photo.png", (64, 48))
    out = folder / f"styled{suffix}"
    assert run([photo, "-s", folder / "style.png", "-o", out, "-q", *FAST]) == 0
    with Image.open(out) as image:
        assert image.format == fmt and image.size == (48, 36)


def test_fast_mode_renders_a_photo_with_a_trained_model(folder: Path) -> None:
    torch.manual_seed(0)
    model = folder / "mosaic.pth"
    save_model(model, TransformerNet("small").eval(), style="mosaic.jpg", training={})
    photo = mediagen.make_image(folder / "photo.jpg", (64, 48))
    assert run([photo, "--model", model, "--size", "48", "-q"]) == 0
    with Image.open(folder / "photo.mosaic.png") as image:
        assert image.size == (48, 36)


def test_a_photo_with_a_video_output_name_is_a_usage_error(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = mediagen.make_image(folder / "photo.png", (64, 48))
    before = sorted(p.name for p in folder.iterdir())
    code = run([photo, "-s", folder / "style.png", "-o", folder / "out.mp4", "-q", *FAST])
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert "out.mp4" in line and "renders to an image" in line and ".png" in line
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_damaged_photo_is_one_line_and_writes_nothing(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = mediagen.make_image(folder / "photo.png", (64, 48))
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) // 2])  # the header is intact, the pixels are cut off
    before = sorted(p.name for p in folder.iterdir())
    code = run([photo, "-s", folder / "style.png", "-q", *FAST])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert str(photo) in line and "cannot read the image" in line
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_writing_the_image_keeps_the_earlier_one(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = mediagen.make_image(folder / "photo.png", (64, 48))
    out = folder / "photo.style.png"
    out.write_bytes(b"an earlier render")
    temp_path_for(out).symlink_to("/dev/full")
    code = run([photo, "-s", folder / "style.png", "--overwrite", "-q", *FAST])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert "photo.style.png" in line and "disk full" in line
    assert out.read_bytes() == b"an earlier render"
    assert not temp_path_for(out).exists()


def test_a_batch_renders_videos_to_videos_and_photos_to_images(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = mediagen.make_video(folder / "clip.mp4", frames=3)
    photos = folder / "photos"
    photos.mkdir()
    mediagen.make_image(photos / "a.jpg", (64, 48))
    mediagen.make_image(photos / "b.webp", (48, 64))
    out = folder / "out"
    args = [clip, photos, "-s", folder / "style.png", "-o", out, "--ext", "mp4,jpg,webp"]
    assert run([*args, "-q", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.style.png", "b.style.png", "clip.style.mp4"]
    with Image.open(out / "b.style.png") as image:
        assert image.size == (36, 48)
    capsys.readouterr()
    # Run again: every output exists, so every job is skipped, images included.
    assert run([*args, "-v", *FAST]) == 0
    assert " ".join(capsys.readouterr().err.split()).count("exists; skipping") == 3


def test_a_photo_reports_its_progress_as_a_one_frame_render(folder: Path) -> None:
    from vidstyle import resolve_settings, stylize_video
    from vidstyle.render.events import Event, FrameDone, Iteration, Started

    # The same events a video's render sends, from the start: the bar of a photo that takes
    # minutes moves with quality mode's iterations, and ends at its one frame.
    photo = mediagen.make_image(folder / "photo.png", (64, 48))
    settings = resolve_settings(
        "quality",
        None,
        {"features": "random", "size": 32, "first_iterations": 3, "iterations": 1},
    )
    events: list[Event] = []
    result = stylize_video(photo, [folder / "style.png"], settings, on_event=events.append)
    assert result.status == "rendered" and result.frames == 1 and result.output.exists()
    assert events[0] == Started(0, "photo.png", 1) and events[-1] == FrameDone(0)
    within = events[1:-1]
    assert within and all(isinstance(event, Iteration) for event in within)
    assert [event.fraction for event in within] == sorted(event.fraction for event in within)
