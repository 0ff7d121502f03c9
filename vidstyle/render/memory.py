"""Will a render fit in memory? An estimate made before any work, so a frame size the machine
cannot hold fails in a second with a suggested `--size`, not after minutes or with the OOM killer.

The figures are measured, not derived: peak memory per frame pixel of the VGG-19 forward and
backward pass quality mode runs every iteration (about 2.8–3.8 kB per pixel on the CPU, measured
at 256² and 512×384; activations of 16 layers plus their gradients), and of the fast-mode network
under inference mode (about 1.0–1.2 kB per pixel per frame of a batch). The pipeline around them
(decode queue, flow, encoder queue) adds a few frames' worth; the fixed part is the framework and
the networks' weights. The estimate errs high, and the check leaves 10% of headroom.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from vidstyle.errors import ResourceError
from vidstyle.media import plan_size

_QUALITY_BYTES_PER_PIXEL = 4096  # VGG-19 forward + backward, L-BFGS history included
_STYLE_BYTES_PER_PIXEL = 1300  # the style image's forward pass (no gradient), once
_FAST_BYTES_PER_PIXEL = 1300  # per frame of a batch, in float32
# Fast mode in 16-bit on CUDA (autocast): the activations are half the size, but the norms'
# statistics and the float32 output are not. Derived, not measured yet: bench/gpu.py prints
# the measured bytes per pixel for fp16 and fp32.
_FAST_HALF_SHARE = 0.6
_PIPELINE_BYTES_PER_PIXEL = 400  # queued frames (uint8 and float), flow fields, masks
_FIXED_BYTES = {"cpu": 900 << 20, "cuda": 300 << 20}  # framework + weights
_HEADROOM = 0.9


def estimate_bytes(
    size: tuple[int, int],
    device: torch.device,
    *,
    mode: str,
    batch_size: int = 1,
    style_scale: float = 1.0,
    half: bool = False,
) -> int:
    """Peak memory of rendering frames of `size` (w, h) on `device` in `mode` ("quality" |
    "fast"); fast mode runs `batch_size` frames at once, in 16-bit on CUDA where `half`;
    quality mode's style image is `style_scale` times the frame."""
    pixels = size[0] * size[1]
    fixed = _FIXED_BYTES["cuda" if device.type == "cuda" else "cpu"]
    if mode == "fast":
        network = fast_bytes_per_pixel(device, half) * pixels * batch_size
    else:
        style_pixels = pixels * style_scale**2
        network = max(_QUALITY_BYTES_PER_PIXEL * pixels, _STYLE_BYTES_PER_PIXEL * style_pixels)
    return int(fixed + network + _PIPELINE_BYTES_PER_PIXEL * pixels)


def fast_bytes_per_pixel(device: torch.device, half: bool) -> int:
    """The fast-mode network's peak bytes per pixel of each frame of a batch on `device`."""
    share = _FAST_HALF_SHARE if half and device.type == "cuda" else 1.0
    return int(_FAST_BYTES_PER_PIXEL * share)


def available_bytes(device: torch.device) -> int | None:
    """Memory a render on `device` may use now (None: unknown, so no check).

    On a GPU that is what is free plus what this process already holds: the caching allocator
    keeps the blocks of this process's previous job and the driver counts them as used, so they
    are released first; what stays reserved (live tensors, such as networks the next job
    reuses) is this process's own to use."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device))
    return _host_available()


def total_bytes(device: torch.device) -> int | None:
    """All the memory of `device` (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[1])
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def share_bytes(device: torch.device, sharing: int) -> int | None:
    """The memory one of `sharing` renders side by side on `device` may count on now.

    The other renders' memory is already missing from what is available while they run, so the
    share is what is available, capped at 1/`sharing` of the device, and not divided again:
    dividing would leave the second job of two on one GPU a quarter of it, and a false "does
    not fit" once a job needs about half."""
    available = available_bytes(device)
    if available is None or sharing <= 1:
        return available
    total = total_bytes(device)
    return available // sharing if total is None else min(available, total // sharing)


def _host_available() -> int | None:
    try:  # Linux: what can be allocated without swapping, page cache included
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(value: float) -> str:
    return f"{value / (1 << 30):.1f} GB"


def check_fits(
    source_size: tuple[int, int],
    size: tuple[int, int],
    device: torch.device,
    path: Path,
    *,
    mode: str,
    batch_size: int = 1,
    style_scale: float = 1.0,
    sharing: int = 1,
    half: bool = False,
) -> None:
    """Raise `ResourceError`, suggesting a `--batch-size` or `--size` that fits, if frames of
    `size` will not.

    `sharing`: how many renders run side by side on `device` (a batch's `--jobs` workers), each
    of which must fit in its share of the free memory. `half`: fast mode runs in 16-bit.
    """
    available = share_bytes(device, sharing)
    if available is None:
        return
    budget = available * _HEADROOM

    def needed(frame_size: tuple[int, int], batch: int = batch_size) -> int:
        return estimate_bytes(
            frame_size, device, mode=mode, batch_size=batch, style_scale=style_scale, half=half
        )

    if needed(size) <= budget:
        return
    fits = _largest_size(source_size, needed, budget)
    share = f" (shared by {sharing} parallel renders)" if sharing > 1 else ""
    advice = (
        f"render smaller with --size {fits} or less"
        if fits
        else "this machine cannot render it; use another device"
    )
    # Fast mode: fewer frames at once cost only speed; a smaller size costs the picture.
    batch = mode == "fast" and _largest_batch(batch_size, lambda b: needed(size, b) <= budget)
    if batch:
        advice = f"use --batch-size {batch} or less" + (f", or {advice}" if fits else "")
    raise ResourceError(
        f"frames of {size[0]}x{size[1]} need about {_gb(needed(size))} of memory in {mode} "
        f"mode on {device}, but about {_gb(budget)} is free{share}; {advice}",
        path,
    )


def _largest_batch(batch_size: int, fits: Callable[[int], bool]) -> int | None:
    """The largest batch below `batch_size` that fits, if any."""
    return next((batch for batch in range(batch_size - 1, 0, -1) if fits(batch)), None)


def _largest_size(
    source_size: tuple[int, int], needed: Callable[[tuple[int, int]], int], budget: float
) -> int | None:
    """The largest --size (a multiple of 16) whose frames fit in `budget`, if any."""
    low, high = 16, max(16, max(source_size))
    if needed(plan_size(source_size, low)[0]) > budget:
        return None
    while high - low > 16:
        middle = (low + high) // 2 // 16 * 16
        if needed(plan_size(source_size, middle)[0]) <= budget:
            low = middle
        else:
            high = middle
    return low
