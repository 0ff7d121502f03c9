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
    pooling: str = field(default="max", metadata=_choice("max", "avg"))

    # Losses
    content_weight: float = field(default=1.0, metadata=_range(0.0))
    style_weight: float = field(default=5.0, metadata=_range(0.0))
    tv_weight: float = field(default=1e-2, metadata=_range(0.0))
    style_scale: float = field(default=1.0, metadata=_range(0.05, 8.0))

    # Quality-mode optimisation
    optimizer: str = field(default="lbfgs", metadata=_choice("lbfgs", "adam"))
    learning_rate: float = field(default=0.02, metadata=_range(1e-6, 10.0))
    first_init: str = field(default="content", metadata=_choice("content", "noise"))
    init: str = field(default="prev", metadata=_choice("prev", "content"))
    first_iterations: int = field(default=300, metadata=_range(1))
    iterations: int = field(default=60, metadata=_range(1))
    stop_tolerance: float = field(default=1e-4, metadata=_range(0.0))
    stop_window: int = field(default=20, metadata=_range(1))

    # Output encoding
    codec: str = "libx264"
    crf: int = field(default=18, metadata=_range(0, 63))
    encoder_preset: str = "medium"
    audio: bool = True
    max_frames: int | None = field(default=None, metadata=_range(1))
    overwrite: bool = False

    def replace(self, **changes: Any) -> RenderSettings:
        return dataclasses.replace(self, **changes)


SETTING_NAMES = frozenset(f.name for f in fields(RenderSettings))


def _normalise_key(key: str) -> str:
    return key.replace("-", "_")


def _check_value(name: str, value: Any, source: str) -> Any:
    """Coerce `value` to the field's type and check choices/range; errors name the key."""
    spec = {f.name: f for f in fields(RenderSettings)}[name]
    default = spec.default
    where = f"{source}: setting '{name.replace('_', '-')}'"
    if value is None:
        if default is not None and name not in ("max_frames", "vgg_weights"):
            raise ConfigError(f"{where} cannot be empty")
        return None
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
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(preset_names())}")
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
    merged.update(load_preset(preset or DEFAULT_PRESET))
    if config_file is not None:
        merged.update(load_config_file(config_file))
    if overrides:
        given = {k: v for k, v in overrides.items() if v is not None}
        merged.update(validate_layer(given, "command line"))
    return RenderSettings(**merged)
