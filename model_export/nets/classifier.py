"""Models: a per-frame encoder, an optional motion stream, then an LSTM or a mean over time.

Every model takes what the service feeds it, ``(N, T, H, W, 3) uint8`` RGB,
and does the scaling (/255) and mean/std normalisation inside the graph, so
the exported file is the whole preprocessing contract. ``forward`` returns
probabilities ``(N, C) float32``; training calls :meth:`VideoClassifier.logits`.

Each time step's input is the encoder's features of that one frame and, with
``motion=True``, a second stream of weight-free measurements of what changed
between frames (:mod:`model_export.nets.motion`). Both architectures get
exactly the same per-step vectors (:meth:`VideoClassifier.step_inputs`): the
LSTM reads them in order, the mean-pool baseline averages them over time, so
the two differ only in memory of order.

The classes are motions, so the encoder must keep *where* things are: it
appends two coordinate channels to the input (CoordConv), reads learnt
keypoints as coordinates (spatial softmax) and flattens its small final
feature map instead of pooling it away.

Small objects that turn or grow move by under a pixel per step at the CNN's
64 x 64, so the default model takes 128 x 128 frames: the CNN sees them
pooled to 64 x 64, and a fovea (:class:`~model_export.nets.motion.Fovea`) measures
the motion of a 32 x 32 window at full resolution where the clip changes most.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from model_export.nets.encoder import FrameEncoder
from model_export.nets.motion import ChangeMoments, FlowField, Fovea, FrameMotion

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
    # The motion stream: weight-free measurements between frames beside the encoder's
    # features, for every architecture alike. The options below apply only with it.
    motion: bool = True
    deltas: bool = True  # f_t - f_(t-1) and f_t - f_0 (change tells motions apart)
    change_channels: int = 8  # feature maps whose change since frame 0 is measured
    pixel_motion: bool = True  # the motion of the (half-size) pixels themselves
    flow_cell: int = 4  # optical flow of half-size pixels in cells this big (0: off)
    # The CNN and the motion features see frames average-pooled this much (the pipeline
    # decodes 128 x 128 and pools by 2; the full frames feed the fovea).
    pool: int = 1
    # The motion (FrameMotion, FlowField) of a window this many input px a side
    # around where the clip changes most, at full resolution (0: off)
    fovea: int = 0
    # LSTM only: a second LSTM reads the clip backwards (docs/tuning-log.md)
    bidirectional: bool = True

    def summary(self) -> dict[str, Any]:
        """What the exported file says it is (``vidlstm.architecture``)."""
        return {
            "encoder": "cnn",
            "temporal": self.arch,
            "motion": self.motion,
            "bidirectional": self.bidirectional and self.arch == "lstm",
        }


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


class VideoClassifier(nn.Module):
    """``(N, T, H, W, 3) uint8 -> (N, C) float32`` class probabilities.

    ``arch="lstm"``: per-step inputs -> LSTM (by default bidirectional: one
    reads the clip forwards, one backwards) -> each direction's final state -> linear.
    ``arch="mean_pool"``: the same per-step inputs -> mean over time -> linear (no
    memory of order: the baseline).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize()
        sh, sw = config.height // config.pool, config.width // config.pool  # what the CNN sees
        self.encoder = FrameEncoder(
            height=sh,
            width=sw,
            stem=config.stem,
            channels=config.channels,
            feature_dim=config.feature_dim,
            keypoints=config.keypoints,
            change_channels=config.change_channels if config.motion else 0,
        )
        if config.arch not in ARCHS:
            raise ValueError(f"unknown arch {config.arch!r}; expected one of {ARCHS}")
        recurrent = config.arch == "lstm"
        motion = config.motion
        step_dim = self.encoder.feature_dim * (3 if motion and config.deltas else 1)
        self.changes: ChangeMoments | None = None
        self.map_motion: FrameMotion | None = None
        self.pixel_motion: FrameMotion | None = None
        if self.encoder.change_map is not None:
            self.changes = ChangeMoments(*self.encoder.map_size)
            self.map_motion = FrameMotion(*self.encoder.map_size)
            step_dim += 17 * config.change_channels
        if motion and config.pixel_motion:
            self.pixel_motion = FrameMotion(sh // 2, sw // 2)
            step_dim += 5 * 3
        self.flows = nn.ModuleList()
        if motion and config.flow_cell:
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
        if motion and config.fovea:
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
            open_forget_gates(self.lstm, config.forget_bias)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(
            config.hidden_size * directions if recurrent else step_dim, config.num_classes
        )

    def _pooled(self, full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N*T, 3, H, W)`` float 0-255 frames -> pooled for the CNN and standardised
        (what it takes), and pooled (0-255)."""
        pooled = nn.functional.avg_pool2d(full, self.config.pool) if self.config.pool > 1 else full
        return self.normalize.standardise(pooled), pooled

    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, T, H, W, 3) uint8 -> (N, C)`` unnormalised scores."""
        n, t, h, w = frames.shape[0], frames.shape[1], frames.shape[2], frames.shape[3]
        return self.plane_logits(self.normalize.planes(frames).view(n, t, 3, h, w))

    def plane_logits(self, planes: torch.Tensor) -> torch.Tensor:
        """``(N, T, 3, H, W)`` float frames, 0-255 (whole numbers, as uint8 gives) ``-> (N, C)``.

        What :meth:`logits` computes once the uint8 frames are float planes: training's
        augmentation hands its frames over in this form and skips the round trip.
        """
        return self.temporal_logits(self.plane_steps(planes))

    def step_inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, T, H, W, 3) uint8 -> (N, T, S) float32``: what each time step gets,
        the same for every architecture (the SVM pools exactly these)."""
        n, t, h, w = frames.shape[0], frames.shape[1], frames.shape[2], frames.shape[3]
        return self.plane_steps(self.normalize.planes(frames).view(n, t, 3, h, w))

    def plane_steps(self, planes: torch.Tensor) -> torch.Tensor:
        """``(N, T, 3, H, W)`` float frames, 0-255 ``-> (N, T, S)`` per-step inputs."""
        n, t = planes.shape[0], planes.shape[1]
        full = planes.reshape(n * t, 3, planes.shape[3], planes.shape[4])
        pixels, pooled = self._pooled(full)
        flat, maps = self.encoder.encode(pixels)
        feats = flat.reshape(n, t, -1)
        if self.config.motion and self.config.deltas:
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
        return feats

    def temporal_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``(N, T, S)`` per-step inputs ``-> (N, C)``: standardised, then the LSTM or the
        mean over time, then the linear head."""
        n, t, f = feats.shape[0], feats.shape[1], feats.shape[2]
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


def open_forget_gates(lstm: nn.LSTM, bias: float) -> None:
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
