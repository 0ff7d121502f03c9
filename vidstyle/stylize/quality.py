"""Quality mode as a pipeline stage: every frame optimised with the Gatys loss, warm-started.

Frame 1 (and a frame after which there is no usable previous output) starts from the content
frame or noise and gets `first_iterations`; every later frame starts from the previous output
(Ruder et al. 2016), which is already close to the optimum, and gets the much smaller
`iterations` budget. `initial_image()` is the single place that decides where a frame starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from vidstyle.config import RenderSettings
from vidstyle.frame import FrameRecord
from vidstyle.stylize.losses import PerceptualLoss
from vidstyle.stylize.optimize import optimize_image


@dataclass(frozen=True)
class FrameStats:
    index: int
    iterations: int
    final_loss: float
    seconds: float
    warm_started: bool
    stopped_early: bool


class QualityStylizer:
    """Iterator stage: FrameRecord(content) -> FrameRecord(content, styled)."""

    def __init__(
        self,
        loss: PerceptualLoss,
        settings: RenderSettings,
        *,
        on_frame: Callable[[FrameStats], None] | None = None,
        on_iteration: Callable[[int, float], None] | None = None,
    ) -> None:
        self.loss = loss
        self.settings = settings
        self.on_frame = on_frame
        self.on_iteration = on_iteration
        self.stats: list[FrameStats] = []
        # A private generator: noise init is reproducible for a seed and leaves global RNG alone.
        self._generator = torch.Generator().manual_seed(settings.seed)

    def initial_image(self, record: FrameRecord, previous: Tensor | None) -> tuple[Tensor, bool]:
        """Where optimisation of `record` starts, and whether that is a warm start."""
        if previous is not None and self.settings.init == "prev":
            return previous, True
        if previous is None and self.settings.first_init == "noise":
            noise = torch.rand(record.content.shape, generator=self._generator)
            return noise.to(record.content.device), False
        return record.content, False

    def __call__(self, frames: Iterable[FrameRecord]) -> Iterator[FrameRecord]:
        previous: Tensor | None = None
        for record in frames:
            started = time.perf_counter()
            init, warm = self.initial_image(record, previous)
            self.loss.set_content(record.content)
            result = optimize_image(
                lambda image: self.loss(image).total,
                init,
                iterations=self.settings.iterations if warm else self.settings.first_iterations,
                optimizer=self.settings.optimizer,
                learning_rate=self.settings.learning_rate,
                stop_tolerance=self.settings.stop_tolerance,
                stop_window=self.settings.stop_window,
                on_iteration=self.on_iteration,
            )
            stats = FrameStats(
                index=record.index,
                iterations=result.iterations,
                final_loss=result.final_loss,
                seconds=time.perf_counter() - started,
                warm_started=warm,
                stopped_early=result.stopped_early,
            )
            self.stats.append(stats)
            if self.on_frame is not None:
                self.on_frame(stats)
            previous = result.image
            yield replace(record, styled=result.image)
