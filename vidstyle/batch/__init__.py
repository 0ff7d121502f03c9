"""Many renders: which files, to which outputs, run where.

- `plan`: discovery of the inputs and the output names (`plan_batch`, the dry-run table);
- `run`: `run_batch`, the batch's summary, and the in-process executor;
- `jobs`: a numbered planned render (`Job`), its result, and the `BatchRun` executors report to;
- `pool` and `cluster`: the executors in worker processes (`--jobs`) and on Ray (`--cluster`);
- `shots` and `split`: a video cut into independent parts rendered side by side (`--split`);
- `sheet`: one frame in many styles and settings, as one labelled grid (`vidstyle sheet`).

A render itself (`vidstyle.render`) knows nothing of batches: an executor renders a job's plan
and forwards the render's events to the batch.
"""

from vidstyle.batch.jobs import BatchSummary, Job, JobResult
from vidstyle.batch.plan import (
    BatchPlan,
    discover,
    normalise_extensions,
    output_name,
    plan_batch,
    plan_table,
    style_groups,
)
from vidstyle.batch.run import parse_devices, run_batch

__all__ = [
    "BatchPlan",
    "BatchSummary",
    "Job",
    "JobResult",
    "discover",
    "normalise_extensions",
    "output_name",
    "parse_devices",
    "plan_batch",
    "plan_table",
    "run_batch",
    "style_groups",
]
