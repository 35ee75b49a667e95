"""Fuzzing: mutated videos never crash the server, never get a 5xx, never hang.

Two shares. The bulk goes straight to the decode workers (the service's own
:class:`DecodePool`, so each outcome is the problem the service would send)
with two decodes in flight; a smaller share goes through HTTP to a real server
(upload -> worker decode -> batch -> infer). ``VIDLSTM_FUZZ_EXAMPLES`` sets the
number of mutated files (default 5000, 15-45 s on two cores; ``make fuzz``
runs many more with a random seed: ``VIDLSTM_FUZZ_RANDOM=1``). Inputs that break
a property are saved under ``VIDLSTM_FUZZ_FAILURES`` (default: the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.core.errors import VidlstmError
from service.media.decode_job import DecodeJob
from service.media.probe import Limits
from service.pipeline.decode_pool import DecodePool
from tests.conftest import make_test_settings
from tests.support.fuzzing import container_fields, mutated, save_failure, seed_videos
from tests.support.serving import Served, serve_in_thread

FUZZ_FILES = int(os.environ.get("VIDLSTM_FUZZ_EXAMPLES", "5000"))
HTTP_FILES = max(FUZZ_FILES // 8, 20)
RANDOM = os.environ.get("VIDLSTM_FUZZ_RANDOM") == "1"
DECODE_LIMIT_S = 10.0
BATCH = 4  # files per hypothesis example, decoded two at a time
JOB = DecodeJob(num_frames=8, height=32, width=32, limits=Limits())


def fuzz_settings(files: int, batch: int) -> settings:
    return settings(
        max_examples=math.ceil(files / batch),
        deadline=None,
        derandomize=not RANDOM,
        database=None if not RANDOM else settings().database,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    slug: str
    seconds: float

    @property
    def label(self) -> str:
        return f"{self.status} {self.slug}".strip()


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    return seed_videos()


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("VIDLSTM_FUZZ_FAILURES")
    return Path(named) if named else tmp_path_factory.mktemp("fuzz-failures")


@pytest.fixture(scope="module")
def decode_pool() -> Iterator[DecodePool]:
    pool = DecodePool(workers=2, timeout_s=DECODE_LIMIT_S)
    pool.start()
    asyncio.run(pool.warm_up())
    yield pool
    pool.close()


async def decode_outcome(pool: DecodePool, path: Path) -> Outcome:
    start = time.monotonic()
    try:
        await pool.decode(path, JOB)
    except VidlstmError as err:
        return Outcome(err.status, err.slug, time.monotonic() - start)
    return Outcome(200, "", time.monotonic() - start)


def test_seeds_have_length_fields_to_attack(seeds: dict[str, bytes]) -> None:
    counts = {name: len(container_fields(data)) for name, data in seeds.items()}
    for name in ("h264.mp4", "h264-fragmented.mp4", "h264.mkv", "vp9.webm", "mpeg4.avi"):
        assert counts[name] >= 20, counts


def test_decoder_survives_mutated_videos(
    decode_pool: DecodePool,
    seeds: dict[str, bytes],
    failures: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    start = time.monotonic()

    @fuzz_settings(FUZZ_FILES, BATCH)
    @given(st.lists(mutated(seeds), min_size=BATCH, max_size=BATCH))
    def decode_batch(batch: list[tuple[str, bytes]]) -> None:
        nonlocal slowest
        paths = []
        for i, (_, data) in enumerate(batch):
            paths.append(tmp_path / f"fuzz-{i}.upload")
            paths[-1].write_bytes(data)

        async def run_all() -> list[Outcome]:
            return list(await asyncio.gather(*(decode_outcome(decode_pool, p) for p in paths)))

        for (how, data), outcome in zip(batch, asyncio.run(run_all()), strict=True):
            outcomes[outcome.label] += 1
            slowest = max(slowest, outcome.seconds)
            if outcome.status >= 500:
                saved = save_failure(failures, how, data)
                raise AssertionError(f"{how}: {outcome} (input saved as {saved})")

    decode_batch()
    elapsed = time.monotonic() - start
    total = sum(outcomes.values())
    record_property(
        "figures",
        f"{total} mutated files decoded in {elapsed:.0f} s (slowest {slowest:.2f} s): "
        + ", ".join(f"{label}: {n}" for label, n in outcomes.most_common()),
    )
    assert total >= FUZZ_FILES


@pytest.fixture(scope="module")
def fuzz_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = make_test_settings(
        tiny_model,
        tmp_path_factory.mktemp("fuzz-spool"),
        decode_workers=2,
        decode_timeout_s=DECODE_LIMIT_S,
    )
    with serve_in_thread(create_app(settings)) as served:
        yield served


def test_server_survives_mutated_uploads(
    fuzz_server: Served,
    seeds: dict[str, bytes],
    failures: Path,
    record_property: Callable[[str, object], None],
) -> None:
    statuses: Counter[int] = Counter()
    client = httpx.Client(base_url=fuzz_server.base_url, timeout=DECODE_LIMIT_S + 30)

    @fuzz_settings(HTTP_FILES, 1)
    @given(mutated(seeds))
    def upload(case: tuple[str, bytes]) -> None:
        how, data = case
        start = time.monotonic()
        response = client.post("/classify", files={"file": ("fuzz.mp4", data, "video/mp4")})
        elapsed = time.monotonic() - start
        statuses[response.status_code] += 1
        if response.status_code >= 500 or elapsed > DECODE_LIMIT_S + 5:
            saved = save_failure(failures, how, data)
            raise AssertionError(
                f"{how}: {response.status_code} after {elapsed:.1f} s {response.text[:300]} "
                f"(input saved as {saved})"
            )

    with client:
        upload()
        health = client.get("/health")
    record_property(
        "figures",
        f"{sum(statuses.values())} mutated uploads over HTTP: "
        + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items())),
    )
    assert health.status_code == 200
    assert fuzz_server.runtime.lifecycle.in_flight == 0
    assert list(fuzz_server.runtime.spool.path.iterdir()) == []
