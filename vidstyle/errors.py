"""Errors a user can cause, each with an exit code and a one-line message for humans.

The library raises these; only `vidstyle.cli` turns them into exit codes and printed lines.
A message names the file involved and says what to do about it.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class VidstyleError(Exception):
    """Base class: something the user can fix. `str(err)` is the one-line message."""

    exit_code: int = EXIT_INPUT_FAILED

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class ConfigError(VidstyleError):
    """A bad option value, preset, config file or unknown key."""

    exit_code = EXIT_USAGE


class InputError(VidstyleError):
    """An input video is missing, unreadable, or holds no usable video stream."""


class StyleImageError(VidstyleError):
    """The style image is missing or cannot be read as an image."""

    exit_code = EXIT_USAGE


class OutputError(VidstyleError):
    """The output cannot be written (folder missing or read-only, disk full)."""


class WeightsError(VidstyleError):
    """Network weights cannot be found or loaded (VGG-19 or a fast-mode model)."""

    exit_code = EXIT_USAGE


class ResourceError(VidstyleError):
    """The job does not fit the machine (e.g. a frame too large for memory)."""


class RenderInterrupted(VidstyleError):
    """The user pressed Ctrl-C; files were closed and nothing was left under the final name."""

    exit_code = EXIT_INTERRUPTED
