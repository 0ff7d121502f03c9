"""Batch rendering: discovery, output planning, skip/overwrite, dry run, per-file
failures and the summary, worker processes."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path

import mediagen
import pytest
from clitools import FAST, frame_count, interrupt_after, run

from vidstyle.batch import (
    BatchPlan,
    Job,
    discover,
    normalise_extensions,
    plan_batch,
    plan_table,
    run_batch,
)
from vidstyle.batch.pool import worker_devices
from vidstyle.config import RenderSettings
from vidstyle.errors import ConfigError, InputError, WeightsError
from vidstyle.media import probe
from vidstyle.render.events import Event, Failed, Finished, RenderResult, Started
from vidstyle.render.prepare import RenderPlan

SETTINGS = RenderSettings(
    features="random", size=48, first_iterations=2, iterations=1, encoder_preset="ultrafast"
)


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """in/: two short clips (one in a subfolder), a text file; styles a.png, b.png beside."""
    root = tmp_path_factory.mktemp("library")
    (root / "in" / "trip").mkdir(parents=True)
    mediagen.make_video(root / "in" / "beach.mp4", frames=4)
    mediagen.make_video(root / "in" / "trip" / "hill.mkv", frames=3, audio=False, seed=3)
    (root / "in" / "notes.txt").write_text("not a video")
    mediagen.make_image(root / "a.png", (64, 64), seed=1)
    mediagen.make_image(root / "b.png", (64, 64), seed=2)
    return root


# ------------------------------------------------------------------------------ planning


def test_folders_are_searched_by_extension_and_mirrored_under_the_output_folder(
    library: Path, tmp_path: Path
) -> None:
    plan = plan_batch(
        [library / "in"], [library / "a.png"], SETTINGS, output=tmp_path / "out", recursive=True
    )
    assert [(job.input.name, job.output, job.action) for job in plan.jobs] == [
        ("beach.mp4", tmp_path / "out" / "beach.a.mp4", "render"),
        ("hill.mkv", tmp_path / "out" / "trip" / "hill.a.mp4", "render"),
    ]
    assert [job.frames for job in plan.jobs] == [4, 3]
    assert plan.frames_to_render == 7
    # Without -r only the folder itself is searched.
    flat = plan_batch([library / "in"], [library / "a.png"], SETTINGS, output=tmp_path / "out")
    assert [job.input.name for job in flat.jobs] == ["beach.mp4"]


def test_several_styles_render_every_input_in_every_style(library: Path, tmp_path: Path) -> None:
    plan = plan_batch(
        [library / "in"],
        [library / "a.png", library / "b.png"],
        SETTINGS,
        output=tmp_path,
        recursive=True,
    )
    assert [(job.input.stem, job.style_name) for job in plan.jobs] == [
        ("beach", "a"),
        ("beach", "b"),
        ("hill", "a"),
        ("hill", "b"),
    ]
    blended = plan_batch(
        [library / "in"],
        [library / "a.png", library / "b.png"],
        SETTINGS.replace(style_blend=(0.5, 0.5)),
        output=tmp_path,
    )
    assert [(job.style_name, job.output.name) for job in blended.jobs] == [("a+b", "beach.a+b.mp4")]


def test_name_template_fields_and_subfolders(library: Path, tmp_path: Path) -> None:
    plan = plan_batch(
        [library / "in" / "trip" / "hill.mkv"],
        [library / "a.png"],
        SETTINGS,
        output=tmp_path,
        name_template="{style}/{stem}{input_ext}",
    )
    assert plan.jobs[0].output == tmp_path / "a" / "hill.mkv"
    for bad in ("{stem}.{colour}{ext}", "{stem}.txt", "../{stem}{ext}"):
        with pytest.raises(ConfigError, match="--name"):
            plan_batch(
                [library / "in"], [library / "a.png"], SETTINGS, output=tmp_path, name_template=bad
            )


def test_o_is_a_file_for_one_input_and_one_style_and_a_folder_otherwise(
    library: Path, tmp_path: Path
) -> None:
    clip = library / "in" / "beach.mp4"
    one = plan_batch([clip], [library / "a.png"], SETTINGS, output=tmp_path / "x.mkv")
    assert one.output_dir is None and one.jobs[0].output == tmp_path / "x.mkv"
    folder = plan_batch([clip], [library / "a.png"], SETTINGS, output=tmp_path / "renders")
    assert folder.jobs[0].output == tmp_path / "renders" / "beach.a.mp4"  # no extension
    slash = plan_batch([clip], [library / "a.png"], SETTINGS, output=Path(f"{tmp_path}/r/"))
    assert slash.output_dir is not None and slash.jobs[0].output == tmp_path / "r" / "beach.a.mp4"
    two = plan_batch([clip], [library / "a.png", library / "b.png"], SETTINGS, output=tmp_path)
    assert [job.output.parent for job in two.jobs] == [tmp_path, tmp_path]
    with pytest.raises(ConfigError, match="looks like a file name"):
        plan_batch(
            [clip], [library / "a.png", library / "b.png"], SETTINGS, output=tmp_path / "both.mp4"
        )
    beside = plan_batch([clip], [library / "a.png"], SETTINGS)
    assert beside.jobs[0].output == clip.with_name("beach.a.mp4")


def test_a_folder_needs_an_output_folder(library: Path) -> None:
    with pytest.raises(ConfigError, match="needs -o OUTDIR"):
        plan_batch([library / "in"], [library / "a.png"], SETTINGS)


def test_colliding_outputs_are_a_usage_error(tmp_path: Path, library: Path) -> None:
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        shutil.copy(library / "in" / "beach.mp4", tmp_path / sub / "clip.mp4")
    with pytest.raises(ConfigError, match="would both render to"):
        plan_batch(
            [tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4"],
            [library / "a.png"],
            SETTINGS,
            output=tmp_path / "out",
        )


def test_discovery_skips_hidden_files_work_folders_and_the_output_folder(tmp_path: Path) -> None:
    (tmp_path / "styled").mkdir()
    (tmp_path / ".clip.a.mp4.vidstyle-work").mkdir()
    for name in (
        "clip.mp4",
        "CLIP2.MOV",
        ".hidden.mp4",
        "styled/clip.a.mp4",
        ".clip.a.mp4.vidstyle-work/seg-000000.mp4",
        "notes.txt",
    ):
        (tmp_path / name).write_bytes(b"x")
    found, problems = discover([tmp_path], recursive=True, exclude=tmp_path / "styled")
    assert [f.path.name for f in found] == ["CLIP2.MOV", "clip.mp4"] and problems == []
    only_mov, _ = discover([tmp_path], extensions=normalise_extensions(["MOV"]))
    assert [f.path.name for f in only_mov] == ["CLIP2.MOV"]
    assert normalise_extensions(["mp4,.mkv", "webm"]) == (".mp4", ".mkv", ".webm")


def test_existing_outputs_are_planned_as_skips_unless_overwrite(
    library: Path, tmp_path: Path
) -> None:
    (tmp_path / "beach.a.mp4").write_bytes(b"earlier render")
    args = ([library / "in" / "beach.mp4"], [library / "a.png", library / "b.png"])
    plan = plan_batch(*args, SETTINGS, output=tmp_path)
    assert [job.action for job in plan.jobs] == ["skip", "render"]
    again = plan_batch(*args, SETTINGS.replace(overwrite=True), output=tmp_path)
    assert [job.action for job in again.jobs] == ["render", "render"]


def test_dry_run_prints_the_plan_and_writes_nothing(
    library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    before = tree(library)
    code = run(
        [
            library / "in",
            library / "in" / "notes.txt",
            "-r",
            "-s",
            library / "a.png",
            "-o",
            out,
            "--dry-run",
            *FAST,
        ]
    )
    assert code == 1  # the text file will fail
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["INPUT", "OUTPUT", "FRAMES", "ACTION"]
    beach = next(line for line in lines if "beach.mp4" in line)
    assert str(out / "beach.a.mp4") in beach and beach.split()[-2:] == ["4", "render"]
    assert "fail:" in next(line for line in lines if "notes.txt" in line)
    assert lines[-1].startswith("2 to render (7 frames), 0 to skip, 1 failing")
    assert not out.exists() and tree(library) == before


# ------------------------------------------------------------------------------ running


def test_a_batch_with_one_broken_file_renders_the_others_and_exits_1(
    library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    shutil.copytree(library / "in", src)
    data = (src / "beach.mp4").read_bytes()
    (src / "broken.mp4").write_bytes(data[: len(data) // 2])  # truncated: no index (moov)
    out = tmp_path / "out"
    code = run([src, "-r", "-s", library / "a.png", "-o", out, *FAST])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.split() == [str(out / "beach.a.mp4"), str(out / "trip" / "hill.a.mp4")]
    assert frame_count(out / "beach.a.mp4") == 4 and frame_count(out / "trip" / "hill.a.mp4") == 3
    assert tree(out) == {"beach.a.mp4", "trip", "trip/hill.a.mp4"}  # nothing for broken.mp4
    failed = [line for line in captured.err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {src / 'broken.mp4'}: ")
    assert "2 rendered, 0 skipped, 1 failed" in " ".join(captured.err.split())

    # The same command again: the finished outputs are skipped, the broken file fails again.
    assert run([src, "-r", "-s", library / "a.png", "-o", out, *FAST]) == 1
    assert "0 rendered, 2 skipped, 1 failed" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_jobs_2_renders_every_file_in_worker_processes(
    library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    # Two "devices" (both the CPU) taken in turn by the two workers.
    code = run(
        [
            library / "in",
            "-r",
            "-s",
            library / "a.png",
            "-s",
            library / "b.png",
            "-o",
            out,
            "--jobs",
            "2",
            "--device",
            "cpu,cpu",
            "--max-frames",
            "2",
            *FAST,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    expected = {
        out / "beach.a.mp4",
        out / "beach.b.mp4",
        out / "trip" / "hill.a.mp4",
        out / "trip" / "hill.b.mp4",
    }
    assert {Path(line) for line in captured.out.split()} == expected
    assert all(frame_count(path) == 2 for path in expected)
    assert "4 rendered" in " ".join(captured.err.split())
    assert not any(".vidstyle" in name for name in tree(out))


def test_ctrl_c_stops_the_batch_saves_progress_and_exits_130(
    library: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    interrupt_after(monkeypatch, 5)  # beach.mp4's 4 frames, then hill.mkv's first
    out = tmp_path / "out"
    code = run(
        [library / "in", "-r", "-s", library / "a.png", "-o", out, "--segment-frames", "2", *FAST]
    )
    captured = capsys.readouterr()
    assert code == 130
    assert captured.out.split() == [str(out / "beach.a.mp4")]
    assert "run the same command to resume" in " ".join(captured.err.split())
    assert not (out / "trip" / "hill.a.mp4").exists()
    assert (out / "trip" / ".hill.a.mp4.vidstyle-work" / "state.json").exists()


class Recorder:
    """A batch's watcher that remembers which jobs started and how each ended."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished: list[RenderResult] = []

    def __call__(self, event: Event, job: Job) -> None:
        if isinstance(event, Started):
            self.started.append(job.number)
        elif isinstance(event, Finished | Failed):
            self.finished.append(event.result)


@pytest.fixture
def four_clips(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        mediagen.make_video(src / f"v{i}.mp4", frames=3, audio=False, seed=i)
    return src


def test_a_usage_error_stops_the_whole_batch(
    four_clips: Path,
    library: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Weights that do not exist fail every input the same way: planning the batch stops it
    # with one error line, before any render starts, instead of failing each input in turn.
    out = tmp_path / "out"
    bad = SETTINGS.replace(features="pretrained", vgg_weights=str(tmp_path / "nope.pth"))
    caplog.set_level(logging.INFO, logger="vidstyle")
    with pytest.raises(WeightsError, match="nope.pth"):
        plan_batch([four_clips], [library / "a.png"], bad, output=out)
    assert not [r for r in caplog.records if " → " in r.getMessage()]  # none was started

    code = run(
        [
            four_clips,
            "-s",
            library / "a.png",
            "-o",
            out,
            *FAST,
            "--features",
            "pretrained",
            "--vgg-weights",
            "nope.pth",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: nope.pth: ") and "--vgg-weights" in err[-1]
    assert not any(line.startswith("failed: ") for line in err)
    assert not list(out.rglob("*.mp4"))


@pytest.mark.slow
def test_a_worker_killed_halfway_through_a_message_fails_only_its_video_and_is_replaced(
    four_clips: Path, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing.context
    import os
    import signal

    import poolworkers

    from vidstyle.batch import pool

    # Every worker is a real one, but the first to report progress within a frame is SIGKILLed
    # (as by the OOM killer) halfway through writing that message to the parent: the worst
    # moment, with its pipe's lock held and half a message in it.
    monkeypatch.setenv(poolworkers.DIE_MARKER, str(tmp_path / "died"))
    monkeypatch.setattr(pool, "_worker_main", poolworkers.dies_mid_message)
    started = {"processes": 0}
    start = multiprocessing.context.SpawnProcess.start

    def counted(self: multiprocessing.context.SpawnProcess) -> None:
        started["processes"] += 1
        start(self)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", counted)
    # The workers' log records reach the parent's handlers: "INPUT → OUTPUT: ..." from each
    # render, carrying the pid of the worker that logged it.
    renders: dict[str, int] = {}

    class Pids(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            source, arrow, _ = record.getMessage().partition(" → ")
            if arrow:
                renders[source] = record.process or 0

    logger = logging.getLogger("vidstyle")
    handler = Pids()
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("the batch hung after a worker died")

    out = tmp_path / "out"
    plan = plan_batch([four_clips], [library / "a.png"], SETTINGS, output=out)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(600)
    try:
        summary = run_batch(plan, jobs=2, watch=Recorder())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        logger.removeHandler(handler)
    assert (tmp_path / "died").exists()
    failed = [r for r in summary.results if r.status == "failed"]
    assert len(failed) == 1 and "the worker process rendering it died" in failed[0].message
    victim = failed[0].job
    assert summary.count("rendered") == 3 and not victim.output.exists()
    assert all(frame_count(job.output) == 3 for job in plan.jobs if job is not victim)
    assert started["processes"] >= 3  # the dead worker was replaced
    assert set(renders) == {str(job.input) for job in plan.jobs}
    assert os.getpid() not in renders.values()


@pytest.mark.slow
def test_ctrl_c_stops_the_worker_processes_saves_progress_and_exits_130(
    four_clips: Path,
    library: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import os
    import signal

    from vidstyle.console import BatchProgress

    # Ctrl-C once the batch has finished a frame: the terminal's SIGINT reaches the parent
    # (the workers ignore theirs), which tells the workers to save and stop.
    report = BatchProgress.frame_done
    pressed: list[int] = []

    def advanced(self: BatchProgress, event: object, job: object) -> None:
        report(self, event, job)
        if not pressed:
            pressed.append(1)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(BatchProgress, "frame_done", advanced)
    out = tmp_path / "out"
    args = [four_clips, "-s", library / "a.png", "-o", out, "--segment-frames", "1", *FAST]
    code = run([*args, "--jobs", "2"])
    captured = capsys.readouterr()
    assert code == 130
    assert "run the same command to resume" in " ".join(captured.err.split())
    finished = [Path(line) for line in captured.out.split()]
    assert len(finished) < 4 and all(frame_count(path) == 3 for path in finished)  # 2 not started
    saved = list(out.glob(".*.vidstyle-work/state.json"))
    assert saved and not list(out.glob(".*vidstyle-part*"))

    monkeypatch.setattr(BatchProgress, "frame_done", report)
    # The same command, as the message says: with as many workers, hence threads, as before,
    # --precision auto finds its cached choice and the render resumes in the same precision.
    assert run([*args, "--jobs", "2"]) == 0
    assert "resuming after frame" in capsys.readouterr().err
    assert all(frame_count(out / f"v{i}.a.mp4") == 3 for i in range(4))


def test_run_batch_reports_in_plan_order_and_counts(tmp_path: Path) -> None:
    broken = InputError("broken", tmp_path / "a.mp4")
    done = Job(tmp_path / "b.mp4", (), tmp_path / "b.s.mp4", number=2, style_name="s")
    jobs = [
        Job(tmp_path / "a.mp4", (), tmp_path / "a.s.mp4", number=1, style_name="s", error=broken),
        replace(done, plan=RenderPlan(done, SETTINGS, tmp_path / "b.s.mp4", skip=True)),
    ]
    seen: list[Event] = []

    def watch(event: Event, job: Job) -> None:
        assert isinstance(event, Finished | Failed), "nothing to render"
        seen.append(event)

    summary = run_batch(BatchPlan(jobs, tmp_path, SETTINGS), jobs=3, watch=watch)
    assert [(r.job.number, r.status) for r in summary.results] == [(1, "failed"), (2, "skipped")]
    assert (summary.failed, summary.count("skipped"), summary.frames) == (1, 1, 0)
    assert len(seen) == 2
    assert plan_table(BatchPlan(jobs, tmp_path, SETTINGS))[-1].startswith(
        "0 to render (0 frames), 1 to skip, 1 failing"
    )


def test_device_lists_are_checked_before_any_work(library: Path, tmp_path: Path) -> None:
    settings = SETTINGS.replace(device="cpu,tpu:3")
    plan = plan_batch(
        [library / "in" / "beach.mp4"], [library / "a.png"], settings, output=tmp_path
    )
    with pytest.raises(ConfigError, match="device"):
        run_batch(plan, jobs=2)
    assert list(tmp_path.iterdir()) == []


def test_frame_estimates_follow_max_frames(library: Path, tmp_path: Path) -> None:
    clip = library / "in" / "beach.mp4"
    assert probe(clip).frame_count == 4
    plan = plan_batch([clip], [library / "a.png"], SETTINGS.replace(max_frames=2), output=tmp_path)
    assert plan.jobs[0].frames == 2


def test_one_input_into_a_new_output_folder(
    library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "renders"
    code = run(
        [
            library / "in" / "beach.mp4",
            "-s",
            library / "a.png",
            "-o",
            f"{out}/",
            "--max-frames",
            "1",
            "-q",
            *FAST,
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.split() == [str(out / "beach.a.mp4")]
    assert frame_count(out / "beach.a.mp4") == 1


def test_workers_take_the_devices_in_turn() -> None:
    assert worker_devices(["cuda:0", "cuda:1"], 4) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert worker_devices(["cuda:0", "cuda:1", "cuda:2"], 2) == ["cuda:0", "cuda:1"]
    assert worker_devices(["cpu"], 3) == ["cpu", "cpu", "cpu"]
