"""A video split at its shots (`--split shots`): rendered as parts, joined into the very file a
whole render gives; resumed per part."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mediagen
import pytest
import torch
from clitools import FAST, interrupt_after, run
from test_fast import seeded_net

from vidstyle.batch.shots import Shot, plan_chunks, plan_shots
from vidstyle.frame import FrameRecord
from vidstyle.nets.models import save_model
from vidstyle.render.workdir import work_dir_for
from vidstyle.stylize.feedforward import FeedForwardStylizer, InferenceOptions

# Segments of 3 and cuts before frames 4 and 8: a segment of a whole render would span each cut
# if the render did not start one there.
SEGMENTS = ["--segment-frames", "3"]


@pytest.fixture(scope="module")
def cuts_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames in three shots (cuts before frames 4 and 8), with sound."""
    folder = tmp_path_factory.mktemp("cuts")
    return mediagen.make_video(folder / "cuts.mp4", frames=12, motion="cuts", size=(64, 48))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "small.pth"
    save_model(path, seeded_net(), style="s.png", training={})
    return path


# The tests that render both ways are marked slow (a fresh process and two worker processes
# each); the quick set keeps a split render in this process compared byte for byte with a
# whole one (test_a_split_render_resumes_each_shot_where_it_stopped).
def render_both(args: list[object], folder: Path, verbosity: str = "-q") -> tuple[Path, Path]:
    """The same command rendered whole and split at its shots (two parts at once), with one
    CPU thread per render: the pixels depend on the thread count. The whole render runs as a
    command of its own, in a fresh process like the split render's workers: in this process,
    after other tests, fast mode's bf16 network once gave other last bits."""
    whole, split = folder / "whole.mp4", folder / "split.mp4"
    args = [*args, "--threads", "1"]
    command = [sys.executable, "-m", "vidstyle", *map(str, args), "-o", str(whole), "-q"]
    subprocess.run(command, check=True, timeout=600)
    assert run([*args, "-o", split, verbosity, "--split", "shots", "--jobs", "2"]) == 0
    return whole, split


@pytest.mark.slow
def test_quality_mode_split_at_its_shots_writes_the_file_a_whole_render_writes(
    cuts_clip: Path, style_image: Path, tmp_path: Path
) -> None:
    # Noise starts too: each shot's first frame draws the noise a whole render draws for it.
    # Enough iterations for the optimiser to amplify any difference in the last bits, which a
    # worker with another thread count than the whole render would make.
    args = [cuts_clip, "-s", style_image, *FAST, *SEGMENTS, "--first-init", "noise"]
    args += ["--first-iterations", "20", "--iterations", "8"]
    whole, split = render_both(args, tmp_path)
    assert split.read_bytes() == whole.read_bytes()  # frames, timing, audio, metadata
    assert not work_dir_for(split).exists()


@pytest.mark.slow
def test_fast_mode_with_smoothing_split_at_its_shots_is_the_same_file(
    cuts_clip: Path, model: Path, tmp_path: Path
) -> None:
    # Batches of 3 would straddle the cuts at 4 and 8 if they did not start at every shot.
    args = [
        cuts_clip,
        "--model",
        model,
        "--size",
        "48",
        "--batch-size",
        "3",
        *SEGMENTS,
        "--precision",
        "fp32",
    ]
    whole, split = render_both([*args, "--smooth", "0.5"], tmp_path)
    assert split.read_bytes() == whole.read_bytes()


@pytest.mark.slow
def test_fast_mode_without_smoothing_is_cut_at_segments_into_the_same_file(
    cuts_clip: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [cuts_clip, "--model", model, "--size", "48", "--segment-frames", "2", "--smooth", "0"]
    whole, split = render_both(args, tmp_path, "-v")
    assert split.read_bytes() == whole.read_bytes()
    # Every frame is independent: two parts for two jobs, each a multiple of the batch of 4
    # and the segments of 2, not the three shots.
    assert "2 part(s) of up to 8 frames" in capsys.readouterr().err


def test_a_split_render_resumes_each_shot_where_it_stopped(
    cuts_clip: Path,
    style_image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [cuts_clip, "-s", style_image, *FAST, *SEGMENTS]
    whole = tmp_path / "whole.mp4"
    assert run([*args, "-o", whole, "-q"]) == 0
    split = tmp_path / "split.mp4"
    interrupt_after(monkeypatch, 6)  # the first shot done, the second half-way
    assert run([*args, "-o", split, "--split", "shots"]) == 130
    monkeypatch.undo()
    assert not split.exists()
    work = work_dir_for(split)
    saved = {
        part.name: json.loads((part / "state.json").read_text())
        for part in work.iterdir()
        if part.is_dir()
    }
    assert sorted(saved) == ["shot-000000-000004", "shot-000004-000008"]
    assert [s["frames"] for s in saved["shot-000004-000008"]["segments"]] == [2]
    capsys.readouterr()

    assert run([*args, "-o", split, "--split", "shots"]) == 0
    err = capsys.readouterr().err
    assert "finding its shots" not in err  # the shots found before are reused
    assert "resuming after frame 6" in err
    assert split.read_bytes() == whole.read_bytes()


def test_a_video_without_cuts_renders_as_one_job(
    clip: Path, style_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    assert run([clip, "-s", style_image, *FAST, "-o", out, "--split", "shots", "-v"]) == 0
    err = capsys.readouterr().err
    assert "1 shot(s)" in err and "shot 1/1" not in err


def test_shots_and_parts_are_planned_from_the_cuts_and_the_frame_count() -> None:
    assert plan_shots([4, 8], 12) == [
        Shot(number=1, count=3, first=0, stop=4),
        Shot(number=2, count=3, first=4, stop=8),
        Shot(number=3, count=3, first=8, stop=12),
    ]
    assert plan_shots([0, 12, 5], 12) == [
        Shot(number=1, count=2, first=0, stop=5),
        Shot(number=2, count=2, first=5, stop=12),
    ]
    # Parts are multiples of the step (where segments and batches both start).
    assert [(s.first, s.stop) for s in plan_chunks(100, 12, 3)] == [(0, 36), (36, 72), (72, 100)]
    assert [(s.first, s.stop) for s in plan_chunks(10, 12, 4)] == [(0, 10)]


def test_fast_mode_batches_start_at_every_shot_and_at_multiples_of_the_batch_size() -> None:
    stylizer = FeedForwardStylizer(seeded_net(), InferenceOptions(batch_size=3))
    batches: list[list[int]] = []
    run_batch = stylizer._run

    def record_batch(batch: list[FrameRecord]) -> Iterator[FrameRecord]:
        batches.append([record.index for record in batch])
        return run_batch(batch)

    stylizer._run = record_batch  # type: ignore[method-assign]
    # Resumed at frame 2, a new shot at frame 4: whatever came before, frame 6 starts a batch,
    # as it does in a render of the whole video.
    frames = [
        FrameRecord(index=i, pts=i, content=torch.rand(1, 3, 8, 8), new_shot=i in (2, 4))
        for i in range(2, 9)
    ]
    assert len(list(stylizer(frames))) == 7
    assert batches == [[2], [3], [4, 5], [6, 7, 8]]
