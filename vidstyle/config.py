"""Render settings: one source of defaults, preset/file/CLI precedence, and validation.

Precedence (highest first): CLI options > `--config FILE` > `--preset NAME` > built-in defaults.
Every layer is a flat mapping of setting name to value; the same names are used in TOML files
(with `-` or `_`) and as CLI options (`--content-weight` is `content_weight`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from vidstyle.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PRESET = "quality"


def _choice(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _range(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"low": low, "high": high}


def _items(kind: str) -> dict[str, Any]:
    """A list setting: "layer" (VGG-19 layer names) or "weight" (numbers >= 0, not all 0)."""
    return {"items": kind}


def _vgg19_layer_names() -> tuple[str, ...]:
    """VGG-19 layer names (conv1_1, relu1_1, ..., pool5), written out here so validating a config
    needs no torch import; `vidstyle.nets.vgg.VGG_LAYER_NAMES` is the same list (tested)."""
    names: list[str] = []
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for j in range(1, convs + 1):
            names += [f"conv{block}_{j}", f"relu{block}_{j}"]
        names.append(f"pool{block}")
    return tuple(names)


VGG19_LAYER_NAMES = _vgg19_layer_names()
PRESERVE_COLORS = ("none", "luminance", "histogram")


@dataclass(frozen=True)
class RenderSettings:
    """How to render. Defaults here are the single source of truth; presets override them."""

    # What to run
    mode: str = field(default="quality", metadata=_choice("quality", "fast"))
    device: str = "auto"
    seed: int = 0
    size: int = field(default=512, metadata=_range(16, 8192))

    # VGG-19 features (loss network for quality mode and for training)
    features: str = field(default="auto", metadata=_choice("auto", "pretrained", "random"))
    vgg_weights: str | None = None
    # Input normalisation the checkpoint expects; auto reads it from the file (vidstyle.nets.vgg).
    vgg_layout: str = field(default="auto", metadata=_choice("auto", "torchvision", "caffe"))
    pooling: str = field(default="max", metadata=_choice("max", "avg"))

    # Losses
    content_weight: float = field(default=1.0, metadata=_range(0.0))
    style_weight: float = field(default=5.0, metadata=_range(0.0))
    tv_weight: float = field(default=1e-2, metadata=_range(0.0))
    style_scale: float = field(default=1.0, metadata=_range(0.05, 8.0))
    # Gatys et al. 2016's layers; style layer weights are normalised to sum to 1.
    style_layers: tuple[str, ...] = field(
        default=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), metadata=_items("layer")
    )
    content_layers: tuple[str, ...] = field(default=("relu4_2",), metadata=_items("layer"))
    style_layer_weights: tuple[float, ...] = field(
        default=(1.0, 1.0, 1.0, 1.0, 1.0), metadata=_items("weight")
    )

    # Artistic controls (issue 6)
    preserve_colors: str = field(default="none", metadata=_choice(*PRESERVE_COLORS))
    # Several style images blended into one set of Gram targets, one weight per style.
    style_blend: tuple[float, ...] | None = field(default=None, metadata=_items("weight"))
    coarse_to_fine: bool = False  # fresh frames optimised at growing sizes (quality mode)
    coarse_min_size: int = field(default=128, metadata=_range(16, 8192))

    # Quality-mode optimisation
    optimizer: str = field(default="lbfgs", metadata=_choice("lbfgs", "adam"))
    learning_rate: float = field(default=0.02, metadata=_range(1e-6, 10.0))
    first_init: str = field(default="content", metadata=_choice("content", "noise"))
    init: str = field(default="warped", metadata=_choice("warped", "prev", "content"))
    first_iterations: int = field(default=300, metadata=_range(1))
    iterations: int = field(default=60, metadata=_range(1))
    stop_tolerance: float = field(default=1e-4, metadata=_range(0.0))
    stop_window: int = field(default=20, metadata=_range(1))
    temporal_weight: float = field(default=50.0, metadata=_range(0.0))

    # Temporal coherence (vidstyle.temporal): optical flow, scene cuts, smoothing
    flow_preset: str = field(default="medium", metadata=_choice("ultrafast", "fast", "medium"))
    scene_cut_threshold: float = field(default=0.5, metadata=_range(0.0, 1.0))
    smooth: float = field(default=0.5, metadata=_range(0.0, 1.0))

    # Fast mode (vidstyle.stylize.feedforward): a network trained by `vidstyle train`
    model: str | None = None  # a model file, or a name in the models directory
    models_dir: str | None = None  # None: $VIDSTYLE_MODELS, else ~/.cache/vidstyle/models
    batch_size: int = field(default=4, metadata=_range(1, 1024))
    precision: str = field(default="auto", metadata=_choice("auto", "fp32", "fp16", "bf16"))
    channels_last: str = field(default="auto", metadata=_choice("auto", "on", "off"))

    # Output encoding
    codec: str = "libx264"
    crf: int = field(default=18, metadata=_range(0, 63))
    encoder_preset: str = "medium"
    audio: bool = True
    max_frames: int | None = field(default=None, metadata=_range(1))
    overwrite: bool = False

    # Resume (vidstyle.resume): progress is kept beside the output in finished segments
    resume: bool = True  # False: discard earlier progress and start over (--no-resume)
    segment_frames: int = field(default=120, metadata=_range(1))  # frames per saved segment

    def replace(self, **changes: Any) -> RenderSettings:
        return dataclasses.replace(self, **changes)


SETTING_NAMES = frozenset(f.name for f in fields(RenderSettings))


def _normalise_key(key: str) -> str:
    return key.replace("-", "_")


def _check_list(kind: str, value: Any, where: str) -> tuple[Any, ...]:
    """A TOML array, or a comma-separated string (the command line's form), as a tuple."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{where} must be a non-empty list (got {value!r})")
    if kind == "layer":
        for name in value:
            if name not in VGG19_LAYER_NAMES:
                raise ConfigError(
                    f"{where} has an unknown VGG-19 layer {name!r}; use names like relu1_1, "
                    "relu4_2, pool5"
                )
        if len(set(value)) != len(value):
            raise ConfigError(f"{where} names a layer twice ({', '.join(value)})")
        return tuple(value)
    numbers: list[float] = []
    for item in value:
        try:
            if isinstance(item, bool):
                raise ValueError
            numbers.append(float(item))
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a list of numbers (got {item!r})") from None
    if any(not n >= 0 or n == float("inf") for n in numbers) or sum(numbers) <= 0:
        raise ConfigError(f"{where} must be numbers >= 0, not all 0 (got {value!r})")
    return tuple(numbers)


def check_layer_weights(settings: RenderSettings) -> None:
    """One style-layer weight per style layer (the two are separate keys, so a file can change
    one and not the other)."""
    layers, weights = settings.style_layers, settings.style_layer_weights
    if len(layers) != len(weights):
        raise ConfigError(
            f"setting 'style-layer-weights' has {len(weights)} value(s) but 'style-layers' names "
            f"{len(layers)} layer(s); give one weight per style layer"
        )


def _check_value(name: str, value: Any, source: str) -> Any:
    """Coerce `value` to the field's type and check choices/range; errors name the key."""
    spec = {f.name: f for f in fields(RenderSettings)}[name]
    default = spec.default
    where = f"{source}: setting '{name.replace('_', '-')}'"
    if value is None:
        if default is not None and name not in ("max_frames", "vgg_weights"):
            raise ConfigError(f"{where} cannot be empty")
        return None
    if "items" in spec.metadata:
        return _check_list(spec.metadata["items"], value, where)
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
        elif isinstance(default, int) or name == "max_frames":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            value = int(value)
        elif isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
        else:
            if not isinstance(value, str | Path):
                raise TypeError
            value = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has the wrong type ({value!r})") from None
    choices = spec.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)} (got {value!r})")
    low, high = spec.metadata.get("low"), spec.metadata.get("high")
    if low is not None and value < low:
        raise ConfigError(f"{where} must be at least {low} (got {value!r})")
    if high is not None and value > high:
        raise ConfigError(f"{where} must be at most {high} (got {value!r})")
    return value


def validate_layer(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Normalise keys and check every value of one precedence layer."""
    checked: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = _normalise_key(raw_key)
        if key not in SETTING_NAMES:
            raise ConfigError(f"{source}: unknown setting '{raw_key}' (see configs/reference.toml)")
        checked[key] = _check_value(key, value, source)
    return checked


def preset_names() -> list[str]:
    files = resources.files("vidstyle").joinpath("configs")
    return sorted(
        p.name.removesuffix(".toml")
        for p in files.iterdir()
        if p.name.endswith(".toml") and p.name != "reference.toml"
    )


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from None
    return validate_layer(data, source)


def load_preset(name: str) -> dict[str, Any]:
    """Load a preset shipped inside the package (`vidstyle/configs/NAME.toml`)."""
    resource = resources.files("vidstyle").joinpath("configs", f"{name}.toml")
    if name == "reference" or not resource.is_file():
        message = f"unknown preset '{name}'; choose one of: {', '.join(preset_names())}"
        from vidstyle.media.writer import ENCODER_PRESETS  # only now: it imports PyAV

        if name in ENCODER_PRESETS:
            # x264's speed names are what ffmpeg users type after -preset.
            message += f" ('{name}' is an encoder speed: --encoder-preset {name})"
        raise ConfigError(message)
    return _parse_toml(resource.read_text(encoding="utf-8"), f"preset '{name}'")


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            f"cannot read config file ({err.strerror}); check the path", path
        ) from None
    return _parse_toml(text, str(path))


def resolve_settings(
    preset: str | None = None,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RenderSettings:
    """Merge defaults < preset < config file < CLI overrides (None in overrides = unset)."""
    merged: dict[str, Any] = {}
    _merge(merged, load_preset(preset or DEFAULT_PRESET))
    if config_file is not None:
        _merge(merged, load_config_file(config_file))
    if overrides:
        given = {k: v for k, v in overrides.items() if v is not None}
        _merge(merged, validate_layer(given, "command line"))
    settings = RenderSettings(**merged)
    check_layer_weights(settings)
    return settings


def _merge(merged: dict[str, Any], layer: Mapping[str, Any]) -> None:
    if "style_layers" in layer and "style_layer_weights" not in layer:
        # Weights written for other layers (the defaults, a preset's) would not fit: a layer
        # that changes the style layers without weighting them weights them equally.
        merged["style_layer_weights"] = (1.0,) * len(layer["style_layers"])
    merged.update(layer)


# Fast-mode network sizes (vidstyle.nets.transformer.ARCHS; named here so that options and help
# need no torch import).
TRAIN_ARCHS: tuple[str, ...] = ("standard", "small")


@dataclass(frozen=True)
class TrainSettings:
    """How `vidstyle train` trains a fast-mode network (`vidstyle.stylize.train`). Not layered
    with presets: training is one command with its own options. Loss and VGG defaults are
    quality mode's, so a network imitates what quality mode would produce with the same weights."""

    arch: str = "standard"
    size: int = 256  # side of the square training crops, in pixels
    batch_size: int = 4
    learning_rate: float = 1e-3  # Adam, as in Johnson et al.
    steps: int = 2000
    content_weight: float = RenderSettings.content_weight
    style_weight: float = RenderSettings.style_weight
    tv_weight: float = RenderSettings.tv_weight
    # Output-level temporal loss on consecutive video frames (Ruder et al. 2016's masked
    # difference to the flow-warped previous output, trained in as in ReCoNet, Gao et al.
    # 2018); 0 = off. Needs video data; costs one extra network pass per pair.
    temporal_weight: float = 0.0
    style_scale: float = RenderSettings.style_scale  # style image long side / crop side
    seed: int = 0
    features: str = RenderSettings.features
    vgg_weights: str | None = None
    vgg_layout: str = RenderSettings.vgg_layout
    pooling: str = RenderSettings.pooling
    frames_per_video: int = 100  # sampled evenly across each training clip
    checkpoint_every: int = 500  # steps; 0: only at the end
    device: str = "auto"

    def replace(self, **changes: Any) -> TrainSettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """ConfigError naming the first bad value."""
        if self.arch not in TRAIN_ARCHS:
            raise ConfigError(f"--arch must be one of {', '.join(TRAIN_ARCHS)} (got {self.arch!r})")
        checks: list[tuple[str, bool, str]] = [
            ("size", self.size >= 16, "at least 16"),
            ("batch-size", self.batch_size >= 1, "at least 1"),
            ("lr", 0 < self.learning_rate <= 10, "in (0, 10]"),
            ("steps", self.steps >= 1, "at least 1"),
            ("content-weight", self.content_weight >= 0, "at least 0"),
            ("style-weight", self.style_weight >= 0, "at least 0"),
            ("tv-weight", self.tv_weight >= 0, "at least 0"),
            ("temporal-weight", self.temporal_weight >= 0, "at least 0"),
            ("style-scale", 0.05 <= self.style_scale <= 8, "between 0.05 and 8"),
            ("frames-per-video", self.frames_per_video >= 1, "at least 1"),
            ("checkpoint-every", self.checkpoint_every >= 0, "at least 0 (0: only at the end)"),
        ]
        for name, ok, rule in checks:
            if not ok:
                value = getattr(self, _train_attr(name))
                raise ConfigError(f"--{name} must be {rule} (got {value!r})")
        for name, value, choices in (
            ("features", self.features, ("auto", "pretrained", "random")),
            ("vgg-layout", self.vgg_layout, ("auto", "torchvision", "caffe")),
            ("pooling", self.pooling, ("max", "avg")),
        ):
            if value not in choices:
                raise ConfigError(f"--{name} must be one of {', '.join(choices)} (got {value!r})")


def _train_attr(option: str) -> str:
    return {"lr": "learning_rate"}.get(option, option.replace("-", "_"))
