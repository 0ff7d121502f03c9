"""Each stage takes a small config of its own, built from a render's settings in one place.

The stages can then be read and tested without the settings of the whole program, and a
setting reaches exactly the stage that uses it.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import torch

import vidstyle
from vidstyle.config import RenderSettings
from vidstyle.render.pipeline import fast_config, flow_stage, loss_config, quality_config

PACKAGE = Path(vidstyle.__file__).parent

# A render's settings with every value the stage configs read set away from its default.
CHANGED = RenderSettings(
    first_init="noise",
    init="prev",
    first_iterations=7,
    iterations=3,
    temporal_weight=1.5,
    coarse_to_fine=True,
    coarse_min_size=64,
    seed=11,
    optimizer="adam",
    learning_rate=0.5,
    stop_tolerance=0.25,
    stop_window=4,
    content_weight=0.5,
    style_weight=9.0,
    tv_weight=0.125,
    features="random",
    vgg_weights="/nowhere/vgg.pth",
    vgg_layout="caffe",
    pooling="avg",
    style_layers=("relu1_1", "relu2_1"),
    content_layers=("relu3_1",),
    style_layer_weights=(1.0, 3.0),
    model="starry",
    models_dir="/nowhere/models",
    batch_size=3,
    precision="bf16",
    channels_last="off",
    flow_preset="fast",
    scene_cut_threshold=0.25,
)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_stage_module_reads_the_render_settings() -> None:
    modules = sorted((PACKAGE / "stylize").glob("*.py")) + sorted(
        (PACKAGE / "temporal").glob("*.py")
    )
    assert len(modules) > 5
    # Training reads the train command's own settings (every one of them goes into the run's
    # fingerprint and the model's record); no stage reads the render's.
    readers = [m.name for m in modules if "vidstyle.config" in imports_of(m)]
    assert readers == ["train.py"]
    assert "RenderSettings" not in (PACKAGE / "stylize" / "train.py").read_text(encoding="utf-8")


def test_each_stage_config_carries_the_settings_it_names() -> None:
    quality = quality_config(CHANGED)
    for field in dataclasses.fields(quality):
        if field.name != "optimizer":
            assert getattr(quality, field.name) == getattr(CHANGED, field.name), field.name
    for name, value in dataclasses.asdict(quality.optimizer).items():
        assert value == getattr(CHANGED, name), name
    fast = fast_config(CHANGED)
    for name, value in dataclasses.asdict(fast).items():
        assert value == getattr(CHANGED, name), name
    loss = loss_config(CHANGED)
    assert dataclasses.astuple(loss.weights) == (0.5, 9.0, 0.125)
    assert loss.vgg_weights == Path("/nowhere/vgg.pth")
    for name in ("features", "vgg_layout", "pooling", "seed", "style_layers", "content_layers"):
        assert getattr(loss, name) == getattr(CHANGED, name), name
    assert loss.style_layer_weights == (1.0, 3.0)
    flow = flow_stage(CHANGED, torch.device("cpu"))
    assert (flow.preset, flow.scene_cut_threshold) == ("fast", 0.25)
