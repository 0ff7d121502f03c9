"""Optimise one image against a loss (quality mode's inner loop): L-BFGS or Adam, early stop.

Early stop follows Ruder et al. 2016: stop when the relative change of the loss stays below a
tolerance over a window of iterations, so still scenes (whose warm start is already close to the
optimum) cost a fraction of the iteration budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

IterationCallback = Callable[[int, float], None]

# Curvature pairs L-BFGS keeps. torch's two-loop recursion reads two numbers per pair back to
# the host every iteration (a GPU sync each); bench/lbfgs_history.py measures the loss it buys.
LBFGS_HISTORY = 50


@dataclass(frozen=True)
class Curvature:
    """L-BFGS's memory of the loss's curvature: pairs (s, y) of a step of the variable and the
    change of the gradient it brought, each shaped like the variable, oldest first.

    A warm frame of quality mode starts with the previous frame's memory carried along the
    flow (vidstyle.stylize.quality) instead of an empty one: with an empty memory L-BFGS's
    first step is a tiny gradient step and its next ones know the curvature from one or two
    pairs, which in a warm frame's dozen iterations is a large part of the budget."""

    pairs: tuple[tuple[Tensor, Tensor], ...] = ()

    def map(self, move: Callable[[Tensor], Tensor]) -> Curvature:
        """The memory with `move` applied to every s and y (e.g. carried along the flow)."""
        return Curvature(tuple((move(s), move(y)) for s, y in self.pairs))

    def useful(self) -> Curvature:
        """The pairs L-BFGS would keep: positive curvature along the step (y·s > 0)."""
        return Curvature(tuple((s, y) for s, y in self.pairs if float((y * s).sum()) > 1e-10))

    def last(self, count: int) -> Curvature:
        return Curvature(self.pairs[-count:] if count > 0 else ())


@dataclass
class OptimizeResult:
    image: Tensor  # the best image evaluated; detached, clamped to [0, 1]
    iterations: int  # loss evaluations with a gradient (what the budget counts)
    losses: list[float] = field(default_factory=list)  # loss at every iteration
    stopped_early: bool = False
    # L-BFGS's memory at the end: the given memory's pairs, then this run's (when asked for)
    curvature: Curvature | None = None

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


@dataclass(frozen=True)
class OptimizerConfig:
    """How one image is optimised: the optimiser (lbfgs or adam), Adam's step size, and the
    early stop (relative loss change below `stop_tolerance` over `stop_window` iterations;
    a tolerance of 0 never stops early). Its fields are `optimize_image`'s keyword arguments of
    the same names, so callers pass it as `**dataclasses.asdict(config)`."""

    optimizer: str
    learning_rate: float
    stop_tolerance: float
    stop_window: int


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
    curvature: Curvature | None = None,
) -> OptimizeResult:
    """Minimise `loss_fn(image)` starting from a copy of `init` (which is never modified).

    `step_scale` (broadcastable to the image, > 0): a diagonal preconditioner. The optimiser
    works on x with image = step_scale · x, so a pixel with scale k moves k² times as far for
    the same gradient; L-BFGS models the curvature of the whole image with one scalar, which
    the stiffest pixels set.

    Pixels are kept in [0, 1] by clamping the image in place before every evaluation (the
    PyTorch neural-style tutorial's way): a pixel pushed out of range still has a gradient to
    bring it back, where a free variable seen through a clamp or a sigmoid has little or none.
    The alternatives are measured by bench/bounds.py (docs/quality.md).

    `curvature` (L-BFGS only): start with this memory instead of an empty one, and return the
    memory at the end in the result (an empty `Curvature()` asks for it without giving one)."""
    objective = _Objective(loss_fn, init, step_scale, on_iteration, curvature is not None)
    rule = _StopRule(stop_tolerance, stop_window)
    if optimizer == "lbfgs":
        stopped_early = _run_lbfgs(objective, iterations, rule, curvature)
    elif optimizer == "adam":
        stopped_early = _run_adam(objective, iterations, rule, learning_rate)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    return OptimizeResult(
        image=objective.best.clamp(0.0, 1.0),
        iterations=len(objective.losses),
        losses=objective.losses,
        stopped_early=stopped_early,
        curvature=None if curvature is None else _memory_after(curvature, objective),
    )


def _memory_after(before: Curvature, objective: _Objective) -> Curvature:
    """`before`'s pairs, then those of the points `objective` evaluated, the last
    LBFGS_HISTORY of them (what L-BFGS itself keeps, also when the stop rule ended it)."""
    points = list(objective.points)
    steps = tuple(
        (x1 - x0, g1 - g0) for (x0, g0), (x1, g1) in zip(points, points[1:], strict=False)
    )
    return Curvature(before.pairs + Curvature(steps).useful().pairs).last(LBFGS_HISTORY)


class _Objective:
    """The variable being optimised and one evaluation of the loss at it: clamp, loss,
    gradient, and the record of every loss and of the best image seen."""

    def __init__(
        self,
        loss_fn: Callable[[Tensor], Tensor],
        init: Tensor,
        step_scale: Tensor | None,
        on_iteration: IterationCallback | None,
        keep_points: bool = False,
    ) -> None:
        start = init.detach()
        self.loss_fn = loss_fn
        self.step_scale = step_scale
        self.on_iteration = on_iteration
        self.scale = torch.ones_like(start) if step_scale is None else step_scale.expand_as(start)
        # contiguous: L-BFGS flattens gradients with view(), which fails on permuted strides.
        self.variable = (start / self.scale).contiguous().requires_grad_(True)
        self.losses: list[float] = []
        self.best = self.image_of(self.variable).detach().clone()
        # (variable, gradient) at the last evaluations, for the memory a next frame starts with
        self.points: deque[tuple[Tensor, Tensor]] = deque(
            maxlen=LBFGS_HISTORY + 1 if keep_points else 0
        )

    def image_of(self, x: Tensor) -> Tensor:
        return x * self.scale if self.step_scale is not None else x

    def evaluate(self) -> Tensor:
        variable, scale = self.variable, self.scale
        with torch.no_grad():
            if self.step_scale is None:
                variable.clamp_(0.0, 1.0)
            else:
                variable.copy_((variable * scale).clamp(0.0, 1.0) / scale)
        image = self.image_of(variable)
        loss = self.loss_fn(image)
        loss.backward()
        if self.points.maxlen:
            assert variable.grad is not None
            self.points.append((variable.detach().clone(), variable.grad.detach().clone()))
        value = float(loss.detach())
        if value < min(self.losses, default=float("inf")):
            # Without a line search L-BFGS can overshoot late in the budget and end above its
            # best point; return the best image seen, not the last one.
            self.best = image.detach().clone()
        self.losses.append(value)
        if self.on_iteration is not None:
            self.on_iteration(len(self.losses), value)
        return loss


def _run_lbfgs(
    objective: _Objective, iterations: int, rule: _StopRule, curvature: Curvature | None
) -> bool:
    """L-BFGS for `iterations` evaluations, starting with `curvature`'s memory; whether the
    stop rule ended it early."""
    # One step runs the whole budget so every iteration costs one evaluation; calling
    # step() per iteration would re-evaluate the loss at the start of each call.
    # No line search, as in neural-style: it costs evaluations and rarely helps here.
    lbfgs = whole_budget_lbfgs(objective.variable, iterations)
    if curvature is not None:
        _start_with_memory(lbfgs, objective.variable, curvature.useful())

    def closure() -> Tensor:
        lbfgs.zero_grad()
        loss = objective.evaluate()
        # Raising after the evaluation leaves the variable at the point whose loss was recorded.
        if rule.reached(objective.losses):
            raise _Converged
        return loss

    try:
        lbfgs.step(closure)
    except _Converged:
        return True
    return False


def _start_with_memory(lbfgs: torch.optim.LBFGS, variable: Tensor, memory: Curvature) -> None:
    """Make `lbfgs`'s first iteration a quasi-Newton step with `memory`'s pairs.

    torch's L-BFGS keeps its memory in its state and starts empty when the state says no
    iteration has run; this state says one has, with a zero last step so that no pair is
    formed from it (y·s = 0 is skipped), and hands over the pairs and the initial Hessian
    scale s·y / y·y of the newest pair, as L-BFGS sets it after each step."""
    if not memory.pairs:
        return
    flat = [(s.reshape(-1), y.reshape(-1)) for s, y in memory.pairs]
    s_last, y_last = flat[-1]
    zeros = torch.zeros_like(flat[0][0])
    lbfgs.state[variable].update(
        func_evals=0,
        n_iter=1,
        d=zeros,
        t=0.0,
        old_stps=[s for s, _ in flat],
        old_dirs=[y for _, y in flat],
        ro=[1.0 / (y @ s) for s, y in flat],
        H_diag=(s_last @ y_last) / (y_last @ y_last),
        prev_flat_grad=zeros.clone(),
        prev_loss=None,
    )


def _run_adam(
    objective: _Objective, iterations: int, rule: _StopRule, learning_rate: float
) -> bool:
    """Adam for at most `iterations` steps; whether the stop rule ended it early."""
    adam = torch.optim.Adam([objective.variable], lr=learning_rate)
    for _ in range(iterations):
        if rule.reached(objective.losses):
            return True
        adam.zero_grad()
        objective.evaluate()
        adam.step()
    return False


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
