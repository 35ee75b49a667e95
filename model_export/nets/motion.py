"""Motion: what changed between the frames of a clip, measured on per-frame maps.

These modules hold no weights. They sit between the per-frame CNN and the
LSTM and turn ``(N, T, C, h, w)`` maps (the CNN's, or the pixels') into
per-step numbers the LSTM can integrate: how the maps changed since the
first frame (:class:`ChangeMoments`), which shift, scale and turn explain
the change since the previous frame over the whole map (:class:`FrameMotion`)
and cell by cell (:class:`FlowField`). Static background and distractors
cancel out in every one of them; only order-aware models receive them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def _grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h, w)`` x and y coordinates in ``[-1, 1]``."""
    ys, xs = torch.meshgrid(
        torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij"
    )
    return xs, ys


def _previous(maps: torch.Tensor) -> torch.Tensor:
    """``(N, T, ...)``: each step's previous step (step 0 is its own previous)."""
    return torch.cat([maps[:, :1], maps[:, :-1]], dim=1)


def _gradients(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences along x and y of ``(..., h, w)``, zero on the border."""
    gx = F.pad((maps[..., :, 2:] - maps[..., :, :-2]) / 2, (1, 1, 0, 0))
    gy = F.pad((maps[..., 2:, :] - maps[..., :-2, :]) / 2, (0, 0, 1, 1))
    return gx, gy


class ChangeMoments(nn.Module):
    """Where a clip's feature maps changed since its first frame, and how that change is shaped.

    ``(N, T, C, h, w) -> (N, T, 12 C)``: for the gain and the loss of each channel
    since frame 0, its log mass, mean ``(x, y)`` and second moments. Static
    background and distractors cancel out; a shift separates gain from loss
    along its direction, a zoom grows their spread, a turn rotates them. The
    maps come from the per-frame CNN; only this comparison looks across time.
    """

    grid: torch.Tensor

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        xs, ys = _grid(height, width)
        x, y = xs.reshape(-1), ys.reshape(-1)
        self.register_buffer("grid", torch.stack([x, y, x * x, y * y, x * y], dim=1))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        n, t, c = maps.shape[0], maps.shape[1], maps.shape[2]
        change = (maps - maps[:, :1]).flatten(3)  # (N, T, C, h*w)
        parts = []
        for part in (torch.relu(change), torch.relu(-change)):
            mass = part.sum(dim=3, keepdim=True)
            raw = (part / (mass + 1e-3)) @ self.grid  # (N, T, C, 5)
            mx, my = raw[..., 0], raw[..., 1]
            parts += [
                torch.log1p(mass[..., 0]),
                mx,
                my,
                raw[..., 2] - mx * mx,
                raw[..., 3] - my * my,
                raw[..., 4] - mx * my,
            ]
        return torch.stack(parts, dim=3).reshape(n, t, c * 12)


class FrameMotion(nn.Module):
    """Least-squares motion between consecutive feature maps, per channel.

    ``(N, T, C, h, w) -> (N, T, 5 C)``: brightness constancy on the CNN's maps,
    ``M_t - M_(t-1) ~ -(u dM/dx + v dM/dy + s D + r R)`` with ``D`` the radial
    and ``R`` the tangential derivative about the centre of the change, solved
    for each of shift ``u, v``, scale ``s`` and turn ``r`` on its own, plus the
    log energy of the change. Each is a cosine in ``[-1, 1]`` (how much of the
    change that motion explains, signed). Step 0 compares a frame with itself.
    """

    grid: torch.Tensor

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        xs, ys = _grid(height, width)
        self.register_buffer("grid", torch.stack([xs, ys]))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        n, t, c = maps.shape[0], maps.shape[1], maps.shape[2]
        before = _previous(maps)
        gx, gy = _gradients((maps + before) / 2)
        change = maps - before
        weight = change * change
        total = weight.sum(dim=(3, 4), keepdim=True) + 1e-3
        x, y = self.grid[0], self.grid[1]
        dx = x - (weight * x).sum(dim=(3, 4), keepdim=True) / total
        dy = y - (weight * y).sum(dim=(3, 4), keepdim=True) / total
        fields = (gx, gy, dx * gx + dy * gy, dx * gy - dy * gx)
        # Cosine, not the least-squares ratio: bounded, so no heavy tails for the LSTM.
        change_norm = weight.sum(dim=(3, 4))
        coefs = [
            -(change * f).sum(dim=(3, 4)) / torch.sqrt(change_norm * (f * f).sum(dim=(3, 4)) + 1e-6)
            for f in fields
        ]
        energy = torch.log1p(weight.sum(dim=(3, 4)))
        return torch.stack([*coefs, energy], dim=3).reshape(n, t, c * 5)


class FlowField(nn.Module):
    """Coarse optical flow: Lucas-Kanade in each ``cell x cell`` block, all channels pooled.

    ``(N, T, C, h, w) -> (N, T, 2 G + 4)`` with ``G = (h // cell) (w // cell)`` (a
    remainder at the right and bottom edges is left out)
    (``(N, T, 4)`` with ``summary_only``):
    the ``(u, v)`` of every cell (pixels per step, clamped to ``[-4, 4]``),
    then the field's turn and growth about its centre of motion and its
    energy-weighted mean ``(u, v)``. A shift is a uniform field, a zoom diverges, a turn curls, so
    each class is a linear read-out of it. Step 0 has no motion (zeros).
    """

    coords: torch.Tensor

    def __init__(
        self,
        height: int,
        width: int,
        *,
        cell: int = 4,
        damping: float = 0.01,
        summary_only: bool = False,
    ) -> None:
        super().__init__()
        if min(height, width) < cell:
            raise ValueError(f"map size {height}x{width} is smaller than one cell of {cell}")
        xs, ys = _grid(height // cell, width // cell)
        self.register_buffer("coords", torch.stack([xs, ys]))
        self.cell = cell
        self.damping = damping  # keeps flat cells (no gradient) at zero flow
        self.summary_only = summary_only
        self.out_dim = 4 + (0 if summary_only else 2 * (height // cell) * (width // cell))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        n, t, h, w = maps.shape[0], maps.shape[1], maps.shape[3], maps.shape[4]
        before = _previous(maps)
        gx, gy = _gradients((maps + before) / 2)
        change = maps - before

        def cells(z: torch.Tensor) -> torch.Tensor:
            pooled = F.avg_pool2d(z.sum(dim=2).reshape(n * t, 1, h, w), self.cell)
            return pooled.reshape(n, t, pooled.shape[2], pooled.shape[3])

        a, b, d = cells(gx * gx) + self.damping, cells(gx * gy), cells(gy * gy) + self.damping
        ex, ey = cells(gx * change), cells(gy * change)
        det = a * d - b * b
        u = torch.clamp(-(d * ex - b * ey) / det, -4.0, 4.0)
        v = torch.clamp(-(a * ey - b * ex) / det, -4.0, 4.0)
        if self.summary_only:
            return self._summary(u, v)
        return torch.cat([u.flatten(2), v.flatten(2), self._summary(u, v)], dim=2)

    def _summary(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Turn and growth about the centre of motion, and the mean flow: ``(N, T, 4)``.

        Weighted by flow energy about its own centroid, a shift adds nothing to
        the turn or growth, so a turning object that also drifts still reads as
        turning. Each ratio is a cosine in ``[-1, 1]``.
        """
        w = u * u + v * v
        total = w.sum(dim=(2, 3), keepdim=True) + 1e-6
        x, y = self.coords[0], self.coords[1]
        dx = x - (w * x).sum(dim=(2, 3), keepdim=True) / total
        dy = y - (w * y).sum(dim=(2, 3), keepdim=True) / total
        scale = (w * torch.sqrt((dx * dx + dy * dy) * w + 1e-12)).sum(dim=(2, 3)) + 1e-6
        turn = (w * (dx * v - dy * u)).sum(dim=(2, 3)) / scale
        growth = (w * (dx * u + dy * v)).sum(dim=(2, 3)) / scale
        mean_u = (w * u).sum(dim=(2, 3)) / total[..., 0, 0]
        mean_v = (w * v).sum(dim=(2, 3)) / total[..., 0, 0]
        return torch.stack([turn, growth, mean_u, mean_v], dim=2)


class Fovea(nn.Module):
    """A window of ``size x size`` input pixels around where a clip changes most.

    ``(N*T, C, H, W)`` frames and ``(N, T, h, w)`` small brightness maps of them
    ``-> (N*T, C, size, size)``. The window is the same for every frame, centred where
    the brightness maps change most over the clip (:meth:`centre`), so that a
    small object that turns or grows is seen at the input's full resolution,
    not only at the CNN's.
    """

    coords: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, size: int, height: int, width: int, small: tuple[int, int]) -> None:
        super().__init__()
        if size > min(height, width):
            raise ValueError(f"a fovea of {size} px does not fit {height}x{width} frames")
        xs, ys = _grid(*small)
        self.register_buffer("coords", torch.stack([xs, ys]))
        self.register_buffer("offsets", torch.arange(size), persistent=False)
        self.size = size
        self.frame = (width, height)
        # The centre stays far enough from the border for the window to fit.
        self.limit = (1 - size / width, 1 - size / height)

    def centre(self, grey: torch.Tensor) -> torch.Tensor:
        """``(N, T, h, w)`` brightness ``-> (N, 2)``: ``(x, y)`` in ``[-1, 1]`` of the most change.

        Change is each pixel's trend over the clip (least-squares slope against
        time, squared): a turn, a zoom or a move changes a place for good, while
        shake, jitter and noise come and go. Each frame is divided by its mean
        first, so flicker (a gain) does not count.
        """
        grey = grey / (grey.mean(dim=(2, 3), keepdim=True) + 1e-3)
        step = torch.cumsum(torch.ones_like(grey[:, :, :1, :1]), dim=1)  # (N, T, 1, 1): 1..T
        step = step - step.mean(dim=1, keepdim=True)
        spread = (step * step).sum(dim=1, keepdim=True) + 1e-6  # 1e-6: a 1-frame clip has none
        slope = (step * grey).sum(dim=1, keepdim=True) / spread
        trend = F.avg_pool2d(slope * slope, 3, stride=1, padding=1, count_include_pad=False)
        trend = torch.relu(trend - trend.mean(dim=(2, 3), keepdim=True))  # (N, 1, h, w)
        weight = (trend / (trend.amax(dim=(2, 3), keepdim=True) + 1e-6)) ** 4
        weight = weight / (weight.sum(dim=(2, 3), keepdim=True) + 1e-6)
        x = (weight * self.coords[0]).sum(dim=(1, 2, 3))
        y = (weight * self.coords[1]).sum(dim=(1, 2, 3))
        return torch.stack(
            [x.clamp(-self.limit[0], self.limit[0]), y.clamp(-self.limit[1], self.limit[1])], 1
        )

    def forward(self, frames: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        """``(N*T, C, H, W)`` frames and ``(N, T, h, w)`` brightness -> ``(N*T, C, s, s)``.

        The window starts on whole pixels and copies them (no resampling): the
        same pixels whatever the rounding of the centre's last bits, so the
        exported graph agrees with PyTorch even on noise.
        """
        n, t = grey.shape[0], grey.shape[1]
        c, h, w = frames.shape[1], frames.shape[2], frames.shape[3]
        centre = self.centre(grey)  # (N, 2) in [-1, 1]
        first = []
        for axis, side in enumerate(self.frame):  # x, then y
            pixel = (centre[:, axis] + 1) * (side / 2) - 0.5  # pixel-centre coordinates
            first.append(torch.round(pixel - (self.size - 1) / 2).long())
        cols = (first[0].view(n, 1) + self.offsets).view(n, 1, 1, self.size)
        rows = (first[1].view(n, 1) + self.offsets).view(n, 1, self.size, 1)
        clips = frames.reshape(n, t * c, h, w)
        band = torch.gather(clips, 2, rows.expand(n, t * c, self.size, w))
        crops = torch.gather(band, 3, cols.expand(n, t * c, self.size, self.size))
        return crops.reshape(n * t, c, self.size, self.size)
