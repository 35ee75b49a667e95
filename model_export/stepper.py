"""Stepper: one optimisation step per batch.

AdamW under a one-cycle learning-rate schedule (warm-up, then cosine decay),
gradients clipped by norm; on CUDA the forward pass runs under autocast (half
precision where it is safe) and the loss is scaled so that small gradients
survive it. On the CPU nothing of mixed precision runs: the same seed gives the
same weights as plain float32 training.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from model_export.device import CPU


@dataclass(frozen=True, slots=True)
class Stepper:
    """The optimiser, its schedule and, on CUDA, the loss scaler: one :meth:`update` per
    batch, its forward pass under :meth:`autocast`."""

    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device = CPU
    scaler: torch.amp.GradScaler | None = None
    grad_clip: float = 2.0

    def autocast(self) -> AbstractContextManager[object]:
        """Half precision where autocast deems it safe, on CUDA; nothing on the CPU."""
        if self.scaler is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.float16)

    def update(self, loss: torch.Tensor) -> None:
        """Backward, clip the gradients' norm, step the optimiser and then the schedule."""
        params = [p for group in self.optimiser.param_groups for p in group["params"]]
        self.optimiser.zero_grad(set_to_none=True)
        if self.scaler is None:
            torch.autograd.backward(loss)
            nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.optimiser.step()
        else:
            torch.autograd.backward(self.scaler.scale(loss))
            self.scaler.unscale_(self.optimiser)  # clip the true gradients
            nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.scaler.step(self.optimiser)  # skipped when the scaled gradients overflowed
            self.scaler.update()
        self.scheduler.step()


def one_cycle(
    module: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    warmup: float,
    total_steps: int,
    grad_clip: float,
    device: torch.device = CPU,
) -> Stepper:
    """AdamW over ``module``'s parameters (on ``device`` already), peaking at ``lr`` after
    a ``warmup`` fraction of ``total_steps``; mixed precision on CUDA."""
    optimiser = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=total_steps, pct_start=warmup
    )
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    return Stepper(optimiser, scheduler, device, scaler, grad_clip)
