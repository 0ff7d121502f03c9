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
from pathlib import Path

import torch

from vidstyle.config import RenderSettings
from vidstyle.errors import ResourceError
from vidstyle.media import plan_size

_QUALITY_BYTES_PER_PIXEL = 4096  # VGG-19 forward + backward, L-BFGS history included
_STYLE_BYTES_PER_PIXEL = 1300  # the style image's forward pass (no gradient), once
_FAST_BYTES_PER_PIXEL = 1300  # per frame of a batch
_PIPELINE_BYTES_PER_PIXEL = 400  # queued frames (uint8 and float), flow fields, masks
_FIXED_BYTES = {"cpu": 900 << 20, "cuda": 300 << 20}  # framework + weights
_HEADROOM = 0.9

#: How many renders share this process's device (set by a batch's worker processes, which run
#: `--jobs` renders side by side and so must each fit in a share of the memory).
sharing = 1


def estimate_bytes(size: tuple[int, int], settings: RenderSettings, device: torch.device) -> int:
    """Peak memory of rendering frames of `size` (w, h) with `settings` on `device`."""
    pixels = size[0] * size[1]
    fixed = _FIXED_BYTES["cuda" if device.type == "cuda" else "cpu"]
    if settings.mode == "fast":
        network = _FAST_BYTES_PER_PIXEL * pixels * settings.batch_size
    else:
        style_pixels = pixels * settings.style_scale**2
        network = max(_QUALITY_BYTES_PER_PIXEL * pixels, _STYLE_BYTES_PER_PIXEL * style_pixels)
    return int(fixed + network + _PIPELINE_BYTES_PER_PIXEL * pixels)


def available_bytes(device: torch.device) -> int | None:
    """Memory a render on `device` may use now (None: unknown, so no check)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return _host_available()


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
    settings: RenderSettings,
    device: torch.device,
    path: Path,
) -> None:
    """Raise `ResourceError`, suggesting a `--size` that fits, if frames of `size` will not."""
    available = available_bytes(device)
    if available is None:
        return
    budget = available * _HEADROOM / max(1, sharing)
    needed = estimate_bytes(size, settings, device)
    if needed <= budget:
        return
    fits = _largest_size(source_size, settings, device, budget)
    share = f" (shared by {sharing} parallel renders)" if sharing > 1 else ""
    advice = (
        f"render smaller with --size {fits} or less"
        if fits
        else "this machine cannot render it; use another device"
    )
    raise ResourceError(
        f"frames of {size[0]}x{size[1]} need about {_gb(needed)} of memory in {settings.mode} "
        f"mode on {device}, but about {_gb(budget)} is free{share}; {advice}",
        path,
    )


def _largest_size(
    source_size: tuple[int, int], settings: RenderSettings, device: torch.device, budget: float
) -> int | None:
    """The largest --size (a multiple of 16) whose frames fit in `budget`, if any."""
    low, high = 16, max(16, max(source_size))
    if estimate_bytes(plan_size(source_size, low)[0], settings, device) > budget:
        return None
    while high - low > 16:
        middle = (low + high) // 2 // 16 * 16
        if estimate_bytes(plan_size(source_size, middle)[0], settings, device) <= budget:
            low = middle
        else:
            high = middle
    return low
