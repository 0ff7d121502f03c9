"""What a render reports on the way, wherever it runs: the one progress protocol.

A render emits `Started`, then `FrameDone` for each frame written and (quality mode, during a
frame that may take minutes) `Iteration` with the share of that frame done, and ends with
`Finished` or `Failed` carrying its `RenderResult`. Every event names the render it is about
(`job`: the batch's job number, 0 for a render on its own). Events are small frozen
dataclasses that pickle, so an executor forwards them as they are from a worker process or a
Ray task; the batch and the command line's display consume these same objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from vidstyle.errors import EXIT_USAGE, VidstyleError


@dataclass(frozen=True)
class RenderResult:
    """How a render ended (or why it did not run: skipped, failed while planning)."""

    input: Path
    output: Path
    # "rendered" | "skipped" | "stale" (skipped, made with other settings) | "failed" |
    # "interrupted"
    status: str
    frames: int = 0  # in the output (or in this part of it)
    seconds: float = 0.0
    size: tuple[int, int] | None = None
    resumed_from: int = 0  # frames an earlier, interrupted run had saved (and this one kept)
    message: str = ""  # why it failed, in one line
    exit_code: int = 0
    # The exception behind a "failed" or "interrupted", in the process that raised it (its type
    # and traceback for the caller of a single render); see `portable`.
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def rendered_frames(self) -> int:
        """Frames this run rendered (an earlier, interrupted run's not counted)."""
        return max(0, self.frames - self.resumed_from)

    @property
    def frames_per_second(self) -> float:
        """Frames rendered by this run per second of it."""
        return self.rendered_frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ended_badly(self) -> bool:
        return self.status in ("failed", "interrupted")

    @property
    def usage_error(self) -> bool:
        """Failed for a reason about the command, not this input: every other render of the
        command would fail the same way."""
        return self.status == "failed" and self.exit_code == EXIT_USAGE

    def portable(self) -> RenderResult:
        """This result as another process can take it: vidstyle's own errors travel (as their
        message), any other exception stays behind (its message is in `message`)."""
        return replace(self, error=self.error if isinstance(self.error, VidstyleError) else None)


@dataclass(frozen=True)
class Started:
    job: int
    description: str  # the display's name for the render ("clip.mp4 (from frame 12)")
    total: int | None  # frames this run will render, if known


@dataclass(frozen=True)
class FrameDone:
    job: int
    frames: int = 1


@dataclass(frozen=True)
class Iteration:
    """Quality mode's headway within the frame in progress."""

    job: int
    fraction: float  # share (0..1) of the frame done; `FrameDone` completes it


@dataclass(frozen=True)
class Finished:
    """Rendered (or, reported by a batch, skipped)."""

    job: int
    result: RenderResult


@dataclass(frozen=True)
class Failed:
    """Failed or interrupted (`result.status` says which; `result.message` why)."""

    job: int
    result: RenderResult


Event = Started | FrameDone | Iteration | Finished | Failed
Emit = Callable[[Event], None]


def ended(job: int, result: RenderResult) -> Finished | Failed:
    """The event that ends render `job` with `result`."""
    return Failed(job, result) if result.ended_badly else Finished(job, result)


def portable(event: Event) -> Event:
    """`event` as it can be sent to another process (see `RenderResult.portable`)."""
    if isinstance(event, Finished | Failed):
        return replace(event, result=event.result.portable())
    return event


def ignore(event: Event) -> None:
    """An `Emit` for a render nobody watches."""
