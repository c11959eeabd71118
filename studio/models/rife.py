"""RIFE frame interpolation networks, for generate's learned interpolator (``interpolator: "learned"``).

The network is Practical-RIFE's ``IFNet`` of version 4.6 (``IFNet_HDv3``; the ``flownet.pkl``
many video tools ship, and its finetunes of other widths), written out here like the ESRGAN
network (``studio.models.esrgan``): four blocks, coarse to fine (1/8, 1/4, 1/2 and full size),
each refining a bidirectional flow to time ``t`` and a blend mask from both frames warped by the
flow so far. Later RIFE versions (4.7+) add a feature encoder that this layout does not have;
their files are refused with the reason. A file (``studio.models.weight_files``) is a state dict
with the keys ``block{0..3}.conv0.*``, ``block*.convblock.*`` and ``block*.lastconv.*``; the
block widths are read from the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from studio.errors import InvalidRequest
from studio.models.weight_files import fetch_weights, read_state_dict

#: Each block's input: both frames (warped by the flow so far after the first), the time, and
#: after the first the mask so far and the flow itself.
_FIRST_INPUT = 3 + 3 + 1
_LATER_INPUT = 3 + 3 + 1 + 1 + 4
SCALES = (8, 4, 2, 1)  # each block works at 1/scale of the frame size


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.LeakyReLU(0.2, True))


class _ResConv(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, channels, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class _IFBlock(nn.Module):
    """One refinement: (inputs, flow so far) at 1/scale -> (flow update, mask update) at full size."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_channels, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(_ResConv(width) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * 6, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` sampled at each pixel plus ``flow`` (pixels, x then y), bilinear, edges repeated."""
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=image.device, dtype=image.dtype),
                            torch.linspace(-1, 1, w, device=image.device, dtype=image.dtype), indexing="ij")
    grid = torch.stack((xs + flow[:, 0] * 2 / max(w - 1, 1), ys + flow[:, 1] * 2 / max(h - 1, 1)), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """RIFE 4.6: ``forward(frame0, frame1, t)`` -> the frame at time ``t`` in (0, 1), all ``[n, 3, H, W]``
    in [0, 1] with H and W multiples of 64."""

    def __init__(self, widths: tuple[int, int, int, int] = (192, 128, 96, 64)):
        super().__init__()
        self.widths = widths
        self.block0 = _IFBlock(_FIRST_INPUT, widths[0])
        self.block1 = _IFBlock(_LATER_INPUT, widths[1])
        self.block2 = _IFBlock(_LATER_INPUT, widths[2])
        self.block3 = _IFBlock(_LATER_INPUT, widths[3])

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, t: float) -> torch.Tensor:
        time = torch.full_like(frame0[:, :1], t)
        flow, mask = self.block0(torch.cat((frame0, frame1, time), 1), None, SCALES[0])
        warped0, warped1 = backward_warp(frame0, flow[:, :2]), backward_warp(frame1, flow[:, 2:4])
        for block, scale in zip((self.block1, self.block2, self.block3), SCALES[1:]):
            flow_update, mask_update = block(torch.cat((warped0, warped1, time, mask), 1), flow, scale)
            flow, mask = flow + flow_update, mask + mask_update
            warped0, warped1 = backward_warp(frame0, flow[:, :2]), backward_warp(frame1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


@dataclass(frozen=True)
class Interpolator:
    """A loaded network and what it is (result metadata)."""

    net: IFNet
    name: str

    def describe(self) -> dict:
        return {"model": self.name, "architecture": "IFNet (RIFE 4.6)", "block_widths": list(self.net.widths)}


def load_interpolator(source: str) -> Interpolator:
    """The network in ``source``: a file path, or ``hub:<repo_id>/<filename>`` on the Hugging Face
    Hub (``ModelUnavailable`` when it cannot be fetched, ``InvalidRequest`` when the file is not a
    RIFE 4.6 IFNet state dict)."""
    path = fetch_weights(source, "the learned interpolator")
    state = read_state_dict(path, "interpolator")
    try:
        widths = tuple(state[f"block{i}.conv0.1.0.weight"].shape[0] for i in range(4))
        inputs = tuple(state[f"block{i}.conv0.0.0.weight"].shape[1] for i in range(4))
    except KeyError as missing:
        raise InvalidRequest(f"interpolator {path.name}: not a RIFE IFNet state dict ({missing} missing)") from None
    if inputs != (_FIRST_INPUT,) + (_LATER_INPUT,) * 3:
        raise InvalidRequest(f"interpolator {path.name}: its blocks take {inputs} input channels, RIFE 4.6 takes "
                             f"{(_FIRST_INPUT,) + (_LATER_INPUT,) * 3}; later RIFE versions (with a feature encoder) "
                             "are not supported")
    net = IFNet(widths)
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise InvalidRequest(f"interpolator {path.name}: the weights do not fit RIFE 4.6's IFNet "
                             f"({str(error)[:200]})") from None
    return Interpolator(net.eval(), path.name)
