"""The temporal head over a frozen encoder's features: ``(N, T, F) -> (N, C)``.

The second half of the seed's shape when the per-frame encoder is a
pretrained ONNX model (:mod:`model_export.nets.onnx_encoder`): per-step
features, standardised (BatchNorm over features, like a StandardScaler) ->
an LSTM with the seed's gates and its forget gates opened, optionally
bidirectional, or a mean over time (the baseline without memory of order) ->
linear. ``forward`` gives probabilities; training calls :meth:`TemporalHead.logits`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_export.nets.classifier import ARCHS, Arch, open_forget_gates


@dataclass(frozen=True, slots=True)
class HeadConfig:
    """What a head looks like; everything needed to build it again."""

    feature_dim: int
    num_classes: int
    arch: Arch = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.2
    forget_bias: float = 2.0  # sigmoid(2) = 0.88: memory spans the clip from the start
    bidirectional: bool = True

    def summary(self) -> dict[str, Any]:
        """The head's part of ``vidlstm.architecture``."""
        return {
            "temporal": self.arch,
            "motion": False,
            "bidirectional": self.bidirectional and self.arch == "lstm",
            "feature_dim": self.feature_dim,
        }


class TemporalHead(nn.Module):
    """``(N, T, F)`` float32 features -> ``(N, C)`` probabilities."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        if config.arch not in ARCHS:
            raise ValueError(f"unknown arch {config.arch!r}; expected one of {ARCHS}")
        self.config = config
        self.norm = nn.BatchNorm1d(config.feature_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm: nn.LSTM | None = None
        width = config.feature_dim
        if config.arch == "lstm":
            self.lstm = nn.LSTM(
                config.feature_dim,
                config.hidden_size,
                num_layers=config.num_layers,
                batch_first=True,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
                bidirectional=config.bidirectional,
            )
            open_forget_gates(self.lstm, config.forget_bias)
            width = config.hidden_size * (2 if config.bidirectional else 1)
        self.linear = nn.Linear(width, config.num_classes)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``(N, T, F) -> (N, C)`` unnormalised scores."""
        n, t, f = feats.shape[0], feats.shape[1], feats.shape[2]
        feats = self.dropout(self.norm(feats.reshape(-1, f)).reshape(n, t, f))
        if self.lstm is None:
            pooled = feats.mean(dim=1)
        else:
            _, (h_n, _) = self.lstm(feats)  # h_n: (layers * directions, N, hidden)
            # The last layer's final state in each direction: forwards after the last
            # frame, backwards after the first.
            directions = 2 if self.config.bidirectional else 1
            pooled = torch.cat(list(h_n[-directions:]), dim=1)
        out: torch.Tensor = self.linear(self.dropout(pooled))
        return out

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(feats), dim=-1)


def save_head(path: Path, head: TemporalHead) -> None:
    """The head's config and weights, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": asdict(head.config), "state": head.state_dict()}, tmp)
    tmp.replace(path)


def load_head(path: Path) -> TemporalHead:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    head = TemporalHead(HeadConfig(**saved["config"]))
    head.load_state_dict(saved["state"])
    return head.eval()
