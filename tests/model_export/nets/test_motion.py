"""Motion read-outs: a shift, a zoom and a turn each show up with the right sign."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model_export.nets.classifier import ModelConfig, build_model
from model_export.nets.motion import ChangeMoments, FlowField, Fovea, FrameMotion

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


def test_motion_is_a_stream_every_architecture_gets_or_none_does() -> None:
    for arch in ("lstm", "mean_pool"):
        on = build_model(ModelConfig(num_classes=3, height=32, width=32, arch=arch))
        off = build_model(ModelConfig(num_classes=3, height=32, width=32, arch=arch, motion=False))
        assert len(on.flows) and on.pixel_motion is not None and on.changes is not None
        assert not len(off.flows) and off.pixel_motion is None and off.changes is None
        assert off.step_norm.num_features == off.encoder.feature_dim


BIG = 128  # frame side for the fovea
FOVEA = 32


def _turning_bar(
    at: tuple[float, float], *, steps: int = 8, gains: list[float] | None = None
) -> torch.Tensor:
    """``(steps, 3, BIG, BIG)`` float 0-255: static clutter, a small bar turning at ``at``.

    The clutter (a bright static square and noise) changes nothing over time; the
    bar (10 px long) turns 12 degrees a step; ``gains`` multiply whole frames (flicker).
    """
    rng = np.random.default_rng(0)
    background = rng.uniform(60, 120, size=(BIG, BIG))
    background[90:120, 10:40] = 250.0  # a big static distractor
    yy, xx = np.mgrid[0:BIG, 0:BIG].astype(np.float64)
    frames = []
    for i in range(steps):
        angle = np.radians(12 * i)
        along = (xx - at[0]) * np.cos(angle) + (yy - at[1]) * np.sin(angle)
        across = -(xx - at[0]) * np.sin(angle) + (yy - at[1]) * np.cos(angle)
        bar = (np.abs(along) < 5) & (np.abs(across) < 1.5)
        frame = np.where(bar, 0.0, background) * (gains[i] if gains else 1.0)
        frames.append(np.repeat(frame[None], 3, axis=0))
    return torch.tensor(np.stack(frames), dtype=torch.float32)


def _fovea_on(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fovea's centre in pixels ``(x, y)`` and its crops, for one clip."""
    fovea = Fovea(FOVEA, BIG, BIG, (BIG // 4, BIG // 4))
    grey = torch.nn.functional.avg_pool2d(frames, 4).mean(dim=1)[None] / 255.0
    centre = fovea.centre(grey)[0]
    pixels = (centre + 1) / 2 * BIG - 0.5
    return pixels, fovea(frames, grey)


@pytest.mark.parametrize("at", [(92.0, 36.0), (30.0, 70.0)])
def test_the_fovea_finds_a_small_turning_object_among_static_clutter(
    at: tuple[float, float],
) -> None:
    centre, crops = _fovea_on(_turning_bar(at))
    assert torch.allclose(centre, torch.tensor(at, dtype=torch.float32), atol=3.0), centre
    assert crops.shape == (8, 3, FOVEA, FOVEA)
    # The crop is the frame's own pixels there: the bar's dark pixels sit mid-window.
    dark = (crops[0, 0] < 30).nonzero().float().mean(dim=0)
    assert torch.allclose(dark, torch.tensor([(FOVEA - 1) / 2] * 2), atol=3.0), dark


def test_flicker_does_not_pull_the_fovea() -> None:
    gains = [1.0, 1.2, 0.85, 1.1, 0.9, 1.25, 0.8, 1.0]
    centre, _ = _fovea_on(_turning_bar((92.0, 36.0), gains=gains))
    assert torch.allclose(centre, torch.tensor([92.0, 36.0]), atol=3.0), centre


def test_the_fovea_window_stays_inside_the_frame() -> None:
    centre, crops = _fovea_on(_turning_bar((3.0, 124.0)))
    assert centre[0] >= FOVEA / 2 - 0.5 and centre[1] <= BIG - FOVEA / 2 - 0.5
    assert crops.shape == (8, 3, FOVEA, FOVEA)
    with pytest.raises(ValueError, match="does not fit"):
        Fovea(BIG + 1, BIG, BIG, (32, 32))


def test_the_fovea_belongs_to_the_motion_stream() -> None:
    config = ModelConfig(num_classes=3, height=64, width=64, pool=2, fovea=16)
    lstm = build_model(config)
    mean_pool = build_model(replace(config, arch="mean_pool"))
    still = build_model(replace(config, motion=False))
    assert lstm.fovea is not None and mean_pool.fovea is not None and still.fovea is None
    frames = torch.randint(0, 256, (2, 5, 64, 64, 3), dtype=torch.uint8)
    assert lstm(frames).shape == mean_pool(frames).shape == still(frames).shape == (2, 3)
