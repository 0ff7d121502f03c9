"""The pictures do not change by accident: a few fixed renders give the frames committed under
tests/data/reference/ (made by `python tests/make_reference_renders.py`; see tests/data/README.md).

Byte for byte on a machine whose CPU kernels are those the references were made with
(`machine.json`). The last bits of the pixels depend on the CPU's kernels (oneDNN's and ATen's
code for each instruction set), which quality mode's optimiser amplifies: measured here, SSE4.1
kernels instead of AVX-512 ones moved a quality-mode frame by at most 7 levels, 0.48 on average.
On another machine each frame must stay within TOLERANCE of the reference instead, which one
more optimiser iteration per frame (a change a user would see) already exceeds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from make_reference_renders import REFERENCE, RENDERS, machine, read_strip

SCRIPT = Path(__file__).with_name("make_reference_renders.py")

# Per frame, where the machine differs from the reference's: the mean absolute difference in
# levels (of 255), and the share of values more than 2 levels off.
TOLERANCE = {"mean": 0.75, "share_off_by_3": 0.10}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference settings rendered now, in a fresh process as a user's command is (nothing
    a test before it did to torch's threads or caches can reach it)."""
    folder = tmp_path_factory.mktemp("reference-renders")
    subprocess.run(
        [sys.executable, str(SCRIPT), str(folder)],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    return folder


def same_kernels() -> bool:
    """Whether this machine has the CPU kernels (and libraries) the references were made with."""
    recorded = json.loads((REFERENCE / "machine.json").read_text())["machine"]
    return recorded == machine()


@pytest.mark.parametrize("name", list(RENDERS))
def test_fixed_settings_render_the_reference_frames(rendered: Path, name: str) -> None:
    counts = json.loads((REFERENCE / "machine.json").read_text())["frames"]
    expected = read_strip(REFERENCE / f"{name}.png", counts[name])
    actual = read_strip(rendered / f"{name}.png", counts[name])
    assert [f.shape for f in actual] == [f.shape for f in expected]
    if same_kernels():
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert got.tobytes() == want.tobytes(), f"{name} frame {index} differs"
        return
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        off = np.abs(got.astype(np.int16) - want.astype(np.int16))
        assert off.mean() <= TOLERANCE["mean"], f"{name} frame {index}: {off.mean():.2f} levels"
        assert (off > 2).mean() <= TOLERANCE["share_off_by_3"], f"{name} frame {index}"
