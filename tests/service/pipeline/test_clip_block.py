"""Clips come back from the decode workers through shared-memory blocks: the same clips as
an in-process decode, and no block left in /dev/shm whatever happens to the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.core.errors import DecoderCrashedError, DecodeTimeoutError, InternalError
from service.media.decode_job import DecodedVideo, DecodeJob, decode_job
from service.media.probe import Limits
from service.pipeline import clip_block
from service.pipeline.clip_block import SHM_DIR, ClipBlocks
from service.pipeline.decode_pool import DecodeHook, DecodePool
from service.pipeline.inference import load_model
from tests.conftest import MakeSettings
from tests.support import faults
from tests.support.observe import children
from tests.support.serving import serve_in_thread

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs a tmpfs at /dev/shm")

WHOLE = DecodeJob(num_frames=8, height=32, width=32, limits=Limits())
SEGMENTS = DecodeJob(
    num_frames=8, height=32, width=32, limits=Limits(), window_s=0.5, max_segments=8
)
PIPED = "come back through the pipe"


def spawned_children() -> set[int]:
    """This process's children started by multiprocessing's spawn (decode workers)."""
    found = set()
    for child in children(os.getpid()):
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
    return found


def blocks() -> list[Path]:
    """This process's blocks in /dev/shm (every server a test runs is in this process)."""
    return clip_block.leftovers(SHM_DIR)


def assert_same(got: DecodedVideo, want: DecodedVideo) -> None:
    assert got.info == want.info
    assert got.decoded_frames == want.decoded_frames
    assert got.window_s == want.window_s
    np.testing.assert_array_equal(got.windows, want.windows)
    np.testing.assert_array_equal(got.clip, want.clip)
    np.testing.assert_array_equal(got.window_clips, want.window_clips)
    assert got.clip.shape == want.clip.shape and got.window_clips.shape == want.window_clips.shape


@contextlib.asynccontextmanager
async def running(
    hook: DecodeHook | None = None, *, block_dir: Path | None = SHM_DIR, timeout_s: float = 20
) -> AsyncIterator[DecodePool]:
    pool = DecodePool(workers=1, timeout_s=timeout_s, hook=hook, block_dir=block_dir)
    pool.start()
    try:
        await pool.warm_up()
        yield pool
    finally:
        await asyncio.to_thread(pool.close)


async def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def hang(tmp_path: Path) -> Path:
    path = tmp_path / "hang.mp4"
    path.write_bytes(faults.HANG + b"\0" * 1000)
    return path


@pytest.mark.parametrize("job", [WHOLE, SEGMENTS], ids=["whole", "segments"])
def test_block_round_trip(mp4: Path, tmp_path: Path, job: DecodeJob) -> None:
    decoded = decode_job(str(mp4), job)
    block = ClipBlocks(tmp_path).new()
    assert block is not None and block.stat().st_size == 0

    described = clip_block.write(block, decoded)
    got = clip_block.read(block, described)

    assert block.stat().st_size == decoded.clip.nbytes + decoded.window_clips.nbytes
    assert_same(got, decoded)
    assert got.clip.flags.writeable and got.clip.base is not None  # a view of one array
    clip_block.remove(block)
    clip_block.remove(block)  # twice is harmless
    assert not block.exists()


def test_a_removed_block_is_never_recreated(mp4: Path, tmp_path: Path) -> None:
    """A worker that writes after the server removed its block fails instead of leaking one."""
    block = tmp_path / "vidlstm-removed"

    with pytest.raises(FileNotFoundError):
        clip_block.write(block, decode_job(str(mp4), WHOLE))
    assert list(tmp_path.iterdir()) == []


def test_each_owner_names_and_sweeps_its_own_blocks(tmp_path: Path) -> None:
    """Two pools in one process (tests run several servers) never share or sweep a block."""
    mine, other = ClipBlocks(tmp_path), ClipBlocks(tmp_path)
    a, b, c = mine.new(), other.new(), mine.new()

    assert len({a, b, c}) == 3
    mine.sweep()
    assert list(tmp_path.iterdir()) == [b]
    assert clip_block.leftovers(tmp_path) == [b]  # the process's, whoever owns them


@pytest.mark.parametrize("job", [WHOLE, SEGMENTS], ids=["whole", "segments"])
async def test_pool_returns_the_clips_of_an_in_process_decode(
    mp4: Path, job: DecodeJob, caplog: pytest.LogCaptureFixture
) -> None:
    want = decode_job(str(mp4), job)
    async with running(faults.require_clip_block) as pool:
        through_block, _ = await pool.decode(mp4, job)
    async with running(block_dir=None) as pool:
        through_pipe, _ = await pool.decode(mp4, job)

    assert_same(through_block, want)
    assert_same(through_pipe, want)
    assert len(want.window_clips) > 1 or job.window_s is None
    assert PIPED not in caplog.text
    assert blocks() == []


async def test_many_decodes_leave_no_blocks(mp4: Path, tmp_path: Path) -> None:
    pool = DecodePool(workers=2, timeout_s=20)
    pool.start()
    try:
        outcomes = await asyncio.gather(
            *(pool.decode(mp4, SEGMENTS if i % 3 else WHOLE) for i in range(60)),
            pool.decode(tmp_path / "missing.mp4", WHOLE),
            return_exceptions=True,
        )
    finally:
        await asyncio.to_thread(pool.close)

    assert all(isinstance(o, tuple) for o in outcomes[:-1])
    assert isinstance(outcomes[-1], InternalError)
    assert blocks() == []


async def test_worker_killed_mid_decode_leaves_no_block(mp4: Path, tmp_path: Path) -> None:
    before = spawned_children()
    async with running(faults.inject) as pool:
        (worker,) = spawned_children() - before
        decoding = asyncio.create_task(pool.decode(hang(tmp_path), WHOLE))
        await wait_for(lambda: len(blocks()) == 1, "no block while decoding")
        os.kill(worker, signal.SIGKILL)  # mid-decode, holding the block's name

        with pytest.raises(DecoderCrashedError, match="SIGKILL"):
            await decoding
        assert blocks() == []
        decoded, _ = await pool.decode(mp4, WHOLE)  # the replacement works
    assert decoded.clip.shape == (8, 32, 32, 3)
    assert blocks() == []


async def test_timed_out_decode_leaves_no_block(mp4: Path, tmp_path: Path) -> None:
    async with running(faults.inject, timeout_s=1.0) as pool:
        with pytest.raises(DecodeTimeoutError):
            await pool.decode(hang(tmp_path), WHOLE)
        assert blocks() == []
        await pool.decode(mp4, WHOLE)
    assert blocks() == []


async def test_cancelled_decode_leaves_no_block(mp4: Path, tmp_path: Path) -> None:
    async with running(faults.inject) as pool:
        decoding = asyncio.create_task(pool.decode(hang(tmp_path), WHOLE))
        await wait_for(lambda: len(blocks()) == 1, "no block while decoding")
        decoding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await decoding
        assert blocks() == []
        await pool.decode(mp4, WHOLE)  # after pebble replaced the killed worker
        assert blocks() == []


async def test_no_tmpfs_falls_back_to_the_pipe(
    mp4: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(block_dir=tmp_path / "no-such-dir") as pool:
        first, _ = await pool.decode(mp4, SEGMENTS)
        second, _ = await pool.decode(mp4, SEGMENTS)

    assert_same(first, decode_job(str(mp4), SEGMENTS))
    assert_same(second, first)
    assert caplog.text.count(PIPED) == 1  # logged once
    assert "cannot create a block" in caplog.text


async def test_block_the_worker_cannot_fill_falls_back_to_the_pipe(
    mp4: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(faults.tiny_files) as pool:
        first, _ = await pool.decode(mp4, SEGMENTS)
        second, _ = await pool.decode(mp4, WHOLE)

    assert_same(first, decode_job(str(mp4), SEGMENTS))
    assert_same(second, decode_job(str(mp4), WHOLE))
    assert caplog.text.count(PIPED) == 1
    assert "could not fill" in caplog.text
    assert blocks() == []


def test_a_block_lost_or_not_handed_out_is_an_internal_error(mp4: Path, tmp_path: Path) -> None:
    block = ClipBlocks(tmp_path).new()
    assert block is not None
    described = clip_block.write(block, decode_job(str(mp4), WHOLE))
    clip_block.remove(block)

    with pytest.raises(InternalError, match="lost"):
        ClipBlocks(tmp_path).receive(described, block)
    with pytest.raises(InternalError, match="not given"):
        ClipBlocks(None).receive(described, None)


def test_classify_matches_the_model_on_an_in_process_decode(
    make_settings: MakeSettings, mp4: Path
) -> None:
    """Through HTTP, with segments: the probabilities of the clips decoded here, one run each."""
    settings = make_settings(decode_workers=2)
    with serve_in_thread(create_app(settings)) as served:
        response = httpx.post(
            f"{served.base_url}/classify?segments=true&window_s=0.5",
            content=mp4.read_bytes(),
            headers={"Content-Type": "video/mp4"},
            timeout=30,
        )
        job = served.runtime.decode_job(0.5)
        labels = served.runtime.model.info.labels
    assert response.status_code == 200
    assert blocks() == []

    decoded = decode_job(str(mp4), job)
    model = load_model(settings.model_path, providers=("CPUExecutionProvider",))
    want = [model.run(clip[None])[0] for clip in [decoded.clip, *decoded.window_clips]]
    body = response.json()
    got = [[body["probabilities"][label] for label in labels]]
    assert len(body["segments"]) == len(decoded.window_clips) > 1
    np.testing.assert_allclose(got[0], want[0] / want[0].sum(dtype=np.float64), atol=1e-6)
    for segment, probs in zip(body["segments"], want[1:], strict=True):
        top = segment["top"][0]
        assert top["label"] == labels[int(np.argmax(probs))]
        assert top["score"] == pytest.approx(float(probs.max() / probs.sum()), abs=1e-6)
