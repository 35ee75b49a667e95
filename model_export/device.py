"""Device: where training runs, and batches built ahead of it.

``--device auto|cpu|cuda``: ``auto`` takes CUDA when torch sees a device. On
CUDA the trainers run in mixed precision (:class:`model_export.stepper.Stepper`)
and copy pinned batches without blocking, and the next batches are built in a
background thread (:func:`prefetched`) while the current one trains, so
augmentation on the CPU overlaps the model's compute on the GPU. Export and serving
run on the CPU: a trainer hands its module back there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Sequence
from typing import TypeVar, cast

import torch
from torch import nn

DEVICES = ("auto", "cpu", "cuda")
CPU = torch.device("cpu")

K = TypeVar("K")
T = TypeVar("T")


class DeviceError(ValueError):
    """A device that torch cannot see (or a name that is not one)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if torch sees a device, else CPU; ``cpu``; ``cuda`` (or ``cuda:N``),
    which must be visible to torch."""
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if name == "cpu":
        return CPU
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r}: no CUDA device is visible to torch (torch {torch.__version__},"
                f" built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto"
            )
        try:
            device = torch.device(name)
        except RuntimeError as err:
            raise DeviceError(f"device {name!r}: {err}") from err
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name!r}: torch sees {count} CUDA device(s)")
        return device
    raise DeviceError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")


def device_of(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters are (CPU for a module without any)."""
    return next(module.parameters(), torch.empty(0)).device


def pinned(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` in page-locked memory when it is bound for CUDA (so the copy can run
    asynchronously); unchanged otherwise."""
    return tensor.pin_memory() if device.type == "cuda" else tensor


def send(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``: no copy on the CPU, a non-blocking copy from pinned memory."""
    if device.type == "cpu":
        return tensor
    return tensor.to(device, non_blocking=tensor.is_pinned())


def upload(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``, through pinned memory on CUDA."""
    return send(pinned(tensor, device), device)


class _Failed:
    """What the builder thread hands over instead of an item when ``build`` raised."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def prefetched(
    build: Callable[[K], T], keys: Sequence[K], *, depth: int = 2
) -> Generator[T, None, None]:
    """``build(key)`` for each key in order, up to ``depth`` ahead in a background thread.

    One thread calls ``build`` for every key, one after another, so a ``build``
    that draws from a shared generator draws exactly as a plain loop would.
    ``depth`` 0 builds in the caller's thread. An error in ``build`` is raised
    where its item would have been; closing the iterator early (``break``, an
    error in the caller; wrap it in :func:`contextlib.closing`) stops the thread.
    """
    if depth <= 0:
        yield from (build(key) for key in keys)
        return
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for key in keys:
                if not hand_over(build(key)):
                    return
        except BaseException as err:  # handed over, raised in the consumer's thread
            hand_over(_Failed(err))
            return
        hand_over(_DONE)

    thread = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield cast(T, item)
    finally:
        stop.set()
        thread.join()
