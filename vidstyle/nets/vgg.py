"""VGG-19 / VGG-16 feature extractor and where its weights come from.

`VGGFeatures` is the loss network of quality mode (Gatys et al. 2016) and of fast-mode training
(Johnson et al. 2016). It takes RGB frames in [0, 1] and normalises them itself, for whichever
checkpoint layout it loaded, so no caller ever needs to know about ImageNet means or BGR order.

Weights are looked for, in order: an explicit path (`--vgg-weights`), `$VIDSTYLE_VGG_WEIGHTS`,
torchvision's hub cache (`$TORCH_HOME/hub/checkpoints`: VGG-19 files first, then VGG-16), then a
download of torchvision's VGG-19 IMAGENET1K_V1 checkpoint into that cache (not retried for a
day after it failed). Which network a file holds (VGG-16 or VGG-19) is read from its
convolutions, never from its name; its layout (torchvision or Caffe input normalisation) from
a known file name, else from its first layer (`detect_layout`), unless `--vgg-layout` says.

Offline with none of these, `weights="auto"` falls back
to seeded random weights with a warning: random multi-scale features still carry colour and
texture statistics (Ustyuzhaninov et al. 2016, "Texture synthesis using shallow convolutional
networks with random filters"; He et al. 2016, "A powerful generative model using random
weights for the deep image representation"), so a render still works, only weaker.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidstyle.errors import ConfigError, WeightsError
from vidstyle.filetypes import checkpoint_load_failure, recognised_media

log = logging.getLogger(__name__)

TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
CAFFE_FILE = "vgg19-d01eb7cb.pth"  # jcjohnson/pytorch-vgg conversion of the original Caffe model
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1
CAFFE_VGG16_FILE = "vgg16-00b39a1b.pth"  # the Caffe VGG-16 conversion neural-style ports use
TORCHVISION_URL = f"https://download.pytorch.org/models/{TORCHVISION_FILE}"
# The cache is searched in this order: VGG-19 before VGG-16 (Gatys et al. used VGG-19), the
# torchvision file before the Caffe one.
CACHE_FILES = (TORCHVISION_FILE, CAFFE_FILE, TORCHVISION_VGG16_FILE, CAFFE_VGG16_FILE)
# File names end in the first 8 hex digits of the file's sha256 (torch.hub's convention); a file
# still carrying one of these names says its layout without being inspected.
_LAYOUT_TAGS = {"dcbb9e9d": "torchvision", "397923af": "torchvision", "d01eb7cb": "caffe"}
_LAYOUT_TAGS["00b39a1b"] = "caffe"
_HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})$")
WEIGHTS_ENV = "VIDSTYLE_VGG_WEIGHTS"

# Per socket operation, not for the whole 548 MB: an offline machine (DNS fails, or packets are
# dropped) gives up within this time instead of urllib's default of waiting forever.
DOWNLOAD_TIMEOUT_S = 15.0
# After a failed download, renders do not try again for this long (an offline machine would
# otherwise wait for the timeout and log the failure on every run); `vidstyle weights
# --download` tries at once.
DOWNLOAD_RETRY_AFTER_S = 24 * 3600
_FAILED_DOWNLOAD_MARK = ".vidstyle-download-failed"

# torchvision layout: RGB in [0, 1], then (x - mean) / std.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# Caffe layout: BGR in [0, 255] minus this per-channel mean (Simonyan & Zisserman's ILSVRC mean).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

LAYOUTS = ("torchvision", "caffe")

# How a renamed checkpoint's layout is told from its first layer: the "polarity" of conv1_1's
# 64 biases, mean(b) / mean(|b|), from -1 (all negative) to 1 (all positive). Measured, not
# derived: the real Caffe VGG-16 (the weights of vgg16-00b39a1b.pth and of Keras' VGG-16) has
# 63 of 64 biases positive, polarity +0.999; torchvision's trained VGG-16 has 27 of 64 negative,
# polarity -0.154 (its published conv1_1 biases; tests/data holds both vectors). The weights
# themselves cannot tell: mean |w| is 0.169 in the Caffe file and about 0.2-0.3 in torchvision's,
# so the earlier rule on weight magnitude read the Caffe file as torchvision. The threshold sits
# in the middle of the two measurements (margins 0.50 and 0.65). The VGG-19 files could not be
# measured here (no download); their names carry a layout tag, which is checked first, and
# --vgg-layout overrides any guess.
_CAFFE_MIN_BIAS_POLARITY = 0.5


@dataclass(frozen=True)
class VGGArch:
    """One VGG configuration: its conv blocks and the layer names in torchvision's order."""

    name: str  # "VGG-19" | "VGG-16"
    blocks: tuple[tuple[int, int], ...]  # (output channels, convolutions) per block

    @cached_property
    def layer_names(self) -> tuple[str, ...]:
        """conv1_1, relu1_1, ..., pool5, indexed as `torchvision.models.vggNN().features`."""
        return _layer_table(self.blocks)[0]

    @cached_property
    def convs(self) -> dict[int, tuple[int, int]]:
        """Each conv's index in `features` and its (in, out) channels."""
        return _layer_table(self.blocks)[1]


def _layer_table(
    blocks: tuple[tuple[int, int], ...],
) -> tuple[tuple[str, ...], dict[int, tuple[int, int]]]:
    names: list[str] = []
    convs: dict[int, tuple[int, int]] = {}
    channels = 3
    for block, (width, count) in enumerate(blocks, start=1):
        for j in range(1, count + 1):
            convs[len(names)] = (channels, width)
            names += [f"conv{block}_{j}", f"relu{block}_{j}"]
            channels = width
        names.append(f"pool{block}")
    return tuple(names), convs


# Configurations "E" and "D" of Simonyan & Zisserman 2015.
VGG19 = VGGArch("VGG-19", ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)))
VGG16 = VGGArch("VGG-16", ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)))
ARCHS = (VGG19, VGG16)
VGG_LAYER_NAMES = VGG19.layer_names  # every name either network has (VGG-16's are a subset)
_PARAM_KEY = re.compile(r"\d+\.(?:weight|bias)")


@dataclass(frozen=True)
class WeightSource:
    """What a `VGGFeatures` was built from, for logs, render metadata and fingerprints."""

    kind: str  # "pretrained" | "random"
    layout: str | None  # "torchvision" | "caffe"; None for random weights
    path: Path | None  # checkpoint file used; None for random weights
    origin: str  # where it came from, in words
    arch: str = VGG19.name  # "VGG-19" | "VGG-16"

    def describe(self) -> str:
        """One line naming network, weights and layout, e.g. "pretrained VGG-16 (caffe layout)
        from vgg16.pth (--vgg-weights)"."""
        if self.kind == "random":
            return f"{self.arch} with {self.origin}"
        return f"pretrained {self.arch} ({self.layout} layout) from {self.path} ({self.origin})"


def cache_dir() -> Path:
    """torchvision's checkpoint cache: `torch.hub.get_dir()/checkpoints` (follows $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _cache_origin() -> str:
    # get_dir() is $TORCH_HOME/hub (default ~/.cache/torch/hub), so its parent is TORCH_HOME as
    # torch resolved it, which is what a user would set to move the cache.
    return f"torchvision cache (TORCH_HOME={Path(torch.hub.get_dir()).parent})"


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line: some loaders raise messages many lines long."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require_file(path: Path, what_to_do: str) -> None:
    if not path.exists():
        raise WeightsError(f"VGG weights file not found; {what_to_do}", path)
    if not path.is_file():
        raise WeightsError(f"VGG weights path is not a file; {what_to_do}", path)
    check_not_media(path)


def check_not_media(path: Path) -> None:
    """WeightsError saying what the file is when an image or a video was named as VGG weights
    (torch.load's own message would be about pickles and PyTorch versions)."""
    kind = recognised_media(path)
    if kind is not None:
        hint = " (a style image goes to --style)" if kind.endswith("image") else ""
        raise WeightsError(
            f"is {kind}, not VGG weights; pass a VGG-19 or VGG-16 checkpoint (.pth){hint}", path
        )


def _download(url: str, dst: Path) -> None:
    """Fetch `url` to `dst` (atomically, sha256-checked); raises on any failure.

    A module-level function so tests can replace it: nothing in the test suite touches the network.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    # download_url_to_file has no timeout argument; urllib uses the process-wide socket default.
    # Set it only for the duration of the download (the pipeline does no other socket I/O).
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # torchvision names checkpoints <name>-<first 8 hex of sha256>.pth; checking the prefix
        # catches a truncated or tampered download. The file is written to a temporary name and
        # moved into place, so an interrupted download never leaves a partial checkpoint.
        match = _HASH_SUFFIX.search(dst.stem)
        hash_prefix = match.group(1) if match else None
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=hash_prefix, progress=False)
    finally:
        socket.setdefaulttimeout(previous)


def _recent_download_failure() -> float | None:
    """Seconds since the last failed download, if it is recent enough to not try again."""
    mark = cache_dir() / _FAILED_DOWNLOAD_MARK
    try:
        age = time.time() - mark.stat().st_mtime
    except OSError:
        return None
    return age if 0 <= age < DOWNLOAD_RETRY_AFTER_S else None


def _remember_download_failure(reason: str) -> None:
    try:
        mark = cache_dir() / _FAILED_DOWNLOAD_MARK
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(f"{TORCHVISION_URL}: {reason}\n")
    except OSError:  # a read-only cache only means the next run tries again
        pass


def find_weights(
    explicit: Path | None = None, *, allow_download: bool = True, force_download: bool = False
) -> tuple[Path, str] | None:
    """Locate a VGG checkpoint; returns (path, origin in words) or None if there is none.

    A path the user named (argument or environment variable) that does not exist raises
    WeightsError: silently falling back to other weights would hide their mistake. A failed
    download is not an error here (offline machines are normal); it is remembered for
    `DOWNLOAD_RETRY_AFTER_S` (unless `force_download`) and gives None.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        _require_file(path, "check the --vgg-weights path")
        return path, "--vgg-weights"

    env_value = os.environ.get(WEIGHTS_ENV, "").strip()
    if env_value:
        path = Path(env_value).expanduser()
        _require_file(path, f"fix or unset ${WEIGHTS_ENV}")
        return path, f"${WEIGHTS_ENV}"

    cache = cache_dir()
    for name in CACHE_FILES:
        if (cache / name).is_file():
            return cache / name, _cache_origin()

    if not allow_download:
        return None
    if not force_download and _recent_download_failure() is not None:
        log.debug("Not downloading VGG-19 weights: the last attempt failed less than a day ago")
        return None
    dst = cache / TORCHVISION_FILE
    log.info("Downloading VGG-19 weights (548 MB) from %s to %s", TORCHVISION_URL, dst)
    try:
        _download(TORCHVISION_URL, dst)
    except Exception as exc:  # any failure means "no weights from here"; the caller decides
        _remember_download_failure(_one_line(exc))
        log.debug("Could not download %s: %s", TORCHVISION_URL, _one_line(exc))
        return None
    if not dst.is_file():
        _remember_download_failure("no file after download")
        return None
    with contextlib.suppress(OSError):
        (cache / _FAILED_DOWNLOAD_MARK).unlink()
    return dst, "downloaded from torchvision"


def _first_layer(state: Mapping[str, object], name: str) -> torch.Tensor | None:
    for key in (f"features.0.{name}", f"0.{name}", f"module.features.0.{name}"):
        value = state.get(key)
        if isinstance(value, torch.Tensor):
            return value
    return None


def bias_polarity(bias: torch.Tensor) -> float:
    """mean(b) / mean(|b|) of conv1_1's biases: +1 all positive, -1 all negative."""
    bias = bias.detach().float()
    return float(bias.mean() / bias.abs().mean().clamp_min(1e-12))


def detect_layout(state_dict: Mapping[str, object], path: Path | str | None = None) -> str:
    """ "torchvision" or "caffe": by file name when it carries a known hash tag, else by the
    polarity of conv1_1's biases (see `_CAFFE_MIN_BIAS_POLARITY`). The decision is logged.

    Accepts full-model dicts ("features.N.weight", classifier keys ignored) and bare features
    dicts ("N.weight").
    """
    where = path if path is not None else "VGG weights"
    if path is not None:
        match = _HASH_SUFFIX.search(Path(path).stem)
        tag = match.group(1)[:8] if match else None
        if tag in _LAYOUT_TAGS:
            log.info("%s: %s layout (known file name)", where, _LAYOUT_TAGS[tag])
            return _LAYOUT_TAGS[tag]
    bias = _first_layer(state_dict, "bias")
    if bias is None or bias.numel() == 0:
        raise WeightsError(
            "not a VGG checkpoint: no first convolution bias (features.0.bias); "
            f"use torchvision's {TORCHVISION_FILE}",
            path,
        )
    polarity = bias_polarity(bias)
    layout = "caffe" if polarity >= _CAFFE_MIN_BIAS_POLARITY else "torchvision"
    log.info(
        "%s: %s layout, from conv1_1's bias polarity %+.3f (Caffe files measure +1.0, "
        "torchvision's -0.15; --vgg-layout overrides)",
        where,
        layout,
        polarity,
    )
    return layout


def detect_arch(found: Mapping[str, torch.Tensor], path: Path | None = None) -> VGGArch:
    """VGG-19 or VGG-16, from which convolution keys the state dict has (never its name)."""
    conv_indices = {
        int(key.split(".")[0])
        for key, value in found.items()
        if key.endswith(".weight") and value.ndim == 4
    }
    for arch in ARCHS:
        if conv_indices == set(arch.convs):
            return arch
    raise WeightsError(
        f"not a VGG-16 or VGG-19 checkpoint: it has {len(conv_indices)} convolutions at "
        f"features indices {sorted(conv_indices)[:20]} (VGG-16 has 13, VGG-19 16); "
        f"use torchvision's {TORCHVISION_FILE} or {TORCHVISION_VGG16_FILE}",
        path,
    )


def _features_state(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], VGGArch]:
    """The conv layers' tensors as float32, keyed "N.weight"/"N.bias", and the network they
    make; checks every shape."""
    hint = f"use torchvision's {TORCHVISION_FILE} or the Caffe conversion {CAFFE_FILE}"
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # training checkpoints often wrap the state dict
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"not a VGG state dict (the file holds a {type(obj).__name__}); {hint}", path
        )
    found: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        key = key.removeprefix("module.")  # saved from DataParallel
        key = key.removeprefix("features.")  # full torchvision model; classifier.* is dropped
        if _PARAM_KEY.fullmatch(key):
            found[key] = value
    arch = detect_arch(found, path)

    state: dict[str, torch.Tensor] = {}
    for index, (c_in, c_out) in arch.convs.items():
        expected = {"weight": (c_out, c_in, 3, 3), "bias": (c_out,)}
        for kind, shape in expected.items():
            key = f"{index}.{kind}"
            layer = arch.layer_names[index]
            if key not in found:
                raise WeightsError(
                    f"not a {arch.name} checkpoint: features.{key} ({layer}) is missing; {hint}",
                    path,
                )
            tensor = found[key]
            if tuple(tensor.shape) != shape:
                raise WeightsError(
                    f"not a {arch.name} checkpoint: features.{key} ({layer}) has shape "
                    f"{tuple(tensor.shape)}, {arch.name} has {shape}; {hint}",
                    path,
                )
            if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
                raise WeightsError(
                    f"features.{key} ({layer}) holds non-finite or non-float values; the file "
                    "is damaged: download it again",
                    path,
                )
            state[key] = tensor.detach().to(torch.float32).contiguous()
    return state, arch


def load_features_state(
    path: Path, layout: str = "auto"
) -> tuple[dict[str, torch.Tensor], VGGArch, str]:
    """Read a VGG-16 or VGG-19 checkpoint: (conv tensors keyed "N.weight"/"N.bias", network,
    layout). `layout` "auto" detects it; "torchvision"/"caffe" are taken as given.

    Raises WeightsError naming the file if it cannot be read or is not a VGG.
    """
    path = Path(path)
    check_not_media(path)
    try:
        # weights_only: a checkpoint is data; never run pickled code from a downloaded file.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files
        raise WeightsError(
            f"cannot read VGG weights: {checkpoint_load_failure(exc, path)}; the file may be "
            "truncated or corrupt: download it again or pass another --vgg-weights",
            path,
        ) from None
    state, arch = _features_state(obj, path)
    del obj  # the classifier (~400 MB) is not needed; let it go before building the module
    if layout == "auto":
        layout = detect_layout(state, path)
    elif layout not in LAYOUTS:
        raise ConfigError(f"--vgg-layout must be auto, torchvision or caffe, not {layout!r}")
    else:
        log.info("%s: %s layout (--vgg-layout)", path, layout)
    return state, arch, layout


def _check_layers(layers: Sequence[str], arch: VGGArch, source: str) -> tuple[str, ...]:
    if isinstance(layers, str):  # a bare "relu4_1" would otherwise be iterated per character
        layers = (layers,)
    unique = tuple(dict.fromkeys(layers))
    if not unique:
        raise ConfigError("no VGG layers requested; name at least one, e.g. relu4_1")
    for name in unique:
        if name in arch.layer_names:
            continue
        if name in VGG_LAYER_NAMES:
            raise ConfigError(
                f"layer {name!r} is not in {arch.name} ({source}), which has "
                f"{_relu_ranges(arch)}; choose other --style-layers/--content-layers"
            )
        raise ConfigError(f"unknown VGG layer {name!r}; use names like conv1_1, relu4_1, pool5")
    return unique


def _relu_ranges(arch: VGGArch) -> str:
    """ "relu1_1-relu1_2, relu2_1-relu2_2, ..." for error messages."""
    return ", ".join(
        f"relu{block}_1-relu{block}_{count}" for block, (_, count) in enumerate(arch.blocks, 1)
    )


def _make_features(arch: VGGArch, depth: int, pooling: str) -> nn.Sequential:
    """torchvision's `vggNN().features[:depth]`, with avg pools if asked, params uninitialised."""
    modules: list[nn.Module] = []
    for index, name in enumerate(arch.layer_names[:depth]):
        if name.startswith("conv"):
            c_in, c_out = arch.convs[index]
            # skip_init: no default init, which would draw from (and so disturb) the global RNG
            # and be thrown away anyway.
            modules.append(nn.utils.skip_init(nn.Conv2d, c_in, c_out, kernel_size=3, padding=1))
        elif name.startswith("relu"):
            # Not in place: a returned relu activation must not be overwritten by a later layer.
            modules.append(nn.ReLU(inplace=False))
        elif pooling == "avg":
            # Gatys et al. 2016 ("Image style transfer using CNNs", sec. 2) swap max for average
            # pooling: smoother gradients, slightly better-looking results.
            modules.append(nn.AvgPool2d(kernel_size=2, stride=2))
        else:
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*modules)


def _random_init(features: nn.Sequential, seed: int) -> None:
    """torchvision's VGG init (Kaiming normal, fan_out, ReLU gain; zero bias) from a local
    generator, so the weights depend on `seed` only and the global RNG state is untouched."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in features:
            if isinstance(module, nn.Conv2d):
                # Same distribution as nn.init.kaiming_normal_(mode="fan_out",
                # nonlinearity="relu"), written out because its `generator` argument is newer
                # than the oldest torch this package supports.
                fan_out = module.out_channels * math.prod(module.kernel_size)
                std = math.sqrt(2.0 / fan_out)
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                assert module.bias is not None
                module.bias.zero_()


# fp16 backward: the gradients arriving at the taps are scaled so that the largest is this
# power of two (then unscaled, exactly, at the input). A loss over a million activations gives
# each one a gradient far below fp16's smallest normal number (6e-5); this leaves 2^7 of
# headroom for growth through the backward pass before fp16's largest (65504).
_FP16_GRAD_TARGET_EXP = 8


class _Boundary:
    """The gradient scale one forward pass's output cast chose, for its input cast to undo."""

    scale = 1.0


class _CastIn(torch.autograd.Function):
    """float32 -> the network's dtype; the gradient goes back as float32, unscaled."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dtype: torch.dtype, boundary: _Boundary) -> torch.Tensor:
        ctx.boundary = boundary
        return x.to(dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad.float() / ctx.boundary.scale, None, None


class _CastOut(torch.autograd.Function):
    """The taps, network dtype -> float32 (what every caller computes Gram matrices and losses
    in); gradients go back in the network's dtype, scaled for fp16's range."""

    @staticmethod
    def forward(ctx: Any, boundary: _Boundary, *taps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.boundary = boundary
        ctx.dtype = taps[0].dtype
        return tuple(t.float() for t in taps)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        scale = 1.0
        if ctx.dtype == torch.float16:
            amax = max((float(g.abs().max()) for g in grads if g is not None), default=0.0)
            if amax > 0 and math.isfinite(amax):
                scale = 2.0 ** (_FP16_GRAD_TARGET_EXP - math.ceil(math.log2(amax)))
        ctx.boundary.scale = scale
        return (None, *(None if g is None else (g * scale).to(ctx.dtype) for g in grads))


def _weights_not_found_message() -> str:
    return (
        f"VGG weights not found; put {TORCHVISION_FILE} (from {TORCHVISION_URL}) in "
        f"{cache_dir()} or pass --vgg-weights PATH / set {WEIGHTS_ENV}"
    )


def check_weights_source(weights: str, weights_path: Path | None) -> None:
    """The checks on VGG weights a render can make before it starts, without loading them: a
    named file exists and is not an image or a video; `pretrained` with no weights on this
    machine, and a download that failed lately (so the render would not try again), fails."""
    if weights == "random":
        return
    found = find_weights(weights_path, allow_download=False)
    if found is None and weights == "pretrained" and _recent_download_failure() is not None:
        raise WeightsError(_weights_not_found_message())


class VGGFeatures(nn.Module):
    """Frozen VGG-19 or VGG-16 activations at the requested layers, for RGB [0, 1] input.

    The network is the one the checkpoint holds (VGG-19 for random weights). Truncated after
    the deepest requested layer. Parameters never require grad, so a backward pass computes
    gradients for the input image only.
    """

    def __init__(
        self,
        layers: Sequence[str],
        *,
        pooling: str = "max",
        weights: str = "auto",
        weights_path: Path | None = None,
        layout: str = "auto",
        seed: int = 0,
        allow_download: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ConfigError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        if weights not in ("auto", "pretrained", "random"):
            raise ConfigError(f"features must be auto, pretrained or random, not {weights!r}")
        if layout not in ("auto", *LAYOUTS):
            raise ConfigError(f"--vgg-layout must be auto, torchvision or caffe, not {layout!r}")
        _check_layers(layers, VGG19, "any VGG")  # a misspelt name fails before any loading
        state, self.source = self._find_weights(weights, weights_path, layout, allow_download)
        self.arch = next(arch for arch in ARCHS if arch.name == self.source.arch)
        self.layers = _check_layers(layers, self.arch, self.source.describe())
        depth = max(self.arch.layer_names.index(name) for name in self.layers) + 1
        self._taps = {self.arch.layer_names.index(name): name for name in self.layers}
        self.features = _make_features(self.arch, depth, pooling)
        if state is None:
            _random_init(self.features, seed)
            self.source = replace(self.source, origin=f"random init (seed {seed})")
        else:
            own = self.features.state_dict()
            self.features.load_state_dict({key: state[key] for key in own}, strict=True)
            log.info("VGG features: %s", self.source.describe())

        if self.source.layout == "caffe":
            # BGR, 0-255, minus the Caffe mean: (x*255 - m) == (x - m/255) / (1/255).
            mean = [m / 255.0 for m in CAFFE_MEAN_BGR]
            std = [1.0 / 255.0] * 3
        else:
            # torchvision layout, and random weights: their init assumes unit-scale input.
            mean, std = list(IMAGENET_MEAN_RGB), list(IMAGENET_STD_RGB)
        self._bgr = self.source.layout == "caffe"
        # Buffers so .to(device) moves them; not persistent, as they follow from the layout.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

        self.compute_dtype: torch.dtype | None = None
        self.requires_grad_(False)
        self.eval()

    def set_precision(self, dtype: torch.dtype | None) -> VGGFeatures:
        """Run the convolutions in `dtype` (bf16 or fp16; None: float32), forward and backward.

        The weights are converted once (they are frozen): what autocast would run in `dtype`
        for this network (convolutions, and the ReLUs and pools on their output), without
        autocast's cast of every weight on every call. Input normalisation and everything the
        caller does with the activations stay float32: `forward` takes and returns float32.
        """
        self.compute_dtype = dtype
        self.features.to(dtype or torch.float32)
        return self

    @staticmethod
    def _find_weights(
        weights: str, weights_path: Path | None, layout: str, allow_download: bool
    ) -> tuple[dict[str, torch.Tensor] | None, WeightSource]:
        """The pretrained state and its source, or (None, a random source)."""
        if weights == "random" and weights_path is not None:
            log.info("Random VGG features requested; ignoring weights file %s", weights_path)
        if weights != "random":
            found = find_weights(weights_path, allow_download=allow_download)
            if found is not None:
                path, origin = found
                state, arch, layout = load_features_state(path, layout)
                return state, WeightSource("pretrained", layout, path, origin, arch.name)
            if weights == "pretrained":
                raise WeightsError(_weights_not_found_message())
            # One line: it is printed on every offline run.
            log.warning(
                "No pretrained VGG weights (see `vidstyle weights`): using random features, "
                "weaker results; pass --vgg-weights PATH or set %s",
                WEIGHTS_ENV,
            )
        return None, WeightSource("random", None, None, "random init", VGG19.name)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations keyed by requested layer name, in the order the layers were requested."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N×3×H×W RGB tensor, got shape {tuple(x.shape)}")
        if self._bgr:
            x = x.flip(1)  # a new tensor: the caller's frame is never modified
        h = (x.float() - self.mean) / self.std
        boundary = _Boundary()
        if self.compute_dtype is not None:
            h = _CastIn.apply(h, self.compute_dtype, boundary)
        taps: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            h = layer(h)
            name = self._taps.get(index)
            if name is not None:
                taps[name] = h
        if self.compute_dtype is None:
            return {name: taps[name] for name in self.layers}
        out = _CastOut.apply(boundary, *(taps[name] for name in self.layers))
        return dict(zip(self.layers, out, strict=True))

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, source={self.source.describe()}"


def describe_weights(
    explicit: Path | None = None, *, check: bool = True, layout: str = "auto"
) -> list[str]:
    """Lines for `vidstyle weights`: which checkpoint would be used, from where, and what the
    feature modes would do. Never downloads; with `check`, loads the file to validate it."""
    return inspect_weights(explicit, check=check, layout=layout)[0]


def inspect_weights(
    explicit: Path | None = None, *, check: bool = True, layout: str = "auto"
) -> tuple[list[str], WeightsError | None]:
    """`describe_weights`' lines, and the error a render would stop with (a named file that is
    missing or unusable, a found file that is not VGG weights); None when there is none."""
    lines: list[str] = []
    cache = cache_dir()
    problem: str | None = None
    error: WeightsError | None = None
    found: tuple[Path, str] | None = None
    try:
        found = find_weights(explicit, allow_download=False)
    except WeightsError as exc:
        problem, error = str(exc), exc

    usable = False
    if found is not None:
        path, origin = found
        lines.append(f"VGG weights: {path} (from {origin})")
        if check:
            try:
                state, arch, chosen = load_features_state(path, layout)
            except WeightsError as exc:
                problem, error = str(exc), exc
                lines.append(f"  cannot be used: {problem}")
            else:
                usable = True
                how = "--vgg-layout" if layout != "auto" else _layout_reason(state, path)
                lines.append(
                    f"  network: {arch.name}, all {len(arch.convs)} conv layers present and "
                    f"well-formed; layout: {chosen} ({how})"
                )
        else:
            usable = True
    elif problem is not None:
        lines.append(f"VGG weights: {problem}")
    else:
        lines.append("VGG weights: none found")

    lines.append(f"--vgg-weights: {explicit if explicit is not None else 'not given'}")
    env_value = os.environ.get(WEIGHTS_ENV, "").strip()
    lines.append(f"${WEIGHTS_ENV}: {env_value or 'not set'}")
    lines.append(
        f"torchvision cache searched: {cache} (for {', '.join(CACHE_FILES)}, in that order; "
        "set TORCH_HOME to move it)"
    )
    if usable and found is not None:
        lines.append(f"--features auto / pretrained: use {found[0]}")
    elif problem is not None:
        lines.append("--features auto / pretrained: fail with the error above")
    else:
        failed = _recent_download_failure()
        if failed is not None:
            retry = (DOWNLOAD_RETRY_AFTER_S - failed) / 3600
            lines.append(
                f"last download of {TORCHVISION_URL} failed {failed / 60:.0f} min ago: renders "
                f"do not try again for {retry:.1f} h (`vidstyle weights --download` tries now)"
            )
        lines.append(
            f"--features auto: try to download {TORCHVISION_URL} into {cache} "
            f"(gives up after {DOWNLOAD_TIMEOUT_S:g} s without network; not again for a day "
            "after a failure), else use random-init features with a warning (weaker results); "
            "--features pretrained: same download, else fail"
        )
        lines.append(
            f"offline: copy {TORCHVISION_FILE} from {TORCHVISION_URL} (or a VGG-16 checkpoint) "
            f"into {cache}, or point --vgg-weights / ${WEIGHTS_ENV} at it"
        )
    return lines, error


def _layout_reason(state: Mapping[str, object], path: Path) -> str:
    match = _HASH_SUFFIX.search(path.stem)
    if match and match.group(1)[:8] in _LAYOUT_TAGS:
        return "known file name"
    bias = _first_layer(state, "bias")
    polarity = bias_polarity(bias) if bias is not None else float("nan")
    return f"conv1_1 bias polarity {polarity:+.3f}; --vgg-layout overrides"
