"""One render as an executor runs it (in this process, a worker process or a Ray task):
`render_job` never raises for a failed render; it ends the render's events with `Finished` or
`Failed`, and returns its result, with every error classified here, once.
"""

from __future__ import annotations

import gc
import traceback
from pathlib import Path

import torch

from vidstyle.device import resolve_device
from vidstyle.errors import RenderInterrupted, VidstyleError
from vidstyle.render import pipeline
from vidstyle.render.events import Emit, RenderResult, ended, ignore
from vidstyle.render.prepare import RenderPlan


def render_job(
    plan: RenderPlan,
    device: str,
    *,
    job: int = 0,
    emit: Emit = ignore,
    sharing: int = 1,
    threads: int | None = None,
) -> RenderResult:
    """Render a plan that renders (not a skip) on `device` (a `--device` name), which `sharing`
    renders use side by side, with `threads` CPU threads (`vidstyle.render.threads`), as every
    executor does: its events, and at the end `Finished` or `Failed`, go to `emit` as events
    about render `job`. Never raises for a failed render: the result says how it ended
    (KeyboardInterrupt: "interrupted", progress saved)."""
    try:
        try:
            result = pipeline.render(
                plan, resolve_device(device), sharing=sharing, threads=threads, job=job, emit=emit
            )
        except KeyboardInterrupt:
            # Before the first frame (building the networks): the render saved nothing.
            raise RenderInterrupted(
                "interrupted; nothing was written under the final name", plan.output
            ) from None
    except RenderInterrupted as err:
        _release(err)
        result = _ended(plan, "interrupted", str(err), err.exit_code, err)
    except VidstyleError as err:
        _release(err)
        result = _ended(plan, "failed", str(err), err.exit_code, err)
    except Exception as err:
        _release(err)
        result = _ended(plan, "failed", _unexpected(plan.input, err), 1, err)
    emit(ended(job, result))
    return result


def _ended(
    plan: RenderPlan, status: str, message: str, exit_code: int, error: BaseException
) -> RenderResult:
    return RenderResult(
        plan.input, plan.output, status, message=message, exit_code=exit_code, error=error
    )


def _release(err: BaseException) -> None:
    """Free what a failed render held while the result keeps its exception.

    A traceback keeps every frame it passes through alive, with their locals: the frames,
    activations and optimiser history of the render. Kept in the result (and, in a worker
    process, until its next job ends), they would make every later job in the process run
    out of memory after one did. The frames' locals are dropped; file and line stay for a
    traceback shown later. Then the memory goes back: cycles first, then CUDA's cache."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)  # skips the frames still running
        pending += [current.__cause__, current.__context__]
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _unexpected(path: Path, err: BaseException) -> str:
    """One line for an error vidstyle did not foresee (a batch goes on without it)."""
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return f"{path}: ran out of memory; render smaller with --size, or fewer --jobs"
    return f"{path}: failed ({type(err).__name__}: {err}); VIDSTYLE_DEBUG=1 shows details"
