"""Command-line options generated from the settings dataclasses (part of the command line layer,
with `vidstyle.cli`; nothing else imports typer).

Each `RenderSettings` / `TrainSettings` field becomes one option: its name, help, allowed values,
range, help panel and default come from the field and its metadata (`vidstyle.config.setting`),
so a new setting is one field. Values are checked by `vidstyle.config`, not by click, so a bad
value is the same one-line error from the command line, a config file and the Python API.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from vidstyle.config import option_name

PANEL_LOG = "Logging"

F = TypeVar("F", bound=Callable[..., Any])


def _shown(value: Any) -> str:
    """A value as a user types it on the command line."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_shown(low)} to {_shown(high)}"
    if low is not None:
        return f"at least {_shown(low)}"
    return f"at most {_shown(high)}"


def help_text(
    spec: dataclasses.Field[Any], presets: Mapping[str, Mapping[str, Any]] | None = None
) -> str:
    """The field's help, its range, and its default (with each preset's value where it differs
    from the default). `\\[`: rich would take a bare `[...]` for markup and drop it."""
    meta = spec.metadata
    parts = [meta["help"]]
    if meta["low"] is not None or meta["high"] is not None:
        parts.append(f"\\[range: {_range_text(meta['low'], meta['high'])}]")
    if spec.default is not None:
        default = f"default: {_shown(spec.default)}"
        others = [
            f"{name}: {_shown(values[spec.name])}"
            for name, values in (presets or {}).items()
            if spec.name in values and values[spec.name] != spec.default
        ]
        parts.append(f"\\[{'; '.join([default, *others])}]")
    return " ".join(parts)


def _metavar(spec: dataclasses.Field[Any]) -> str | None:
    meta = spec.metadata
    if meta["choices"]:
        return "[" + "|".join(meta["choices"]) + "]"
    if meta["items"] == "layer":
        return "LAYERS"
    if meta["items"] == "weight":
        return "WEIGHTS"
    if meta["path"]:
        return "PATH"
    if meta["kind"] is bool:
        return None  # a flag takes no value
    return {int: "N", float: "X"}.get(meta["kind"], "TEXT")


def _annotation(spec: dataclasses.Field[Any], help: str, unset_default: bool) -> Any:
    """`Annotated[type, typer.Option(...)]` for one field. `unset_default`: the option's default
    is None (not given: the preset or config file decides), else the field's default."""
    meta = spec.metadata
    name = option_name(spec)
    # Numbers are taken as text and converted by vidstyle.config, so `--size abc` is the same
    # one-line error as `--size 8` (click's own message would be a box of another shape).
    kind: Any = str if meta["items"] or meta["kind"] in (int, float) else meta["kind"]
    if meta["path"]:
        kind = Path
    decls = [f"--{name}/--no-{name}"] if kind is bool else [f"--{name}"]
    option = typer.Option(
        *decls,
        help=help,
        rich_help_panel=meta["panel"],
        show_default=False,
        metavar=_metavar(spec),
    )
    if unset_default or spec.default is None:
        kind = kind | None
    return Annotated[kind, option]


def add_setting_options(
    settings_class: type,
    *,
    unset_default: bool,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    panel_order: Sequence[str] = (),
) -> Callable[[F], F]:
    """Give a command one option per field of `settings_class`; the command receives them in
    its `**settings` keyword arguments (see `settings_values`). Options are listed by panel, in
    `panel_order`, then the command's logging options."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        generated = [
            inspect.Parameter(
                spec.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_annotation(spec, help_text(spec, presets), unset_default),
                default=None if unset_default else spec.default,
            )
            for spec in dataclasses.fields(settings_class)
        ]
        order = [*panel_order, PANEL_LOG]

        def rank(parameter: inspect.Parameter) -> int:
            panel = _panel(parameter)
            return order.index(panel) + 1 if panel in order else 0

        # Positional-or-keyword parameters must come before keyword-only ones; typer passes
        # every value by keyword, so making all of them keyword-only changes nothing else.
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own + generated]
        params.sort(key=rank)  # stable: a panel's options keep their declaration order
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return decorate


def _panel(parameter: inspect.Parameter) -> str | None:
    for info in getattr(parameter.annotation, "__metadata__", ()):
        panel = getattr(info, "rich_help_panel", None)
        if panel:
            return panel
    return None


def settings_values(settings_class: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed option values of `settings_class`'s fields, by field name."""
    return {spec.name: values[spec.name] for spec in dataclasses.fields(settings_class)}


def add_chosen_setting_options(
    settings_class: type,
    helps: Mapping[str, str],
    *,
    before: str,
    metavars: Mapping[str, str] | None = None,
    defaults: bool = False,
) -> Callable[[F], F]:
    """Give a command the options of some of `settings_class`'s fields, by field name in
    `helps` (in that order) with the command's own help for each, placed before its parameter
    `before`. Their names, value types and allowed values come from the fields' metadata,
    as `add_setting_options` gives them; `metavars` replaces a generated one. The command
    receives them in its `**settings` keyword arguments: None when not given, unless
    `defaults`, then the field's default (shown in the help)."""
    specs = {spec.name: spec for spec in dataclasses.fields(settings_class)}

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        generated = [
            _chosen_parameter(specs[name], help, (metavars or {}).get(name), defaults)
            for name, help in helps.items()
        ]
        at = next(i for i, p in enumerate(own) if p.name == before)
        params = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in [*own[:at], *generated, *own[at:]]
        ]
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return decorate


def _chosen_parameter(
    spec: dataclasses.Field[Any], help: str, metavar: str | None, default: bool
) -> inspect.Parameter:
    meta = spec.metadata
    kind: Any = Path if meta["path"] else (str if meta["kind"] in (int, float) else meta["kind"])
    option = typer.Option(
        f"--{option_name(spec)}",
        help=help,
        metavar=metavar or _metavar(spec),
        show_default=default,
    )
    if not default or spec.default is None:
        kind = kind | None
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[kind, option],
        default=spec.default if default else None,
    )
