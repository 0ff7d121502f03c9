"""One render, single or in a batch, goes one way: prepare (every check, once) → render.

What `prepare` decided travels with the job (to a worker process, or further): the render
does not probe, check or decide again.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import mediagen
import pytest
import torch
from clitools import FAST, frame_count, run

from vidstyle.batch import plan_batch, run_batch
from vidstyle.batch.pool import ProcessPool
from vidstyle.batch.run import InProcess
from vidstyle.config import RenderSettings
from vidstyle.errors import ResourceError
from vidstyle.render import memory
from vidstyle.render.job import render_job
from vidstyle.render.pipeline import stylize_video
from vidstyle.render.threads import render_threads

SETTINGS = RenderSettings(
    features="random", size=48, first_iterations=2, iterations=1, encoder_preset="ultrafast"
)


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every video probed from now on, whoever probes it."""
    module = sys.modules["vidstyle.media.probe"]
    seen: list[Path] = []
    frame_rate = module._frame_rate

    def counted(stream: object, path: Path) -> object:
        seen.append(Path(path))
        return frame_rate(stream, path)

    monkeypatch.setattr(module, "_frame_rate", counted)
    return seen


def test_each_input_is_probed_once_however_many_styles_render_it(
    tmp_path: Path, probes: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        mediagen.make_video(tmp_path / f"{name}.mp4", frames=3, audio=False)
        mediagen.make_image(tmp_path / f"{name}.png", (48, 48), seed=len(name))
    inputs, styles = [tmp_path / "a.mp4", tmp_path / "b.mp4"], ["-s", tmp_path / "a.png"]
    code = run([*inputs, *styles, "-s", tmp_path / "b.png", "-o", tmp_path / "out", "-q", *FAST])
    assert code == 0
    assert len(capsys.readouterr().out.split()) == 4  # two inputs in two styles
    assert sorted(path.name for path in probes) == ["a.mp4", "b.mp4"]


def test_a_planned_job_is_small_and_renders_elsewhere_without_planning_again(
    tmp_path: Path, probes: list[Path]
) -> None:
    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=3, audio=False)
    style = mediagen.make_image(tmp_path / "style.png", (48, 48))
    plan = plan_batch([clip], [style], SETTINGS, output=tmp_path / "out")
    assert probes == [clip]
    # What a worker process (or another machine) receives: a few kB, no open file or network.
    data = pickle.dumps(plan.jobs[0])
    assert len(data) < 8_000 and b"torch" not in data

    events: list[object] = []
    job = pickle.loads(data)
    result = render_job(job.plan, "cpu", job=job.number, emit=events.append)
    assert result.status == "rendered" and result.frames == 3
    assert frame_count(tmp_path / "out" / "clip.style.mp4") == 3
    assert probes == [clip]  # the render used the plan's probe
    assert [type(event).__name__ for event in events][:2] == ["Started", "Iteration"]
    assert sum(getattr(event, "frames", 0) for event in events) == 3
    assert pickle.loads(pickle.dumps(result.portable())).status == "rendered"


def test_a_stale_or_existing_output_is_decided_without_probing(
    tmp_path: Path, probes: list[Path]
) -> None:
    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=3, audio=False)
    style = mediagen.make_image(tmp_path / "style.png", (48, 48))
    first = plan_batch([clip], [style], SETTINGS, output=tmp_path)
    assert run_batch(first).count("rendered") == 1
    probes.clear()
    again = plan_batch([clip], [style], SETTINGS.replace(size=32), output=tmp_path)
    assert again.jobs[0].action == "skip" and again.jobs[0].stale == ("--size 48 (now 32)",)
    output = tmp_path / "clip.style.mp4"
    assert stylize_video(clip, [style], SETTINGS, output=output).status == "skipped"
    assert probes == []  # re-running a finished command looks at what is left to do


def test_workers_on_one_device_each_fit_in_a_share_of_its_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpu = torch.device("cpu")
    needed = memory.estimate_bytes((48, 36), cpu, mode="quality")
    # Free memory for one such render (with the 10% headroom), not for two.
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(needed / 0.9 * 1.5))
    monkeypatch.setattr(memory, "total_bytes", lambda device: int(needed / 0.9 * 1.5))
    clip = tmp_path / "clip.mp4"
    memory.check_fits((64, 48), (48, 36), cpu, clip, mode="quality")  # alone: it fits
    with pytest.raises(ResourceError, match=r"clip\.mp4: .*shared by 2 parallel renders"):
        memory.check_fits((64, 48), (48, 36), cpu, clip, mode="quality", sharing=2)
    # The pool shares each device between the workers it puts on it.
    assert ProcessPool(["cpu"], 2).sharing == {"cpu": 2}
    assert ProcessPool(["cuda:0", "cuda:1"], 3).sharing == {"cuda:0": 2, "cuda:1": 1}


def test_every_executor_takes_its_thread_count_from_one_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pixels of a CPU render depend on its thread count: --threads, where given, is what
    # every render uses, alone, in a worker process or as a cluster task.
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert render_threads(3, renders=4) == 3
    assert InProcess("cpu", 3).threads == 3 and ProcessPool(["cpu"], 2, 3).threads == 3
    # Without it, renders side by side share the cores; one alone keeps torch's own count.
    assert ProcessPool(["cpu"], 3).threads == 2 and ProcessPool(["cpu"], 16).threads == 1
    assert InProcess("cpu").threads is None
    # A cluster task uses the CPUs it asks Ray for.
    assert render_threads(None, cpus=6) == 6


def test_a_dry_run_makes_the_checks_a_render_makes_before_its_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from vidstyle.media import output as media_output

    clip = mediagen.make_video(tmp_path / "clip.mp4", frames=3, audio=False)
    style = mediagen.make_image(tmp_path / "style.png", (48, 48))
    out = tmp_path / "out"
    out.mkdir()
    real = media_output.tempfile.NamedTemporaryFile

    def refuse(*args: object, **kwargs: object) -> object:
        # A read-only folder (chmod does not stop root, who runs CI containers).
        if Path(str(kwargs.get("dir", ""))) == out:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(media_output.tempfile, "NamedTemporaryFile", refuse)
    assert run([clip, "-s", style, "-o", out, "--dry-run", *FAST]) == 1
    err = capsys.readouterr().err
    assert "permission denied" in err.lower() and str(out) in err
    assert run([clip, "-s", style, "-o", tmp_path / "x.mp4", "--codec", "nope", "--dry-run"]) == 2
    assert "codec 'nope' is not available" in capsys.readouterr().err
    assert list(out.iterdir()) == [] and not (tmp_path / "x.mp4").exists()


def test_a_missing_input_is_named_whatever_its_output(tmp_path: Path) -> None:
    from vidstyle.errors import InputError

    style = mediagen.make_image(tmp_path / "style.png", (48, 48))
    (tmp_path / "gone.style.mp4").write_bytes(b"an earlier render")
    for missing in (tmp_path / "gone.mp4", tmp_path / "no" / "such" / "clip.mp4"):
        with pytest.raises(InputError, match=f"{missing}: file not found"):
            stylize_video(missing, [style], SETTINGS)
