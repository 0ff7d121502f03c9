"""Renders on a real Ray cluster: a head started on 127.0.0.1 with two CPU slots (two worker
processes at once), the same batch rendered there and here, a worker killed mid-render."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mediagen
import numpy as np
import pytest
from clitools import FAST, decoded, run
from raycluster import local_head

from vidstyle.batch.cluster import check_shared_paths
from vidstyle.errors import InputError, OutputError

# A task renders with one thread unless --threads says otherwise; the renders here that are
# compared with a task's use one too (quality mode's pixels depend on the thread count).
ONE_THREAD = ["--threads", "1"]
NEEDS_RAY = "the cluster tests need the extra: pip install -e '.[ray]'"


# The tests that use it are marked slow: a real Ray head (whose workers some of them kill) takes
# tens of seconds, too long for the quick set (`-m "not slow"`).
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a Ray head on 127.0.0.1 with 2 CPUs, for this module's tests."""
    pytest.importorskip("ray", reason=NEEDS_RAY)
    with local_head(2, tmp_path_factory.mktemp("ray") / "head.log") as address:
        yield address


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, style_image: Path) -> Path:
    root = tmp_path_factory.mktemp("clips")
    (root / "in").mkdir()
    for seed, name in enumerate(("a.mp4", "b.mp4", "c.mkv")):
        mediagen.make_video(root / "in" / name, frames=3, seed=seed, audio=name != "c.mkv")
    shutil.copy(style_image, root / "style.png")
    return root


def same_frames(a: Path, b: Path) -> None:
    frames_a, frames_b = decoded(a), decoded(b)
    assert len(frames_a) == len(frames_b)
    for x, y in zip(frames_a, frames_b, strict=True):
        assert np.array_equal(x, y)
    assert mediagen.read_audio_packets(a) == mediagen.read_audio_packets(b)


@pytest.mark.slow
def test_a_batch_on_the_cluster_gives_the_files_a_local_batch_gives(
    cluster: str, clips: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [clips / "in", "-s", clips / "style.png", *FAST, *ONE_THREAD, "-q"]
    assert run([*args, "-o", clips / "here"]) == 0
    capsys.readouterr()
    assert run([*args, "-o", clips / "there", "--cluster", cluster]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.name for p in (clips / "here").iterdir())
    assert names == ["a.style.mp4", "b.style.mp4", "c.style.mp4"]
    assert sorted(Path(p).name for p in printed) == names  # each output's path, as locally
    for name in names:
        same_frames(clips / "here" / name, clips / "there" / name)
    assert not list((clips / "there").glob(".*"))  # no work folders left


@pytest.mark.slow
def test_a_failed_input_fails_its_job_and_the_exit_code_says_so(
    cluster: str, clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(clips / "in" / "a.mp4", tmp_path / "in" / "good.mp4")
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video at all")
    code = run(
        [tmp_path / "in", "-s", clips / "style.png", *FAST, *ONE_THREAD, "-o", tmp_path / "out"]
        + ["--cluster", cluster]
    )
    assert code == 1
    assert (tmp_path / "out" / "good.style.mp4").is_file()
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "Traceback" not in err


def _render_task_pids() -> list[int]:
    """Ray worker processes running a render task (Ray titles them after the function)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "cmdline").read_bytes().startswith(b"ray::_render_task"):
                    pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker in /proc")
@pytest.mark.slow
def test_a_killed_worker_is_retried_and_resumes_to_the_same_file(
    cluster: str, clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = mediagen.make_video(tmp_path / "long.mp4", frames=12, seed=5)
    args = [clip, "-s", clips / "style.png", *FAST, *ONE_THREAD, "--segment-frames", "2"]
    args += ["--first-iterations", "40", "--iterations", "10", "--stop-tolerance", "0"]
    assert run([*args, "-o", tmp_path / "here.mp4"]) == 0

    out = tmp_path / "there.mp4"
    state = tmp_path / f".{out.name}.vidstyle-work" / "state.json"
    killed: list[int] = []

    def kill_once_a_segment_is_saved() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _render_task_pids()
            if state.exists() and pids:
                os.kill(pids[0], signal.SIGKILL)  # as the OOM killer would
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_a_segment_is_saved)
    killer.start()
    capsys.readouterr()
    code = run([*args, "-o", out, "--cluster", cluster])
    killer.join()
    assert killed, "no render task was seen to kill"
    assert code == 0
    printed = capsys.readouterr()
    assert "the Ray worker rendering it was lost" in printed.err
    # The retry found the segments saved before the kill and went on after them.
    assert "resuming after frame" in printed.err
    assert printed.out.split() == [str(out)]  # stdout: the output's path, nothing of Ray's
    same_frames(tmp_path / "here.mp4", out)


def test_without_ray_installed_cluster_is_a_one_line_error(
    clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    out = tmp_path / "out.mp4"
    code = run(
        [
            clips / "in" / "a.mp4",
            "-s",
            clips / "style.png",
            *FAST,
            *ONE_THREAD,
            "-o",
            out,
            "--cluster",
            "auto",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "error: --cluster needs Ray on this machine and every node: pip install 'vidstyle[ray]'"
    )
    assert not list(tmp_path.iterdir())


def test_a_node_that_cannot_see_a_file_says_which_and_why(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file system every node mounts"):
        check_shared_paths([tmp_path / "missing.mp4"], tmp_path / "out.mp4", "10.0.0.7")
    (tmp_path / "in.mp4").write_bytes(b"")
    (tmp_path / "a-file").write_bytes(b"")  # where the output's folder should be
    with pytest.raises(OutputError, match="10.0.0.7"):
        check_shared_paths([tmp_path / "in.mp4"], tmp_path / "a-file" / "out.mp4", "10.0.0.7")


@pytest.mark.slow
def test_a_video_split_at_its_shots_on_the_cluster_is_the_file_a_whole_render_writes(
    cluster: str, style_image: Path, tmp_path: Path
) -> None:
    clip = mediagen.make_video(tmp_path / "cuts.mp4", frames=9, motion="cuts")
    args = [clip, "-s", style_image, *FAST, *ONE_THREAD, "--segment-frames", "2", "-q"]
    assert run([*args, "-o", tmp_path / "whole.mp4"]) == 0
    split = tmp_path / "split.mp4"
    assert run([*args, "-o", split, "--split", "shots", "--cluster", cluster]) == 0
    assert split.read_bytes() == (tmp_path / "whole.mp4").read_bytes()


@pytest.mark.slow
def test_ctrl_c_cancels_the_cluster_tasks_and_the_same_command_resumes(
    cluster: str, style_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = mediagen.make_video(tmp_path / "long.mp4", frames=12, seed=3)
    args = [clip, "-s", style_image, *FAST, *ONE_THREAD, "--segment-frames", "2"]
    args += ["--first-iterations", "40", "--iterations", "10", "--stop-tolerance", "0"]
    assert run([*args, "-o", tmp_path / "here.mp4", "-q"]) == 0

    out = tmp_path / "there.mp4"
    state = tmp_path / f".{out.name}.vidstyle-work" / "state.json"
    command = [sys.executable, "-m", "vidstyle", *map(str, args), "-o", str(out)]
    driver = subprocess.Popen([*command, "--cluster", cluster], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not state.exists() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)  # as Ctrl-C in the terminal
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and state.exists()
    assert not _render_task_pids()  # the task was cancelled, not left running

    capsys.readouterr()
    assert run([*args, "-o", out, "--cluster", cluster]) == 0
    assert "resuming after frame" in capsys.readouterr().err
    same_frames(tmp_path / "here.mp4", out)
