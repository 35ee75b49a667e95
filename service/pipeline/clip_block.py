"""Clips from a decode worker to the batch through shared memory, not a pickled pipe.

A block is a file of the tmpfs at ``/dev/shm`` (where ``shm_open`` keeps its
names on Linux), one per decode:

1. the server names it and makes it, empty (:func:`create`), before it
   schedules the decode;
2. the worker decodes, writes the clips into it (:func:`write`) and returns
   only a small :class:`ClipsInBlock` through pebble's pipe;
3. once the worker has returned, the server reads the clips into arrays of its
   own (:func:`read`); it removes the block (:func:`remove`) whatever happened.

The server owns the name from start to end and a worker never creates one, so
a worker killed at any moment (crash, time limit, cancelled request) cannot
leave a block behind: one that opens its block after the server removed it
fails, and nobody waits for that result. A block is read only after its
worker returned, so a half-written one never reaches a batch.

Through the pipe, a ~786 KB clip is copied into a pickle, sent in pipe-sized
chunks and unpickled by a thread of the server; here it is one ``pwritev`` in
the worker and one ``preadv`` in the server. ``pwritev`` rather than a write
through a mapping, because ``/dev/shm`` may be small (64 MB in a Docker
container): a full tmpfs then fails the write with ``ENOSPC`` and the clips
come back through the pipe, where a mapping would kill the worker with
``SIGBUS``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.core.errors import InternalError
from service.media.decode_job import DecodedVideo
from service.media.probe import VideoInfo
from service.media.timestamps import FloatArray

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
PREFIX = "vidlstm-"
_owners = itertools.count()  # ClipBlocks of this process (tests run several servers in one)


@dataclass(frozen=True, slots=True)
class ClipsInBlock:
    """A decoded video whose clips wait in a block: what a worker returns instead of them."""

    info: VideoInfo
    windows: FloatArray  # (W, 2)
    decoded_frames: int
    window_s: float | None
    shape: tuple[int, ...]  # (1 + W, T, H, W, 3): the whole-video clip, then the windows'


def create(path: Path) -> None:
    """Make the block, empty; only its worker's :func:`write` fills it."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def write(path: Path, decoded: DecodedVideo) -> ClipsInBlock:
    """In the worker: the clips into the block (OSError when it is gone or the tmpfs is full)."""
    frames = [np.ascontiguousarray(decoded.clip), np.ascontiguousarray(decoded.window_clips)]
    fd = os.open(path, os.O_WRONLY)  # no O_CREAT: a block the server removed stays removed
    try:
        written = os.pwritev(fd, [f.data for f in frames], 0)
    finally:
        os.close(fd)
    if written != sum(f.nbytes for f in frames):
        raise OSError(f"wrote {written} bytes of the clips to {path}")
    return ClipsInBlock(
        info=decoded.info,
        windows=decoded.windows,
        decoded_frames=decoded.decoded_frames,
        window_s=decoded.window_s,
        shape=(1 + len(decoded.window_clips), *decoded.clip.shape),
    )


def read(path: Path, clips: ClipsInBlock) -> DecodedVideo:
    """In the server: the clips out of the block, into arrays the server owns."""
    frames = np.empty(clips.shape, dtype=np.uint8)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = os.preadv(fd, [frames.data], 0)
    finally:
        os.close(fd)
    if got != frames.nbytes:
        raise OSError(f"read {got} of {frames.nbytes} bytes of the clips from {path}")
    return DecodedVideo(
        info=clips.info,
        clip=frames[0],
        windows=clips.windows,
        window_clips=frames[1:],
        decoded_frames=clips.decoded_frames,
        window_s=clips.window_s,
    )


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def leftovers(directory: Path, pid: int | None = None) -> list[Path]:
    """The blocks of process ``pid`` (this one by default) still in ``directory``."""
    prefix = f"{PREFIX}{os.getpid() if pid is None else pid}-"
    with contextlib.suppress(FileNotFoundError):
        return sorted(p for p in directory.iterdir() if p.name.startswith(prefix))
    return []


class ClipBlocks:
    """The blocks of one decode pool: a fresh one per decode, its clips received, swept.

    ``directory`` None, or a block that cannot be made or filled (logged once), sends
    the clips back through the pipe instead.
    """

    def __init__(self, directory: Path | None = SHM_DIR) -> None:
        self.directory = directory
        self._prefix = f"{PREFIX}{os.getpid()}-{next(_owners)}-"  # vidlstm-PID-OWNER-N
        self._numbers = itertools.count()
        self._fell_back = False

    def new(self) -> Path | None:
        """A fresh, empty block for one decode; None: its clips come through the pipe."""
        if self.directory is None:
            return None
        block = self.directory / f"{self._prefix}{next(self._numbers)}"
        try:
            create(block)
        except OSError as err:
            self._fall_back(f"cannot create a block: {err}")
            return None
        return block

    def receive(self, result: DecodedVideo | ClipsInBlock, block: Path | None) -> DecodedVideo:
        """The decoded video from what the worker returned; the caller removes ``block``."""
        if isinstance(result, DecodedVideo):
            if block is not None:
                self._fall_back(f"the decode worker could not fill {block} (tmpfs full?)")
            return result
        if block is None:
            raise InternalError("a decode worker returned a block it was not given")
        try:
            return read(block, result)
        except OSError as err:
            raise InternalError("the decoded clips were lost on their way back") from err

    def sweep(self) -> None:
        """Remove whatever of these blocks is left (at shutdown)."""
        if self.directory is not None:
            for block in self.directory.glob(f"{self._prefix}*"):
                remove(block)

    def _fall_back(self, why: str) -> None:
        if not self._fell_back:
            self._fell_back = True
            log.warning("decoded clips come back through the pipe, not shared memory: %s", why)
