"""Resume: the training state written after every epoch, read back to continue a run.

After each epoch :func:`model_export.epochs.run_epochs` writes what the rest of
the run depends on: the module's weights, the optimiser's and the learning-rate
schedule's state (and the mixed-precision loss scaler's), the random generators
(numpy's, which orders and augments the batches; torch's, which drops out), the
curves so far and the best weights. A run continued from it ends where an
uninterrupted one would have, bit for bit on the CPU.

The file also holds a fingerprint of the run: the settings that shape the
result, the data, the module's layout. Continuing under another fingerprint is
an error (:class:`ResumeError`), never a silent mix of two runs. Writes go
through a temporary file, so a run stopped mid-write keeps the previous epoch's.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model_export.checkpoint import save_atomically
from model_export.stepper import Stepper

STATE_VERSION = 1  # bump when what a state file holds changes


class ResumeError(ValueError):
    """A training state file that cannot continue this run."""


def digest(*parts: object) -> str:
    """A short hash of arrays (dtype, shape and bytes) and other values (their ``repr``)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def module_signature(module: nn.Module) -> str:
    """The module's class and a hash of its state's names, shapes and dtypes."""
    layout = [(k, tuple(v.shape), str(v.dtype)) for k, v in module.state_dict().items()]
    return f"{type(module).__name__}:{digest(layout)}"


def fingerprint(
    module: nn.Module, settings: Mapping[str, object], *, count: int, data_key: str
) -> dict[str, object]:
    """What a run computes, which a run resumed from its state must match: the settings
    that shape its result, the number of training items, the data's key and the module's
    layout."""
    return {**settings, "count": count, "data": data_key, "module": module_signature(module)}


@dataclass(frozen=True, slots=True)
class Resumable:
    """What a training state is saved from and restored into: the module, its stepper
    (optimiser, schedule, loss scaler), numpy's generator; and the run's fingerprint."""

    fingerprint: dict[str, object]
    module: nn.Module
    step: Stepper
    rng: np.random.Generator

    def save(self, path: Path, progress: Mapping[str, Any]) -> None:
        """Write the state atomically: ``progress`` (the loop's own record: epochs done,
        curves, best weights) beside everything the next epoch starts from."""
        step = self.step
        state = {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "progress": dict(progress),
            "module": self.module.state_dict(),
            "optimiser": step.optimiser.state_dict(),
            "scheduler": step.scheduler.state_dict(),
            "scaler": step.scaler.state_dict() if step.scaler is not None else {},
            "rng": capture_rng(self.rng, step.device),
        }
        save_atomically(path, state)

    def restore(self, path: Path) -> dict[str, Any]:
        """Load what :meth:`save` wrote back in; returns its ``progress``.
        :class:`ResumeError` when another run (another fingerprint) wrote it."""
        saved = read_state(path, self.fingerprint)
        step = self.step
        self.module.load_state_dict(saved["module"])
        step.optimiser.load_state_dict(saved["optimiser"])
        step.scheduler.load_state_dict(saved["scheduler"])
        if step.scaler is not None and saved["scaler"]:
            step.scaler.load_state_dict(saved["scaler"])
        restore_rng(saved["rng"], self.rng, step.device)
        progress: dict[str, Any] = saved["progress"]
        return progress


def read_state(path: Path, fingerprint: Mapping[str, object]) -> dict[str, Any]:
    """The state saved at ``path`` (tensors on the CPU), if it was written by a run with
    this ``fingerprint``; :class:`ResumeError` names what differs otherwise."""
    try:
        saved: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise ResumeError(f"{path} is not a readable training state: {err}") from err
    if not isinstance(saved, dict) or saved.get("version") != STATE_VERSION:
        version = saved.get("version") if isinstance(saved, dict) else None
        raise ResumeError(
            f"{path} holds training state version {version}, this code writes {STATE_VERSION};"
            " delete it to start again"
        )
    theirs: Mapping[str, object] = saved.get("fingerprint", {})
    differs = [
        f"{key} {theirs.get(key)!r} -> {fingerprint.get(key)!r}"
        for key in sorted(set(theirs) | set(fingerprint))
        if theirs.get(key) != fingerprint.get(key)
    ]
    if differs:
        raise ResumeError(
            f"{path} was written by a different run ({'; '.join(differs)}): resume it with"
            " the settings it was started with, or delete it to start again"
        )
    return saved


def capture_rng(rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """The state of every generator training draws from: numpy's ``rng`` (batch order,
    augmentation), torch's on the CPU (dropout) and, on CUDA, the devices'."""
    return {
        "numpy": rng.bit_generator.state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
    }


def restore_rng(saved: Mapping[str, Any], rng: np.random.Generator, device: torch.device) -> None:
    """Put the generators back as :func:`capture_rng` found them (the CUDA ones only when
    the state was saved on CUDA and the run continues there)."""
    rng.bit_generator.state = saved["numpy"]
    torch.set_rng_state(saved["torch"])
    if device.type == "cuda" and saved["cuda"]:
        torch.cuda.set_rng_state_all(saved["cuda"])
