"""`--precision`: how it is chosen (measured and cached on a CPU, from the device in use on
CUDA, refused where it cannot run), that reduced precision stays inside the networks (Gram
matrices, losses, gradients and images float32), and that the choice is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clitools import FAST, run
from torch.utils._python_dispatch import TorchDispatchMode

from vidstyle import device as device_module
from vidstyle.config import RenderSettings
from vidstyle.device import (
    MIN_SPEEDUP,
    choose_precision,
    cpu_runs_bf16,
    cuda_has_native_bf16,
    measurement_key,
)
from vidstyle.errors import ConfigError
from vidstyle.fingerprint import differences, render_fingerprint
from vidstyle.nets.transformer import ReflectionPad, TransformerNet
from vidstyle.nets.vgg import VGGFeatures
from vidstyle.render.pipeline import build_loss
from vidstyle.render.provenance import recorded_settings
from vidstyle.stylize.losses import gram_matrix, loss_network_precision
from vidstyle.stylize.optimize import optimize_image

CPU = torch.device("cpu")
NEEDS_BF16 = pytest.mark.skipif(
    not cpu_runs_bf16(), reason="this torch build cannot run bf16 convolutions on this CPU"
)


class FakeTimer:
    """Times `fp32` seconds for float32 and `bf16` for bf16, and counts its calls."""

    def __init__(self, fp32: float, bf16: float) -> None:
        self.seconds = {None: fp32, torch.bfloat16: bf16}
        self.calls = 0

    def __call__(self, dtype: torch.dtype | None) -> float:
        self.calls += 1
        return self.seconds[dtype]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIDSTYLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(device_module, "cpu_runs_bf16", lambda: True)
    return tmp_path / "cache" / "precision.json"


def test_auto_on_a_cpu_takes_bf16_only_where_it_measured_enough_faster(cache: Path) -> None:
    fast = choose_precision("auto", CPU, workload="net A", timer=FakeTimer(2.0, 1.0))
    assert fast.name == "bf16" and fast.dtype is torch.bfloat16
    assert "2.00x faster" in fast.reason and "measured now" in fast.reason
    just_below = FakeTimer(1.0, 1.0 / (MIN_SPEEDUP - 0.01))
    slow = choose_precision("auto", CPU, workload="net B", timer=just_below)
    assert slow.name == "fp32" and slow.dtype is None and "< 1.2x" in slow.reason
    # The measurement is cached under the CPU, torch, threads and workload.
    saved = json.loads(cache.read_text())
    assert saved[measurement_key("net A")]["speedup"] == 2.0
    assert torch.__version__ in measurement_key("net A")


def test_a_cached_measurement_is_not_taken_again(cache: Path) -> None:
    first = FakeTimer(3.0, 1.0)
    assert choose_precision("auto", CPU, workload="net", timer=first).name == "bf16"
    assert first.calls == 12  # one warm-up and five timed passes per precision
    # Now bf16 would measure slower, but the cached result stands: no timing at all.
    again = FakeTimer(1.0, 3.0)
    chosen = choose_precision("auto", CPU, workload="net", timer=again)
    assert chosen.name == "bf16" and "cached" in chosen.reason and again.calls == 0
    # Another workload (network or size) is measured for itself.
    assert choose_precision("auto", CPU, workload="net 2x", timer=again).name == "fp32"
    assert again.calls == 12


def test_a_damaged_cache_is_measured_again(cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    timer = FakeTimer(2.0, 1.0)
    assert choose_precision("auto", CPU, workload="net", timer=timer).name == "bf16"
    assert timer.calls == 12 and json.loads(cache.read_text())


def test_a_forced_precision_is_taken_without_measuring(cache: Path) -> None:
    timer = FakeTimer(1.0, 9.0)
    assert choose_precision("bf16", CPU, workload="n", timer=timer).name == "bf16"
    assert choose_precision("fp32", CPU, workload="n", timer=timer).name == "fp32"
    assert timer.calls == 0 and not cache.exists()


def test_a_precision_the_device_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        choose_precision("fp16", CPU, workload="n", timer=None)
    monkeypatch.setattr(device_module, "cpu_runs_bf16", lambda: False)
    with pytest.raises(ConfigError, match="cannot run bf16"):
        choose_precision("bf16", CPU, workload="n", timer=None)
    # auto falls back to fp32 there, without timing anything.
    assert choose_precision("auto", CPU, workload="n", timer=FakeTimer(9, 1)).name == "fp32"
    with pytest.raises(ConfigError, match="unknown precision"):
        choose_precision("fp8", CPU, workload="n", timer=None)


def test_cuda_bf16_follows_the_device_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    # cuda:0 an H100 (compute capability 9.0), cuda:1 a T4 (7.5): the answer is cuda:1's.
    capability = {0: (9, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: capability[index])
    h100, t4 = torch.device("cuda", 0), torch.device("cuda", 1)
    assert cuda_has_native_bf16(h100) and not cuda_has_native_bf16(t4)
    with pytest.raises(ConfigError, match="cuda:1 has no native bf16"):
        choose_precision("bf16", t4, workload="n", timer=None)
    assert choose_precision("auto", t4, workload="n", timer=None).name == "fp16"
    assert choose_precision("auto", h100, workload="n", timer=None).name == "bf16"
    # Fast-mode inference takes fp16 (more mantissa, no gradients to underflow).
    assert choose_precision("auto", h100, workload="n", timer=None, cuda_auto="fp16").name == (
        "fp16"
    )
    assert choose_precision("fp16", t4, workload="n", timer=None).reason == "asked for"


def _small_loss(precision: str) -> tuple[object, object]:
    settings = RenderSettings(
        features="random",
        style_layers=("relu1_1", "relu2_1", "relu3_1"),
        style_layer_weights=(1.0, 1.0, 1.0),
        content_layers=("relu3_1",),
    )
    loss = build_loss(settings, CPU)
    chosen = loss_network_precision(loss, precision, CPU, (40, 32))
    style = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    content = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(2))
    loss.set_style([style])
    loss.set_content(content)
    return loss, chosen


@NEEDS_BF16
def test_only_the_network_runs_in_bf16() -> None:
    loss, chosen = _small_loss("bf16")
    assert chosen.name == "bf16"
    conv = loss.features.features[0]
    assert conv.weight.dtype is torch.bfloat16  # the network is converted
    image = torch.rand(1, 3, 32, 40, requires_grad=True)
    feats = loss.features(image)
    # ...but what leaves it, the Gram matrices, targets and losses are float32,
    assert all(f.dtype is torch.float32 for f in feats.values())
    assert all(gram_matrix(f).dtype is torch.float32 for f in feats.values())
    assert all(g.dtype is torch.float32 for g in loss._style_grams.values())
    terms = loss(image)
    assert terms.total.dtype is torch.float32
    # and so are the image's gradient and the optimised image (L-BFGS keeps its state in the
    # image's dtype).
    terms.total.backward()
    assert image.grad is not None and image.grad.dtype is torch.float32
    result = optimize_image(lambda x: loss(x).total, image.detach(), iterations=3)
    assert result.image.dtype is torch.float32 and len(result.losses) == 3


@NEEDS_BF16
def test_bf16_loss_and_gradient_stay_close_to_fp32() -> None:
    image = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(3))
    values, grads = [], []
    for precision in ("fp32", "bf16"):
        loss, _ = _small_loss(precision)
        x = image.clone().requires_grad_(True)
        total = loss(x).total
        total.backward()
        values.append(float(total.detach()))
        grads.append(x.grad)
    assert values[1] == pytest.approx(values[0], rel=0.02)
    assert float((grads[1] - grads[0]).norm() / grads[0].norm()) < 0.1
    assert not torch.equal(grads[0], grads[1])  # it did run in bf16


class _PadDtypes(TorchDispatchMode):
    """Records the dtype of every reflection padding run, forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if "reflection_pad2d" in str(func):
            self.seen.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@NEEDS_BF16
def test_the_transformer_pads_in_bf16_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    # CPU autocast runs reflection padding in float32; a bf16 training step paid two casts
    # around every padded convolution for it (and two more in the backward pass).
    net = TransformerNet("small").train()
    batch = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(batch)
        out.float().pow(2).mean().backward()
        return out.detach(), [p.grad for p in net.parameters()]

    pads = _PadDtypes()
    with pads:
        out, grads = step()
    # Only the first pad, of the float32 input (which needs no gradient), is float32; the
    # others stay in bf16 both ways.
    assert pads.seen.count(torch.float32) == 1
    padded = sum(isinstance(m, ReflectionPad) for m in net.modules())
    assert pads.seen.count(torch.bfloat16) == 2 * (padded - 1) > 0
    # Padding only moves values: the same step with autocast's float32 padding gives the same
    # output bits; its backward adds the gradients of reflected border pixels, in bf16 now,
    # so the gradients differ by bf16 rounding (per tensor too, except the convolution biases
    # an instance norm follows: it cancels them, their gradients are rounding noise about 0).
    monkeypatch.setattr(ReflectionPad, "forward", torch.nn.ReflectionPad2d.forward)
    reference, reference_grads = step()
    assert torch.equal(out, reference)
    ours, theirs = (
        torch.cat([g.flatten() for g in grads]),
        torch.cat([g.flatten() for g in reference_grads]),
    )
    assert float((ours - theirs).norm() / theirs.norm()) < 0.02


def test_fp16_gradients_are_scaled_past_underflow() -> None:
    # A loss over many activations gives each a gradient below fp16's smallest number: without
    # the scaling at the network's output, every gradient reaching the image would be zero.
    vgg = VGGFeatures(["relu1_1", "relu3_1"], weights="random")
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    grads = []
    for dtype in (None, torch.float16):
        vgg.set_precision(dtype)
        x = image.clone().requires_grad_(True)
        (sum(f.pow(2).mean() for f in vgg(x).values()) * 1e-6).backward()
        grads.append(x.grad)
    assert float(grads[0].abs().max()) < 6e-8  # fp16's smallest subnormal
    assert grads[1].dtype is torch.float32
    assert float((grads[1] - grads[0]).norm() / grads[0].norm()) < 0.1


def test_a_render_records_its_precision_and_another_one_is_stale(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = workdir / "clip.style.mp4"
    render = [workdir / "clip.mp4", "-s", workdir / "style.png", *FAST, "--max-frames", "3"]
    assert run([*render, "--precision", "fp32"]) == 0
    recorded = recorded_settings(out)
    assert recorded is not None
    assert recorded["precision in use"] == "fp32" and recorded["precision"] == "'fp32'"
    [line] = [line for line in capsys.readouterr().err.splitlines() if "Precision on" in line]
    assert line.endswith("Precision on cpu: fp32 (asked for)")
    # Another precision is another render: the finished output is stale.
    assert run([*render, "--precision", "bf16", "-q"]) == 0
    assert "stale" in capsys.readouterr().err and recorded_settings(out) == recorded


def test_a_render_resumes_only_in_the_precision_it_began_in(workdir: Path) -> None:
    # What `auto` chose is part of the work folder's fingerprint (a resumed render must not
    # mix frames of two precisions) but not compared for stale outputs (it is known only once
    # the render has its device).
    settings = RenderSettings(features="random")
    prints = [
        render_fingerprint(workdir / "clip.mp4", [workdir / "style.png"], settings, precision=p)
        for p in ("fp32", "bf16")
    ]
    assert differences(*prints) == ["precision in use"]


def test_version_says_what_auto_chose_here(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert "none cached yet" in capsys.readouterr().out
    choose_precision("auto", CPU, workload="VGG-16 at 9x9", timer=FakeTimer(2.0, 1.0))
    assert run(["--version"]) == 0
    out = capsys.readouterr().out
    assert "VGG-16 at 9x9: bf16 (bf16 2.00x fp32)" in out
