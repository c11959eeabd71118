"""ESRGAN-family super-resolution networks, for generate's learned upscaler (``upscaler: "learned"``).

The network is BasicSR's ``RRDBNet`` (ESRGAN, Real-ESRGAN x4plus / x2plus and the many
community finetunes in that format), written out here: spandrel, the usual loader, needs
torchvision, which does not install beside the CPU torch wheel this project uses. A file
(``studio.models.weight_files``) is a state dict in either key layout: BasicSR's (``conv_first``,
``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1``, ...; possibly under ``params_ema``) or the
original ESRGAN's (``model.0``, ``model.1.sub.N.RDBK.convJ.0``, ...). Its size is read from the
weights: features, blocks, growth channels, and the scale (2: pixel-unshuffled input, 4: two
upsampling convolutions, 8: three).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from studio.errors import InvalidRequest
from studio.models.weight_files import fetch_weights, read_state_dict


class _DenseBlock(nn.Module):
    """Residual dense block: five 3x3 convolutions, each seeing every earlier output."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = _DenseBlock(num_feat, num_grow_ch)
        self.rdb2 = _DenseBlock(num_feat, num_grow_ch)
        self.rdb3 = _DenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """BasicSR's RRDBNet: RGB in [0, 1] at ``h x w`` -> RGB at ``scale h x scale w``."""

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"scale {scale} is not one of 1, 2, 4, 8")
        self.scale = scale
        self.unshuffle = {1: 4, 2: 2}.get(scale, 1)  # x1/x2 models see a pixel-unshuffled input and upsample x4
        self.conv_first = nn.Conv2d(3 * self.unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if scale == 8:
            self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        if self.scale == 8:
            feat = self.lrelu(self.conv_up3(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


@dataclass(frozen=True)
class Upscaler:
    """A loaded network and what it is (result metadata)."""

    net: RRDBNet
    name: str
    num_feat: int
    num_block: int

    @property
    def scale(self) -> int:
        return self.net.scale

    def describe(self) -> dict:
        return {"model": self.name, "architecture": "RRDBNet (ESRGAN)", "scale": self.scale,
                "features": self.num_feat, "blocks": self.num_block}


def load_upscaler(source: str) -> Upscaler:
    """The network in ``source``: a file path, or ``hub:<repo_id>/<filename>`` on the Hugging
    Face Hub (``ModelUnavailable`` when it cannot be fetched, ``InvalidRequest`` when the file is
    not an ESRGAN-family state dict)."""
    path = fetch_weights(source, "the learned upscaler")
    state = _new_layout(read_state_dict(path, "upscaler"))
    try:
        num_feat = state["conv_first.weight"].shape[0]
        in_channels = state["conv_first.weight"].shape[1]
        num_grow_ch = state["body.0.rdb1.conv1.weight"].shape[0]
    except KeyError as missing:
        raise InvalidRequest(f"upscaler {path.name}: not an ESRGAN-family (RRDBNet) state dict ({missing} missing)")
    num_block = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k)))
    scale = {3: 8 if "conv_up3.weight" in state else 4, 12: 2, 48: 1}.get(in_channels)
    if scale is None:
        raise InvalidRequest(f"upscaler {path.name}: a first convolution of {in_channels} input channels is no "
                             "RRDBNet scale the studio knows (3, 12 or 48)")
    net = RRDBNet(scale, num_feat, num_block, num_grow_ch)
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise InvalidRequest(f"upscaler {path.name}: the weights do not fit an RRDBNet ({str(error)[:200]})") from None
    return Upscaler(net.eval(), path.name, num_feat, num_block)


_OLD_TOP = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2", "model.8": "conv_hr",
            "model.10": "conv_last"}


def _new_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original ESRGAN keys (``model.N...``) in BasicSR's layout; BasicSR keys unchanged."""
    if "conv_first.weight" in state or "model.0.weight" not in state:
        return state
    blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k)))
    renamed = {}
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        if module in _OLD_TOP:
            renamed[f"{_OLD_TOP[module]}.{kind}"] = value
        elif module == f"model.1.sub.{blocks}":
            renamed[f"conv_body.{kind}"] = value
        elif m := re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0", module):
            renamed[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{kind}"] = value
    return renamed
