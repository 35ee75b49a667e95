"""The dynamic batcher on its own (fake model), and a full queue through HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from service.app import create_app
from service.core.errors import PROBLEM_BASE, DrainingError, InternalError, OverloadedError
from service.core.metrics import Metrics
from service.pipeline.batcher import Batcher
from service.pipeline.inference import load_model
from tests.conftest import MakeSettings
from tests.support.serving import serve_in_thread

SHAPE = (2, 4, 4, 3)
Frames = npt.NDArray[np.uint8]
Probs = npt.NDArray[np.float32]


def clip(value: int) -> Frames:
    return np.full(SHAPE, value, dtype=np.uint8)


class FakeModel:
    """Returns each clip's first pixel as the probability of class 0; records batch sizes."""

    def __init__(self, *, poison: int | None = None, delay_s: float = 0.0) -> None:
        self.batches: list[int] = []
        self.poison = poison
        self.delay_s = delay_s

    def __call__(self, frames: Frames) -> Probs:
        self.batches.append(len(frames))
        time.sleep(self.delay_s)
        if self.poison is not None and (frames[:, 0, 0, 0, 0] == self.poison).any():
            raise RuntimeError("poisoned clip")
        first = frames[:, 0, 0, 0, 0].astype(np.float32) / 255
        return np.stack([first, 1 - first], axis=1)


@pytest.fixture
async def make_batcher() -> AsyncIterator[Callable[..., Batcher]]:
    made: list[Batcher] = []

    def make(
        run: Callable[[Frames], Probs],
        admitted: Callable[[], int] | None = None,
        **kwargs: float,
    ) -> Batcher:
        options: dict[str, float] = {"max_batch_size": 4, "max_delay_s": 0.05, "max_queue": 16}
        options.update(kwargs)
        batcher = Batcher(
            run,
            clip_shape=SHAPE,
            max_batch_size=int(options["max_batch_size"]),
            max_delay_s=options["max_delay_s"],
            max_queue=int(options["max_queue"]),
            metrics=Metrics(),
            admitted=admitted,
        )
        batcher.start()
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        await batcher.stop()


async def test_concurrent_clips_share_a_run(make_batcher: Callable[..., Batcher]) -> None:
    model = FakeModel()
    batcher = make_batcher(model)

    results = await asyncio.gather(*(batcher.submit([clip(v)]) for v in range(10)))

    assert model.batches == [4, 4, 2]
    for v, (result,) in enumerate(results):
        assert result.probabilities[0] == pytest.approx(v / 255)


async def test_batch_closes_at_its_deadline(make_batcher: Callable[..., Batcher]) -> None:
    model = FakeModel()
    batcher = make_batcher(model, max_delay_s=0.2)

    start = time.perf_counter()
    (result,) = await batcher.submit([clip(1)])
    waited = time.perf_counter() - start

    assert model.batches == [1]
    assert 0.18 <= waited < 1.0
    assert result.batch_size == 1


async def test_a_lone_request_does_not_wait_out_the_delay(
    make_batcher: Callable[..., Batcher],
) -> None:
    model = FakeModel()
    batcher = make_batcher(model, admitted=lambda: 1, max_delay_s=60.0)

    (result,) = await asyncio.wait_for(batcher.submit([clip(1)]), 20)  # not the 60 s

    assert model.batches == [1]
    assert result.batch_size == 1


async def test_a_batch_waits_for_a_request_still_on_its_way(
    make_batcher: Callable[..., Batcher],
) -> None:
    model = FakeModel()
    # Two requests admitted: the second still uploading or decoding when the first submits.
    batcher = make_batcher(model, admitted=lambda: 2, max_delay_s=60.0)

    first = asyncio.create_task(batcher.submit([clip(1)]))
    await asyncio.sleep(0.2)
    assert not first.done() and model.batches == []
    (second,) = await asyncio.wait_for(batcher.submit([clip(2)]), 20)
    (one,) = await first

    assert model.batches == [2]  # the first waited for it, then none was left to come
    assert one.batch_size == second.batch_size == 2


async def test_deadline_counts_from_the_first_clip(make_batcher: Callable[..., Batcher]) -> None:
    model = FakeModel()
    batcher = make_batcher(model, max_delay_s=0.3)

    first = asyncio.create_task(batcher.submit([clip(1)]))
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    await batcher.submit([clip(2)])
    second_waited = time.perf_counter() - start
    await first

    assert model.batches == [2]
    assert second_waited < 0.25  # closed 0.3 s after the first clip, not the second


async def test_bad_clip_fails_alone(make_batcher: Callable[..., Batcher]) -> None:
    model = FakeModel(poison=13)
    batcher = make_batcher(model, max_delay_s=0.1)

    outcomes = await asyncio.gather(
        *(batcher.submit([clip(v)]) for v in (11, 12, 13, 14)), return_exceptions=True
    )

    assert isinstance(outcomes[2], InternalError)
    assert "poisoned" not in outcomes[2].detail
    for v, outcome in zip((11, 12, 14), (outcomes[0], outcomes[1], outcomes[3]), strict=True):
        assert not isinstance(outcome, BaseException)
        assert outcome[0].probabilities[0] == pytest.approx(v / 255)
    assert model.batches == [4, 1, 1, 1, 1]  # one failed batch, then one by one


async def test_wrong_shape_never_joins_a_batch(make_batcher: Callable[..., Batcher]) -> None:
    model = FakeModel()
    batcher = make_batcher(model)

    with pytest.raises(InternalError):
        await batcher.submit([np.zeros((3, 4, 4, 3), dtype=np.uint8)])
    assert model.batches == []


async def test_outputs_must_match_inputs(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(lambda frames: np.zeros((1, 2), dtype=np.float32), max_delay_s=0.05)

    outcomes = await asyncio.gather(
        batcher.submit([clip(1)]), batcher.submit([clip(2)]), return_exceptions=True
    )

    # The pair fails the check; retried alone, each clip gets its one row.
    assert all(not isinstance(o, BaseException) for o in outcomes)


async def test_full_queue_refuses_at_once(make_batcher: Callable[..., Batcher]) -> None:
    model = FakeModel(delay_s=0.3)
    batcher = make_batcher(model, max_batch_size=1, max_delay_s=0.0, max_queue=2)

    running = asyncio.create_task(batcher.submit([clip(1)]))
    await asyncio.sleep(0.1)  # taken by the loop, blocking in the model
    queued = asyncio.create_task(batcher.submit([clip(2), clip(3)]))
    await asyncio.sleep(0)
    start = time.perf_counter()
    with pytest.raises(OverloadedError):
        await batcher.submit([clip(4)])

    assert time.perf_counter() - start < 0.05
    assert len(await running) == 1
    assert len(await queued) == 2


async def test_one_request_clips_are_queued_together(
    make_batcher: Callable[..., Batcher],
) -> None:
    model = FakeModel()
    batcher = make_batcher(model, max_batch_size=8)

    results = await batcher.submit([clip(v) for v in range(5)])

    assert model.batches == [5]
    assert [r.probabilities[0] for r in results] == pytest.approx([v / 255 for v in range(5)])


async def test_stop_fails_waiting_and_running_clips() -> None:
    batcher = Batcher(
        FakeModel(delay_s=0.3),
        clip_shape=SHAPE,
        max_batch_size=1,
        max_delay_s=0.0,
        max_queue=4,
        metrics=Metrics(),
    )
    batcher.start()
    running = asyncio.create_task(batcher.submit([clip(1)]))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(batcher.submit([clip(2)]))
    await asyncio.sleep(0)

    await batcher.stop()

    for task in (running, waiting):
        with pytest.raises(DrainingError):
            await task


def test_full_queue_is_503_with_retry_after(make_settings: MakeSettings, mp4: Path) -> None:
    settings = make_settings(max_batch_size=1, max_delay_ms=0, max_queue=2, max_segments=1)
    model = load_model(settings.model_path, providers=("CPUExecutionProvider",))
    gate = threading.Event()
    gate.set()
    run = model.run

    def gated(frames: Frames) -> Probs:
        gate.wait(30)
        return run(frames)

    model.run = gated  # type: ignore[method-assign]
    data = mp4.read_bytes()
    headers = {"Content-Type": "video/mp4"}
    with serve_in_thread(create_app(settings, model=model)) as served:
        gate.clear()
        with httpx.Client(base_url=served.base_url, timeout=30) as client:
            pool: list[threading.Thread] = []
            answers: list[int] = []
            for _ in range(3):  # one inferring, two filling the queue
                t = threading.Thread(
                    target=lambda: answers.append(
                        client.post("/classify", content=data, headers=headers).status_code
                    )
                )
                t.start()
                pool.append(t)
            deadline = time.monotonic() + 20
            while served.runtime.batcher.free_slots and time.monotonic() < deadline:
                time.sleep(0.02)

            # Answered while inference is still held: refused without waiting for a slot.
            refused = client.post("/classify", content=data, headers=headers)
            gate.set()
            for t in pool:
                t.join(30)

    assert refused.status_code == 503
    assert refused.json()["type"] == PROBLEM_BASE + "overloaded"
    assert int(refused.headers["retry-after"]) >= 1
    assert answers == [200, 200, 200]
