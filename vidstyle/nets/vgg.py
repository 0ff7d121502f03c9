"""VGG-19 feature extractor and where its weights come from.

`VGGFeatures` is the loss network of quality mode (Gatys et al. 2016) and of fast-mode training
(Johnson et al. 2016). It takes RGB frames in [0, 1] and normalises them itself, for whichever
checkpoint layout it loaded, so no caller ever needs to know about ImageNet means or BGR order.

Weights are looked for, in order: an explicit path (`--vgg-weights`), `$VIDSTYLE_VGG_WEIGHTS`,
torchvision's hub cache (`$TORCH_HOME/hub/checkpoints`), then a download of torchvision's
IMAGENET1K_V1 checkpoint into that cache. Offline with none of these, `weights="auto"` falls back
to seeded random weights with a warning: random multi-scale features still carry colour and
texture statistics (Ustyuzhaninov et al. 2016, "Texture synthesis using shallow convolutional
networks with random filters"; He et al. 2016, "A powerful generative model using random
weights for the deep image representation"), so a render still works, only weaker.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vidstyle.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
CAFFE_FILE = "vgg19-d01eb7cb.pth"  # jcjohnson/pytorch-vgg conversion of the original Caffe model
TORCHVISION_URL = f"https://download.pytorch.org/models/{TORCHVISION_FILE}"
# File names end in the first 8 hex digits of the file's sha256 (torch.hub's convention); a file
# still carrying one of these names says its layout without being inspected.
_TORCHVISION_TAG = "dcbb9e9d"
_CAFFE_TAG = "d01eb7cb"
_HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})$")
WEIGHTS_ENV = "VIDSTYLE_VGG_WEIGHTS"

# Per socket operation, not for the whole 548 MB: an offline machine (DNS fails, or packets are
# dropped) gives up within this time instead of urllib's default of waiting forever.
DOWNLOAD_TIMEOUT_S = 15.0

# torchvision layout: RGB in [0, 1], then (x - mean) / std.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# Caffe layout: BGR in [0, 255] minus this per-channel mean (Simonyan & Zisserman's ILSVRC mean).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# Threshold on mean |w| of conv1_1 that tells the two layouts apart when the file name does not.
# The Caffe model reads input about 255 * 0.226 ~ 58 times larger than torchvision's normalised
# input, so a first layer computing the same responses has weights ~58x smaller. torchvision's
# own init (Kaiming normal, fan_out = 64 * 9) gives mean |w| = sqrt(2 / 576) * sqrt(2 / pi) ~ 0.047
# and trained torchvision filters are larger still (entries of 0.1-0.7), while 58x smaller
# weights sit around 0.001-0.005. 0.01 is roughly the geometric middle of the two ranges, with a
# margin of ~5x on either side. The file name is checked first, so this only decides for renamed
# files; the choice is logged so a wrong guess can be fixed by restoring the file name.
_CAFFE_MAX_MEAN_ABS = 0.01

# (output channels, convolutions) per block of configuration "E" in Simonyan & Zisserman 2015.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def _layer_table() -> tuple[tuple[str, ...], dict[int, tuple[int, int]]]:
    """Layer names in `torchvision.models.vgg19().features` order, and each conv's (in, out)."""
    names: list[str] = []
    convs: dict[int, tuple[int, int]] = {}
    channels = 3
    for block, (width, count) in enumerate(_BLOCKS, start=1):
        for j in range(1, count + 1):
            convs[len(names)] = (channels, width)
            names += [f"conv{block}_{j}", f"relu{block}_{j}"]
            channels = width
        names.append(f"pool{block}")
    return tuple(names), convs


VGG_LAYER_NAMES, _CONVS = _layer_table()
_PARAM_KEY = re.compile(r"\d+\.(?:weight|bias)")


@dataclass(frozen=True)
class WeightSource:
    """What a `VGGFeatures` was built from, for logs and render metadata."""

    kind: str  # "pretrained" | "random"
    layout: str | None  # "torchvision" | "caffe"; None for random weights
    path: Path | None  # checkpoint file used; None for random weights
    origin: str  # where it came from, in words


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
        raise WeightsError(f"VGG-19 weights file not found; {what_to_do}", path)
    if not path.is_file():
        raise WeightsError(f"VGG-19 weights path is not a file; {what_to_do}", path)


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


def find_weights(
    explicit: Path | None = None, *, allow_download: bool = True
) -> tuple[Path, str] | None:
    """Locate a VGG-19 checkpoint; returns (path, origin in words) or None if there is none.

    A path the user named (argument or environment variable) that does not exist raises
    WeightsError: silently falling back to other weights would hide their mistake. A failed
    download is not an error here (offline machines are normal); it is logged and gives None.
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
    for name in (TORCHVISION_FILE, CAFFE_FILE):
        if (cache / name).is_file():
            return cache / name, _cache_origin()

    if not allow_download:
        return None
    dst = cache / TORCHVISION_FILE
    log.info("Downloading VGG-19 weights (548 MB) from %s to %s", TORCHVISION_URL, dst)
    try:
        _download(TORCHVISION_URL, dst)
    except Exception as exc:  # any failure means "no weights from here"; the caller decides
        log.info("Could not download VGG-19 weights from %s: %s", TORCHVISION_URL, _one_line(exc))
        return None
    if not dst.is_file():
        log.info("Download of %s left no file at %s", TORCHVISION_URL, dst)
        return None
    return dst, "downloaded from torchvision"


def _first_conv_weight(state_dict: Mapping[str, object]) -> torch.Tensor | None:
    for key in ("features.0.weight", "0.weight", "module.features.0.weight"):
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor):
            return value
    return None


def detect_layout(state_dict: Mapping[str, object], path: Path | str | None = None) -> str:
    """ "torchvision" or "caffe": by file name when it is one of the known files, else by the
    magnitude of conv1_1's weights (see `_CAFFE_MAX_MEAN_ABS`).

    Accepts full-model dicts ("features.N.weight", classifier keys ignored) and bare features
    dicts ("N.weight").
    """
    if path is not None:
        name = Path(path).name
        if _CAFFE_TAG in name:
            return "caffe"
        if _TORCHVISION_TAG in name:
            return "torchvision"
    weight = _first_conv_weight(state_dict)
    if weight is None:
        raise WeightsError(
            "not a VGG-19 checkpoint: no first convolution (features.0.weight); "
            f"use torchvision's {TORCHVISION_FILE}",
            path,
        )
    mean_abs = weight.detach().float().abs().mean().item()
    layout = "caffe" if mean_abs < _CAFFE_MAX_MEAN_ABS else "torchvision"
    log.info(
        "%s: guessed %s layout from conv1_1 mean |w| = %.4g (threshold %g); name the file "
        "%s or %s to make the layout explicit",
        path if path is not None else "VGG-19 weights",
        layout,
        mean_abs,
        _CAFFE_MAX_MEAN_ABS,
        TORCHVISION_FILE,
        CAFFE_FILE,
    )
    return layout


def _features_state(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The 16 conv layers' tensors as float32, keyed "N.weight"/"N.bias"; checks every shape."""
    hint = f"use torchvision's {TORCHVISION_FILE} or the Caffe conversion {CAFFE_FILE}"
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # training checkpoints often wrap the state dict
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"not a VGG-19 state dict (the file holds a {type(obj).__name__}); {hint}", path
        )
    found: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        key = key.removeprefix("module.")  # saved from DataParallel
        key = key.removeprefix("features.")  # full torchvision model; classifier.* is dropped
        if _PARAM_KEY.fullmatch(key):
            found[key] = value

    state: dict[str, torch.Tensor] = {}
    for index, (c_in, c_out) in _CONVS.items():
        expected = {"weight": (c_out, c_in, 3, 3), "bias": (c_out,)}
        for kind, shape in expected.items():
            key = f"{index}.{kind}"
            layer = VGG_LAYER_NAMES[index]
            if key not in found:
                raise WeightsError(
                    f"not a VGG-19 checkpoint: features.{key} ({layer}) is missing; {hint}", path
                )
            tensor = found[key]
            if tuple(tensor.shape) != shape:
                raise WeightsError(
                    f"not a VGG-19 checkpoint: features.{key} ({layer}) has shape "
                    f"{tuple(tensor.shape)}, VGG-19 has {shape}; {hint}",
                    path,
                )
            if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
                raise WeightsError(
                    f"features.{key} ({layer}) holds non-finite or non-float values; the file "
                    "is damaged: download it again",
                    path,
                )
            state[key] = tensor.detach().to(torch.float32).contiguous()
    return state


def load_features_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a VGG-19 checkpoint: (conv tensors keyed "N.weight"/"N.bias", layout).

    Raises WeightsError naming the file if it cannot be read or is not a VGG-19.
    """
    path = Path(path)
    try:
        # weights_only: a checkpoint is data; never run pickled code from a downloaded file.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files
        raise WeightsError(
            f"cannot read VGG-19 weights ({_one_line(exc)}); the file may be truncated or "
            "corrupt: download it again or pass another --vgg-weights",
            path,
        ) from exc
    state = _features_state(obj, path)
    del obj  # the classifier (~400 MB) is not needed; let it go before building the module
    return state, detect_layout(state, path)


def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
    if isinstance(layers, str):  # a bare "relu4_1" would otherwise be iterated per character
        layers = (layers,)
    unique = tuple(dict.fromkeys(layers))
    if not unique:
        raise ConfigError("no VGG-19 layers requested; name at least one, e.g. relu4_1")
    for name in unique:
        if name not in VGG_LAYER_NAMES:
            raise ConfigError(
                f"unknown VGG-19 layer {name!r}; use names like conv1_1, relu4_1, pool5"
            )
    return unique


def _make_features(depth: int, pooling: str) -> nn.Sequential:
    """torchvision's `vgg19().features[:depth]`, with avg pools if asked, params uninitialised."""
    modules: list[nn.Module] = []
    for index, name in enumerate(VGG_LAYER_NAMES[:depth]):
        if name.startswith("conv"):
            c_in, c_out = _CONVS[index]
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


def _weights_not_found_message() -> str:
    return (
        f"VGG-19 weights not found; put {TORCHVISION_FILE} (from {TORCHVISION_URL}) in "
        f"{cache_dir()} or pass --vgg-weights PATH / set {WEIGHTS_ENV}"
    )


class VGGFeatures(nn.Module):
    """Frozen VGG-19 activations at the requested layers, for RGB [0, 1] input.

    Truncated after the deepest requested layer. Parameters never require grad, so a backward
    pass computes gradients for the input image only.
    """

    def __init__(
        self,
        layers: Sequence[str],
        *,
        pooling: str = "max",
        weights: str = "auto",
        weights_path: Path | None = None,
        seed: int = 0,
        allow_download: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ConfigError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        if weights not in ("auto", "pretrained", "random"):
            raise ConfigError(f"features must be auto, pretrained or random, not {weights!r}")
        self.layers = _check_layers(layers)
        depth = max(VGG_LAYER_NAMES.index(name) for name in self.layers) + 1
        self._taps = {VGG_LAYER_NAMES.index(name): name for name in self.layers}
        self.features = _make_features(depth, pooling)

        self.source = self._load_weights(weights, weights_path, seed, allow_download)

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

        self.requires_grad_(False)
        self.eval()

    def _load_weights(
        self, weights: str, weights_path: Path | None, seed: int, allow_download: bool
    ) -> WeightSource:
        if weights == "random" and weights_path is not None:
            log.info("Random VGG-19 features requested; ignoring weights file %s", weights_path)
        if weights != "random":
            found = find_weights(weights_path, allow_download=allow_download)
            if found is not None:
                path, origin = found
                state, layout = load_features_state(path)
                own = self.features.state_dict()
                self.features.load_state_dict({key: state[key] for key in own}, strict=True)
                log.info("VGG-19 weights: %s (%s, %s layout)", path, origin, layout)
                return WeightSource("pretrained", layout, path, origin)
            if weights == "pretrained":
                raise WeightsError(_weights_not_found_message())
            log.warning(
                "Pretrained VGG-19 weights not found, so features use random weights (seed %d): "
                "results will be weaker (colour and texture carry over, shapes less so). To fix: "
                "put %s (from %s) in %s, or pass --vgg-weights PATH / set %s",
                seed,
                TORCHVISION_FILE,
                TORCHVISION_URL,
                cache_dir(),
                WEIGHTS_ENV,
            )
        _random_init(self.features, seed)
        return WeightSource("random", None, None, f"random init (seed {seed})")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations keyed by requested layer name, in the order the layers were requested."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N×3×H×W RGB tensor, got shape {tuple(x.shape)}")
        if self._bgr:
            x = x.flip(1)  # a new tensor: the caller's frame is never modified
        h = (x - self.mean) / self.std
        taps: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            h = layer(h)
            name = self._taps.get(index)
            if name is not None:
                taps[name] = h
        return {name: taps[name] for name in self.layers}

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, source={self.source.origin}"


def describe_weights(explicit: Path | None = None, *, check: bool = True) -> list[str]:
    """Lines for `vidstyle weights`: which checkpoint would be used, from where, and what the
    feature modes would do. Never downloads; with `check`, loads the file to validate it."""
    lines: list[str] = []
    cache = cache_dir()
    problem: str | None = None
    found: tuple[Path, str] | None = None
    try:
        found = find_weights(explicit, allow_download=False)
    except WeightsError as exc:
        problem = str(exc)

    usable = False
    if found is not None:
        path, origin = found
        lines.append(f"VGG-19 weights: {path} (from {origin})")
        if check:
            try:
                _, layout = load_features_state(path)
            except WeightsError as exc:
                problem = str(exc)
                lines.append(f"  cannot be used: {problem}")
            else:
                usable = True
                lines.append(f"  layout: {layout}; all 16 conv layers present and well-formed")
        else:
            usable = True
    elif problem is not None:
        lines.append(f"VGG-19 weights: {problem}")
    else:
        lines.append("VGG-19 weights: none found")

    lines.append(f"--vgg-weights: {explicit if explicit is not None else 'not given'}")
    env_value = os.environ.get(WEIGHTS_ENV, "").strip()
    lines.append(f"${WEIGHTS_ENV}: {env_value or 'not set'}")
    lines.append(
        f"torchvision cache searched: {cache} (for {TORCHVISION_FILE}, then {CAFFE_FILE}; "
        "set TORCH_HOME to move it)"
    )
    if usable and found is not None:
        lines.append(f"--features auto / pretrained: use {found[0]}")
    elif problem is not None:
        lines.append("--features auto / pretrained: fail with the error above")
    else:
        lines.append(
            f"--features auto: try to download {TORCHVISION_URL} into {cache} "
            f"(gives up after {DOWNLOAD_TIMEOUT_S:g} s without network), else use random-init "
            "features with a warning (weaker results); --features pretrained: same download, "
            "else fail"
        )
        lines.append(
            f"offline: copy {TORCHVISION_FILE} from {TORCHVISION_URL} into {cache}, "
            f"or point --vgg-weights / ${WEIGHTS_ENV} at it"
        )
    return lines
