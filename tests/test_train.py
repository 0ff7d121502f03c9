"""`vidstyle train`: loss goes down, video data, checkpoints, resuming, the command line.

Everything is tiny: 32-px crops, the `small` network, random-weight VGG features, a few steps.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import mediagen
import pytest
import torch
from clitools import run

from vidstyle.config import TrainSettings
from vidstyle.device import cpu_runs_bf16
from vidstyle.errors import ConfigError, InputError, RenderInterrupted, WeightsError
from vidstyle.nets.models import MODELS_ENV, load_model, read_model_info
from vidstyle.nets.transformer import TransformerNet
from vidstyle.stylize.style_image import load_style_image, style_tensor
from vidstyle.stylize.train import (
    StepReport,
    TrainingSet,
    build_loss,
    evaluate_loss,
    find_data,
    load_video_frames,
    train,
)

TINY = TrainSettings(
    arch="small", size=32, batch_size=2, steps=4, features="random", checkpoint_every=2
)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of six small images (two sizes, one nested folder, one JPEG)."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "nested").mkdir()
    for i in range(3):
        mediagen.make_image(folder / f"a{i}.png", (48, 40), seed=10 + i)
        mediagen.make_image(folder / "nested" / f"b{i}.jpg", (40, 56), seed=20 + i)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def style(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mediagen.make_image(tmp_path_factory.mktemp("style") / "waves.png", (64, 64))


def same_state(a: Path, b: Path) -> bool:
    sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_few_steps_lower_the_loss(images: Path, style: Path, tmp_path: Path) -> None:
    settings = replace(TINY, steps=15, checkpoint_every=0)
    loss = build_loss(settings, CPU)
    loss.set_style([style_tensor(load_style_image(style), (32, 32), 1.0, CPU)])
    held_out = [
        TrainingSet.from_sources(find_data([images]), 32, 1).sample(
            4, torch.Generator().manual_seed(123)
        )
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # the network train() starts from
        before = evaluate_loss(TransformerNet("small"), loss, held_out)

    reports: list[StepReport] = []
    result = train(style, [images], tmp_path / "waves.pth", settings, on_step=reports.append)
    net, info = load_model(result.model)
    after = evaluate_loss(net, loss, held_out)

    assert after < 0.7 * before
    assert [r.step for r in reports] == list(range(1, 16))
    assert set(reports[-1].losses) == {"loss", "content", "style", "tv"}
    assert info.style == "waves.png" and info.arch.name == "small"
    assert info.training["steps"] == 15 and info.training["size"] == 32
    assert info.training["loss_network"].startswith("random")


def test_threads_sets_the_cpu_threads_of_the_training_and_gives_them_back(
    images: Path, style: Path, tmp_path: Path
) -> None:
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    during: list[int] = []
    settings = replace(TINY, steps=2, checkpoint_every=0, threads=wanted)
    train(
        style,
        [images],
        tmp_path / "m.pth",
        settings,
        on_step=lambda _: during.append(torch.get_num_threads()),
    )
    assert during == [wanted, wanted]
    assert torch.get_num_threads() == before


def test_the_time_a_run_will_take_is_logged_after_its_first_steps(
    images: Path, style: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vidstyle")
    settings = replace(TINY, steps=8, checkpoint_every=0)
    train(style, [images], tmp_path / "m.pth", settings)
    messages = [r.getMessage() for r in caplog.records]
    # The line that names the device names the precision chosen for it too.
    started = "Training the small network: 8 steps of 2 crops of 32 px on cpu, "
    assert any(re.match(f"{started}(fp32|bf16) \\(", m) for m in messages)
    # Timed over steps 2-4 (the first carries the warm-up), once, before the bar's ETA settles.
    estimates = [m for m in messages if "for the remaining" in m]
    assert len(estimates) == 1
    assert re.fullmatch(r"\S+ s a step on cpu: about \d+ s for the remaining 4 steps", estimates[0])


def test_a_long_cpu_run_is_told_how_to_train_sooner(
    images: Path,
    style: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vidstyle.stylize.train as training

    monkeypatch.setattr(training, "_LONG_CPU_RUN_S", 0.0)  # every run counts as long
    caplog.set_level(logging.INFO, logger="vidstyle")
    train(style, [images], tmp_path / "m.pth", replace(TINY, steps=6, checkpoint_every=0))
    (estimate,) = [r.getMessage() for r in caplog.records if "for the remaining" in r.getMessage()]
    assert "--size 128" in estimate


def test_data_discovery(images: Path, tmp_path: Path, clip: Path) -> None:
    found = find_data([images, clip])
    assert len(found.images) == 6 and found.videos == (clip,)
    with pytest.raises(InputError, match="not found"):
        find_data([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images or videos"):
        find_data([tmp_path / "empty"])
    with pytest.raises(InputError, match="extension"):
        find_data([images / "notes.txt"])


def test_data_search_takes_what_render_takes_and_skips_hidden_folders(
    tmp_path: Path, clip: Path
) -> None:
    import shutil

    from vidstyle.batch import discover

    data = tmp_path / "footage"
    work = data / ".take.style.mp4.vidstyle-work"  # an interrupted render's segments
    work.mkdir(parents=True)
    shutil.copy(clip, work / "segment-0000.mp4")
    shutil.copy(clip, data / "take.mts")  # AVCHD: a video to render, so a video to train on
    assert find_data([data]).videos == (data / "take.mts",)
    assert find_data([data / "take.mts"]).videos == (data / "take.mts",)
    found, problems = discover([data], recursive=True)
    assert [item.path for item in found] == [data / "take.mts"] and not problems


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"arch": "huge"}, "--arch must be one of standard, small"),
        ({"size": 8}, "--size must be at least 16"),
        ({"learning_rate": 0.0}, "--lr must be at least"),
        ({"checkpoint_every": -1}, "--checkpoint-every must be at least 0"),
        ({"pooling": "min"}, "--pooling must be one of max, avg"),
        ({"style_scale": 9.0}, "--style-scale must be at most 8"),
    ],
)
def test_bad_training_settings_name_the_option(change: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        replace(TINY, **change).validate()


def test_video_frames_are_sampled_across_the_clip(tmp_path: Path) -> None:
    clip = mediagen.make_video(
        tmp_path / "cut.mp4", frames=20, size=(64, 48), motion="cut", audio=False
    )
    frames, pairs = load_video_frames(clip, 32, 5)
    assert len(frames) == 5 and pairs == []
    assert all(f.shape == (32, 43, 3) for f in frames)  # short side scaled to the crop size
    source = mediagen.make_frames(frames=20, size=(64, 48), motion="cut")
    # Frames come from both shots (before and after the cut at the middle), not the start only.
    assert abs(float(frames[0].mean()) - float(source[0].mean())) < 3
    assert abs(float(frames[-1].mean()) - float(source[19].mean())) < 3

    frames, pairs = load_video_frames(clip, 32, 5, pairs=True)
    # Each sampled frame after the first pairs with its predecessor, except across the cut.
    assert 2 <= len(pairs) <= 4
    for pair in pairs:
        assert pair.flow.shape == (32, 43, 2) and pair.reliable.shape == (32, 43)
        # The clip pans right by 2 px per frame at 64 px, so 4/3 px at this scale; the flow from
        # frame t to t-1 points left.
        assert float(pair.flow[..., 0][pair.reliable > 0].mean()) == pytest.approx(-4 / 3, abs=0.3)


def test_training_on_a_video_with_the_temporal_loss(style: Path, tmp_path: Path) -> None:
    clip = mediagen.make_video(tmp_path / "pan.mp4", frames=12, size=(64, 48))
    settings = replace(TINY, steps=2, frames_per_video=4, temporal_weight=10.0)
    reports: list[StepReport] = []
    result = train(style, [clip], tmp_path / "m.pth", settings, on_step=reports.append)
    assert result.steps == 2
    # The temporal term is measured on real frame pairs and enters the objective with its weight.
    losses = reports[-1].losses
    assert losses["temporal"] > 0
    assert losses["loss"] == pytest.approx(
        settings.content_weight * losses["content"]
        + settings.style_weight * losses["style"]
        + settings.tv_weight * losses["tv"]
        + 10 * losses["temporal"],
        rel=1e-4,
    )
    info = read_model_info(result.model)
    assert info.training["temporal_weight"] == 10.0 and info.training["data"] == [str(clip)]


def test_temporal_loss_needs_video(images: Path, style: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="temporal-weight"):
        train(style, [images], tmp_path / "m.pth", replace(TINY, temporal_weight=1.0))


def test_checkpoint_round_trips_to_identical_outputs(
    images: Path, style: Path, tmp_path: Path
) -> None:
    result = train(style, [images], tmp_path / "m.pth", replace(TINY, steps=2))
    checkpoint = torch.load(result.checkpoint, weights_only=True)
    assert checkpoint["step"] == 2
    from_checkpoint = TransformerNet("small").eval()
    from_checkpoint.load_state_dict(checkpoint["model"])
    from_model, _ = load_model(result.model)
    x = torch.rand(2, 3, 40, 36)
    with torch.no_grad():
        assert torch.equal(from_checkpoint(x), from_model(x))


def test_interrupted_training_resumes_where_it_stopped(
    images: Path, style: Path, tmp_path: Path
) -> None:
    straight = train(style, [images], tmp_path / "straight.pth", TINY)

    def interrupt_at_3(report: StepReport) -> None:
        if report.step == 3:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.pth"
    with pytest.raises(RenderInterrupted, match="resume from step 2"):
        train(style, [images], out, TINY, on_step=interrupt_at_3)
    assert not out.exists()  # the model is written only at the end
    reports: list[StepReport] = []
    resumed = train(style, [images], out, TINY, on_step=reports.append)
    assert resumed.start_step == 2 and resumed.steps == 4
    assert [r.step for r in reports] == [3, 4]
    # Model, Adam moments and the data sampler's RNG all came back: bitwise the same network.
    assert same_state(straight.model, resumed.model)

    # More steps later continue the finished run; the same command again trains nothing.
    again = train(style, [images], out, replace(TINY, steps=5))
    assert (again.start_step, again.steps) == (4, 5)
    assert train(style, [images], out, replace(TINY, steps=5)).start_step == 5


def test_checkpoint_of_another_run_is_refused_unless_restart(
    images: Path, style: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.pth"
    train(style, [images], out, replace(TINY, steps=2))
    with pytest.raises(ConfigError, match="differs in: .*size"):
        train(style, [images], out, replace(TINY, steps=2, size=24))
    result = train(style, [images], out, replace(TINY, steps=2, size=24), restart=True)
    assert result.start_step == 0 and read_model_info(out).training["size"] == 24


def test_damaged_checkpoint_is_a_clean_error(images: Path, style: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    (tmp_path / "m.pth.ckpt").write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match=r"m\.pth\.ckpt: cannot read .*--restart"):
        train(style, [images], out, TINY)


def test_train_command_then_render_by_name(
    images: Path,
    style: Path,
    clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    zoo = tmp_path / "zoo"
    monkeypatch.setenv(MODELS_ENV, str(zoo))
    args = [
        "train",
        "--style",
        style,
        "--data",
        images,
        "--arch",
        "small",
        "--size",
        "32",
        "--batch-size",
        "2",
        "--steps",
        "2",
        "--features",
        "random",
        "-q",
    ]
    assert run(args) == 0
    model = zoo / "waves.pth"  # default --out: <models dir>/<style stem>.pth
    assert capsys.readouterr().out.strip() == str(model)
    assert model.is_file() and (zoo / "waves.pth.ckpt").is_file()
    assert run(["models"]) == 0
    assert "waves" in capsys.readouterr().out
    out = tmp_path / "styled.mp4"
    assert (
        run(
            [
                clip,
                "--model",
                "waves",
                "-o",
                out,
                "--size",
                "32",
                "--max-frames",
                "4",
                "-q",
                "--encoder-preset",
                "ultrafast",
            ]
        )
        == 0
    )
    assert out.is_file()


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        (["--arch", "huge"], 2, "--arch"),
        (["--steps", "0"], 2, "--steps"),
        (["--out", "{tmp}/model.onnx"], 2, ".pth"),
        (["--data", "{tmp}/nowhere"], 1, "not found"),
    ],
)
def test_train_command_errors_are_one_line(
    images: Path,
    style: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    words: str,
) -> None:
    args = [
        "train",
        "--style",
        style,
        "--data",
        images,
        "--out",
        tmp_path / "m.pth",
        "--features",
        "random",
        "-q",
        *[a.format(tmp=tmp_path) for a in extra],
    ]
    assert run(args) == code
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err


# Two trainings of 15 steps: the whole suite only (the quick set trains a few steps above).
@pytest.mark.slow
@pytest.mark.skipif(
    not cpu_runs_bf16(), reason="this torch build cannot run bf16 convolutions on this CPU"
)
def test_a_network_trained_in_bf16_learns_what_the_fp32_one_learns(
    images: Path, style: Path, tmp_path: Path
) -> None:
    settings = replace(TINY, steps=15, checkpoint_every=0)
    loss = build_loss(settings, CPU)
    loss.set_style([style_tensor(load_style_image(style), (32, 32), 1.0, CPU)])
    held_out = TrainingSet.from_sources(find_data([images]), 32, 1).sample(
        4, torch.Generator().manual_seed(123)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        before = evaluate_loss(TransformerNet("small"), loss, [held_out])
    after = {}
    for precision in ("fp32", "bf16"):
        result = train(
            style, [images], tmp_path / f"{precision}.pth", replace(settings, precision=precision)
        )
        net, info = load_model(result.model)
        assert info.training["precision_in_use"] == precision
        after[precision] = evaluate_loss(net, loss, [held_out])
    # Both learn, and as much (on held-out crops, measured in fp32). Not their pixels: two
    # trainings drift apart from any difference in the last bits, an fp32 one started a unit
    # in the last place away as well (docs/benchmarks.md, Training).
    assert after["fp32"] < 0.7 * before and after["bf16"] < 0.7 * before
    assert after["bf16"] == pytest.approx(after["fp32"], rel=0.05)
