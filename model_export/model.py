"""Models: a per-frame CNN encoder followed by an LSTM, or by a mean over time.

Every model takes what the service feeds it, ``(N, T, H, W, 3) uint8`` RGB,
and does the scaling (/255) and mean/std normalisation inside the graph, so
the exported file is the whole preprocessing contract. ``forward`` returns
probabilities ``(N, C) float32``; training calls :meth:`VideoClassifier.logits`.

The classes are motions, so the encoder must keep *where* things are: it
appends two coordinate channels to the input (CoordConv), reads learnt
keypoints as coordinates (spatial softmax) and flattens its small final
feature map instead of pooling it away.

Small objects that turn or grow move by under a pixel per step at the CNN's
64 x 64, so the default model takes 128 x 128 frames: the CNN sees them
pooled to 64 x 64, and a fovea (:class:`~model_export.motion.Fovea`) measures
the motion of a 32 x 32 window at full resolution where the clip changes most.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from model_export.motion import ChangeMoments, FlowField, Fovea, FrameMotion

log = logging.getLogger(__name__)

Arch = Literal["lstm", "mean_pool"]
ARCHS: tuple[Arch, ...] = ("lstm", "mean_pool")

# ImageNet statistics: neutral for synthetic data, right for a pretrained backbone.
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
# Optical flow (pixel pooling, cell size at flow_cell=4, summary only): where motion is read.
FLOW_SCALES = ((2, 4, False), (1, 4, True), (2, 2, True))


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """What a classifier looks like; everything needed to build it again."""

    num_classes: int
    arch: Arch = "lstm"
    height: int = 64
    width: int = 64
    stem: int = 4  # the first layer cuts the frame into stem x stem patches
    channels: tuple[int, ...] = (32, 32, 48, 64)  # stem, 3x3 at stem resolution, stride-2 3x3s
    feature_dim: int = 64
    keypoints: int = 16  # spatial-softmax keypoints (5 numbers each) beside the projection
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.2
    forget_bias: float = 2.0  # sigmoid(2) = 0.88: memory spans the clip from the start
    deltas: bool = True  # LSTM only: also f_t - f_(t-1) and f_t - f_0 (change tells motions apart)
    change_channels: int = 8  # LSTM only: feature maps whose change since frame 0 is measured
    pixel_motion: bool = True  # LSTM only: also the motion of the (half-size) pixels themselves
    flow_cell: int = 4  # LSTM only: optical flow of half-size pixels in cells this big (0: off)
    # The CNN and the motion features see frames average-pooled this much (the pipeline
    # decodes 128 x 128 and pools by 2; the full frames feed the fovea).
    pool: int = 1
    # LSTM only: the motion (FrameMotion, FlowField) of a window this many input px a side
    # around where the clip changes most, at full resolution (0: off)
    fovea: int = 0
    # LSTM only: a second LSTM reads the clip backwards (README: what else was measured)
    bidirectional: bool = True
    backbone_weights: Path | None = None  # a local torchvision ResNet-18 state dict


class Normalize(nn.Module):
    """``(N, T, H, W, 3) uint8 -> (N*T, 3, H, W) float32``, scaled and standardised.

    In two steps where frames are pooled or cropped first (both commute with it):
    :meth:`planes` (uint8 to float planes, 0-255) and :meth:`standardise`.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(RGB_STD).view(1, 3, 1, 1))

    @staticmethod
    def planes(frames: torch.Tensor) -> torch.Tensor:
        """``(N, T, H, W, 3) uint8 -> (N*T, 3, H, W)`` float, still 0-255."""
        h, w = frames.shape[2], frames.shape[3]
        return frames.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float()

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` float 0-255 -> standardised, the same shape."""
        return x * (1.0 / (255.0 * self.std)) - self.mean / self.std

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.standardise(self.planes(frames))


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


class ResNetEncoder(nn.Module):
    """Torchvision ResNet-18 with weights from a local file: ``(B, 3, H, W) -> (B, 512)``."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        try:
            import torchvision  # noqa: PLC0415  (optional: only this option needs it)
        except ImportError as err:
            raise RuntimeError(
                "a torchvision backbone needs torchvision, which is not installed; "
                "install it or leave backbone_weights unset for the built-in CNN"
            ) from err
        net = torchvision.models.resnet18(weights=None)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        net.fc = nn.Identity()
        self.net = net
        self.feature_dim = 512

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.forward(x), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class VideoClassifier(nn.Module):
    """``(N, T, H, W, 3) uint8 -> (N, C) float32`` class probabilities.

    ``arch="lstm"``: per-frame features -> LSTM (by default bidirectional: one
    reads the clip forwards, one backwards) -> each direction's final state -> linear.
    ``arch="mean_pool"``: per-frame features -> mean over time -> linear (no
    memory of order: the baseline).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize()
        self.encoder: FrameEncoder | ResNetEncoder
        if config.backbone_weights is not None:
            self.encoder = ResNetEncoder(config.backbone_weights)
        else:
            self.encoder = FrameEncoder(
                height=config.height // config.pool,
                width=config.width // config.pool,
                stem=config.stem,
                channels=config.channels,
                feature_dim=config.feature_dim,
                keypoints=config.keypoints,
                change_channels=config.change_channels if config.arch == "lstm" else 0,
            )
        if config.arch not in ARCHS:
            raise ValueError(f"unknown arch {config.arch!r}; expected one of {ARCHS}")
        recurrent = config.arch == "lstm"
        step_dim = self.encoder.feature_dim * (3 if recurrent and config.deltas else 1)
        self.changes: ChangeMoments | None = None
        self.map_motion: FrameMotion | None = None
        self.pixel_motion: FrameMotion | None = None
        if isinstance(self.encoder, FrameEncoder) and self.encoder.change_map is not None:
            self.changes = ChangeMoments(*self.encoder.map_size)
            self.map_motion = FrameMotion(*self.encoder.map_size)
            step_dim += 17 * config.change_channels
        sh, sw = config.height // config.pool, config.width // config.pool
        if recurrent and config.pixel_motion:
            self.pixel_motion = FrameMotion(sh // 2, sw // 2)
            step_dim += 5 * 3
        self.flows = nn.ModuleList()
        if recurrent and config.flow_cell:
            # The full field at half size; turn/growth/shift summaries at other scales too.
            for pool, cell, summary_only in FLOW_SCALES:
                size = (sh // pool, sw // pool)
                flow = FlowField(
                    *size, cell=cell * config.flow_cell // 4, summary_only=summary_only
                )
                self.flows.append(flow)
                step_dim += flow.out_dim
        self.fovea: Fovea | None = None
        self.fovea_motion = nn.ModuleList()
        if recurrent and config.fovea:
            self.fovea = Fovea(config.fovea, config.height, config.width, (sh // 2, sw // 2))
            fovea_flow = FlowField(config.fovea, config.fovea, cell=4)
            self.fovea_motion.append(FrameMotion(config.fovea, config.fovea))
            self.fovea_motion.append(fovea_flow)
            step_dim += 15 + fovea_flow.out_dim
        # Standardise each temporal input (like a StandardScaler): keypoint moves of a
        # few hundredths must not drown among features a hundred times larger.
        self.step_norm = nn.BatchNorm1d(step_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm: nn.LSTM | None = None
        if recurrent:
            self.lstm = nn.LSTM(
                step_dim,
                config.hidden_size,
                num_layers=config.num_layers,
                batch_first=True,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
                bidirectional=config.bidirectional,
            )
            _open_forget_gates(self.lstm, config.forget_bias)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(
            config.hidden_size * directions if recurrent else step_dim, config.num_classes
        )

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, T, H, W, 3) uint8 -> (N, T, F) float32`` per-frame encoder features."""
        n, t = frames.shape[0], frames.shape[1]
        feats: torch.Tensor = self.encoder(self._pixels(frames)[1])
        return feats.reshape(n, t, -1)

    def _pixels(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(N, T, H, W, 3) uint8`` -> ``(N*T, 3, ., .)`` float: the frames (0-255), the
        frames pooled for the CNN and standardised (what it takes), and pooled (0-255)."""
        full = self.normalize.planes(frames)  # 0-255: pooling and cropping come first
        pooled = nn.functional.avg_pool2d(full, self.config.pool) if self.config.pool > 1 else full
        return full, self.normalize.standardise(pooled), pooled

    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, T, H, W, 3) uint8 -> (N, C)`` unnormalised scores."""
        n, t = frames.shape[0], frames.shape[1]
        full, pixels, pooled = self._pixels(frames)
        flat, maps = self.encoder.encode(pixels)
        feats = flat.reshape(n, t, -1)
        if self.lstm is not None and self.config.deltas:
            # f_0 - f_0 = 0 for the first step; cat keeps the time axis dynamic in ONNX.
            previous = torch.cat([feats[:, :1], feats[:, :-1]], dim=1)
            feats = torch.cat([feats, feats - previous, feats - feats[:, :1]], dim=2)
        if self.changes is not None and self.map_motion is not None and maps is not None:
            grid = maps.reshape(n, t, maps.shape[1], maps.shape[2], maps.shape[3])
            feats = torch.cat([feats, self.changes(grid), self.map_motion(grid)], dim=2)
        if self.pixel_motion is not None or len(self.flows):
            small = nn.functional.avg_pool2d(pixels, 2)
            half = small.reshape(n, t, 3, small.shape[2], small.shape[3])
            same = pixels.reshape(n, t, 3, pixels.shape[2], pixels.shape[3])
            motion = [self.pixel_motion(half)] if self.pixel_motion is not None else []
            scaled = {1: same, 2: half}
            motion += [
                flow(scaled[p]) for (p, _, _), flow in zip(FLOW_SCALES, self.flows, strict=True)
            ]
            feats = torch.cat([feats, *motion], dim=2)
        if self.fovea is not None:
            # Where the clip changes most, at the input's own resolution (not pooled).
            grey = nn.functional.avg_pool2d(pooled, 2).mean(dim=1) / 255.0
            crop = self.fovea(full, grey.reshape(n, t, grey.shape[1], grey.shape[2]))
            size = self.config.fovea
            crop = self.normalize.standardise(crop).reshape(n, t, 3, size, size)
            feats = torch.cat([feats, *(module(crop) for module in self.fovea_motion)], dim=2)
        f = feats.shape[2]
        feats = self.dropout(self.step_norm(feats.reshape(-1, f)).reshape(n, t, f))
        if self.lstm is None:
            pooled = feats.mean(dim=1)
        else:
            _, (h_n, _) = self.lstm(feats)  # h_n: (layers * directions, N, hidden)
            # The last layer's final state in each direction: forwards after the last
            # frame, backwards after the first.
            directions = 2 if self.config.bidirectional else 1
            pooled = torch.cat(list(h_n[-directions:]), dim=1)
        out_logits: torch.Tensor = self.head(self.dropout(pooled))
        return out_logits

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(frames), dim=-1)


def _open_forget_gates(lstm: nn.LSTM, bias: float) -> None:
    """Start every forget gate mostly open, so the cell can sum evidence over all frames."""
    h = lstm.hidden_size
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            if name.startswith("bias_ih"):  # gate order: input, forget, cell, output
                param[h : 2 * h].fill_(bias)
            elif name.startswith("bias_hh"):
                param[h : 2 * h].zero_()


def build_model(config: ModelConfig) -> VideoClassifier:
    """A freshly initialised classifier for ``config``."""
    model = VideoClassifier(config)
    log.debug("built %s model with %d parameters", config.arch, count_parameters(model))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
