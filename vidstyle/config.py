"""Render and training settings: each declared once, with the metadata everything else is
generated from (command-line options and their help, validation, configs/reference.toml).

Precedence (highest first): CLI options > `--config FILE` > `--preset NAME` > built-in defaults.
Every layer is a flat mapping of setting name to value; the same names are used in TOML files
(with `-` or `_`) and as CLI options (`--content-weight` is `content_weight`). The built-in
defaults are the quality preset's values, so a bare `RenderSettings()`, `resolve_settings()`
and `vidstyle INPUT --style IMAGE` all render the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
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
FAST_PRESET = "fast"

# Command-line help panels; reference.toml uses them as its section headings too.
PANEL_IO = "Input and output"
PANEL_MODE = "Mode and presets"
PANEL_QUALITY = "Quality mode"
PANEL_ARTISTIC = "Artistic controls"
PANEL_TEMPORAL = "Temporal coherence"
PANEL_FAST = "Fast mode"
PANEL_FEATURES = "VGG features"
PANEL_ENCODE = "Encoding"
PANEL_BATCH = "Batch and resume"
PANEL_TRAIN_DATA = "Style, data and output"
PANEL_TRAIN = "Training"
PANEL_LOSS = "Loss"
# The order of the render settings' panels in `--help` and in reference.toml.
RENDER_PANELS = (
    PANEL_IO,
    PANEL_MODE,
    PANEL_QUALITY,
    PANEL_ARTISTIC,
    PANEL_TEMPORAL,
    PANEL_FAST,
    PANEL_FEATURES,
    PANEL_ENCODE,
    PANEL_BATCH,
)


def setting(
    default: Any,
    help: str,
    panel: str,
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    items: str | None = None,
    kind: type | None = None,
    example: str | None = None,
    option: str | None = None,
    path: bool = False,
    fingerprint: bool = True,
    shots: bool = False,
) -> Any:
    """A settings field and everything said about it, in one place.

    choices/low/high: allowed values (checked here; shown in `--help` and reference.toml).
    items: a list setting, "layer" (VGG-19 layer names) or "weight" (numbers >= 0, not all 0).
    kind: the value type when the default is None. example: a value reference.toml shows,
    commented out, for a setting that is unset by default. option: the command-line name when
    it is not the field's (`--lr`). path: the command line takes a file or folder.
    fingerprint: False where a change keeps earlier work (`vidstyle.fingerprint`): a render
    setting that changes no output pixel (where and how it runs, what happens at the joins; a
    file it names enters the fingerprint by identity instead), a training setting that only
    says how long or where the run goes. shots: the setting decides where `--split shots`
    cuts a video (`vidstyle.batch.split` finds the shots again when one changes).
    """
    if kind is None and items is None:
        kind = type(default)
    metadata = {
        "help": help,
        "panel": panel,
        "choices": choices,
        "low": low,
        "high": high,
        "items": items,
        "kind": kind,
        "example": example,
        "option": option,
        "path": path,
        "fingerprint": fingerprint,
        "shots": shots,
    }
    return dataclasses.field(default=default, metadata=metadata)


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
FEATURES = ("auto", "pretrained", "random")
POOLING = ("max", "avg")
# Fast-mode network sizes (vidstyle.nets.transformer.ARCHS; named here so that options and help
# need no torch import).
TRAIN_ARCHS: tuple[str, ...] = ("standard", "small")


@dataclass(frozen=True)
class RenderSettings:
    """How to render. Each field is one setting: its default (the quality preset's value), its
    help, its allowed values and its `--help` panel. Presets and config files override them."""

    # What to run
    mode: str = setting(
        "quality",
        "quality: per-frame optimisation; fast: a trained network. With fast (or --model "
        "alone) the default preset is fast.",
        PANEL_MODE,
        choices=("quality", "fast"),
        shots=True,
    )
    device: str = setting(
        "auto",
        "auto | cpu | cuda | cuda:N; with --jobs, a comma-separated list the workers take in "
        "turn (cuda:0,cuda:1).",
        PANEL_MODE,
        fingerprint=False,
    )
    threads: int | None = setting(
        None,
        "CPU threads of each render (unset: the machine's cores, shared by the --jobs "
        "workers; 1 per task with --cluster). On a CPU the pixels depend on it (in their last "
        "bits, which quality mode's optimiser amplifies): the same --threads gives the same "
        "video however the work is split.",
        PANEL_MODE,
        low=1,
        kind=int,
        example="4",
        fingerprint=False,
    )
    # One setting for every network (quality mode's VGG, fast mode's, training's): what runs
    # in reduced precision is the network; losses, Gram matrices and images stay float32.
    precision: str = setting(
        "auto",
        "Network precision. auto: on a CPU bf16 where a short measurement of the network at "
        "this size finds it at least 1.2x faster (cached), else fp32; on CUDA fp16, or bf16 "
        "where the GPU has it natively (quality mode, training).",
        PANEL_MODE,
        choices=("auto", "fp32", "fp16", "bf16"),
    )
    seed: int = setting(0, "Random seed (same command, same device: same output).", PANEL_MODE)
    size: int = setting(
        512,
        "Long side of the rendered frames in pixels (never upscaled).",
        PANEL_IO,
        low=16,
        high=8192,
    )

    # VGG features (loss network for quality mode and for training)
    features: str = setting(
        "auto",
        "auto: pretrained weights if found, else random features with a warning.",
        PANEL_FEATURES,
        choices=FEATURES,
    )
    vgg_weights: str | None = setting(
        None,
        "VGG-19 or VGG-16 checkpoint (torchvision or Caffe layout).",
        PANEL_FEATURES,
        kind=str,
        example='"/path/to/vgg19-dcbb9e9d.pth"',
        path=True,
        fingerprint=False,
    )
    vgg_layout: str = setting(
        "auto",
        "Input normalisation of the checkpoint: auto reads it from the file.",
        PANEL_FEATURES,
        choices=("auto", "torchvision", "caffe"),
    )
    pooling: str = setting("max", "VGG pooling layers.", PANEL_FEATURES, choices=POOLING)

    # Losses (each layer's loss is divided by the size of its target)
    content_weight: float = setting(1.0, "Weight of the content loss.", PANEL_QUALITY, low=0.0)
    # Tuned by eye and by the benches with a pretrained VGG-16 (docs/quality.md): more style
    # loses the picture's structure, less TV leaves pixel-level colour speckle.
    style_weight: float = setting(2.0, "Weight of the style loss.", PANEL_QUALITY, low=0.0)
    tv_weight: float = setting(
        20.0, "Weight of the total-variation (smoothness) loss.", PANEL_QUALITY, low=0.0
    )
    style_scale: float = setting(
        1.0,
        "Style image long side relative to the frame's.",
        PANEL_QUALITY,
        low=0.05,
        high=8.0,
    )
    # Gatys et al. 2016's layers; style layer weights are normalised to sum to 1.
    style_layers: tuple[str, ...] = setting(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "VGG style layers, comma-separated (VGG-16 has no conv3_4, conv4_4, conv5_4); weighted "
        "equally unless --style-layer-weights is given too.",
        PANEL_ARTISTIC,
        items="layer",
    )
    content_layers: tuple[str, ...] = setting(
        ("relu4_2",), "VGG content layers, comma-separated.", PANEL_ARTISTIC, items="layer"
    )
    style_layer_weights: tuple[float, ...] = setting(
        (1.0, 1.0, 1.0, 1.0, 1.0),
        "One weight per style layer, comma-separated (normalised).",
        PANEL_ARTISTIC,
        items="weight",
    )

    # Artistic controls
    preserve_colors: str = setting(
        "none",
        "Keep the source's colours: luminance (transfer the style's luminance only) | "
        "histogram (match the style's colours to the source's). Fast mode: applied to each "
        "output frame.",
        PANEL_ARTISTIC,
        choices=PRESERVE_COLORS,
    )
    # Several style images blended into one set of Gram targets, one weight per style.
    style_blend: tuple[float, ...] | None = setting(
        None,
        "Blend the --style images into ONE style with these weights, e.g. 0.7,0.3 (one per "
        "--style, normalised). Without it, several --style values mean one render in each "
        "style.",
        PANEL_ARTISTIC,
        items="weight",
        example="[0.7, 0.3]",
    )
    coarse_to_fine: bool = setting(
        False,
        "Optimise the first frame of each shot at growing sizes up to --size (same iteration "
        "budget).",
        PANEL_ARTISTIC,
    )
    coarse_min_size: int = setting(
        128, "Long side of the coarsest scale.", PANEL_ARTISTIC, low=16, high=8192
    )

    # Quality-mode optimisation
    optimizer: str = setting(
        "lbfgs", "Optimiser of each frame.", PANEL_QUALITY, choices=("lbfgs", "adam")
    )
    learning_rate: float = setting(0.02, "Adam step size.", PANEL_QUALITY, low=1e-6, high=10.0)
    first_init: str = setting(
        "content", "Start of frame 1.", PANEL_QUALITY, choices=("content", "noise")
    )
    init: str = setting(
        "warped",
        "Start of later frames: warped (previous output moved along the optical flow) | prev "
        "(previous output as is) | content (independent frames).",
        PANEL_QUALITY,
        choices=("warped", "prev", "content"),
        shots=True,
    )
    first_iterations: int = setting(100, "Iteration budget of frame 1.", PANEL_QUALITY, low=1)
    iterations: int = setting(
        16, "Iteration budget of later (warm-started) frames.", PANEL_QUALITY, low=1
    )
    stop_tolerance: float = setting(
        1e-4, "Early stop: relative loss change below this ...", PANEL_QUALITY, low=0.0
    )
    stop_window: int = setting(10, "... over this many iterations.", PANEL_QUALITY, low=1)
    temporal_weight: float = setting(
        5.0,
        "Pull each frame towards the flow-warped previous output (Ruder et al. 2016); 0: off.",
        PANEL_QUALITY,
        low=0.0,
    )

    # Temporal coherence (vidstyle.temporal): optical flow, scene cuts, smoothing
    flow_preset: str = setting(
        "medium",
        "DIS optical flow (medium has the best occlusion masks).",
        PANEL_TEMPORAL,
        choices=("ultrafast", "fast", "medium"),
        shots=True,
    )
    scene_cut_threshold: float = setting(
        0.5,
        "New shot when less than this fraction of a frame follows the previous one.",
        PANEL_TEMPORAL,
        low=0.0,
        high=1.0,
        shots=True,
    )
    # 0.25, not more: along a moving camera stronger smoothing took away part of the painting
    # (docs/quality.md), and frames are far steadier than needed at 0.25.
    smooth: float = setting(
        0.25,
        "Blend reliable pixels with the flow-warped previous output (both modes); 0: off.",
        PANEL_TEMPORAL,
        low=0.0,
        high=1.0,
        shots=True,
    )

    # Fast mode (vidstyle.stylize.feedforward): a network trained by `vidstyle train`
    model: str | None = setting(
        None,
        "Trained model: a .pth file or a name from `vidstyle models`.",
        PANEL_FAST,
        kind=str,
        example='"starry"',
        fingerprint=False,
    )
    models_dir: str | None = setting(
        None,
        "Where model names are looked up (unset: $VIDSTYLE_MODELS, else ~/.cache/vidstyle/models).",
        PANEL_FAST,
        kind=str,
        example='"~/models"',
        path=True,
        fingerprint=False,
    )
    batch_size: int = setting(
        4, "Frames per network call.", PANEL_FAST, low=1, high=1024, fingerprint=False, shots=True
    )
    channels_last: str = setting(
        "auto",
        "NHWC memory layout for the network (auto: on).",
        PANEL_FAST,
        choices=("auto", "on", "off"),
    )

    # Output encoding
    codec: str = setting(
        "auto",
        "Video encoder: libx264 | libx265 | libvpx-vp9 | libsvtav1 (where PyAV has them); "
        "auto: the container's usual one (libx264; VP9 for .webm).",
        PANEL_ENCODE,
    )
    crf: int = setting(18, "Constant rate factor (lower is better).", PANEL_ENCODE, low=0, high=63)
    encoder_preset: str = setting("medium", "Encoder speed preset.", PANEL_ENCODE)
    audio: bool = setting(
        True,
        "Copy the source's audio streams (re-encoded only if the container cannot hold them).",
        PANEL_ENCODE,
        fingerprint=False,
    )
    max_frames: int | None = setting(
        None,
        "Render only the first N frames (audio trimmed to match), for previews.",
        PANEL_IO,
        low=1,
        kind=int,
        example="48",
        shots=True,
    )
    overwrite: bool = setting(
        False, "Replace an existing output instead of skipping it.", PANEL_IO, fingerprint=False
    )

    # Resume (vidstyle.render.resume): progress is kept beside the output in finished segments
    resume: bool = setting(
        True,
        "Continue an interrupted render of the same command from its saved segments; "
        "--no-resume starts over.",
        PANEL_BATCH,
        fingerprint=False,
    )
    segment_frames: int = setting(
        120,
        "Frames per saved segment: a crash loses at most this many.",
        PANEL_BATCH,
        low=1,
        fingerprint=False,
        shots=True,
    )
    split: str = setting(
        "none",
        "shots: render each video's shots as jobs of their own (in parallel with --jobs or "
        "--cluster) and join them into the output a whole render gives.",
        PANEL_BATCH,
        choices=("none", "shots"),
        fingerprint=False,
    )

    def replace(self, **changes: Any) -> RenderSettings:
        return dataclasses.replace(self, **changes)


SETTING_NAMES = frozenset(f.name for f in fields(RenderSettings))


def _normalise_key(key: str) -> str:
    return key.replace("-", "_")


def option_name(spec: dataclasses.Field[Any]) -> str:
    """The command-line name of a setting, without dashes (`content-weight`, `lr`)."""
    return spec.metadata.get("option") or spec.name.replace("_", "-")


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


def check_layer_weights(settings: RenderSettings, where: str = "") -> None:
    """One style-layer weight per style layer (the two are separate keys, so a file can change
    one and not the other). `where`: the config file both came from, if they did (the message
    then names its keys; else the command-line options)."""
    layers, weights = settings.style_layers, settings.style_layer_weights
    if len(layers) != len(weights):
        weights_name, layers_name = (
            (f"{where}: key 'style-layer-weights'", "'style-layers'")
            if where
            else ("--style-layer-weights", "--style-layers")
        )
        raise ConfigError(
            f"{weights_name} has {len(weights)} value(s) but {layers_name} names "
            f"{len(layers)} layer(s); give one weight per style layer"
        )


def _coerce(kind: type, value: Any) -> Any:
    """`value` as `kind`; TypeError/ValueError when it is not one (no bool for a number, no
    2.5 for an int: TOML and Python callers would otherwise lose information silently)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if kind is int:
        if isinstance(value, str):  # the command line's text: "512", not "5e2" or "2.5"
            return int(value.strip())
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError
        return float(value.strip() if isinstance(value, str) else value)
    if not isinstance(value, str | Path):
        raise TypeError
    return str(value)


def check_value(spec: dataclasses.Field[Any], value: Any, where: str) -> Any:
    """Coerce `value` to the setting's type and check its choices and range; errors start
    with `where`, which names the setting."""
    meta = spec.metadata
    if value is None:
        if spec.default is not None:
            raise ConfigError(f"{where} cannot be empty")
        return None
    if meta["items"]:
        return _check_list(meta["items"], value, where)
    try:
        value = _coerce(meta["kind"], value)
    except (TypeError, ValueError):
        expected = {int: "a whole number", float: "a number", bool: "true or false"}
        wanted = expected.get(meta["kind"], "text")
        raise ConfigError(f"{where} must be {wanted} (got {value!r})") from None
    choices = meta["choices"]
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)} (got {value!r})")
    low, high = meta["low"], meta["high"]
    if low is not None and value < low:
        raise ConfigError(f"{where} must be at least {low} (got {value!r})")
    if high is not None and value > high:
        raise ConfigError(f"{where} must be at most {high} (got {value!r})")
    return value


_RENDER_FIELDS = {f.name: f for f in fields(RenderSettings)}


COMMAND_LINE = "command line"


def _unknown_key(raw_key: str, source: str) -> ConfigError:
    """An unknown key, with the closest known ones (`sise` → `size`)."""
    known = sorted(option_name(f) for f in fields(RenderSettings))
    close = difflib.get_close_matches(raw_key.replace("_", "-"), known, n=1, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(k) for k in close)}?" if close else ""
    return ConfigError(
        f"{source}: unknown key '{raw_key}'{hint} (configs/reference.toml lists every key)"
    )


def validate_layer(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Normalise keys and check every value of one precedence layer. Errors name a value the
    way the user gave it: `--size` from the command line, `FILE: key 'size'` from a file."""
    checked: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = _normalise_key(raw_key)
        if key not in SETTING_NAMES:
            raise _unknown_key(raw_key, source)
        spec = _RENDER_FIELDS[key]
        if source == COMMAND_LINE:
            where = f"--{option_name(spec)}"
        else:
            where = f"{source}: key '{option_name(spec)}'"
        checked[key] = check_value(spec, value, where)
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
        from vidstyle.media.codecs import ENCODER_PRESETS  # only now: it imports PyAV

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


def default_preset(chosen: Mapping[str, Any]) -> str:
    """The preset used when none is named: fast when the settings chosen (by a config file or
    options) ask for fast mode, or name a --model and no mode, so that
    `vidstyle clip.mp4 --model starry` does not inherit quality's size and encoder."""
    mode = chosen.get("mode")
    if mode == "fast" or (mode is None and chosen.get("model") is not None):
        return FAST_PRESET
    return DEFAULT_PRESET


def resolve_settings(
    preset: str | None = None,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RenderSettings:
    """Merge defaults < preset < config file < overrides (None in overrides = unset).
    Without a preset, `default_preset()` picks one from the file and the overrides."""
    file_layer = load_config_file(config_file) if config_file is not None else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    cli_layer = validate_layer(given, COMMAND_LINE)
    merged: dict[str, Any] = {}
    for layer in (
        load_preset(preset or default_preset({**file_layer, **cli_layer})),
        file_layer,
        cli_layer,
    ):
        _merge(merged, layer)
    settings = RenderSettings(**merged)
    layer_keys = {"style_layers", "style_layer_weights"}
    from_file = config_file is not None and not layer_keys & cli_layer.keys()
    check_layer_weights(settings, str(config_file) if from_file else "")
    return settings


def _merge(merged: dict[str, Any], layer: Mapping[str, Any]) -> None:
    if "style_layers" in layer and "style_layer_weights" not in layer:
        # Weights written for other layers (the defaults, a preset's) would not fit: a layer
        # that changes the style layers without weighting them weights them equally.
        merged["style_layer_weights"] = (1.0,) * len(layer["style_layers"])
    merged.update(layer)


def same_as_render(name: str, **metadata: Any) -> Any:
    """A training setting that is a render setting too: its default and metadata, reused
    (`metadata`: what differs for training)."""
    spec = next(f for f in fields(RenderSettings) if f.name == name)
    return field(default=spec.default, metadata={**spec.metadata, **metadata})


@dataclass(frozen=True)
class TrainSettings:
    """How `vidstyle train` trains a fast-mode network (`vidstyle.stylize.train`). Not layered
    with presets: training is one command with its own options. Loss and VGG defaults are
    quality mode's, so a network imitates what quality mode would produce with the same weights."""

    arch: str = setting(
        "standard",
        "Network size: small has half the channels (~4x less compute; for CPUs).",
        PANEL_TRAIN,
        choices=TRAIN_ARCHS,
    )
    size: int = setting(256, "Side of the random square crops.", PANEL_TRAIN, low=16)
    batch_size: int = setting(4, "Crops per training step.", PANEL_TRAIN, low=1)
    learning_rate: float = setting(
        1e-3, "Adam learning rate.", PANEL_TRAIN, low=1e-9, high=10.0, option="lr"
    )  # as in Johnson et al.
    steps: int = setting(2000, "Training steps.", PANEL_TRAIN, low=1, fingerprint=False)
    checkpoint_every: int = setting(
        500,
        "Save a resumable checkpoint every N steps (0: at the end only).",
        PANEL_TRAIN,
        low=0,
        fingerprint=False,
    )
    frames_per_video: int = setting(
        100, "Frames sampled evenly across each training clip.", PANEL_TRAIN, low=1
    )
    seed: int = setting(0, "Random seed.", PANEL_TRAIN)
    device: str = setting("auto", "auto | cpu | cuda | cuda:N.", PANEL_TRAIN, fingerprint=False)
    threads: int | None = setting(
        None,
        "CPU threads (unset: one per core). On a machine busy with other work, fewer threads "
        "than cores can train faster: each step waits for its slowest thread.",
        PANEL_TRAIN,
        low=1,
        kind=int,
        example="1",
        fingerprint=False,
    )
    precision: str = same_as_render("precision")
    content_weight: float = setting(
        RenderSettings.content_weight, "Weight of the content loss.", PANEL_LOSS, low=0.0
    )
    style_weight: float = setting(
        RenderSettings.style_weight, "Weight of the style loss.", PANEL_LOSS, low=0.0
    )
    tv_weight: float = setting(
        RenderSettings.tv_weight, "Weight of the total-variation loss.", PANEL_LOSS, low=0.0
    )
    # Output-level temporal loss on consecutive video frames (Ruder et al. 2016's masked
    # difference to the flow-warped previous output, trained in as in ReCoNet, Gao et al.
    # 2018); one extra network pass per pair. Off by default: it steadies the output but
    # flattens the picture, which render-time smoothing does not (numbers: docs/fast.md).
    temporal_weight: float = setting(
        0.0,
        "Temporal loss on consecutive video frames (flow-warped previous output vs current "
        "output, masked); needs video --data; 0: off.",
        PANEL_LOSS,
        low=0.0,
    )
    style_scale: float = setting(
        RenderSettings.style_scale,
        "Style image long side relative to the crop.",
        PANEL_LOSS,
        low=0.05,
        high=8.0,
    )
    # The loss network is the one quality mode uses: the same settings, declared there.
    features: str = same_as_render("features")
    # A render names its checkpoint by contents (`settings_files`); a training run by path.
    vgg_weights: str | None = same_as_render("vgg_weights", fingerprint=True)
    vgg_layout: str = same_as_render("vgg_layout")
    pooling: str = same_as_render("pooling")

    def replace(self, **changes: Any) -> TrainSettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """ConfigError naming the first bad value by its option (`--size must be ...`)."""
        for spec in fields(self):
            check_value(spec, getattr(self, spec.name), f"--{option_name(spec)}")

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> TrainSettings:
        """Settings from the command line's values (numbers arrive as text), each checked and
        converted; a bad one is a ConfigError naming its option."""
        specs = {spec.name: spec for spec in fields(cls)}
        return cls(
            **{
                name: check_value(specs[name], value, f"--{option_name(specs[name])}")
                for name, value in values.items()
            }
        )
