"""Fingerprints: what decides a render or a training run, as earlier work recorded it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import mediagen
import pytest
import torch

from vidstyle.config import RenderSettings, TrainSettings
from vidstyle.errors import WeightsError
from vidstyle.fingerprint import render_fingerprint
from vidstyle.nets.models import CHECKPOINT_FORMAT, checkpoint_path
from vidstyle.stylize.train import train


def test_a_render_fingerprint_reads_as_earlier_outputs_recorded_it(
    tmp_path: Path, clip: Path, style_image: Path
) -> None:
    # Finished outputs keep their fingerprint in their metadata and are compared key by key
    # with a new render's: any change of form would call every earlier output stale.
    shutil.copy(style_image, tmp_path / "style.png")
    settings = RenderSettings(size=48, device="cpu", batch_size=3)
    fp = render_fingerprint(clip, [tmp_path / "style.png"], settings, features="random")
    stat = clip.stat()
    assert fp["input"] == f"clip.mp4 {stat.st_size} bytes, mtime {stat.st_mtime_ns}"
    digest = hashlib.sha256(style_image.read_bytes()).hexdigest()[:32]
    assert fp["style 1"] == f"style.png sha256:{digest}"
    assert fp["size"] == "48" and fp["features in use"] == "random"
    # Where and how it runs changes no pixel.
    assert not {"device", "batch_size", "segment_frames", "audio"} & set(fp)
    mediagen.make_image(tmp_path / "style.png", (64, 64), seed=5)  # same name, other picture
    other = render_fingerprint(clip, [tmp_path / "style.png"], settings, features="random")
    assert other["style 1"] != fp["style 1"]


def test_a_training_checkpoint_of_the_earlier_format_asks_for_restart(
    tmp_path: Path, style_image: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mediagen.make_image(data / "a.png", (40, 40))
    # fp32: `auto` would first time the network in two precisions, which this is not about.
    settings = TrainSettings(
        arch="small", size=32, batch_size=1, steps=1, features="random", precision="fp32"
    )
    out = tmp_path / "m.pth"
    # Version 1 kept its fingerprint as plain values (and the style's digest under its own key).
    old = {"format": CHECKPOINT_FORMAT, "version": 1, "fingerprint": {"size": 32, "steps": 1}}
    torch.save(old, checkpoint_path(out))
    with pytest.raises(WeightsError, match=r"version 1 .*--restart"):
        train(style_image, [data], out, settings)
    assert train(style_image, [data], out, settings, restart=True).steps == 1
