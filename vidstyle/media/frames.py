"""Frame sizes and conversions between decoded images and the tensors the models use.

Between modules a frame is a float32 tensor of shape 1×3×H×W, RGB in [0, 1] (see DESIGN.md);
on disk and in the codec it is an H×W×3 uint8 RGB array. This module is the only place the two
meet, so rounding and clamping happen once, here.
"""

from __future__ import annotations

import numpy as np
import torch


def plan_size(source_size: tuple[int, int], long_side: int) -> tuple[tuple[int, int], str | None]:
    """Render size (w, h) for a source of `source_size`, and a note for the user or None.

    Scales so the longer side is `long_side`, never upscales, keeps the aspect ratio, and makes
    both sides even because the yuv420p output stores colour per 2×2 block. When the source is
    not scaled but has an odd side, that side loses its last pixel (the reader crops rather
    than resamples, which would blur every frame by a fraction of a pixel); the note says so.
    """
    width, height = source_size
    if width < 1 or height < 1:
        raise ValueError(f"source size must be positive, got {width}x{height}")
    if long_side < 2:
        raise ValueError(f"long_side must be at least 2, got {long_side}")

    long_src, short_src = max(width, height), min(width, height)
    target = min(long_side, long_src)  # never upscale
    new_long = max(2, target - target % 2)  # even, and never above long_side
    if target < long_src:
        # Scaled: round the short side to the nearest even number to keep the aspect close,
        # but never above the (even) source size.
        new_short = min(_even(short_src * new_long / long_src), max(2, short_src - short_src % 2))
        note = None
    else:
        new_short = max(2, short_src - short_src % 2)
        note = None if (new_long, new_short) == (long_src, short_src) else "cropped"
    out = (new_long, new_short) if width >= height else (new_short, new_long)
    if note is None:
        return out, None
    if min(width, height) < 2:
        # A 1-px side cannot be cropped; the reader has to stretch it to 2.
        return out, f"source is {width}x{height}; rendering at {out[0]}x{out[1]} (stretched)"
    return out, f"source is {width}x{height} (odd); rendering at {out[0]}x{out[1]} (1 px cropped)"


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def image_to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """H×W×3 uint8 RGB array -> new 1×3×H×W float32 tensor in [0, 1] on `device`."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 image, got shape {image.shape} {image.dtype}")
    # torch.from_numpy rejects negative strides (e.g. from np.rot90 or [::-1]); copy those.
    array = image if image.flags.c_contiguous else np.ascontiguousarray(image)
    if torch.device(device).type == "cpu":
        # numpy, not torch, for a CPU target: frames are decoded on worker threads, and a torch
        # op there starts a second OpenMP thread team that competes with the main thread's
        # (the stylizer's) for the same cores. Same IEEE division as torch's, so same values.
        planar = np.ascontiguousarray(array.transpose(2, 0, 1))[np.newaxis]
        return torch.from_numpy(np.divide(planar, 255.0, dtype=np.float32))
    # Move the uint8 data first: a quarter of the bytes of float32 cross the bus; from_numpy
    # shares memory with `image`, so the conversions below must all produce new tensors.
    data = torch.from_numpy(array)
    if torch.device(device).type == "cuda":
        # A copy from pageable memory first waits for everything already queued on the GPU (a
        # host sync per frame: the next frames could not be uploaded while the network runs).
        # From page-locked memory the copy is queued like a kernel; the caching host allocator
        # keeps the pinned buffer until the copy has run.
        data = data.pin_memory()
    data = data.to(device, non_blocking=True)
    return unit_floats(data.permute(2, 0, 1).unsqueeze(0))


# value / 255 for every uint8 value, as numpy's (IEEE) float32 division gives it on the CPU.
_UNIT_TABLE = torch.from_numpy(np.divide(np.arange(256, dtype=np.uint8), 255.0, dtype=np.float32))
_unit_tables: dict[torch.device, torch.Tensor] = {}


def unit_floats(data: torch.Tensor) -> torch.Tensor:
    """uint8 tensor -> new float32 tensor of value / 255 (contiguous), on `data`'s device.

    Looked up, not divided: CUDA divides a tensor by a scalar as a multiplication by its
    reciprocal, which differs from true division in the last bit for about half the values,
    so the same frame would reach the network with other bits on a GPU than on the CPU."""
    table = _unit_tables.get(data.device)
    if table is None:
        table = _unit_tables.setdefault(data.device, _UNIT_TABLE.to(data.device))
    # int32 indices: a uint8 index tensor would be taken for a mask.
    return table[data.contiguous().to(torch.int32)]


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """1×3×H×W tensor (any device, any float dtype) -> H×W×3 uint8 RGB; `t` is not modified."""
    if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] != 3:
        raise ValueError(f"expected a 1×3×H×W tensor, got shape {tuple(t.shape)}")
    if t.device.type == "cpu":
        # numpy, not torch, as in image_to_tensor: frames are encoded on a worker thread.
        # np.rint rounds half to even like torch.round, so both paths give the same bytes.
        planar = t.detach()[0].float().numpy()
        scaled = np.rint(np.clip(planar, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        return np.ascontiguousarray(scaled.transpose(1, 2, 0))
    # float32 before scaling: half precision cannot represent x*255 exactly. `.float()` may
    # return `t` itself for float32 input, so only out-of-place ops follow it.
    scaled = t.detach()[0].float().clamp(0.0, 1.0).mul(255.0).round_()
    # Convert to uint8 on the device so only a quarter of the bytes are copied back.
    return scaled.to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
