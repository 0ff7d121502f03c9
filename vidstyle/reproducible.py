"""The same frames for the same command on a GPU: the CUDA flags a render or training sets.

By default a CUDA run picks deterministic algorithms: cuDNN's deterministic convolutions,
no autotuning (`cudnn.benchmark` may choose another algorithm, with other last bits, on each
run), torch's deterministic mode (warn-only: a few backward passes have no deterministic CUDA
kernel, see below) and cuBLAS's fixed workspace. `VIDSTYLE_CUDNN_BENCHMARK=1` trades that for
speed: cuDNN autotunes and nothing is forced deterministic.

What stays non-deterministic on CUDA even so: the backward pass of reflection padding (the
fast-mode network) and of `grid_sample` (training's temporal term) accumulate with atomics, so
a resumed training on a GPU is not bitwise equal to an uninterrupted one. A render's passes
(VGG forward and backward to the image, the fast network's forward) have deterministic kernels.
None of this has been run on a GPU yet; tests/test_gpu.py holds the checks that would show it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch

BENCHMARK_ENV = "VIDSTYLE_CUDNN_BENCHMARK"
# A fixed cuBLAS workspace per stream makes its reductions run in one order (NVIDIA's cuBLAS
# docs, "Results reproducibility"); torch's deterministic mode asks for this setting.
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class CudaFlags:
    deterministic: bool  # cuDNN deterministic, torch deterministic algorithms, cuBLAS workspace
    benchmark: bool  # cuDNN autotuning

    def describe(self) -> str:
        if self.benchmark:
            return f"cuDNN autotuning on ({BENCHMARK_ENV}=1): frames may differ between runs"
        return "deterministic CUDA algorithms"


def chosen_flags(environ: Mapping[str, str] = os.environ) -> CudaFlags:
    """Deterministic unless the environment asks for cuDNN autotuning."""
    benchmark = environ.get(BENCHMARK_ENV, "").strip() not in ("", "0")
    return CudaFlags(deterministic=not benchmark, benchmark=benchmark)


def configure(device: torch.device) -> CudaFlags | None:
    """Set the process's CUDA flags for a render or training on `device` (None on a CPU,
    where nothing is changed). Process-wide: call before the first CUDA computation."""
    if device.type != "cuda":
        return None
    flags = chosen_flags()
    if flags.deterministic:
        # Read by cuBLAS when it creates its handle, at the process's first matrix product.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        # The kernels without a deterministic version are named in the module docstring; a
        # warning per kernel would repeat that on every run.
        warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation")
    torch.backends.cudnn.benchmark = flags.benchmark
    torch.backends.cudnn.deterministic = flags.deterministic
    torch.use_deterministic_algorithms(flags.deterministic, warn_only=True)
    return flags
