"""The fast-mode image transformation network (Johnson et al. 2016, as refined since).

Johnson, Alahi & Fei-Fei 2016, "Perceptual losses for real-time style transfer", with the
changes that became standard after it:

- instance normalisation instead of batch normalisation (Ulyanov et al. 2016, "Instance
  normalization: the missing ingredient for fast stylization"): contrast is normalised per image,
  which is what lets one network stylize any frame; it also makes a batch of frames give the same
  result as the frames one at a time;
- nearest-neighbour upsampling followed by a convolution instead of transposed convolutions,
  which leave checkerboard artefacts (Odena et al. 2016, "Deconvolution and checkerboard
  artifacts");
- reflection padding instead of zero padding, so borders do not darken.

Layout: 9×9 conv (c1) → two 3×3 stride-2 convs (c2, c3) → residual blocks at c3 → two ×2
upsample + 3×3 conv stages (c2, c1) → 9×9 conv to RGB. `standard` is c = (32, 64, 128) with five
residual blocks, as in the paper; `small` halves every width (about a quarter of the compute)
for CPU users.

Input and output follow the project convention: N×3×H×W RGB in [0, 1]. Any H×W works: the frame
is padded up to a multiple of 4 (the two stride-2 stages halve it twice) and cropped back, so
the output always has the input's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Two stride-2 stages: the padded frame must divide by 2·2.
_MULTIPLE = 4
# The residual blocks see the frame at 1/4 size; reflection padding of 1 needs at least 2 px
# there and instance norm needs more than one value per channel, so tiny frames are padded up
# to this size first (and cropped back like any other padding).
_MIN_SIDE = 16


@dataclass(frozen=True)
class TransformerArch:
    """The shape of a transformer network; stored in model files so they rebuild exactly."""

    name: str
    channels: tuple[int, int, int]  # widths of the 9×9 stage and the two downsampling stages
    residual_blocks: int
    # How the last convolution becomes an image: "tanh" (networks vidstyle trains) or "clamp"
    # (its values clipped to [0, 1]: networks imported from pytorch/examples, whose last layer
    # was trained to give 0-255 values that are clipped).
    output: str = "tanh"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)  # plain types only: model files load weights_only
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransformerArch:
        """Inverse of `as_dict`; raises ValueError (with the reason) for anything malformed."""
        try:
            name = data["name"]
            channels = tuple(int(c) for c in data["channels"])
            blocks = int(data["residual_blocks"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed architecture {dict(data)!r}") from err
        output = data.get("output", "tanh")  # files written before it was recorded: tanh
        if not isinstance(name, str) or len(channels) != 3 or min(channels) < 1 or blocks < 0:
            raise ValueError(f"malformed architecture {dict(data)!r}")
        if output not in OUTPUTS:
            raise ValueError(f"unknown output mapping {output!r}")
        return cls(
            name=name,
            channels=(channels[0], channels[1], channels[2]),
            residual_blocks=blocks,
            output=output,
        )


OUTPUTS = ("tanh", "clamp")


ARCHS: dict[str, TransformerArch] = {
    "standard": TransformerArch("standard", (32, 64, 128), 5),
    "small": TransformerArch("small", (16, 32, 64), 5),
}


def get_arch(name: str) -> TransformerArch:
    try:
        return ARCHS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose {' or '.join(ARCHS)}") from None


class InstanceNorm(nn.InstanceNorm2d):
    """Affine instance normalisation computed as group norm with one group per channel.

    Same parameters (and state-dict keys) and the same arithmetic as `nn.InstanceNorm2d`, but
    `F.instance_norm` views an N×C batch as one image of N·C channels, which copies a
    channels-last tensor into NCHW and back around every layer; `F.group_norm` has native
    channels-last and bf16 CPU kernels, so the network can stay channels-last throughout.
    """

    def forward(self, x: Tensor) -> Tensor:
        # The parameters follow the input's dtype: a network converted to bf16 has bf16 ones.
        weight = self.weight.to(x.dtype) if self.weight is not None else None
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.group_norm(x, x.shape[1], weight, bias, self.eps)


class ReflectionPad(nn.ReflectionPad2d):
    """Reflection padding in the dtype of its input, autocast or not.

    CPU autocast runs reflection padding in float32 whatever its input, so under bf16 autocast
    every padded convolution paid a cast of its input to float32 and back to bf16 (and the
    same twice again in the backward pass): 60 extra copies a training step of the network,
    each a pass over the activations, and none of them makes the padding more exact (it only
    moves values).
    """

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


class ConvLayer(nn.Sequential):
    """Reflection pad + conv (+ instance norm + ReLU): 'same' size for stride 1."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, *, norm_relu: bool = True
    ) -> None:
        layers: list[nn.Module] = [
            ReflectionPad(kernel // 2),
            nn.Conv2d(c_in, c_out, kernel, stride=stride),
        ]
        if norm_relu:
            layers += [InstanceNorm(c_out, affine=True), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3×3 convs with instance norm; identity shortcut (He et al. 2016, as in Johnson)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            ReflectionPad(1),
            nn.Conv2d(channels, channels, 3),
            InstanceNorm(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Sequential):
    """Nearest ×2 then a 3×3 conv: the checkerboard-free replacement of a transposed conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(c_in, c_out, 3))


class TransformerNet(nn.Module):
    """Frames in, stylized frames out: N×3×H×W RGB [0, 1] → same shape, RGB [0, 1]."""

    def __init__(self, arch: TransformerArch | str = "standard") -> None:
        super().__init__()
        self.arch = get_arch(arch) if isinstance(arch, str) else arch
        c1, c2, c3 = self.arch.channels
        self.body = nn.Sequential(
            ConvLayer(3, c1, 9),
            ConvLayer(c1, c2, 3, stride=2),
            ConvLayer(c2, c3, 3, stride=2),
            *[ResidualBlock(c3) for _ in range(self.arch.residual_blocks)],
            UpsampleConv(c3, c2),
            UpsampleConv(c2, c1),
            ConvLayer(c1, 3, 9, norm_relu=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N×3×H×W RGB tensor, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        pad_h = _padded(height) - height
        pad_w = _padded(width) - width
        # Centre the input: instance norm after the first conv makes its scale irrelevant, but a
        # zero-mean input keeps the first layer's bias meaningful. A new tensor: the caller's
        # frame is never modified.
        h = x * 2.0 - 1.0
        if pad_h or pad_w:
            # Replicate, not reflect: reflection needs the pad to be smaller than the side, and
            # the padding is cropped away below anyway. Right/bottom only, so cropping is a slice.
            h = F.pad(h, (0, pad_w, 0, pad_h), mode="replicate")
        h = self.body(h)
        if pad_h or pad_w:
            h = h[..., :height, :width]
        if self.arch.output == "clamp":
            return h.clamp(0.0, 1.0)
        # Johnson et al.'s scaled tanh, mapped to [0, 1]: the output is always a valid image and
        # an untrained network starts at mid grey rather than at a clipped extreme.
        return torch.tanh(h).add(1.0).mul(0.5)


def _padded(side: int) -> int:
    side = max(side, _MIN_SIDE)
    return -(-side // _MULTIPLE) * _MULTIPLE
