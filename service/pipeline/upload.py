"""Receive upload: stream the request body to a temp file, never holding it whole.

Accepts ``multipart/form-data`` with a ``file`` field or a raw body typed
``video/*`` or ``application/octet-stream`` (:mod:`service.pipeline.body`).
The size cap is enforced while reading: a declared ``Content-Length`` over it
is refused before a byte is read, and a body that grows past it is refused on
the chunk that crosses it. A body that stalls, or trickles in for too long, is
refused too (408). The temp file gets a name of ours (the client's filename
never touches a path) and is removed whatever happens: success, error, or a
client that disconnects (:mod:`service.pipeline.spool` holds the directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import ClientDisconnect, Request

from service.core.errors import (
    ClientDisconnectedError,
    ClientError,
    NoFileError,
    PayloadTooLargeError,
    UploadTimeoutError,
)
from service.pipeline.body import FILE_FIELD, Sink, sink_for
from service.pipeline.spool import new_file, remove, write_all

log = logging.getLogger(__name__)

# What receive_upload defaults to without settings (the settings' own defaults).
DEFAULT_IDLE_TIMEOUT_S = 30.0
DEFAULT_TIMEOUT_S = 600.0
# Received data is written to the temp file in batches of about this much, one
# writev each. At most 2 batches per upload are held: 256 MiB for 64 uploads.
WRITE_BYTES = 2 * 1024 * 1024
# A last batch this small goes to the page cache in ~0.1 ms: less than the thread
# hop costs the loop (bench/README.md, scale-up).
INLINE_WRITE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Upload:
    """The spooled upload: our own temp path and how many bytes the file holds."""

    path: Path
    size: int
    body_bytes: int


@contextlib.asynccontextmanager
async def receive_upload(
    request: Request,
    *,
    max_bytes: int,
    temp_dir: Path,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AsyncIterator[Upload]:
    """Spool the request's video to a temp file in ``temp_dir``; removed on exit.

    408 when no data comes for ``idle_timeout_s`` or the whole body takes
    longer than ``timeout_s``: a stalled client must not hold its slot.
    """
    sink = sink_for(request.headers.get("content-type"))
    _check_declared_length(request.headers.get("content-length"), max_bytes)
    fd, path = new_file(temp_dir)
    try:
        paced = _paced(request.stream(), idle_timeout_s=idle_timeout_s, timeout_s=timeout_s)
        try:
            async with contextlib.aclosing(paced) as chunks:
                body_bytes = await _spool(chunks, sink, fd, max_bytes)
            size = os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)
        if not sink.found:
            raise NoFileError(f"no {FILE_FIELD!r} field in the multipart body")
        if size == 0:
            raise NoFileError("the uploaded file is empty")
        yield Upload(path=path, size=size, body_bytes=body_bytes)
    finally:
        await remove(path)


async def _paced(
    chunks: AsyncGenerator[bytes, None], *, idle_timeout_s: float, timeout_s: float
) -> AsyncGenerator[bytes, None]:
    """``chunks``, or :class:`UploadTimeoutError` when they stall or take too long overall."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while True:
            left = deadline - loop.time()
            try:
                async with asyncio.timeout(min(idle_timeout_s, left)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as err:
                if left <= idle_timeout_s:
                    raise UploadTimeoutError(
                        f"the upload took longer than {timeout_s:g} s"
                    ) from err
                raise UploadTimeoutError(f"no upload data for {idle_timeout_s:g} s") from err
            yield chunk
    finally:
        await chunks.aclose()


async def _spool(chunks: AsyncIterator[bytes], sink: Sink, fd: int, max_bytes: int) -> int:
    """Feed ``chunks`` through ``sink`` into the file open at ``fd``; returns the bytes received.

    Writes go to a thread in ~2 MiB batches, one batch in flight while the next
    is received: receiving (the event loop) and writing (the thread) overlap. A
    last batch of at most ``INLINE_WRITE_BYTES`` (all of a typical short clip) is
    written on the loop.
    """
    received = 0
    pending: list[bytes] = []
    pending_bytes = 0
    writing: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLargeError(f"the upload exceeds {max_bytes} bytes")
            data = sink.feed(chunk)
            if data:
                pending.append(data)
                pending_bytes += len(data)
            if pending_bytes >= WRITE_BYTES:
                if writing is not None:
                    await writing
                writing = _write(fd, pending)
                pending, pending_bytes = [], 0
        sink.finish()
    except ClientDisconnect as err:
        raise ClientDisconnectedError("the client disconnected during the upload") from err
    finally:
        if writing is not None:  # never leave a write running on a file about to close
            await asyncio.shield(writing)
    if pending_bytes > INLINE_WRITE_BYTES:
        await _write(fd, pending)
    elif pending:
        write_all(fd, pending)  # into the page cache: cheaper than the hop to a thread
    return received


def _write(fd: int, parts: list[bytes]) -> asyncio.Future[None]:
    """Write ``parts`` on a thread, so a slow disk cannot stall other requests.

    Per batch: a thread hop per 256 KiB chunk cost more than the write.
    """
    return asyncio.ensure_future(asyncio.to_thread(write_all, fd, parts))


def _check_declared_length(value: str | None, max_bytes: int) -> None:
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError as err:
        raise ClientError("Content-Length is not a number") from err
    if declared > max_bytes:
        raise PayloadTooLargeError(f"the upload ({declared} bytes) exceeds {max_bytes} bytes")
