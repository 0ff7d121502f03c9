"""Shared pytest fixtures. Media are generated once per session by `tests/mediagen.py`.

Session-scoped media are shared between tests: treat them as read-only (write outputs to
`tmp_path`). Tests that need special media call `mediagen.make_video(tmp_path / ..., ...)`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

# Make `import mediagen` work from any test module without a tests package.
sys.path.insert(0, str(Path(__file__).parent))

import mediagen  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _vidstyle_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """vidstyle's cache (precision measurements) in a folder of the session's, shared by
    every test and the commands they run, so the user's cache is never written and one
    render's `--precision auto` is the next one's."""
    folder = tmp_path_factory.mktemp("vidstyle-cache")
    saved = os.environ.get("VIDSTYLE_CACHE")
    os.environ["VIDSTYLE_CACHE"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("VIDSTYLE_CACHE", None)
    else:
        os.environ["VIDSTYLE_CACHE"] = saved


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for generated media."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> Path:
    """24 frames, 64×48, 24 fps, panning 2 px/frame to the right, H.264 + AAC stereo in MP4."""
    return mediagen.make_video(media_dir / "clip.mp4", frames=24, fps=Fraction(24))


@pytest.fixture(scope="session")
def clip_ntsc(media_dir: Path) -> Path:
    """24 frames, 64×48 at 30000/1001 fps (NTSC 29.97), H.264 + AAC in MP4."""
    return mediagen.make_video(media_dir / "clip_ntsc.mp4", frames=24, fps=Fraction(30000, 1001))


@pytest.fixture(scope="session")
def style_image(media_dir: Path) -> Path:
    """A 64×64 RGB PNG style image with bold strokes."""
    return mediagen.make_image(media_dir / "style.png", (64, 64))


@pytest.fixture
def workdir(tmp_path: Path, clip: Path, style_image: Path) -> Path:
    """A folder of its own holding `clip.mp4` and `style.png` (outputs land beside them)."""
    shutil.copy(clip, tmp_path / "clip.mp4")
    shutil.copy(style_image, tmp_path / "style.png")
    return tmp_path


@pytest.fixture(autouse=True)
def _restore_vidstyle_logger() -> Iterator[None]:
    """Undo logging setup a test did (the CLI gives the "vidstyle" logger its own handler and
    stops propagation), so `caplog` sees vidstyle's records in every later test."""
    logger = logging.getLogger("vidstyle")
    saved = (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
    yield
    logger.handlers[:], level, logger.propagate, logger.disabled = saved
    logger.setLevel(level)
