"""Optimise one image against a loss (quality mode's inner loop): L-BFGS or Adam, early stop.

Early stop follows Ruder et al. 2016: stop when the relative change of the loss stays below a
tolerance over a window of iterations, so still scenes (whose warm start is already close to the
optimum) cost a fraction of the iteration budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

IterationCallback = Callable[[int, float], None]

# Curvature pairs L-BFGS keeps. torch's two-loop recursion reads two numbers per pair back to
# the host every iteration (a GPU sync each); bench/lbfgs_history.py measures the loss it buys.
LBFGS_HISTORY = 50


@dataclass
class OptimizeResult:
    image: Tensor  # the best image evaluated; detached, clamped to [0, 1]
    iterations: int  # loss evaluations with a gradient (what the budget counts)
    losses: list[float] = field(default_factory=list)  # loss at every iteration
    stopped_early: bool = False

    @property
    def final_loss(self) -> float:
        """The loss of the returned image: the best one evaluated."""
        return min(self.losses) if self.losses else float("nan")


class _Converged(Exception):
    """Raised inside the L-BFGS closure to end the step once the early-stop rule fires."""


class _StopRule:
    def __init__(self, tolerance: float, window: int) -> None:
        self.tolerance = tolerance
        self.window = window

    def reached(self, losses: list[float]) -> bool:
        if self.tolerance <= 0 or len(losses) <= self.window:
            return False
        recent = losses[-self.window - 1 :]
        # Relative change between consecutive iterations, all inside the window.
        return all(
            abs(a - b) <= self.tolerance * max(abs(a), 1e-12)
            for a, b in zip(recent, recent[1:], strict=False)
        )


def optimize_image(
    loss_fn: Callable[[Tensor], Tensor],
    init: Tensor,
    *,
    iterations: int,
    optimizer: str = "lbfgs",
    learning_rate: float = 0.02,
    stop_tolerance: float = 1e-4,
    stop_window: int = 20,
    on_iteration: IterationCallback | None = None,
    step_scale: Tensor | None = None,
) -> OptimizeResult:
    """Minimise `loss_fn(image)` starting from a copy of `init` (which is never modified).

    `step_scale` (broadcastable to the image, > 0): a diagonal preconditioner. The optimiser
    works on x with image = step_scale · x, so a pixel with scale k moves k² times as far for
    the same gradient; L-BFGS models the curvature of the whole image with one scalar, which
    the stiffest pixels set.

    Pixels are kept in [0, 1] by clamping the image in place before every evaluation (the
    PyTorch neural-style tutorial's way): a pixel pushed out of range still has a gradient to
    bring it back, where a free variable seen through a clamp or a sigmoid has little or none.
    The alternatives are measured by bench/bounds.py (docs/quality.md)."""
    start = init.detach()
    scale = torch.ones_like(start) if step_scale is None else step_scale.expand_as(start)
    # contiguous: L-BFGS flattens gradients with view(), which fails on permuted strides.
    variable = (start / scale).contiguous().requires_grad_(True)
    losses: list[float] = []
    rule = _StopRule(stop_tolerance, stop_window)

    def image_of(x: Tensor) -> Tensor:
        return x * scale if step_scale is not None else x

    best: list[Tensor] = [image_of(variable).detach().clone()]

    def evaluate() -> Tensor:
        with torch.no_grad():
            if step_scale is None:
                variable.clamp_(0.0, 1.0)
            else:
                variable.copy_((variable * scale).clamp(0.0, 1.0) / scale)
        image = image_of(variable)
        loss = loss_fn(image)
        loss.backward()
        value = float(loss.detach())
        if value < min(losses, default=float("inf")):
            # Without a line search L-BFGS can overshoot late in the budget and end above its
            # best point; return the best image seen, not the last one.
            best[0] = image.detach().clone()
        losses.append(value)
        if on_iteration is not None:
            on_iteration(len(losses), value)
        return loss

    stopped_early = False
    if optimizer == "lbfgs":
        # One step runs the whole budget so every iteration costs one evaluation; calling
        # step() per iteration would re-evaluate the loss at the start of each call.
        # No line search, as in neural-style: it costs evaluations and rarely helps here.
        lbfgs = whole_budget_lbfgs(variable, iterations)

        def closure() -> Tensor:
            lbfgs.zero_grad()
            loss = evaluate()
            # Raising after the evaluation leaves `variable` at the point whose loss was recorded.
            if rule.reached(losses):
                raise _Converged
            return loss

        try:
            lbfgs.step(closure)
        except _Converged:
            stopped_early = True
    elif optimizer == "adam":
        adam = torch.optim.Adam([variable], lr=learning_rate)
        for _ in range(iterations):
            if rule.reached(losses):
                stopped_early = True
                break
            adam.zero_grad()
            evaluate()
            adam.step()
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")

    return OptimizeResult(
        image=best[0].clamp(0.0, 1.0),
        iterations=len(losses),
        losses=losses,
        stopped_early=stopped_early,
    )


def whole_budget_lbfgs(variable: Tensor, iterations: int) -> torch.optim.LBFGS:
    """L-BFGS on `variable` whose one `step` runs `iterations` evaluations: lr 1, no line
    search and no tolerances (the caller decides when to stop), LBFGS_HISTORY pairs."""
    return torch.optim.LBFGS(
        [variable],
        lr=1.0,
        max_iter=iterations,
        max_eval=iterations,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=LBFGS_HISTORY,
    )
