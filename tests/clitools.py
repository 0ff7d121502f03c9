"""Helpers the command-line tests share: run `vidstyle` in-process and read its outputs back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from vidstyle.cli import main

# Small and quick: random VGG features, tiny frames, a couple of iterations. Smoothing and
# flow-warped warm starts stay on (the defaults).
FAST = [
    "--features",
    "random",
    "--size",
    "48",
    "--first-iterations",
    "2",
    "--iterations",
    "1",
    "--encoder-preset",
    "ultrafast",
]


def run(args: Sequence[object]) -> int:
    """`vidstyle ARGS...`; its exit code."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    return int(exited.value.code or 0)


def interrupt_after(
    monkeypatch: pytest.MonkeyPatch, frames: int, error: type[BaseException] = KeyboardInterrupt
) -> None:
    """Ctrl-C (or `error`) once the command has rendered `frames` frames, counted over the
    whole batch: raised from its progress display, the callback every render reports each
    finished frame to, as a user's Ctrl-C arrives between frames."""
    from vidstyle.console import BatchProgress

    done = {"frames": 0}
    report = BatchProgress.frame_done

    def advanced(self: BatchProgress, event: Any, job: object) -> None:
        report(self, event, job)
        done["frames"] += event.frames
        if done["frames"] >= frames:
            raise error("simulated")

    monkeypatch.setattr(BatchProgress, "frame_done", advanced)


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
