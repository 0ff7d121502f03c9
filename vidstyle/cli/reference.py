"""configs/reference.toml, generated from the settings: every key with its built-in default,
its allowed values and its help, grouped as in `vidstyle render --help`.

`python scripts/make_reference.py` writes the file; a test checks the checked-in copy is current.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Any

from vidstyle.config import RENDER_PANELS, RenderSettings

WIDTH = 100

HEADER = """\
# Every setting vidstyle reads, with its built-in default (the quality preset's values).
# Copy the lines you need into your own file and pass it with --config FILE.
# Precedence: command line > --config > --preset > built-in defaults. Without --preset, a file
# or options asking for mode = "fast" (or naming a model and no mode) start from the fast preset.
# Keys may be written with '-' or '_'. An unknown key or a bad value is an error naming the key.
# Generated from vidstyle/config.py by scripts/make_reference.py; edit the settings there.
"""


def toml_value(value: Any) -> str:
    """A setting's value as TOML (strings, numbers, booleans and arrays of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the plain text settings hold
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _allowed(meta: Any) -> str:
    if meta["choices"]:
        return "One of: " + ", ".join(meta["choices"]) + "."
    low, high = meta["low"], meta["high"]
    if low is not None and high is not None:
        return f"From {low:g} to {high:g}."
    if low is not None:
        return f"At least {low:g}."
    return ""


def _entry(spec: dataclasses.Field[Any]) -> list[str]:
    meta = spec.metadata
    key = spec.name.replace("_", "-")
    unset = "Unset by default." if spec.default is None else ""
    text = " ".join(part for part in (meta["help"], _allowed(meta), unset) if part)
    lines = textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ")
    if spec.default is None:
        lines.append(f"# {key} = {meta['example']}")
    else:
        lines.append(f"{key} = {toml_value(spec.default)}")
    return lines


def reference_toml() -> str:
    """The text of configs/reference.toml."""
    specs = dataclasses.fields(RenderSettings)
    out = [HEADER]
    for panel in RENDER_PANELS:
        heading = f"# --- {panel} "
        out.append(heading + "-" * (WIDTH - len(heading)))
        for spec in specs:
            if spec.metadata["panel"] == panel:
                out.extend(_entry(spec))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
