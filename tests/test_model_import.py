"""`vidstyle models import`: a pytorch/examples fast_neural_style network becomes a vidstyle model
that renders the same pixels.

The reference network below is written from pytorch/examples' `transformer_net.py` (its layer
names, 0-255 images in and out, the output clipped by its `stylize`); the test builds one with
seeded random weights, saves its state dict as the published files are, and compares.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from clitools import frame_count, run
from torch import nn

from vidstyle.errors import WeightsError
from vidstyle.nets.model_import import import_model
from vidstyle.nets.models import load_model, read_model_info


class RefConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class RefUpsampleConv(RefConv):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


class RefResidual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = RefConv(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = RefConv(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(torch.relu(self.in1(self.conv1(x)))))


class RefTransformerNet(nn.Module):
    """pytorch/examples' TransformerNet: 0-255 RGB in, unclipped 0-255 RGB out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = RefConv(3, 32, 9, 1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = RefConv(32, 64, 3, 2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = RefConv(64, 128, 3, 2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1, self.res2, self.res3, self.res4, self.res5 = (RefResidual(128) for _ in "12345")
        self.deconv1 = RefUpsampleConv(128, 64, 3, 1)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = RefUpsampleConv(64, 32, 3, 1)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = RefConv(32, 3, 9, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.in1(self.conv1(x)))
        y = torch.relu(self.in2(self.conv2(y)))
        y = torch.relu(self.in3(self.conv3(y)))
        for block in (self.res1, self.res2, self.res3, self.res4, self.res5):
            y = block(y)
        y = torch.relu(self.in4(self.deconv1(y)))
        y = torch.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def _reference(seed: int = 0) -> RefTransformerNet:
    """Seeded weights, with instance-norm scales and shifts that are not 1 and 0, and a last
    layer whose output spans 0-255 with some clipping at both ends, as a trained one does."""
    torch.manual_seed(seed)
    net = RefTransformerNet().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        net.deconv3.conv2d.weight.mul_(200.0)
        net.deconv3.conv2d.bias.fill_(127.5)
    return net


def _stylize_as_pytorch_examples(net: RefTransformerNet, x: torch.Tensor) -> torch.Tensor:
    """What its `stylize` does to an RGB [0, 1] image: ×255 in, clamp(0, 255) out (÷255 here)."""
    with torch.no_grad():
        return net(x * 255.0).clamp(0.0, 255.0) / 255.0


@pytest.fixture
def published(tmp_path: Path) -> tuple[RefTransformerNet, Path]:
    """A state dict saved as the published files are, with the instance-norm running
    statistics that files from PyTorch before 0.4 carry."""
    net = _reference()
    state = net.state_dict()
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.ones(module.num_features)
    path = tmp_path / "downloads" / "candy.pth"
    path.parent.mkdir()
    torch.save(state, path)
    return net, path


def test_converted_network_gives_the_original_pixels(
    published: tuple[RefTransformerNet, Path], tmp_path: Path
) -> None:
    reference, path = published
    models = tmp_path / "models"
    imported = import_model(path, directory=models)
    assert imported.path == models / "candy.pth" and imported.dropped == 2 * 15
    net, info = load_model(imported.path)
    assert info.source["file"] == "candy.pth" and "pytorch/examples" in info.source["layout"]
    assert len(info.source["sha256"]) == 64 and "imported from candy.pth" in info.summary()

    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    expected = _stylize_as_pytorch_examples(reference, x)
    clipped = ((expected == 0) | (expected == 1)).float().mean()
    assert 0.01 < clipped < 0.5  # both the clipping and the values between are compared
    with torch.no_grad():
        got = net(x)
    assert (got - expected).abs().max() < 1e-4
    # The same 8-bit pixels a video gets.
    same = (got * 255).round() == (expected * 255).round()
    assert same.float().mean() > 0.999


def test_models_import_command_and_render_with_the_name(
    published: tuple[RefTransformerNet, Path],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, path = published
    models = workdir / "models"
    monkeypatch.setenv("VIDSTYLE_MODELS", str(models))
    assert run(["models", "import", path, "--name", "sweets"]) == 0
    assert capsys.readouterr().out.strip() == str(models / "sweets.pth")
    assert run(["models"]) == 0
    listing = capsys.readouterr().out
    assert "sweets" in listing and "imported: candy.pth" in listing
    # The same name again is refused (exit 2), unless --overwrite.
    assert run(["models", "import", path, "--name", "sweets"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run(["models", "import", path, "--name", "sweets", "--overwrite"]) == 0

    out = workdir / "out.mp4"
    args = [workdir / "clip.mp4", "--model", "sweets", "-o", out, "--max-frames", "3"]
    assert run([*args, "--size", "48", "--encoder-preset", "ultrafast", "-q"]) == 0
    assert frame_count(out) == 3
    assert read_model_info(models / "sweets.pth").style == "sweets"


def test_a_file_that_is_not_such_a_network_is_one_line_naming_it(tmp_path: Path) -> None:
    vgg_like = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, vgg_like)
    with pytest.raises(WeightsError, match="not a pytorch/examples fast_neural_style") as info:
        import_model(vgg_like, directory=tmp_path / "models")
    assert str(vgg_like) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "models").exists()
