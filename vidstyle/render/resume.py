"""What a pipeline stage must keep across a restart, so a resumed render continues exactly.

A render saves its progress in segments (`vidstyle.render.workdir`); with each one it saves the
state of every stage whose output depends on earlier frames (`capture`), and a resumed render hands
that state back to fresh stages before its first new frame (`restore`). Together with the RNG
state, that makes the resumed frames bit for bit those of an uninterrupted render.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from vidstyle.frame import FrameRecord


@runtime_checkable
class Resumable(Protocol):
    """A pipeline stage whose output depends on earlier frames (warm start, smoothing).

    `get_resume_state()` is called after the stage has yielded a frame and describes what the
    *next* frame needs (tensors, ints, RNG states; anything `torch.save` stores with
    `weights_only`). A resumed render calls `set_resume_state()` on a fresh stage before its
    first frame; the stage then behaves as if it had just yielded that frame. Stateless stages
    (fast mode, flow) need neither.
    """

    def get_resume_state(self) -> dict[str, Any]: ...

    def set_resume_state(self, state: Mapping[str, Any]) -> None: ...


def capture(stages: Sequence[object]) -> dict[str, Any]:
    """The state of every resumable stage (references, not copies: cheap enough per frame)."""
    carry: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    for key, stage in _keyed(stages):
        carry[key] = stage.get_resume_state()
    return carry


def restore(stages: Sequence[object], carry: Mapping[str, Any] | None) -> None:
    """Hand each resumable stage its saved state (`capture`'s output after a restart)."""
    if carry is None:
        return
    if "torch_rng" in carry:
        torch.set_rng_state(carry["torch_rng"])
    for key, stage in _keyed(stages):
        if key in carry:
            stage.set_resume_state(carry[key])


def _keyed(stages: Sequence[object]) -> Iterator[tuple[str, Resumable]]:
    for i, stage in enumerate(stages):
        if isinstance(stage, Resumable):
            yield f"{i}:{type(stage).__name__}", stage


def skip_before(records: Iterable[FrameRecord], index: int) -> Iterator[FrameRecord]:
    """Drop the records before `index` (frames a resumed render has already finished)."""
    for record in records:
        if record.index >= index:
            yield record
