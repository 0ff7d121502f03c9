"""What an output was made with: the render's fingerprint (`vidstyle.fingerprint`)
is kept in the output file's metadata, so a later run can tell an output that is what it would
render from one made with other settings (a preview, another style), which is stale.

An output with no record (made by another tool or an older vidstyle) cannot be judged and counts
as up to date, as every existing output did before.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path

import av
import av.error

from vidstyle.config import RenderSettings, option_name
from vidstyle.fingerprint import differences, render_fingerprint, settings_files

#: The container metadata key (Matroska stores keys in capitals; it is read either way).
METADATA_KEY = "vidstyle"

# Recorded but not compared: a new vidstyle release does not make earlier renders wrong, and
# which VGG-19 weights `features = auto` ends up with is known only once the network is built
# (the `features` setting itself is compared); so is the precision `precision = auto` chooses on
# the device a render lands on (the setting is compared; a resumed render compares both).
_NOT_COMPARED = frozenset({"vidstyle", "features in use", "precision in use"})


def metadata_tags(fingerprint: Mapping[str, str]) -> dict[str, str]:
    """The container metadata that records a render's fingerprint."""
    return {METADATA_KEY: json.dumps(dict(fingerprint), sort_keys=True)}


def recorded_settings(path: Path) -> dict[str, str] | None:
    """The fingerprint recorded in `path`'s metadata; None if there is none or it is unreadable."""
    try:
        with av.open(str(path)) as container:
            metadata = {key.lower(): value for key, value in container.metadata.items()}
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    try:
        recorded = json.loads(metadata[METADATA_KEY])
    except (KeyError, ValueError):
        return None
    if not isinstance(recorded, dict):
        return None
    return {str(key): str(value) for key, value in recorded.items()}


def stale_settings(
    output: Path, input_path: Path, styles: Sequence[Path], settings: RenderSettings
) -> list[str]:
    """What differs between the render that made `output` and this one (fingerprint keys such as
    `size`, `max_frames`, `style 1`, `input`); empty if it is up to date or cannot be judged."""
    recorded = recorded_settings(output)
    if recorded is None:
        return []
    current = render_fingerprint(input_path, styles, settings, files=settings_files(settings))
    return [
        describe_difference(key, recorded.get(key), current.get(key))
        for key in differences(recorded, current, ignore=_NOT_COMPARED)
    ]


_OPTIONS = {spec.name: option_name(spec) for spec in fields(RenderSettings)}


def _shown(recorded: str | None) -> str:
    """A fingerprint's value (a setting's repr) as a user types it: 3, unset, on, a,b."""
    if recorded is None:
        return "unset"
    try:
        value = ast.literal_eval(recorded)
    except (ValueError, SyntaxError):
        return recorded
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return ",".join(_shown(repr(v)) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_difference(key: str, old: str | None, new: str | None) -> str:
    """One part of a fingerprint that differs, in a user's words: the option with the value the
    output was made with and the value asked for now (`--max-frames 3 (now unset)`)."""
    if key in _OPTIONS:
        return f"--{_OPTIONS[key]} {_shown(old)} (now {_shown(new)})"
    if key.startswith("style "):
        return f"{key} (another image)"  # "style 1": the first --style image
    if key == "input" or key.startswith("file "):
        name = "input" if key == "input" else key.removeprefix("file ")
        return f"{name} (changed since)"
    return key


def stale_reason(differences: Sequence[str]) -> str:
    """The skip reason for a stale output, naming what differs and how."""
    return (
        f"exists but was made with other settings: {', '.join(differences)} (stale; "
        "--overwrite renders it again)"
    )
