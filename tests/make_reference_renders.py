"""Render a few fixed settings and write their decoded frames as PNG strips.

    python tests/make_reference_renders.py             # refresh tests/data/reference/
    python tests/make_reference_renders.py OUT_FOLDER  # render elsewhere (what the test does)

`tests/test_reference_renders.py` runs this script in a fresh process and compares the frames
it decodes with the strips committed under tests/data/reference/, byte for byte where the
machine's CPU kernels are those the strips were made with (`machine.json`). Refresh the strips
only when a change of the pictures is intended, and say why in the commit.

Every render is pinned to what decides the last bits on a CPU: one thread, fp32, the CPU
device, seed 0. The inputs are made here from numbers (no files read), so nothing but vidstyle,
its libraries and the CPU decides the pictures.
"""

from __future__ import annotations

import json
import platform
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import mediagen  # noqa: E402
from test_fast import seeded_net  # noqa: E402

from vidstyle.cli import main  # noqa: E402
from vidstyle.nets.models import save_model  # noqa: E402

REFERENCE = HERE / "data" / "reference"

# What decides the last bits of the pixels on a CPU, fixed; the encoder's speed preset kept
# quick. Audio is left out: it is copied, not rendered.
PINNED = ["--device", "cpu", "--threads", "1", "--precision", "fp32", "--seed", "0", "-q"]
ENCODE = ["--encoder-preset", "ultrafast", "--no-audio"]

# name -> the command's arguments after the input; {in}, {style}, {model} filled in by render().
RENDERS: dict[str, list[str]] = {
    # Quality mode, the defaults otherwise (warped warm start, temporal loss, smoothing) on
    # random VGG features, 3 frames of a pan.
    "quality": [
        "{in}",
        "-s",
        "{style}",
        "--features",
        "random",
        "--size",
        "48",
        "--first-iterations",
        "4",
        "--iterations",
        "2",
        *ENCODE,
    ],
    # Fast mode: a seeded network the script writes, with smoothing.
    "fast": ["{in}", "--model", "{model}", "--size", "48", "--smooth", "0.5", *ENCODE],
    # A still image in quality mode.
    "still": [
        "{photo}",
        "-s",
        "{style}",
        "--features",
        "random",
        "--size",
        "40",
        "--first-iterations",
        "4",
    ],
}
OUTPUT_SUFFIX = {"quality": ".mp4", "fast": ".mp4", "still": ".png"}


def make_inputs(folder: Path) -> dict[str, Path]:
    """The clip (3 frames, 64×48, panning), a photo, a style image and a model file."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "seeded.pth"
    save_model(model, seeded_net(), style="seeded", training={})
    return {
        "in": mediagen.make_video(folder / "clip.mp4", frames=3, fps=Fraction(24), audio=False),
        "photo": mediagen.make_image(folder / "photo.png", (64, 48), seed=3),
        "style": mediagen.make_image(folder / "style.png", (64, 64)),
        "model": model,
    }


def render(name: str, inputs: dict[str, Path], out: Path) -> None:
    args = [a.format(**{k: str(v) for k, v in inputs.items()}) for a in RENDERS[name]]
    try:
        main([*args, *PINNED, "-o", str(out)])
    except SystemExit as exited:
        if exited.code:
            raise RuntimeError(f"render {name!r} exited with {exited.code}") from None


def frames_of(path: Path) -> list[np.ndarray]:
    """The decoded frames of a video, or the pixels of an image, as RGB uint8 arrays."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            return [np.asarray(image.convert("RGB"))]
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def strip(frames: list[np.ndarray]) -> np.ndarray:
    """Frames side by side, one image."""
    return np.concatenate(frames, axis=1)


def read_strip(path: Path, count: int) -> list[np.ndarray]:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return np.split(pixels, count, axis=1)


def machine() -> dict[str, str]:
    """What the CPU kernels and the codecs depend on, recorded beside the strips."""
    return {
        "cpu": _cpu_model(),
        "cpu_flags": " ".join(_cpu_flags()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "av": av.__version__,
        "ffmpeg": ".".join(map(str, av.library_versions["libavcodec"])),
    }


# The instruction sets oneDNN and ATen choose their kernels by.
_KERNEL_FLAGS = ("sse4_1", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in _KERNEL_FLAGS if flag in present]
    return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def render_all(folder: Path) -> dict[str, list[np.ndarray]]:
    """Render every setting into `folder`; write each one's frames there as `<name>.png` (a
    strip) and the machine as `machine.json`."""
    inputs = make_inputs(folder / "inputs")
    results = {}
    for name in RENDERS:
        out = folder / f"{name}{OUTPUT_SUFFIX[name]}"
        render(name, inputs, out)
        results[name] = frames_of(out)
        Image.fromarray(strip(results[name])).save(folder / f"{name}.png")
    counts = {name: len(frames) for name, frames in results.items()}
    (folder / "machine.json").write_text(
        json.dumps({"machine": machine(), "frames": counts}, indent=2) + "\n"
    )
    return results


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE
    if target == REFERENCE:
        # Keep only what the test reads: the strips and the machine.
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            render_all(Path(scratch))
            REFERENCE.mkdir(parents=True, exist_ok=True)
            for name in [*RENDERS, "machine"]:
                suffix = ".json" if name == "machine" else ".png"
                shutil.copy(Path(scratch) / f"{name}{suffix}", REFERENCE / f"{name}{suffix}")
        print(f"wrote {REFERENCE}")
    else:
        render_all(target)
