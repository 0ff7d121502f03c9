"""Choosing the compute device: `auto` takes CUDA when present, else the CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from vidstyle.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """Map `auto|cpu|cuda|cuda:N` to a device; fail clearly if CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{name}' asked for, but CUDA is not available; use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{name}' does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise ConfigError(f"device '{name}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


def describe_auto_device() -> str:
    """The device `auto` picks, in words: `cuda:0 (NAME, 80 GiB; 2 CUDA devices)` or `cpu (...)`."""
    if not torch.cuda.is_available():
        return f"cpu (no CUDA device; {torch.get_num_threads()} threads)"
    props = torch.cuda.get_device_properties(0)
    count = torch.cuda.device_count()
    memory = round(props.total_memory / 2**30)
    devices = f"{count} CUDA device{'s' if count != 1 else ''}"
    return f"cuda:0 ({props.name}, {memory} GiB; {devices})"


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX bf16 tiles (Sapphire Rapids and later), per the kernel's flags.

    oneDNN runs bf16 convolutions on AMX several times faster than fp32 ones; on CPUs without
    it bf16 is emulated or uses AVX-512 only, and has not been measured to pay off.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False  # not Linux: no way to tell without private torch APIs; stay in fp32
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return "amx_bf16" in flags.split()
