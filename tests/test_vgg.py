"""VGG-19 feature extractor and its weight sources.

No test touches the network: an autouse fixture replaces the downloader and points TORCH_HOME at
an empty folder. Checkpoints are written by the tests from seeded random-init torchvision models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from vidstyle.errors import ConfigError, WeightsError
from vidstyle.nets import vgg
from vidstyle.nets.vgg import (
    CAFFE_FILE,
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    TORCHVISION_FILE,
    VGG_LAYER_NAMES,
    WEIGHTS_ENV,
    VGGFeatures,
    describe_weights,
    detect_layout,
    find_weights,
)

REAL_DOWNLOAD = vgg._download  # before the autouse fixture replaces it
TAPS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "pool5"]
SHALLOW = ["relu1_1", "relu2_1"]


@dataclass
class Downloads:
    """Record of what the code under test tried to download."""

    calls: list[tuple[str, Path]]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Downloads:
    """No network, no user cache, no user environment variable in any test here."""
    record = Downloads(calls=[])

    def refuse(url: str, dst: Path) -> None:
        record.calls.append((url, dst))
        raise OSError("network disabled in tests")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to download through torch.hub directly")

    monkeypatch.setattr(vgg, "_download", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # torch.hub.set_dir() (if anything called it) would override TORCH_HOME; undo it for the test.
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return record


@dataclass
class Reference:
    """A seeded random-init torchvision VGG-19: its features and checkpoints made from it."""

    features: nn.Sequential
    full_checkpoint: Path  # whole model state dict, classifier keys included
    state: dict[str, torch.Tensor]  # features state dict, "N.weight" keys


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    # Built once: the full model (with its 400 MB classifier) takes seconds to build and save.
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        model = torchvision.models.vgg19()
    model.eval()
    path = tmp_path_factory.mktemp("tv") / TORCHVISION_FILE
    torch.save(model.state_dict(), path)
    features = model.features
    features.requires_grad_(False)
    state = {key: value.clone() for key, value in features.state_dict().items()}
    return Reference(features=features, full_checkpoint=path, state=state)


def save_features(state: dict[str, torch.Tensor], path: Path, prefix: str = "features.") -> Path:
    """Save only the conv layers, keyed as a full model would ("features.N.weight")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({prefix + key: value for key, value in state.items()}, path)
    return path


def to_caffe(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same network re-expressed for Caffe-style input, as in jcjohnson's conversion.

    torchvision's conv1_1 sees RGB x in [0, 1] as (x_c - mu_c) / s_c:
        y = sum_{c,k} w_{c,k} (x_c - mu_c) / s_c + b
    Caffe's sees BGR z_c' = 255 x_c - m_c (c' = the BGR position of RGB channel c). Choosing
        w'_{c',k} = w_{c,k} / (255 s_c)        (reversed channel order: RGB -> BGR)
    gives sum w' z = sum w_{c,k} x_c / s_c - sum w_{c,k} m_c / (255 s_c), so
        b' = b + sum_{c,k} w_{c,k} (m_c / 255 - mu_c) / s_c
    makes y identical wherever the 3x3 window lies inside the image. Every later layer sees the
    same conv1_1 output and stays unchanged.
    """
    mean = torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1)
    caffe_mean_rgb = torch.tensor(CAFFE_MEAN_BGR).flip(0).view(1, 3, 1, 1)
    w, b = state["0.weight"], state["0.bias"]
    converted = dict(state)
    converted["0.weight"] = (w / (255.0 * std)).flip(1)
    converted["0.bias"] = b + (w * (caffe_mean_rgb / 255.0 - mean) / std).sum(dim=(1, 2, 3))
    return converted


def frame(seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, 32, 40, generator=torch.Generator().manual_seed(seed))


def tv_reference_outputs(
    features: nn.Sequential, x: torch.Tensor, names: tuple[str, ...] = VGG_LAYER_NAMES
) -> dict[str, torch.Tensor]:
    """torchvision's own features on (x - mean) / std, read at the TAPS layers (`names`: the
    network's layer names in `features` order)."""
    mean = torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1)
    h = (x - mean) / std
    out = {}
    with torch.no_grad():
        for index, layer in enumerate(features):
            h = layer(h)
            if names[index] in TAPS:
                out[names[index]] = h.clone()  # its ReLUs are in place
    return out


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    assert list(a) == list(b)
    for name in a:
        error = (a[name] - b[name]).norm() / b[name].norm().clamp_min(1e-12)
        assert error < tol, f"{name}: relative error {error:.2e}"


def cache_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


# --- the module itself --------------------------------------------------------------------


def test_layer_names_follow_torchvision_features(reference: Reference) -> None:
    assert len(VGG_LAYER_NAMES) == len(reference.features) == 37
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, layer in zip(VGG_LAYER_NAMES, reference.features, strict=True):
        assert isinstance(layer, kinds[name[:4]]), name
    assert VGG_LAYER_NAMES.index("relu4_1") == 20 and VGG_LAYER_NAMES.index("conv5_4") == 34


def test_truncated_after_deepest_layer_with_requested_keys_and_shapes() -> None:
    net = VGGFeatures(["relu3_1", "conv1_1", "relu2_2"], weights="random")
    assert len(net.features) == VGG_LAYER_NAMES.index("relu3_1") + 1 == 12
    out = net(frame(batch=2))
    assert list(out) == ["relu3_1", "conv1_1", "relu2_2"]
    assert out["conv1_1"].shape == (2, 64, 32, 40)
    assert out["relu2_2"].shape == (2, 128, 16, 20)
    assert out["relu3_1"].shape == (2, 256, 8, 10)
    assert len(VGGFeatures(["pool5"], weights="random").features) == 37


def test_frozen_gradients_reach_the_input_only() -> None:
    net = VGGFeatures(["relu1_2", "relu3_1"], weights="random")
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())
    x = frame().requires_grad_(True)
    out = net(x)
    sum(o.square().mean() for o in out.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_returned_activations_are_not_overwritten_and_input_untouched() -> None:
    net = VGGFeatures(["conv1_1", "relu1_1", "conv1_2"], weights="random")
    x = frame()
    before = x.clone()
    out = net(x)
    # With in-place ReLUs, conv1_1 would come back clipped at zero.
    assert (out["conv1_1"] < 0).any()
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp_min(0))
    assert torch.equal(x, before)


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    rng_before = torch.get_rng_state()
    a = VGGFeatures(SHALLOW, weights="random", seed=3)
    b = VGGFeatures(SHALLOW, weights="random", seed=3)
    c = VGGFeatures(SHALLOW, weights="random", seed=4)
    deep = VGGFeatures(["relu4_1"], weights="random", seed=3)
    assert torch.equal(torch.get_rng_state(), rng_before)

    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
        assert torch.equal(value, deep.state_dict()[key])  # truncation does not change weights
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert a.source.kind == "random" and a.source.layout is None and a.source.path is None
    assert a.source.origin == "random init (seed 3)"
    # torchvision's scheme: Kaiming normal with fan_out = 64 * 3 * 3, zero bias.
    assert a.features[0].weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.15)
    assert torch.count_nonzero(a.features[0].bias) == 0


def test_avg_pooling_replaces_every_max_pool() -> None:
    avg = VGGFeatures(["pool5"], pooling="avg", weights="random")
    assert not any(isinstance(m, nn.MaxPool2d) for m in avg.features)
    assert sum(isinstance(m, nn.AvgPool2d) for m in avg.features) == 5
    x = frame()
    avg1 = VGGFeatures(["pool1", "relu1_2"], pooling="avg", weights="random")(x)
    max1 = VGGFeatures(["pool1", "relu1_2"], weights="random")(x)
    torch.testing.assert_close(avg1["pool1"], nn.functional.avg_pool2d(avg1["relu1_2"], 2))
    torch.testing.assert_close(max1["pool1"], nn.functional.max_pool2d(max1["relu1_2"], 2))


def test_to_moves_normalisation_buffers() -> None:
    net = VGGFeatures(SHALLOW, weights="random").to(torch.float64)
    assert net.mean.dtype == torch.float64 and net.std.dtype == torch.float64
    assert net(frame().double())["relu2_1"].dtype == torch.float64
    assert set(net.state_dict()) == {
        f"features.{k}" for k in ("0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias")
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": ["relu9_9"]}, "unknown VGG layer"),
        ({"layers": []}, "no VGG layers"),
        ({"layers": SHALLOW, "pooling": "min"}, "pooling"),
        ({"layers": SHALLOW, "weights": "imagenet"}, "features must be"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VGGFeatures(**kwargs)


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match="N×3×H×W"):
        VGGFeatures(SHALLOW, weights="random")(torch.rand(3, 8, 8))


# --- checkpoints and layouts --------------------------------------------------------------


def test_torchvision_checkpoint_matches_torchvision_model(reference: Reference) -> None:
    net = VGGFeatures(TAPS, weights="pretrained", weights_path=reference.full_checkpoint)
    assert net.source == vgg.WeightSource(
        "pretrained", "torchvision", reference.full_checkpoint, "--vgg-weights"
    )
    x = frame(5)
    with torch.no_grad():
        ours = net(x)
    assert_close(ours, tv_reference_outputs(reference.features, x), tol=1e-5)


@pytest.fixture(scope="session")
def vgg16_features() -> nn.Sequential:
    """A seeded random-init torchvision VGG-16 `features` (no classifier: seconds cheaper)."""
    with torch.random.fork_rng():
        torch.manual_seed(16)
        features = torchvision.models.vgg16().features
    return features.requires_grad_(False).eval()


def test_vgg16_checkpoint_under_any_name_is_read_as_vgg16(
    vgg16_features: nn.Sequential, tmp_path: Path
) -> None:
    state = {k: v.clone() for k, v in vgg16_features.state_dict().items()}
    # A neutral name and the torchvision name: the network is read from the convolutions.
    for name in ("my-weights.pth", vgg.TORCHVISION_VGG16_FILE):
        path = save_features(state, tmp_path / name)
        net = VGGFeatures(TAPS, weights="pretrained", weights_path=path, layout="torchvision")
        assert (net.source.arch, net.arch.name) == ("VGG-16", "VGG-16")
        assert "VGG-16" in net.source.describe()
        x = frame(3)
        with torch.no_grad():
            expected = tv_reference_outputs(vgg16_features, x, vgg.VGG16.layer_names)
            assert_close(net(x), expected, tol=1e-5)


def test_a_layer_vgg16_lacks_is_a_one_line_error_naming_it(
    vgg16_features: nn.Sequential, tmp_path: Path
) -> None:
    path = save_features(vgg16_features.state_dict(), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match=r"layer 'relu3_4' is not in VGG-16") as info:
        VGGFeatures(["relu1_1", "relu3_4"], weights="pretrained", weights_path=path)
    assert "relu3_1-relu3_3" in str(info.value) and "\n" not in str(info.value)


def test_auto_prefers_vgg19_then_vgg16_in_the_cache(
    reference: Reference, vgg16_features: nn.Sequential
) -> None:
    vgg16 = save_features(vgg16_features.state_dict(), cache_checkpoints() / "vgg16-397923af.pth")
    assert find_weights(allow_download=False) == (vgg16, vgg._cache_origin())
    assert VGGFeatures(SHALLOW).source.arch == "VGG-16"
    vgg19 = save_features(reference.state, cache_checkpoints() / CAFFE_FILE)
    assert find_weights(allow_download=False) == (vgg19, vgg._cache_origin())


@pytest.fixture(scope="module")
def tv_net(reference: Reference, tmp_path_factory: pytest.TempPathFactory) -> VGGFeatures:
    path = save_features(reference.state, tmp_path_factory.mktemp("tvf") / TORCHVISION_FILE)
    return VGGFeatures(TAPS, weights="pretrained", weights_path=path)


@pytest.mark.parametrize(
    ("name", "layout"), [(CAFFE_FILE, "auto"), ("my-converted-vgg.pth", "caffe")]
)
def test_caffe_checkpoint_gives_same_features(
    reference: Reference, tv_net: VGGFeatures, tmp_path: Path, name: str, layout: str
) -> None:
    # The known name says "caffe"; a neutral one is told by --vgg-layout (a random-init
    # network's conv1_1 biases say nothing of its layout).
    path = save_features(to_caffe(reference.state), tmp_path / name)
    net = VGGFeatures(TAPS, weights="pretrained", weights_path=path, layout=layout)
    assert net.source.layout == "caffe"
    x = frame(7)
    with torch.no_grad():
        ours, theirs = net(x), tv_net(x)
    # Exact inside the image: the first layer's conversion is an identity there.
    inner = (..., slice(1, -1), slice(1, -1))
    torch.testing.assert_close(
        ours["relu1_1"][inner], theirs["relu1_1"][inner], rtol=1e-5, atol=1e-5
    )
    # Not exact at the image border: zero padding there means pixel value mean/255 in Caffe's
    # input space but the (0.2% different) ImageNet mean in torchvision's, see `to_caffe`. On a
    # 32x40 frame that costs ~1e-3 relative error at relu1_1, less deeper down.
    assert_close(ours, theirs, tol=5e-3)


REAL_CONV1_1 = Path(__file__).parent / "data" / "vgg16_conv1_1.pt"


@pytest.fixture(scope="session")
def real_conv1_1() -> dict[str, torch.Tensor]:
    """conv1_1 of the real Caffe-layout VGG-16 and torchvision's VGG-16 biases (tests/data)."""
    return torch.load(REAL_CONV1_1, weights_only=True)


def with_first_layer(
    state: dict[str, torch.Tensor], weight: torch.Tensor | None, bias: torch.Tensor
) -> dict[str, torch.Tensor]:
    out = dict(state)
    if weight is not None:
        out["0.weight"] = weight
    out["0.bias"] = bias
    return out


def test_layout_detection_on_real_first_layers(
    reference: Reference, real_conv1_1: dict[str, torch.Tensor]
) -> None:
    caffe_w, caffe_b = real_conv1_1["caffe_vgg16.0.weight"], real_conv1_1["caffe_vgg16.0.bias"]
    tv_b = real_conv1_1["torchvision_vgg16.0.bias"]
    caffe = with_first_layer(reference.state, caffe_w, caffe_b)
    tv = with_first_layer(reference.state, None, tv_b)
    # The rule the previous loader used (weight magnitude) reads the real Caffe file as
    # torchvision: its conv1_1 weights are as large as torchvision's.
    assert caffe_w.abs().mean() > 0.1
    assert detect_layout(caffe, Path("renamed.pth")) == "caffe"
    assert detect_layout({f"features.{k}": v for k, v in caffe.items()}) == "caffe"
    assert detect_layout(tv, Path("renamed.pth")) == "torchvision"
    full = {f"features.{k}": v for k, v in tv.items()} | {"classifier.0.weight": torch.ones(2, 2)}
    assert detect_layout(full, None) == "torchvision"
    # A known file name wins over the biases.
    assert detect_layout(tv, Path(CAFFE_FILE)) == "caffe"
    assert detect_layout(caffe, Path("x") / TORCHVISION_FILE) == "torchvision"
    assert detect_layout(tv, Path("vgg16-00b39a1b.pth")) == "caffe"
    with pytest.raises(WeightsError, match="no first convolution"):
        detect_layout({"classifier.0.weight": torch.ones(2, 2)}, Path("odd.pth"))


def test_layout_decision_is_logged_and_can_be_overridden(
    reference: Reference, real_conv1_1: dict[str, torch.Tensor], tmp_path: Path, caplog
) -> None:
    caffe = with_first_layer(
        reference.state, real_conv1_1["caffe_vgg16.0.weight"], real_conv1_1["caffe_vgg16.0.bias"]
    )
    path = save_features(caffe, tmp_path / "weights.pth")
    with caplog.at_level(logging.INFO, logger="vidstyle.nets.vgg"):
        net = VGGFeatures(SHALLOW, weights="pretrained", weights_path=path)
    assert net.source.layout == "caffe"
    assert any(
        "caffe layout" in r.getMessage() and "polarity" in r.getMessage() for r in caplog.records
    )
    forced = VGGFeatures(SHALLOW, weights="pretrained", weights_path=path, layout="torchvision")
    assert forced.source.layout == "torchvision"
    with pytest.raises(ConfigError, match="vgg-layout"):
        VGGFeatures(SHALLOW, weights_path=path, layout="keras")


def test_real_vgg16_file_under_a_neutral_name(tmp_path: Path) -> None:
    """The shared real VGG-16, when a developer points VIDSTYLE_TEST_REAL_VGG16 at it (never
    downloaded by the tests)."""
    import os
    import shutil

    real = os.environ.get("VIDSTYLE_TEST_REAL_VGG16")
    if not real:
        pytest.skip("set VIDSTYLE_TEST_REAL_VGG16 to ../shared/tools/vgg16_imagenet.py's output")
    path = tmp_path / "features.pth"
    shutil.copy(real, path)
    net = VGGFeatures(["relu5_1"], weights="pretrained", weights_path=path)
    assert (net.source.arch, net.source.layout) == ("VGG-16", "caffe")


def test_neutral_name_torchvision_checkpoint_and_bare_features(
    reference: Reference, tmp_path: Path
) -> None:
    path = save_features(reference.state, tmp_path / "weights.pth", prefix="")
    net = VGGFeatures(SHALLOW, weights="pretrained", weights_path=path)
    assert net.source.layout == "torchvision"
    assert torch.equal(net.features[0].weight, reference.state["0.weight"])


# --- where weights come from --------------------------------------------------------------


@pytest.fixture
def small_checkpoint(reference: Reference, tmp_path: Path) -> Path:
    return save_features(reference.state, tmp_path / "elsewhere" / TORCHVISION_FILE)


def test_env_var_source(small_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(small_checkpoint))
    net = VGGFeatures(SHALLOW)
    assert net.source.kind == "pretrained"
    assert net.source.path == small_checkpoint
    assert net.source.origin == f"${WEIGHTS_ENV}"


def test_explicit_path_wins_over_env_var(
    small_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    assert find_weights(small_checkpoint) == (small_checkpoint, "--vgg-weights")


def test_env_var_naming_a_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.pth"
    monkeypatch.setenv(WEIGHTS_ENV, str(missing))
    with pytest.raises(WeightsError, match=WEIGHTS_ENV) as info:
        VGGFeatures(SHALLOW)  # even in auto mode: the user named a file
    assert info.value.path == missing


@pytest.mark.parametrize("name", [TORCHVISION_FILE, CAFFE_FILE])
def test_torch_home_cache_source(reference: Reference, name: str, offline: Downloads) -> None:
    state = reference.state if name == TORCHVISION_FILE else to_caffe(reference.state)
    path = save_features(state, cache_checkpoints() / name)
    assert "torch_home" in str(path)  # the test's TORCH_HOME, not the user's cache
    net = VGGFeatures(SHALLOW, weights="pretrained")
    assert net.source.path == path
    assert net.source.layout == ("torchvision" if name == TORCHVISION_FILE else "caffe")
    assert net.source.origin.startswith("torchvision cache (TORCH_HOME=")
    assert offline.calls == []


def test_explicit_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "typo.pth"
    with pytest.raises(WeightsError, match="--vgg-weights") as info:
        VGGFeatures(SHALLOW, weights_path=missing)
    assert info.value.path == missing and str(missing) in str(info.value)


def test_corrupt_file_names_the_file(small_checkpoint: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(small_checkpoint.read_bytes()[:100_000])
    for path in (truncated, tmp_path / "garbage.pth"):
        if not path.exists():
            path.write_bytes(b"this is not a checkpoint\n" * 10)
        with pytest.raises(WeightsError, match="cannot read VGG weights") as info:
            VGGFeatures(SHALLOW, weights_path=path)
        assert info.value.path == path
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_wrong_or_missing_conv_keys_name_the_file(reference: Reference, tmp_path: Path) -> None:
    missing = dict(reference.state)
    del missing["16.weight"]  # conv3_4: neither a VGG-19 nor (with the rest) a VGG-16
    path = save_features(missing, tmp_path / "vgg16ish.pth")
    with pytest.raises(WeightsError, match="not a VGG-16 or VGG-19 checkpoint: it has 15") as info:
        VGGFeatures(SHALLOW, weights_path=path)  # even when conv3_4 itself is not needed
    assert info.value.path == path

    no_bias = dict(reference.state)
    del no_bias["16.bias"]
    path = save_features(no_bias, tmp_path / "nobias.pth")
    with pytest.raises(WeightsError, match=r"features\.16\.bias \(conv3_4\) is missing"):
        VGGFeatures(SHALLOW, weights_path=path)

    misshaped = dict(reference.state)
    misshaped["2.weight"] = torch.zeros(64, 32, 3, 3)
    path = save_features(misshaped, tmp_path / "misshaped.pth")
    with pytest.raises(WeightsError, match=r"conv1_2\) has shape \(64, 32, 3, 3\)"):
        VGGFeatures(SHALLOW, weights_path=path)

    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="not a VGG state dict"):
        VGGFeatures(SHALLOW, weights_path=path)


def test_auto_without_weights_falls_back_to_random_with_warning(
    caplog: pytest.LogCaptureFixture, offline: Downloads
) -> None:
    with caplog.at_level(logging.INFO, logger="vidstyle.nets.vgg"):
        net = VGGFeatures(SHALLOW, seed=9)
    assert net.source == vgg.WeightSource("random", None, None, "random init (seed 9)")
    assert [url for url, _ in offline.calls] == [vgg.TORCHVISION_URL]
    assert offline.calls[0][1] == cache_checkpoints() / TORCHVISION_FILE
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # One line, which an offline user sees on every run.
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "weaker" in warnings[0].getMessage() and "vidstyle weights" in warnings[0].getMessage()
    # Same weights as asking for random directly.
    assert torch.equal(
        net.features[0].weight, VGGFeatures(SHALLOW, weights="random", seed=9).features[0].weight
    )


def test_pretrained_without_weights_says_where_to_put_them(offline: Downloads) -> None:
    with pytest.raises(WeightsError) as info:
        VGGFeatures(SHALLOW, weights="pretrained")
    message = str(info.value)
    assert TORCHVISION_FILE in message and str(cache_checkpoints()) in message
    assert "--vgg-weights" in message and WEIGHTS_ENV in message and "\n" not in message
    assert len(offline.calls) == 1


def test_no_download_when_not_allowed(offline: Downloads) -> None:
    assert find_weights(allow_download=False) is None
    net = VGGFeatures(SHALLOW, allow_download=False)
    assert net.source.kind == "random"
    assert offline.calls == []


def test_successful_download_lands_in_the_cache(
    reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(url: str, dst: Path) -> None:
        assert url == vgg.TORCHVISION_URL
        save_features(reference.state, dst)

    monkeypatch.setattr(vgg, "_download", fake_download)
    net = VGGFeatures(SHALLOW)
    assert net.source.origin == "downloaded from torchvision"
    assert net.source.path == cache_checkpoints() / TORCHVISION_FILE
    assert net.source.layout == "torchvision"
    # The next run finds it in the cache without downloading.
    monkeypatch.setattr(vgg, "_download", lambda url, dst: pytest.fail("downloaded twice"))
    assert VGGFeatures(SHALLOW).source.origin.startswith("torchvision cache")


def test_downloader_sets_and_restores_a_socket_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real `_download`, with torch.hub's transfer replaced: bounded timeout, hash checked."""
    import socket

    seen: dict[str, object] = {}

    def fake_transfer(
        url: str, dst: str, hash_prefix: str | None = None, progress: bool = True
    ) -> None:
        seen.update(
            timeout=socket.getdefaulttimeout(), hash_prefix=hash_prefix, progress=progress, dst=dst
        )
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_transfer)
    before = socket.getdefaulttimeout()
    dst = tmp_path / "hub" / "checkpoints" / TORCHVISION_FILE
    with pytest.raises(OSError, match="offline"):
        REAL_DOWNLOAD(vgg.TORCHVISION_URL, dst)
    assert seen == {
        "timeout": vgg.DOWNLOAD_TIMEOUT_S,
        "hash_prefix": "dcbb9e9d",
        "progress": False,
        "dst": str(dst),
    }
    assert socket.getdefaulttimeout() == before
    assert dst.parent.is_dir()


# --- describe_weights ---------------------------------------------------------------------


def test_describe_weights_names_found_file_and_cache(reference: Reference) -> None:
    path = save_features(reference.state, cache_checkpoints() / TORCHVISION_FILE)
    lines = describe_weights()
    text = "\n".join(lines)
    assert lines[0].startswith(f"VGG weights: {path}")
    assert "network: VGG-19" in text and "layout: torchvision (known file name)" in text
    assert str(cache_checkpoints()) in text and WEIGHTS_ENV in text
    assert f"use {path}" in text


def test_a_failed_download_is_not_retried_on_every_run(offline: Downloads) -> None:
    VGGFeatures(SHALLOW)
    VGGFeatures(SHALLOW)
    assert len(offline.calls) == 1  # the second render did not wait for the network again
    text = "\n".join(describe_weights())
    assert "failed" in text and "vidstyle weights --download" in text
    assert find_weights(force_download=True) is None  # `vidstyle weights --download` tries now
    assert len(offline.calls) == 2


def test_describe_weights_when_nothing_is_found(offline: Downloads) -> None:
    text = "\n".join(describe_weights())
    assert "none found" in text and str(cache_checkpoints()) in text
    assert "random" in text and TORCHVISION_FILE in text
    assert offline.calls == []


def test_describe_weights_reports_problems_instead_of_raising(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pth"
    assert "not found" in describe_weights(missing)[0]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    lines = describe_weights(bad)
    assert lines[0] == f"VGG weights: {bad} (from --vgg-weights)"
    assert "cannot be used" in lines[1]
