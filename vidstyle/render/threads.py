"""torch's CPU thread count for a render: one rule, whichever executor runs the render.

On a CPU the last bits of a render's pixels depend on the thread count (a sum split over more
threads adds in another order, and quality mode's optimiser amplifies the difference), so
`--threads`, where given, is what every render uses, alone, in a worker process or in a Ray
task: the same `--threads` gives the same video however the work is split. Training takes its
`--threads` as given (`vidstyle.device.torch_threads` applies either).
"""

from __future__ import annotations

import os


def render_threads(
    requested: int | None, *, renders: int = 1, cpus: int | None = None
) -> int | None:
    """The CPU threads of each of `renders` renders running side by side on `cpus` CPUs
    (None: this machine's): `requested` (`--threads`) where given; else an equal share of the
    CPUs (at least 1); else, for one render with the whole machine, None: torch's own default
    (one thread per core), left as it is."""
    if requested is not None:
        return requested
    if renders <= 1 and cpus is None:
        return None
    return max(1, (cpus if cpus is not None else os.cpu_count() or 1) // max(1, renders))
