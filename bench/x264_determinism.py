"""Benchmark: does x264 write the same bytes for the same frames, and at what speed, with the
instruction sets it detects and with vidstyle's (the same less AVX-512)?

Encodes tests/data/x264_frames.png's three frames `--runs` times each way and counts the
distinct outputs (1 means deterministic), then times 60 frames of 1280x720 each way and reports
the file sizes. On a CPU without AVX-512 both ways are the same encoder.

    python bench/x264_determinism.py --runs 40

Prints a Markdown table and writes bench/results/x264_determinism.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidstyle.device import cpu_model  # noqa: E402
from vidstyle.media import VideoInfo, VideoWriter, codecs  # noqa: E402
from vidstyle.media.x264_asm import x264_asm_option, x264_instruction_sets  # noqa: E402

FRAMES = ROOT / "tests" / "data" / "x264_frames.png"
TIME_BASE = Fraction(1, 12288)
FRAME_TICKS = 512  # one frame at 24 fps in TIME_BASE


def encode(images: list[np.ndarray], asm: str | None, folder: Path) -> bytes:
    """The frames through vidstyle's VideoWriter (its colour conversion, options and muxing),
    with x264's `asm` option set to `asm` (None: x264 chooses)."""
    height, width = images[0].shape[:2]
    source = VideoInfo(
        path=folder / "source.mp4",
        width=width,
        height=height,
        fps=Fraction(24),
        time_base=TIME_BASE,
        frame_count=len(images),
        duration=len(images) / 24,
        rotation=0,
        codec="h264",
        audio=(),
    )
    codecs.x264_asm_option = lambda: asm
    path = folder / "out.mp4"
    with VideoWriter(path, source, (width, height), audio=False) as writer:
        for index, image in enumerate(images):
            writer.write(image, index * FRAME_TICKS)
    return path.read_bytes()


def hd_frames(count: int = 60) -> list[np.ndarray]:
    """Blocky noise panning 3 px a frame: motion x264 has to search and a lookahead to plan."""
    rng = np.random.default_rng(0)
    blocks = (rng.random((720 // 8, 1280 // 8, 3)) * 255).astype(np.uint8)
    base = blocks.repeat(8, axis=0).repeat(8, axis=1)
    return [np.ascontiguousarray(np.roll(base, 3 * i, axis=1)) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="encodes of the test frames per way")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/x264_determinism.json")
    args = parser.parse_args()

    strip = np.asarray(Image.open(FRAMES).convert("RGB"))
    small = [np.ascontiguousarray(part) for part in np.split(strip, 3, axis=1)]
    hd = hd_frames()
    ways = {"x264's own choice": None, "vidstyle's (less AVX-512)": x264_asm_option()}
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="x264-"))
    for name, asm in ways.items():
        outputs = (encode(small, asm, folder) for _ in range(args.runs))
        distinct = {hashlib.md5(output).hexdigest() for output in outputs}
        started = time.perf_counter()
        size = len(encode(hd, asm, folder))
        seconds = time.perf_counter() - started
        rows.append(
            {
                "way": name,
                "asm": asm or "auto",
                "distinct": len(distinct),
                "seconds": seconds,
                "bytes": size,
            }
        )
    print(f"CPU: {cpu_model()}; load {os.getloadavg()[0]:.1f}")
    print(f"x264 detects: {' '.join(x264_instruction_sets()) or 'unknown'}\n")
    print(f"| instruction sets | distinct outputs of {args.runs} encodes | 60 frames 720p | size |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['way']} | {row['distinct']} | {row['seconds']:.2f} s | {row['bytes']:,} B |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"cpu": cpu_model(), "detected": list(x264_instruction_sets()), "rows": rows}
    args.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
