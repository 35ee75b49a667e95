"""Device: which one training runs on, and batches built ahead of it in order."""

from __future__ import annotations

import threading
from contextlib import closing

import numpy as np
import pytest
import torch

from model_export.data.augment import default_config
from model_export.device import DeviceError, prefetched, resolve_device
from model_export.epochs import TrainConfig
from model_export.nets.classifier import build_model
from model_export.train import fit
from tests.model_export.test_train import LABELS, T, _clips, _tiny


def test_auto_is_the_cpu_without_cuda() -> None:
    assert not torch.cuda.is_available()  # this machine; the tests below pretend otherwise
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_without_a_device_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="no CUDA device is visible to torch"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):  # DeviceError is one
        resolve_device("tpu")


def test_auto_takes_cuda_when_torch_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match="sees 1 CUDA device"):
        resolve_device("cuda:1")


def test_training_on_a_missing_device_fails_before_it_starts() -> None:
    model = build_model(_tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clips, targets = _clips(8, 0)
    serving = (np.ascontiguousarray(clips[:, 1::3]), targets)
    with pytest.raises(DeviceError):
        fit(model, (clips, targets), serving, augment=default_config(LABELS, num_frames=T),
            config=TrainConfig(epochs=1, device="cuda", progress=False))  # fmt: skip
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_batches_are_built_ahead_on_cuda_unless_told() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (TrainConfig().prefetch_on(cpu), TrainConfig().prefetch_on(cuda)) == (0, 2)
    assert TrainConfig(prefetch=3).prefetch_on(cpu) == 3
    assert TrainConfig(prefetch=0).prefetch_on(cuda) == 0


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_prefetched_builds_in_order_in_one_thread(depth: int) -> None:
    """One generator drawn in ``build`` gives what a plain loop gives."""
    rng, plain_rng = np.random.default_rng(0), np.random.default_rng(0)
    threads: set[int] = set()

    def build(key: int) -> tuple[int, float]:
        threads.add(threading.get_ident())
        return key, float(rng.random())

    got = list(prefetched(build, range(20), depth=depth))
    assert got == [(k, float(plain_rng.random())) for k in range(20)]
    assert len(threads) == 1
    assert (threading.get_ident() in threads) == (depth == 0)


def test_an_error_in_build_is_raised_in_the_consumer() -> None:
    def build(key: int) -> int:
        if key == 3:
            raise ZeroDivisionError("no")
        return key

    seen = []
    with pytest.raises(ZeroDivisionError, match="no"):
        for item in prefetched(build, range(10), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2]


def test_closing_early_stops_the_thread() -> None:
    built: list[int] = []

    def build(key: int) -> int:
        built.append(key)
        return key

    before = threading.active_count()
    with closing(prefetched(build, range(1000), depth=2)) as items:
        assert next(items) == 0
    assert threading.active_count() == before
    assert len(built) <= 4  # no more than depth ahead (and one in hand)
