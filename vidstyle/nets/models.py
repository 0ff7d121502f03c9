"""Fast-mode model files: the format, atomic saving, safe loading, and the models directory.

A model file is one `.pth` holding a plain dict (so it loads with `weights_only=True`, which never
runs pickled code from a file someone sent you):

    format      "vidstyle.fast-model"       what kind of file this is
    version     1 or 2                      2: an output mapping other than tanh (arch.output);
                                            bumped when the layout changes incompatibly
    arch        {"name", "channels", "residual_blocks"}   rebuilds the exact network
    style       style image file name (for listings and default output names)
    training    the training settings (plain values), steps done, loss network used
    created     ISO 8601 UTC time of writing
    state_dict  the network's tensors
    source      (imported networks only) the file it was converted from, its SHA-256, its layout

Training checkpoints (`MODEL.pth.ckpt`, see `vidstyle.stylize.train`) use the same rules with
their own format tag, so passing one where a model is expected gets a clear message.

Models are found by path or by name in the models directory: `--models-dir`, else
`$VIDSTYLE_MODELS`, else `$XDG_CACHE_HOME/vidstyle/models` (default `~/.cache/vidstyle/models`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import torch

from vidstyle.atomic import output_error, write_atomically
from vidstyle.errors import OutputError, WeightsError
from vidstyle.filetypes import checkpoint_load_failure, recognised_media
from vidstyle.nets.transformer import TransformerArch, TransformerNet

MODEL_FORMAT = "vidstyle.fast-model"
MODEL_VERSION = 2  # the newest version read (version 1 files: tanh output only)
CHECKPOINT_FORMAT = "vidstyle.train-checkpoint"
MODEL_SUFFIX = ".pth"
CHECKPOINT_SUFFIX = ".ckpt"  # appended to the model file name: starry.pth -> starry.pth.ckpt
MODELS_ENV = "VIDSTYLE_MODELS"


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself (everything but the tensors)."""

    path: Path
    arch: TransformerArch
    style: str
    training: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    version: int = MODEL_VERSION
    source: dict[str, Any] = field(default_factory=dict)  # where an imported network came from

    @property
    def name(self) -> str:
        """The name `--model` accepts when the file is in the models directory."""
        return self.path.name.removesuffix(MODEL_SUFFIX)

    def summary(self) -> str:
        """One line for logs: name, architecture, style, how it was trained."""
        t = self.training
        parts = [f"{self.arch.name} network", f"style {self.style}"]
        if "steps" in t:
            parts.append(f"{t['steps']} steps at {t.get('size', '?')} px")
        if "loss_network" in t:
            parts.append(f"loss network {t['loss_network']}")
        if self.source:
            parts.append(f"imported from {self.source.get('file', '?')}")
        return f"{self.name} ({', '.join(parts)})"


def models_dir(explicit: str | Path | None = None) -> Path:
    """The models directory: explicit setting, else $VIDSTYLE_MODELS, else the user cache."""
    if explicit:
        return Path(explicit).expanduser()
    env_value = os.environ.get(MODELS_ENV, "").strip()
    if env_value:
        return Path(env_value).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "vidstyle" / "models"


def checkpoint_path(model_path: Path) -> Path:
    """Where training keeps the resumable state of the model it writes to `model_path`."""
    return model_path.with_name(model_path.name + CHECKPOINT_SUFFIX)


# ------------------------------------------------------------------------------------- writing


def atomic_save(obj: object, path: Path) -> None:
    """`torch.save` atomically (`vidstyle.atomic`): a crash, a full disk or Ctrl-C during the
    write never leaves a truncated file under `path`, and an older file there stays intact until
    the new one is complete."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"folder {path.parent} does not exist; create it first", path)
    try:
        write_atomically(path, lambda file: torch_save(obj, file))
    except OSError as err:
        raise output_error(err, path) from err


def torch_save(obj: object, file: BinaryIO) -> None:
    """`torch.save` to an open file, raising a failed write (a full disk) as the `OSError` it
    is: torch reports it as a RuntimeError from its C++ zip writer ("unexpected pos ..."), with
    the file's own OSError only as its context."""
    try:
        torch.save(obj, file)
    except RuntimeError as err:
        if isinstance(err.__context__, OSError):
            raise err.__context__ from None
        raise


def model_dict(
    net: TransformerNet,
    *,
    style: str,
    training: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict a model file holds (tensors copied to the CPU so the file loads anywhere).
    `source`: where an imported network came from (see `vidstyle.nets.model_import`)."""
    data = {
        "format": MODEL_FORMAT,
        # A network with another output mapping than tanh is version 2: a vidstyle that reads
        # only version 1 would render it with the wrong mapping, and so refuses it instead.
        "version": 1 if net.arch.output == "tanh" else MODEL_VERSION,
        "arch": net.arch.as_dict(),
        "style": style,
        "training": dict(training),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
    }
    if source is not None:
        data["source"] = dict(source)
    return data


def save_model(path: Path, net: TransformerNet, *, style: str, training: Mapping[str, Any]) -> None:
    atomic_save(model_dict(net, style=style, training=training), path)


# ------------------------------------------------------------------------------------- reading


def load_file(path: Path, what: str, remedy: str = "train it again") -> object:
    """`torch.load(weights_only=True)` with every failure turned into a one-line WeightsError."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{what} not found; check the path", path)
    if not path.is_file():
        raise WeightsError(f"{what} path is not a file", path)
    kind = recognised_media(path)
    if kind is not None:
        # Before torch.load, whose unpickling error would be pages long and beside the point.
        hint = " (a style image goes to --style)" if kind.endswith("image") else ""
        raise WeightsError(
            f"is {kind}, not a {what}; pass a file written by `vidstyle train`{hint}", path
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        raise WeightsError(
            f"cannot read {what}: {checkpoint_load_failure(exc, path)}; the file is truncated, "
            f"corrupt or not written by vidstyle: {remedy}",
            path,
        ) from None


def _model_fields(obj: object, path: Path) -> tuple[dict[str, Any], ModelInfo]:
    """Check the dict a model file holds; return its state dict and what it says about itself."""
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"not a vidstyle model (the file holds a {type(obj).__name__}); pass a file written "
            "by `vidstyle train`",
            path,
        )
    kind = obj.get("format")
    if kind == CHECKPOINT_FORMAT:
        model = path.name.removesuffix(CHECKPOINT_SUFFIX)
        raise WeightsError(
            f"is a training checkpoint, not a model; pass {model} (written when training ends)",
            path,
        )
    if kind != MODEL_FORMAT:
        hint = " (it looks like a plain state dict, e.g. VGG-19 weights)" if kind is None else ""
        raise WeightsError(
            f"not a vidstyle fast-mode model{hint}; pass a file written by `vidstyle train`", path
        )
    version = obj.get("version")
    if not isinstance(version, int) or version > MODEL_VERSION:
        raise WeightsError(
            f"model format version {version!r} is newer than this vidstyle reads "
            f"({MODEL_VERSION}); upgrade vidstyle",
            path,
        )
    try:
        arch = TransformerArch.from_dict(obj.get("arch") or {})
    except ValueError as err:
        raise WeightsError(f"model file is damaged: {err}", path) from None
    state = obj.get("state_dict")
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError("model file is damaged: no state dict of tensors", path)
    training = obj.get("training")
    source = obj.get("source")
    info = ModelInfo(
        path=path,
        arch=arch,
        style=str(obj.get("style", "?")),
        training=dict(training) if isinstance(training, Mapping) else {},
        created=str(obj.get("created", "")),
        version=version,
        source=dict(source) if isinstance(source, Mapping) else {},
    )
    return dict(state), info


def build_net(
    state: Mapping[str, torch.Tensor], arch: TransformerArch, path: Path
) -> TransformerNet:
    """A network of `arch` holding `state`; a state dict of another shape is a WeightsError."""
    net = TransformerNet(arch)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        if wrong:
            key = wrong[0]
            detail = (
                f"{key} has shape {tuple(state[key].shape)}, the '{arch.name}' network has "
                f"{tuple(own[key].shape)}"
            )
        elif missing:
            detail = f"{len(missing)} tensor(s) missing, e.g. {missing[0]}"
        else:
            detail = f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}"
        raise WeightsError(
            f"weights do not match the '{arch.name}' architecture the file names ({detail}); "
            "the file is damaged: train it again",
            path,
        )
    if not all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in state.values()):
        raise WeightsError("model holds non-finite weights; train it again", path)
    net.load_state_dict(state, strict=True)
    return net


def read_model_info(path: Path) -> ModelInfo:
    """Metadata of a model file (the file is loaded and checked, the network is not built)."""
    path = Path(path)
    _, info = _model_fields(load_file(path, "model file"), path)
    return info


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[TransformerNet, ModelInfo]:
    """Load a model file as an eval-mode network on `device`; WeightsError naming the file."""
    path = Path(path)
    state, info = _model_fields(load_file(path, "model file"), path)
    net = build_net(state, info.arch, path)
    return net.to(device).eval(), info


def resolve_model(name: str | Path, directory: str | Path | None = None) -> Path:
    """A model given as a path (used as is) or a name in the models directory.

    `starry`, `starry.pth` and `./starry.pth` all work; a path that exists wins over a name.
    """
    given = Path(name).expanduser()
    if given.exists():
        return given
    folder = models_dir(directory)
    looks_like_path = given.parent != Path(".") or given.is_absolute()
    if not looks_like_path:
        for candidate in (folder / given.name, folder / (given.name + MODEL_SUFFIX)):
            if candidate.is_file():
                return candidate
    known = [info.name for info in list_models(folder) if isinstance(info, ModelInfo)]
    listing = f"models there: {', '.join(known)}" if known else "it holds no models"
    raise WeightsError(
        f"model not found as a file or as a name in {folder} ({listing}); "
        "train one with `vidstyle train` or pass a path",
        name,
    )


def list_models(directory: str | Path | None = None) -> list[ModelInfo | WeightsError]:
    """Every `*.pth` in the models directory, sorted by name: its info, or why it is unusable."""
    folder = models_dir(directory)
    if not folder.is_dir():
        return []
    found: list[ModelInfo | WeightsError] = []
    for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
        try:
            found.append(read_model_info(path))
        except WeightsError as err:
            found.append(err)
    return found
