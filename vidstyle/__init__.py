"""vidstyle: batch video stylization (Gatys-style optimisation or feed-forward networks).

Public API: `stylize_video()`, `RenderSettings`, `resolve_settings()`, `RenderResult`.
They are imported lazily so `vidstyle --help` does not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "stylize_video": "vidstyle.render.pipeline",
    "RenderResult": "vidstyle.render.events",
    "RenderSettings": "vidstyle.config",
    "resolve_settings": "vidstyle.config",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vidstyle' has no attribute {name!r}")
