"""Choosing the compute device (`auto` takes CUDA when present, else the CPU) and the
precision networks run in on it (`auto` on a CPU: bf16 where a measurement of the actual
network at the actual size found it pays, cached; on CUDA: fp16 or native bf16)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from vidstyle.errors import ConfigError

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------ precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# `auto` takes bf16 on a CPU only where it measured at least this much faster than float32:
# below it, the last bits of the picture are not worth the gain (and timing noise on a loaded
# machine could flip a choice that is really a tie).
MIN_SPEEDUP = 1.2
# Timed passes per precision, alternating (after one warm-up pass each); the best of them is
# compared, which other work on a loaded machine can only slow down, never speed up. Three were
# once outvoted by a burst of load on a busy 2-core machine (bf16 measured 6x slower); five
# spread the passes over long enough that each precision gets a quiet moment.
_TIMED_PASSES = 5
CACHE_ENV = "VIDSTYLE_CACHE"
_CACHE_FILE = "precision.json"


@dataclass(frozen=True)
class Precision:
    """The precision a network runs in and why: recorded in logs and in the output."""

    name: str  # "fp32" | "bf16" | "fp16"
    reason: str  # in words: "asked for", "auto: measured 1.86x faster than fp32 here", ...

    @property
    def dtype(self) -> torch.dtype | None:
        """The reduced dtype, or None for float32 throughout."""
        return _DTYPES[self.name]

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


FP32 = Precision("fp32", "asked for")

# One timed pass of a network in a dtype (None: float32), in seconds.
Timer = Callable[[torch.dtype | None], float]


def vidstyle_cache_dir() -> Path:
    """vidstyle's cache folder: `$VIDSTYLE_CACHE`, else `$XDG_CACHE_HOME/vidstyle` (default
    `~/.cache/vidstyle`)."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vidstyle"


def describe_auto_precision() -> str:
    """What `--precision auto` chooses on the device `auto` picks, in words (`--version`)."""
    if torch.cuda.is_available():
        device = torch.device("cuda", 0)  # what `--device auto` takes
        try:
            native = "with" if cuda_has_native_bf16(device) else "without"
        except (RuntimeError, AssertionError, AttributeError):  # a driver that cannot say
            return f"{device}: fp16 (its bf16 support could not be read)"
        return (
            f"{device} {native} native bf16: fp16 for fast mode, "
            f"{'bf16' if native == 'with' else 'fp16'} for quality mode and training"
        )
    measured = cached_choices()
    if not measured:
        return (
            f"cpu: bf16 where a measurement of the network at the frame size finds it "
            f">= {MIN_SPEEDUP}x faster than fp32 (none cached yet in {vidstyle_cache_dir()})"
        )
    return "cpu, measured here (cached):\n  " + "\n  ".join(measured)


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (`lscpu`'s), else the platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether the CUDA device in use runs bf16 in hardware (compute capability 8.0, Ampere,
    and later): torch's `is_bf16_supported()` asks about the current device, not this one, and
    counts emulation, which is slower than fp16 or fp32."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index) >= (8, 0)


def cpu_runs_bf16() -> bool:
    """Whether torch can run a bf16 convolution and its backward on this CPU at all (a tiny
    one is tried; any torch build with oneDNN can, fast or not)."""
    try:
        x = torch.ones(1, 2, 4, 4, dtype=torch.bfloat16, requires_grad=True)
        w = torch.ones(2, 2, 3, 3, dtype=torch.bfloat16)
        torch.nn.functional.conv2d(x, w, padding=1).sum().backward()
    except RuntimeError:
        return False
    return x.grad is not None


def choose_precision(
    requested: str,
    device: torch.device,
    *,
    workload: str,
    timer: Timer | None,
    cuda_auto: str = "bf16",
) -> Precision:
    """The precision a network runs in on `device`, for the user's `requested` one.

    `workload` names the network, its size and what runs (the measurement's cache key, with
    the CPU model, torch version and thread count); `timer` times one pass of it, used by
    `auto` on a CPU when there is no cached result. `cuda_auto`: what `auto` takes on a GPU with
    native bf16 (`fp16` for inference, where its longer mantissa is free; `bf16` where
    gradients flow, which fp16's range could underflow); GPUs without it get fp16.
    Raises ConfigError for a precision the device cannot run.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision '{requested}'; use {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        native_bf16 = cuda_has_native_bf16(device)
        if requested == "bf16" and not native_bf16:
            raise ConfigError(
                f"{device} has no native bf16 (compute capability 8.0 or later); use "
                "--precision fp16, fp32 or auto"
            )
        if requested != "auto":
            return Precision(requested, "asked for")
        if native_bf16 and cuda_auto == "bf16":
            return Precision("bf16", "auto: CUDA, native bf16")
        return Precision("fp16", "auto: CUDA" + ("" if native_bf16 else ", no native bf16"))
    if requested == "fp16":
        raise ConfigError("precision fp16 needs a CUDA device; use fp32, bf16 or auto")
    if requested == "bf16":
        if not cpu_runs_bf16():
            raise ConfigError("this torch build cannot run bf16 on this CPU; use fp32 or auto")
        return Precision("bf16", "asked for")
    if requested == "fp32":
        return FP32
    if timer is None or not cpu_runs_bf16():
        return Precision("fp32", "auto: bf16 not measured here")
    speedup, cached = measured_speedup(workload, timer)
    where = "cached measurement" if cached else "measured now"
    if speedup >= MIN_SPEEDUP:
        return Precision("bf16", f"auto: {speedup:.2f}x faster than fp32 here, {where}")
    return Precision(
        "fp32", f"auto: bf16 only {speedup:.2f}x faster here (< {MIN_SPEEDUP}x), {where}"
    )


def measurement_key(workload: str) -> str:
    """What a CPU measurement depends on: the CPU, torch, the threads and the workload."""
    return (
        f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{workload}"
    )


def measured_speedup(workload: str, timer: Timer) -> tuple[float, bool]:
    """fp32 time / bf16 time of `workload` on this CPU, and whether it came from the cache.

    Measured once (one warm-up pass and `_TIMED_PASSES` timed ones per precision,
    alternating, best of each) and cached in `vidstyle_cache_dir()/precision.json`.
    """
    key = measurement_key(workload)
    path = vidstyle_cache_dir() / _CACHE_FILE
    # One measurement per machine at a time: the workers of a batch (or the shots of a split
    # render) start together, and each must take the first one's result, not a second
    # measurement that noise could tip the other way.
    with _cache_lock(path):
        cache = _read_cache(path)
        entry = cache.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("speedup"), int | float):
            return float(entry["speedup"]), True
        speedup, fp32, bf16 = _measure(timer)
        cache[key] = {"speedup": round(speedup, 3), "fp32_s": fp32, "bf16_s": bf16}
        _write_cache(path, cache)
    log.info(
        "Precision: bf16 %.2fx the speed of fp32 for %s (best of %d: %.3f vs %.3f s); cached in %s",
        speedup,
        workload,
        _TIMED_PASSES,
        fp32,
        bf16,
        path,
    )
    return speedup, False


def _measure(timer: Timer) -> tuple[float, float, float]:
    """(fp32 time / bf16 time, fp32 time, bf16 time), best of `_TIMED_PASSES` each."""
    timer(None)
    timer(torch.bfloat16)
    fp32: list[float] = []
    bf16: list[float] = []
    for _ in range(_TIMED_PASSES):
        fp32.append(timer(None))
        bf16.append(timer(torch.bfloat16))
    return min(fp32) / max(min(bf16), 1e-9), min(fp32), min(bf16)


@contextlib.contextmanager
def _cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`'s folder (where the OS has `fcntl`; else none, and two
    processes may both measure)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = (path.parent / f".{path.name}.lock").open("a")
    except OSError:  # a read-only cache: nothing is written, so nothing to guard
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_choices() -> list[str]:
    """This CPU's cached measurements under this torch, as `workload: bf16 N.NNx` lines."""
    prefix = f"{cpu_model()} | torch {torch.__version__} | "
    lines = []
    for key, entry in sorted(_read_cache(vidstyle_cache_dir() / _CACHE_FILE).items()):
        if key.startswith(prefix) and isinstance(entry, dict) and "speedup" in entry:
            speedup = float(entry["speedup"])
            choice = "bf16" if speedup >= MIN_SPEEDUP else "fp32"
            lines.append(f"{key.removeprefix(prefix)}: {choice} (bf16 {speedup:.2f}x fp32)")
    return lines


def _read_cache(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measured again and rewritten
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, cache: dict[str, object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError as exc:  # a read-only cache only means measuring again next time
        log.debug("Could not write %s: %s", path, exc)


def time_pass(run: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of `run()` on `device` (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to `threads` (None: left as it is) while the block runs."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
