"""Settings: presets, config files, CLI precedence, validation, reference file."""

from __future__ import annotations

from pathlib import Path

import pytest
from tomlcompat import tomllib

from vidstyle.cli.reference import reference_toml
from vidstyle.config import (
    RenderSettings,
    load_preset,
    preset_names,
    resolve_settings,
    validate_layer,
)
from vidstyle.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "vidstyle" / "configs"


def test_presets_required_by_the_docs_ship_with_the_package() -> None:
    assert {"quality", "balanced", "preview"} <= set(preset_names())


def test_default_preset_is_quality() -> None:
    assert resolve_settings() == resolve_settings("quality")
    assert resolve_settings().first_iterations == load_preset("quality")["first_iterations"]


def test_every_preset_is_valid_and_differs_from_quality() -> None:
    quality = resolve_settings("quality")
    for name in preset_names():
        settings = resolve_settings(name)
        assert isinstance(settings, RenderSettings)
        if name != "quality":
            assert settings != quality


def test_reference_lists_every_key_with_its_default() -> None:
    text = (CONFIGS / "reference.toml").read_text()
    values = validate_layer(tomllib.loads(text), "reference.toml")
    defaults = RenderSettings()
    for key, value in values.items():
        assert getattr(defaults, key) == value, key
    # Keys whose default is None are documented as commented-out lines.
    documented = set(values) | {
        line.lstrip("# ").split("=")[0].strip().replace("-", "_")
        for line in text.splitlines()
        if line.startswith("# ") and "=" in line
    }
    missing = {f for f in defaults.__dataclass_fields__ if f not in documented}
    assert not missing, f"reference.toml lacks {missing}"


def test_checked_in_reference_is_the_generated_one() -> None:
    # After a settings change: python scripts/make_reference.py
    assert (CONFIGS / "reference.toml").read_text() == reference_toml()


def test_one_default_from_the_cli_a_config_file_and_the_api(tmp_path: Path) -> None:
    # The command line starts from resolve_settings() (no preset named); a config file that
    # sets nothing and a bare RenderSettings() must render the same way.
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing set\n")
    assert resolve_settings() == RenderSettings() == resolve_settings(config_file=empty)
    assert RenderSettings().first_iterations == load_preset("quality")["first_iterations"]


def test_model_alone_or_fast_mode_starts_from_the_fast_preset(tmp_path: Path) -> None:
    fast = load_preset("fast")
    assert resolve_settings(overrides={"model": "starry"}).size == fast["size"]
    assert resolve_settings(overrides={"mode": "fast"}).encoder_preset == fast["encoder_preset"]
    config = tmp_path / "fast.toml"
    config.write_text('model = "starry"\n')
    assert resolve_settings(config_file=config).mode == "fast"
    # A mode or preset given explicitly wins.
    quality = resolve_settings(overrides={"model": "starry", "mode": "quality"})
    assert (quality.mode, quality.size) == ("quality", RenderSettings().size)
    assert resolve_settings("preview", overrides={"model": "starry"}).mode == "quality"


def test_precedence_cli_over_config_over_preset(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("size = 200\ncrf = 30\niterations = 7\n")
    settings = resolve_settings("preview", config, {"crf": 12, "iterations": None})
    assert settings.crf == 12  # CLI wins
    assert settings.size == 200  # config file beats preset (preview has 256)
    assert settings.iterations == 7  # an unset CLI option does not override
    assert settings.encoder_preset == "veryfast"  # preset beats built-in default
    assert settings.stop_tolerance == RenderSettings().stop_tolerance  # built-in default


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("stlye-weight = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml.*stlye-weight"):
        resolve_settings(config_file=config)


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ({"optimizer": "sgd"}, "optimizer.*lbfgs, adam"),
        ({"size": 4}, "size.*at least"),
        ({"crf": "high"}, "crf.*must be a whole number"),
        ({"audio": "yes"}, "audio.*must be true or false"),
        ({"iterations": 2.5}, "iterations.*must be a whole number"),
    ],
)
def test_bad_values_are_errors_naming_the_key(values: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        resolve_settings(overrides=values)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'best'.*quality"):
        resolve_settings("best")


def test_invalid_toml_and_missing_config_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("size = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_settings(config_file=broken)
    with pytest.raises(ConfigError, match="cannot read config file"):
        resolve_settings(config_file=tmp_path / "absent.toml")
