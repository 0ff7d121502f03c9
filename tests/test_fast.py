"""Fast mode: the transformer network, model files, the batched stage and `--mode fast` renders.

Models are seeded random-init `small` networks saved by the tests (training is covered in
test_train.py); frames are tiny so every render takes a fraction of a second.
"""

from __future__ import annotations

import os
import pickle
import stat
import threading
import time
from fractions import Fraction
from pathlib import Path

import mediagen
import numpy as np
import pytest
import torch
from clitools import decoded, run
from torch import nn

from vidstyle import device
from vidstyle.background import BackgroundConsumer
from vidstyle.config import TRAIN_ARCHS, resolve_settings
from vidstyle.errors import ConfigError, RenderInterrupted, WeightsError
from vidstyle.frame import FrameRecord
from vidstyle.media import image_to_tensor, probe
from vidstyle.nets.models import (
    CHECKPOINT_FORMAT,
    MODELS_ENV,
    ModelInfo,
    list_models,
    load_model,
    model_dict,
    models_dir,
    read_model_info,
    resolve_model,
    save_model,
)
from vidstyle.nets.transformer import ARCHS, InstanceNorm, TransformerNet
from vidstyle.render.pipeline import stylize_video
from vidstyle.stylize import feedforward
from vidstyle.stylize.feedforward import FeedForwardStylizer, InferenceOptions

RENDER = ["--size", "48", "--encoder-preset", "ultrafast", "-q"]


def seeded_net(arch: str = "small", seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    net = TransformerNet(arch).eval()
    # Instance norm's affine parameters start at 1/0; perturb them so that a loader which
    # dropped them (or mixed tensors up) would change the output.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "mosaic.pth"
    save_model(path, seeded_net(), style="mosaic.jpg", training={"steps": 7, "size": 32})
    return path


# ------------------------------------------------------------------------------ network


@pytest.mark.parametrize("shape", [(1, 3, 48, 64), (2, 3, 33, 45), (1, 3, 5, 7), (1, 3, 2, 2)])
def test_any_frame_size_comes_back_at_its_size_in_range(shape: tuple[int, ...]) -> None:
    net = seeded_net()
    x = torch.rand(shape)
    before = x.clone()
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(x, before)  # the caller's frame is untouched


def test_architecture_follows_the_refined_johnson_design() -> None:
    net = TransformerNet("standard")
    modules = list(net.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d | nn.BatchNorm2d) for m in modules)
    assert any(isinstance(m, nn.Upsample) and m.mode == "nearest" for m in modules)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in modules)
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert all(c.padding == (0, 0) for c in convs)  # padding is all ReflectionPad2d
    assert [c.kernel_size[0] for c in (convs[0], convs[-1])] == [9, 9]
    assert [c.out_channels for c in convs[:3]] == [32, 64, 128]
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in modules) == len(convs)


def test_small_arch_halves_the_channels() -> None:
    assert set(ARCHS) == set(TRAIN_ARCHS)  # config's option list matches the networks
    small, standard = TransformerNet("small"), TransformerNet("standard")
    count = lambda n: sum(p.numel() for p in n.parameters())  # noqa: E731
    assert ARCHS["small"].channels == tuple(c // 2 for c in ARCHS["standard"].channels)
    assert count(small) < count(standard) / 3


def test_a_batch_gives_the_same_frames_as_one_at_a_time() -> None:
    net = seeded_net()
    frames = torch.rand(3, 3, 24, 40)
    with torch.no_grad():
        batched = net(frames)
        single = torch.cat([net(frames[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ model files


def test_model_file_round_trips_to_identical_outputs(model_file: Path) -> None:
    net, info = load_model(model_file)
    x = torch.rand(1, 3, 30, 42)
    with torch.no_grad():
        assert torch.equal(net(x), seeded_net()(x))
    assert not net.training
    assert info.arch == ARCHS["small"]
    assert info.style == "mosaic.jpg" and info.training["steps"] == 7
    assert info.name == "mosaic" and "small network" in info.summary()
    raw = torch.load(model_file, weights_only=True)
    assert raw["format"] == "vidstyle.fast-model" and raw["version"] == 1  # tanh output


class Payload:
    """Stands in for a malicious pickle: loading it would run code."""

    ran = False

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (Payload.mark, ())

    @staticmethod
    def mark() -> None:
        Payload.ran = True


def _truncated(path: Path, model: Path) -> None:
    data = model.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _mismatched_arch(path: Path, model: Path) -> None:
    data = model_dict(seeded_net("standard"), style="x.png", training={})
    data["arch"] = ARCHS["small"].as_dict()  # claims small, holds standard tensors
    torch.save(data, path)


BAD_FILES = {
    "text": (lambda p, m: p.write_text("hello, not a model"), "cannot read"),
    "truncated": (_truncated, "truncated"),
    "state_dict": (lambda p, m: torch.save(seeded_net().state_dict(), p), "plain state dict"),
    "tensor": (lambda p, m: torch.save(torch.zeros(3), p), "holds a Tensor"),
    "checkpoint": (lambda p, m: torch.save({"format": CHECKPOINT_FORMAT}, p), "checkpoint"),
    "newer": (
        lambda p, m: torch.save({**torch.load(m, weights_only=True), "version": 99}, p),
        "newer",
    ),
    "mismatch": (_mismatched_arch, "do not match the 'small'"),
    "pickle": (lambda p, m: p.write_bytes(pickle.dumps(Payload())), "cannot read"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_model_files_are_one_line_errors_naming_the_file(
    kind: str, model_file: Path, tmp_path: Path
) -> None:
    make, words = BAD_FILES[kind]
    path = tmp_path / f"bad-{kind}.pth"
    make(path, model_file)
    with pytest.raises(WeightsError) as caught:
        load_model(path)
    message = str(caught.value)
    assert str(path) in message and words in message
    assert "\n" not in message
    assert not Payload.ran  # weights_only: nothing in the file was executed


def test_names_resolve_in_the_models_directory(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "mosaic.pth").write_bytes(model_file.read_bytes())
    (folder / "broken.pth").write_text("junk")
    monkeypatch.setenv(MODELS_ENV, str(folder))
    assert models_dir() == folder
    assert resolve_model("mosaic") == folder / "mosaic.pth"
    assert resolve_model("mosaic.pth") == folder / "mosaic.pth"
    assert resolve_model(model_file) == model_file  # an existing path is used as is
    with pytest.raises(WeightsError, match="it holds no models"):
        resolve_model("mosaic", tmp_path / "empty")  # an explicit folder wins over the env
    with pytest.raises(WeightsError, match="models there: mosaic"):
        resolve_model("starry")
    listed = list_models()
    assert [type(item) for item in listed] == [WeightsError, ModelInfo]  # broken, mosaic
    assert read_model_info(folder / "mosaic.pth").training["size"] == 32


def test_models_dir_defaults_to_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert models_dir() == Path("/somewhere/cache/vidstyle/models")
    assert models_dir("~/m") == Path("~/m").expanduser()


# ------------------------------------------------------------------------------ the stage


def records(count: int, size: tuple[int, int] = (20, 12)) -> list[FrameRecord]:
    gen = torch.Generator().manual_seed(1)
    w, h = size
    return [FrameRecord(i, 10 * i, torch.rand(1, 3, h, w, generator=gen)) for i in range(count)]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_stage_keeps_every_frame_in_order_whatever_the_batch(batch_size: int) -> None:
    net = seeded_net()
    stage = FeedForwardStylizer(net, InferenceOptions(batch_size=batch_size))
    inputs = records(7)
    out = list(stage(iter(inputs)))
    assert [(r.index, r.pts) for r in out] == [(r.index, r.pts) for r in inputs]
    with torch.no_grad():
        expected = [net(r.content) for r in inputs]
    for record, want in zip(out, expected, strict=True):
        assert record.styled is not None and record.styled.shape == (1, 3, 12, 20)
        assert record.content is not None and record.styled.dtype == torch.float32
        assert not record.styled.is_inference()  # later stages may use it freely
        torch.testing.assert_close(record.styled, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("speedup", [2.0, 1.1])
def test_inference_options_on_the_cpu(
    speedup: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path))
    monkeypatch.setattr(device, "cpu_runs_bf16", lambda: True)
    cpu = torch.device("cpu")

    def timer(dtype: torch.dtype | None) -> float:
        return speedup if dtype is None else 1.0

    auto = InferenceOptions.resolve(
        cpu, batch_size=2, precision="auto", channels_last="auto", timer=timer, workload="w"
    )
    # bf16 only where the measurement found it pays; channels-last on the CPU as on CUDA.
    want = torch.bfloat16 if speedup >= device.MIN_SPEEDUP else None
    assert (auto.batch_size, auto.dtype, auto.channels_last) == (2, want, True)
    assert "measured now" in auto.describe()
    forced = InferenceOptions.resolve(cpu, batch_size=2, precision="fp32", channels_last="off")
    assert (forced.dtype, forced.channels_last) == (None, False)
    with pytest.raises(ConfigError, match="CUDA"):
        InferenceOptions.resolve(cpu, batch_size=2, precision="fp16", channels_last="auto")
    # Asked for, bf16 runs even where it measured no faster.
    bf16 = InferenceOptions.resolve(cpu, batch_size=2, precision="bf16", channels_last="on")
    assert bf16.dtype is torch.bfloat16 and bf16.precision.reason == "asked for"


@pytest.mark.skipif(
    not device.cpu_runs_bf16(), reason="this torch build cannot run bf16 on this CPU"
)
def test_cpu_bf16_stays_within_the_stated_tolerance_of_the_fp32_network() -> None:
    # The standard network at a size where its 1/4-scale residual stages are not trivial; the
    # reference is the plain eager fp32 network, NCHW, one frame at a time.
    net = seeded_net("standard")
    inputs = records(3, (96, 54))
    with torch.no_grad():
        reference = [net(r.content) for r in inputs]
    options = InferenceOptions(batch_size=3, dtype=torch.bfloat16, channels_last=True)
    out = list(FeedForwardStylizer(seeded_net("standard"), options)(inputs))
    errors = torch.cat([(r.styled - want).abs() for r, want in zip(out, reference, strict=True)])
    assert all(r.styled is not None and r.styled.dtype == torch.float32 for r in out)
    assert float(errors.mean()) * 255 <= feedforward.TOLERANCE_MEAN[torch.bfloat16]
    assert float(errors.max()) * 255 <= feedforward.TOLERANCE_MAX[torch.bfloat16]
    assert float(errors.max()) > 0  # it did run in bf16


def test_instance_norm_is_torchs_and_keeps_channels_last() -> None:
    torch.manual_seed(0)
    ours = InstanceNorm(8, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-0.2, 0.2)
    theirs = nn.InstanceNorm2d(8, affine=True)
    theirs.load_state_dict(ours.state_dict())  # same keys: older model files still load
    x = torch.randn(2, 8, 9, 13).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
    # No NCHW round trip per layer: the output stays in the input's layout.
    assert ours(x).is_contiguous(memory_format=torch.channels_last)


def test_channels_last_gives_the_same_frames() -> None:
    inputs = records(3)
    plain = list(FeedForwardStylizer(seeded_net(), InferenceOptions(batch_size=3))(inputs))
    nhwc = list(
        FeedForwardStylizer(seeded_net(), InferenceOptions(batch_size=3, channels_last=True))(
            inputs
        )
    )
    for a, b in zip(plain, nhwc, strict=True):
        assert b.styled is not None and b.styled.is_contiguous()
        torch.testing.assert_close(a.styled, b.styled, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_autocast_stays_close_to_fp32(precision: str) -> None:
    cuda = torch.device("cuda")
    if precision == "bf16" and not device.cuda_has_native_bf16(cuda):
        pytest.skip("no native bf16 on this GPU")
    inputs = [FrameRecord(r.index, r.pts, r.content.to(cuda)) for r in records(4, (64, 36))]
    ref_opts = InferenceOptions.resolve(cuda, batch_size=4, precision="fp32", channels_last="off")
    fast_opts = InferenceOptions.resolve(
        cuda, batch_size=4, precision=precision, channels_last="on"
    )
    ref = list(FeedForwardStylizer(seeded_net().to(cuda), ref_opts)(inputs))
    fast = list(FeedForwardStylizer(seeded_net().to(cuda), fast_opts)(inputs))
    for a, b in zip(ref, fast, strict=True):
        assert b.styled is not None and b.styled.dtype == torch.float32
        dtype = InferenceOptions.resolve(
            cuda, batch_size=4, precision=precision, channels_last="on"
        ).dtype
        assert dtype is not None
        error = (a.styled - b.styled).abs()
        assert float(error.mean()) * 255 <= feedforward.TOLERANCE_MEAN[dtype]
        assert float(error.max()) * 255 <= feedforward.TOLERANCE_MAX[dtype]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_frames_reach_the_gpu_through_pinned_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned: list[torch.Tensor] = []
    original = torch.Tensor.pin_memory

    def spy(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        out = original(self, *args, **kwargs)
        pinned.append(out)
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    image = np.random.default_rng(0).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    on_gpu = image_to_tensor(image, "cuda")
    # An asynchronous upload needs page-locked memory; the values are the CPU path's.
    assert len(pinned) == 1 and pinned[0].is_pinned()
    assert torch.equal(on_gpu.cpu(), image_to_tensor(image, "cpu"))


def test_fast_render_main_loop_does_not_wait_for_the_device_per_frame(
    clip: Path, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a GPU each of these blocks the thread that feeds it until the queued work is done;
    # the main loop (decode hand-off, network, encode hand-off) must queue work and move on.
    # Counted on the CPU: the calls are the same whatever the device.
    main = threading.current_thread()
    calls: list[str] = []
    for name in ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def spy(self: torch.Tensor, *args: object, _name=name, _f=original, **kw: object) -> object:
            if threading.current_thread() is main:
                calls.append(_name)
            return _f(self, *args, **kw)

        monkeypatch.setattr(torch.Tensor, name, spy)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: calls.append("synchronize"))

    def waits(frames: int) -> list[str]:
        calls.clear()
        settings = resolve_settings(
            "fast",
            overrides={
                "model": str(model_file),
                "size": 48,
                "encoder_preset": "ultrafast",
                "max_frames": frames,
                "overwrite": True,
            },
        )
        result = stylize_video(clip, [], settings, output=tmp_path / "out.mp4")
        assert result.frames == frames
        return list(calls)

    # Loading the model checks its weights once per render; nothing may happen per frame.
    assert waits(24) == waits(4)


# ------------------------------------------------------------------------------ rendering


@pytest.mark.slow
def test_fast_render_keeps_frames_rate_and_audio(
    clip: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    assert run([clip, "--mode", "fast", "--model", model_file, "-o", out, *RENDER]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    source, result = probe(clip), probe(out)
    assert len(decoded(out)) == len(decoded(clip)) == 24
    assert result.fps == source.fps == Fraction(24)
    assert result.duration == pytest.approx(source.duration, abs=1 / 24)
    assert mediagen.read_audio_packets(out) == mediagen.read_audio_packets(clip)
    assert max(result.size) == 48
    assert {p.name for p in tmp_path.iterdir()} == {"out.mp4"}  # no temporary left behind


def test_fast_render_matches_the_network_frame_by_frame(
    media_dir: Path, model_file: Path, tmp_path: Path
) -> None:
    # A still, losslessly encoded clip: what comes out must be the network's output, up to the
    # yuv420p round trip (and the temporal smoothing of a still scene changes nothing).
    clip = mediagen.make_video(
        tmp_path / "still.mkv",
        frames=5,
        size=(48, 32),
        motion="static",
        audio=False,
        pix_fmt="yuv444p",
    )
    out = tmp_path / "out.mkv"
    settings = resolve_settings(
        "fast",
        None,
        {"model": str(model_file), "crf": 0, "encoder_preset": "ultrafast", "batch_size": 2},
    )
    result = stylize_video(clip, [], settings, output=out)
    assert result.frames == 5 and result.size == (48, 32)
    source = decoded(clip)[0]
    net, _ = load_model(model_file)
    with torch.no_grad():
        x = torch.from_numpy(source).permute(2, 0, 1)[None].float() / 255
        want = (net(x)[0].permute(1, 2, 0) * 255).round().numpy()
    # Compared on luma: the random network's colour noise does not survive 4:2:0 subsampling.
    weights = np.array([0.2126, 0.7152, 0.0722])  # BT.709, the writer's matrix
    for frame in decoded(out):
        assert np.abs((frame.astype(float) - want) @ weights).mean() < 4.0


@pytest.mark.parametrize(("size", "rendered"), [((45, 33), (44, 32)), ((34, 62), (34, 62))])
def test_odd_and_portrait_sizes(
    tmp_path: Path, model_file: Path, size: tuple[int, int], rendered: tuple[int, int]
) -> None:
    clip = mediagen.make_video(tmp_path / "odd.mp4", frames=6, size=size, audio=False)
    out = tmp_path / "out.mp4"
    assert (
        run(
            [
                clip,
                "--model",
                model_file,
                "-o",
                out,
                "--size",
                "64",
                "-q",
                "--encoder-preset",
                "ultrafast",
            ]
        )
        == 0
    )
    assert probe(out).size == rendered
    assert len(decoded(out)) == 6


def test_ntsc_rate_survives_fast_mode(clip_ntsc: Path, model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    assert run([clip_ntsc, "--model", model_file, "-o", out, "--batch-size", "5", *RENDER]) == 0
    assert probe(out).fps == Fraction(30000, 1001)
    assert len(decoded(out)) == 24


def test_fast_mode_with_flow_smoothing(clip: Path, model_file: Path, tmp_path: Path) -> None:
    # The fast preset leaves smoothing off; asked for, the flow stage and smoother run around
    # the batched stage: the first frame is the network's own, later ones are blended with the
    # previous output, and every frame still comes out once, in order.
    outputs = {}
    for smooth in ("0", "0.8"):
        out = tmp_path / f"smooth{smooth}.mkv"
        args = [clip, "--model", model_file, "-o", out, "--smooth", smooth, "--crf", "0"]
        assert run([*args, "--max-frames", "3", "--batch-size", "2", *RENDER]) == 0
        assert probe(out).fps == Fraction(24)
        outputs[smooth] = [frame.astype(float) for frame in decoded(out)]
    plain, smoothed = outputs["0"], outputs["0.8"]
    assert len(plain) == len(smoothed) == 3
    assert np.abs(plain[0] - smoothed[0]).max() <= 1  # crf 0: lossless but for YUV rounding
    for a, b in zip(plain[1:], smoothed[1:], strict=True):
        assert np.abs(a - b).mean() > 1


def test_model_name_from_models_dir_and_default_output_name(
    clip: Path,
    model_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "mosaic.pth").write_bytes(model_file.read_bytes())
    video = tmp_path / "holiday.mp4"
    video.write_bytes(clip.read_bytes())
    monkeypatch.setenv(MODELS_ENV, str(zoo))
    assert run([video, "--model", "mosaic", "--max-frames", "3", *RENDER]) == 0
    assert (tmp_path / "holiday.mosaic.mp4").is_file()
    capsys.readouterr()
    assert run(["models"]) == 0
    listing = capsys.readouterr().out
    assert str(zoo) in listing
    assert "mosaic" in listing and "small" in listing and "mosaic.jpg" in listing


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--model", "{bad}"], "cannot read"),
        (["--model", "{missing}"], "not found"),
        (["--mode", "fast"], "needs --model"),
        (["--model", "{model}", "--style", "{model}"], "drop --style"),
        (["--model", "{model}", "--precision", "fp16", "--device", "cpu"], "CUDA"),
    ],
)
def test_fast_mode_usage_errors_are_one_line_exit_2(
    clip: Path,
    model_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: str,
) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(model_file.read_bytes()[:1000])
    names = {"bad": bad, "missing": tmp_path / "nope.pth", "model": model_file}
    args = [a.format(**names) for a in extra]
    out = tmp_path / "out.mp4"
    assert run([clip, *args, "-o", out, *RENDER]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_interrupted_fast_render_leaves_nothing(
    clip: Path, model_file: Path, tmp_path: Path
) -> None:
    done = {"frames": 0}

    def interrupting(event: object) -> None:
        done["frames"] += getattr(event, "frames", 0)
        if done["frames"] == 3:
            raise KeyboardInterrupt

    out = tmp_path / "out.mp4"
    overrides = {"model": str(model_file), "size": 48, "segment_frames": 2, "max_frames": 6}
    settings = resolve_settings("fast", None, overrides)
    with pytest.raises(RenderInterrupted, match="frames are saved"):
        stylize_video(clip, [], settings, output=out, on_event=interrupting)
    # Nothing under the final name: only the work folder, holding the frames done.
    assert {p.name for p in tmp_path.iterdir()} == {".out.mp4.vidstyle-work"}
    resumed = stylize_video(clip, [], settings, output=out)
    assert resumed.resumed_from >= 2 and len(decoded(out)) == 6
    assert {p.name for p in tmp_path.iterdir()} == {"out.mp4"}


# ------------------------------------------------------------------------------ background


def test_background_consumer_keeps_order_and_runs_on_its_own_thread() -> None:
    seen: list[tuple[int, str]] = []
    with BackgroundConsumer(
        lambda i: seen.append((i, threading.current_thread().name)), queue_size=2, name="enc"
    ) as worker:
        for i in range(20):
            worker.submit(i)
    assert seen == [(i, "enc") for i in range(20)]


def test_background_consumer_hands_errors_back_and_stops() -> None:
    def consume(i: int) -> None:
        if i == 3:
            raise OSError("disk full")

    worker = BackgroundConsumer(consume, queue_size=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            worker.submit(i)
            time.sleep(0.001)
    worker.abort()


def test_background_consumer_abort_drops_the_queue() -> None:
    release = threading.Event()
    consumed: list[int] = []

    def slow(i: int) -> None:
        release.wait(5)
        consumed.append(i)

    worker = BackgroundConsumer(slow, queue_size=4)
    for i in range(4):
        worker.submit(i)
    aborter = threading.Thread(target=worker.abort)
    aborter.start()
    while not worker._stop.is_set():  # abort has begun: the worker may finish item 0 only
        time.sleep(0.01)
    release.set()
    aborter.join(5)
    assert consumed == [0]


@pytest.mark.parametrize(("suffix", "kind"), [(".jpg", "a JPEG image"), (".png", "a PNG image")])
def test_an_image_passed_as_model_is_called_what_it_is(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str, kind: str
) -> None:
    photo = mediagen.make_image(tmp_path / f"photo{suffix}", (32, 32))
    out = tmp_path / "out.mp4"
    assert run([clip, "--model", photo, "-o", out, *RENDER]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(photo) in err and f"is {kind}, not a model file" in err and "--style" in err
    assert "train it again" not in err and "pickl" not in err.lower()
    assert not out.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_model_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "mosaic.pth"
    old = os.umask(umask)
    try:
        save_model(path, seeded_net(), style="mosaic.jpg", training={})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
