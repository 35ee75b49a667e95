"""Motion read-outs: a shift, a zoom and a turn each show up with the right sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_export.model import ModelConfig, build_model
from model_export.motion import ChangeMoments, FlowField, FrameMotion

N = 32  # frame side


def _maps(kind: str, sign: int, steps: int = 6) -> torch.Tensor:
    """``(1, steps, 1, N, N)`` a soft bright shape that shifts, grows or turns."""
    yy, xx = np.mgrid[0:N, 0:N] - (N - 1) / 2
    frames = []
    for i in range(steps):
        k = i * sign
        if kind == "shift":
            cx, cy, half, angle = 1.0 * k, 0.0, 6.0, 0.3
        elif kind == "zoom":
            cx, cy, half, angle = 0.0, 0.0, 6.0 * 1.08**k, 0.3
        else:
            cx, cy, half, angle = 0.0, 0.0, 8.0, 0.3 + 0.08 * k
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        # An elongated soft bar, so a turn changes the picture.
        frames.append(np.exp(-((along / half) ** 4) - (across / (half / 3)) ** 4))
    return torch.tensor(np.stack(frames), dtype=torch.float32)[None, :, None]


@pytest.mark.parametrize("sign", [1, -1])
def test_flow_summary_reads_shift_growth_and_turn(sign: int) -> None:
    flow = FlowField(N, N, cell=4, summary_only=True)
    shift = flow(_maps("shift", sign))[0, 1:].mean(0)  # turn, growth, u, v
    zoom = flow(_maps("zoom", sign))[0, 1:].mean(0)
    turn = flow(_maps("turn", sign))[0, 1:].mean(0)
    assert shift[2] * sign > 0.3
    assert abs(shift[3]) < 0.1
    assert zoom[1] * sign > 0.3
    assert turn[0] * sign > 0.3  # + is clockwise on screen (y points down)
    assert abs(turn[1]) < abs(turn[0])


def test_flow_field_shape_and_first_step() -> None:
    out = FlowField(N, N, cell=4)(_maps("shift", 1))
    assert out.shape == (1, 6, 2 * 8 * 8 + 4)
    assert torch.all(out[:, 0] == 0)


def test_frame_motion_and_change_moments_shapes() -> None:
    maps = _maps("shift", 1).repeat(2, 1, 3, 1, 1)
    assert FrameMotion(N, N)(maps).shape == (2, 6, 15)
    moments = ChangeMoments(N, N)(maps)
    assert moments.shape == (2, 6, 36)
    assert torch.all(moments[:, 0] == 0)


def test_only_the_lstm_sees_motion() -> None:
    lstm = build_model(ModelConfig(num_classes=3, height=32, width=32))
    mean_pool = build_model(ModelConfig(num_classes=3, height=32, width=32, arch="mean_pool"))
    assert len(lstm.flows) and lstm.pixel_motion is not None and lstm.changes is not None
    assert not len(mean_pool.flows) and mean_pool.pixel_motion is None
    assert mean_pool.changes is None
