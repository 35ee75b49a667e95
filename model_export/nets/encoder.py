"""Encoders: per-frame CNNs, ``(B, 3, H, W) float -> (B, F)`` features.

:class:`FrameEncoder` is the small CNN trained from scratch (it keeps *where*
things are: CoordConv, spatial-softmax keypoints, a flattened final map). A
pretrained image model comes in as an ONNX file instead (``--encoder
onnx:PATH``, :mod:`model_export.nets.onnx_encoder`): no torchvision in process.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


class CoordConv(nn.Module):
    """Appends x and y coordinate planes in ``[-1, 1]``: ``(B, C, H, W) -> (B, C+2, H, W)``."""

    grid: torch.Tensor

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys = torch.linspace(-1.0, 1.0, height).view(1, 1, height, 1).expand(1, 1, height, width)
        xs = torch.linspace(-1.0, 1.0, width).view(1, 1, 1, width).expand(1, 1, height, width)
        self.register_buffer("grid", torch.cat([xs, ys], dim=1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.grid.expand(x.shape[0], -1, -1, -1)], dim=1)


def _conv_block(c_in: int, c_out: int, *, kernel: int, stride: int) -> list[nn.Module]:
    padding = 0 if kernel == stride else kernel // 2
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SpatialSoftmax(nn.Module):
    """Keypoints: where each channel's mass lies, and how it is spread and turned.

    ``(B, K, h, w) -> (B, 5K)``: per channel, under a softmax over its map,
    the mean ``(x, y)`` in ``[-1, 1]`` and the second moments ``(xx, yy, xy)``
    about it. Their changes over time ARE the motion: a shift moves the mean,
    a zoom grows the spread, a turn rotates the moments (and a marker's mean).
    """

    grid: torch.Tensor

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij"
        )
        x, y = xs.reshape(-1), ys.reshape(-1)
        self.register_buffer("grid", torch.stack([x, y, x * x, y * y, x * y], dim=1))
        # Sharp from the start, so keypoints follow salient things before any training.
        self.log_temperature = nn.Parameter(torch.full((channels,), -1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[0], x.shape[1]
        logits = x.flatten(2) * torch.exp(-self.log_temperature).view(1, k, 1)
        raw = torch.softmax(logits, dim=2) @ self.grid  # (B, K, 5) raw moments
        mx, my = raw[..., 0], raw[..., 1]
        central = [mx, my, raw[..., 2] - mx * mx, raw[..., 3] - my * my, raw[..., 4] - mx * my]
        return torch.stack(central, dim=2).reshape(b, 5 * k)


class FrameEncoder(nn.Module):
    """Small CNN from scratch: ``(B, 3, H, W) float -> (B, feature_dim + 5 * keypoints)``.

    A patchify stem (``stem x stem`` kernel and stride: cheap on a CPU) and a
    3x3 block at that resolution feed two heads that both keep position:
    spatial-softmax keypoints, and stride-2 blocks down to a map a few pixels
    a side that is flattened (not pooled) and projected.
    """

    def __init__(
        self,
        *,
        height: int,
        width: int,
        stem: int,
        channels: tuple[int, ...],
        feature_dim: int,
        keypoints: int,
        change_channels: int = 0,
    ):
        super().__init__()
        if len(channels) < 2:
            raise ValueError("channels needs at least the stem and one 3x3 block")
        self.trunk = nn.Sequential(
            CoordConv(height, width),
            *_conv_block(5, channels[0], kernel=stem, stride=stem),
            *_conv_block(channels[0], channels[1], kernel=3, stride=1),
        )
        deep: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(channels[1:]):
            deep += _conv_block(c_in, c_out, kernel=3, stride=2)
        self.deep = nn.Sequential(*deep)
        with torch.no_grad():
            trunk = self.trunk(torch.zeros(1, 3, height, width))
            flat = self.deep(trunk).numel()
        self.project = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, feature_dim), nn.ReLU(inplace=True)
        )
        self.keypoints: nn.Sequential | None = None
        if keypoints > 0:
            self.keypoints = nn.Sequential(
                nn.Conv2d(channels[1], keypoints, 1),
                SpatialSoftmax(keypoints, trunk.shape[2], trunk.shape[3]),
            )
        self.feature_dim = feature_dim + 5 * keypoints
        self.change_map = nn.Conv2d(channels[1], change_channels, 1) if change_channels else None
        self.map_size = (int(trunk.shape[2]), int(trunk.shape[3]))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features ``(B, F)`` and, with ``change_channels``, maps ``(B, C, h, w)`` to compare."""
        trunk = self.trunk(x)
        out: torch.Tensor = self.project(self.deep(trunk))
        if self.keypoints is not None:
            out = torch.cat([out, self.keypoints(trunk)], dim=1)
        maps = self.change_map(trunk) if self.change_map is not None else None
        return out, maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]
