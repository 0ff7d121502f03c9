"""`vidstyle models import`: fast-style networks trained elsewhere, converted to vidstyle models.

pytorch/examples' `fast_neural_style` (BSD licence) publishes networks for four styles (candy,
mosaic, rain princess, udnie), fetched by its `download_saved_models.py`. They are state dicts
of the same Johnson et al. network vidstyle trains (`vidstyle.nets.transformer`): a 9×9 conv,
two stride-2 convs, five residual blocks, two nearest-upsample convs and a 9×9 conv to RGB, each
conv followed by affine instance norm and ReLU but the last. Three things differ:

- names: `conv1.conv2d`, `in1`, ..., `res1`..`res5` (`conv1`, `in1`, `conv2`, `in2` inside),
  `deconv1`..`deconv3` — mapped key by key onto vidstyle's `body.N...`;
- range: their images go in and come out as 0-255 RGB, vidstyle's as [0, 1]. The input side is
  folded into the first convolution (x·255 = 127.5·(2x − 1) + 127.5: its weights ×127.5; the
  constant adds a per-channel constant that the instance norm after it removes), the output
  side into the last one (÷255), with the network's output mapping set to clipping
  (`TransformerArch.output`), so the converted network computes what the original does, to
  float rounding;
- files saved with PyTorch before 0.4 carry instance-norm running statistics, which the
  network never used (it normalises each image by its own statistics): they are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from vidstyle.errors import WeightsError
from vidstyle.fingerprint import file_digest
from vidstyle.nets.models import (
    MODEL_SUFFIX,
    atomic_save,
    build_net,
    load_file,
    model_dict,
    models_dir,
)
from vidstyle.nets.transformer import TransformerArch

PYTORCH_EXAMPLES = "pytorch/examples fast_neural_style"
_RUNNING_STATS = re.compile(r"(^|\.)in\d+\.running_(mean|var)$|num_batches_tracked$")
_INPUT_SCALE = 127.5  # x·255 = 127.5·(2x − 1) + 127.5: vidstyle's input is 2x − 1
_OUTPUT_SCALE = 255.0


def _key_map(blocks: int) -> dict[str, str]:
    """pytorch/examples' layer names → vidstyle's (`body.N...`), without the .weight/.bias."""
    names = {
        "conv1.conv2d": "body.0.1",
        "in1": "body.0.2",
        "conv2.conv2d": "body.1.1",
        "in2": "body.1.2",
        "conv3.conv2d": "body.2.1",
        "in3": "body.2.2",
    }
    for k in range(blocks):
        block = f"body.{3 + k}.body"
        names |= {
            f"res{k + 1}.conv1.conv2d": f"{block}.0.1",
            f"res{k + 1}.in1": f"{block}.0.2",
            f"res{k + 1}.conv2.conv2d": f"{block}.2",
            f"res{k + 1}.in2": f"{block}.3",
        }
    up = 3 + blocks
    names |= {
        "deconv1.conv2d": f"body.{up}.1.1",
        "in4": f"body.{up}.1.2",
        "deconv2.conv2d": f"body.{up + 1}.1.1",
        "in5": f"body.{up + 1}.1.2",
        "deconv3.conv2d": f"body.{up + 2}.1",
    }
    return names


@dataclass(frozen=True)
class ImportedModel:
    path: Path  # the model file written
    name: str
    arch: TransformerArch
    dropped: int  # instance-norm running statistics dropped (old files)


def _state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj.get("format") is not None:
        raise WeightsError(
            "is already a vidstyle file, not a pytorch/examples network; copy it into the "
            "models folder to use it by name",
            path,
        )
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise WeightsError(
            "not a fast_neural_style state dict (a mapping of layer names to tensors); pass a "
            ".pth from pytorch/examples' download_saved_models.py",
            path,
        )
    return {key.removeprefix("module."): value for key, value in obj.items()}


def _arch(state: Mapping[str, torch.Tensor], path: Path) -> TransformerArch:
    """The network's shape, read from its tensors (the published ones are 32/64/128, 5 blocks)."""
    needed = ("conv1.conv2d.weight", "conv2.conv2d.weight", "conv3.conv2d.weight")
    missing = [key for key in needed if key not in state]
    if missing:
        example = next(iter(state), "none")
        raise WeightsError(
            f"not a pytorch/examples fast_neural_style network: no {missing[0]} (its first "
            f"key is {example}); pass a .pth from its download_saved_models.py",
            path,
        )
    c1, c2, c3 = (int(state[key].shape[0]) for key in needed)
    blocks = 0
    while f"res{blocks + 1}.conv1.conv2d.weight" in state:
        blocks += 1
    name = "standard" if (c1, c2, c3, blocks) == (32, 64, 128, 5) else "imported"
    return TransformerArch(name, (c1, c2, c3), blocks, output="clamp")


def convert_state(
    state: Mapping[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], TransformerArch, int]:
    """A pytorch/examples state dict as vidstyle's (see the module's notes): the tensors, the
    architecture, and how many running statistics were dropped."""
    kept = {k: v for k, v in state.items() if not _RUNNING_STATS.search(k)}
    dropped = len(state) - len(kept)
    arch = _arch(kept, path)
    names = _key_map(arch.residual_blocks)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in kept.items():
        layer, _, kind = key.rpartition(".")
        if layer not in names:
            unknown.append(key)
            continue
        converted[f"{names[layer]}.{kind}"] = value.detach().to(torch.float32).clone()
    if unknown:
        raise WeightsError(
            f"not a pytorch/examples fast_neural_style network: {len(unknown)} tensor(s) it "
            f"does not have, e.g. {unknown[0]}",
            path,
        )
    first, last = names["conv1.conv2d"], names["deconv3.conv2d"]
    # conv(127.5·h + 127.5) = conv_{127.5·W}(h) + 127.5·ΣW, reflection padding included (it
    # pads a constant image with the same constant). The constant is left out: the instance
    # norm that follows subtracts each channel's mean, so a per-channel constant changes
    # nothing (neither does the bias), and without it the activations stay near zero, where
    # bf16 and fp16 keep their precision.
    converted[f"{first}.weight"] = converted[f"{first}.weight"] * _INPUT_SCALE
    converted[f"{last}.weight"] = converted[f"{last}.weight"] / _OUTPUT_SCALE
    converted[f"{last}.bias"] = converted[f"{last}.bias"] / _OUTPUT_SCALE
    return converted, arch, dropped


def import_model(
    source: Path,
    *,
    name: str | None = None,
    directory: str | Path | None = None,
    overwrite: bool = False,
) -> ImportedModel:
    """Convert the pytorch/examples network in `source` and save it as `<name>.pth` in the
    models directory (name: the file's stem), recording where it came from."""
    source = Path(source)
    name = name or source.stem
    if not name or "/" in name or name.startswith("."):
        raise WeightsError(f"cannot name a model {name!r}; give --name a plain name")
    state = _state_dict(load_file(source, "fast_neural_style network", "download it again"), source)
    converted, arch, dropped = convert_state(state, source)
    net = build_net(converted, arch, source)  # every tensor present, every shape right
    folder = models_dir(directory)
    target = folder / f"{name.removesuffix(MODEL_SUFFIX)}{MODEL_SUFFIX}"
    if target.exists() and not overwrite:
        raise WeightsError(
            "a model of this name exists; pass --name NAME for another, or --overwrite", target
        )
    folder.mkdir(parents=True, exist_ok=True)
    origin = {
        "file": source.name,
        "sha256": file_digest(source, 64),
        "layout": PYTORCH_EXAMPLES,
        "dropped running statistics": dropped,
    }
    atomic_save(model_dict(net, style=name, training={}, source=origin), target)
    return ImportedModel(path=target, name=target.stem, arch=arch, dropped=dropped)
