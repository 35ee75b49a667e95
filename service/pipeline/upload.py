"""Receive upload: stream the request body to a temp file, never holding it whole.

Accepts ``multipart/form-data`` with a ``file`` field (parsed incrementally by
python-multipart's streaming parser) or a raw body typed ``video/*`` or
``application/octet-stream``. The size cap is enforced while reading: a
declared ``Content-Length`` over it is refused before a byte is read, and a
body that grows past it is refused on the chunk that crosses it. A body that
stalls, or trickles in for too long, is refused too (408). The temp file
gets a name of ours (the client's filename never touches a path) and is
removed whatever happens: success, error, or a client that disconnects. Each
server process spools into a directory of its own, removed at shutdown; one
left behind by a killed process is swept at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.errors import (
    ClientDisconnectedError,
    ClientError,
    NoFileError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    UploadTimeoutError,
)

log = logging.getLogger(__name__)

# What receive_upload defaults to without settings (the settings' own defaults).
DEFAULT_IDLE_TIMEOUT_S = 30.0
DEFAULT_TIMEOUT_S = 600.0
# A multipart part's headers are a name and a filename; more is an attack on memory.
MAX_PART_HEADER_BYTES = 16 * 1024
# Received data is written to the temp file in batches of about this much, one
# writev each. At most 2 batches per upload are held: 256 MiB for 64 uploads.
WRITE_BYTES = 2 * 1024 * 1024
# Buffers one writev takes at most (Linux: 1024).
IOV_MAX = max(os.sysconf("SC_IOV_MAX"), 16)
# Spooled files this big are deleted on a thread: freeing their pages blocks for ms.
REMOVE_IN_THREAD_BYTES = 8 * 1024 * 1024

FILE_FIELD = "file"
SPOOL_PREFIX = "vidlstm-spool-"
RAW_TYPES = ("application/octet-stream",)


@dataclass(frozen=True, slots=True)
class Upload:
    """The spooled upload: our own temp path and how many bytes the file holds."""

    path: Path
    size: int
    body_bytes: int


class Spool:
    """This process's directory for uploads in flight, under ``parent``."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            raise RuntimeError("the spool is not open")
        return self._path

    def open(self) -> Path:
        self.sweep()
        self._path = Path(tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=self.parent))
        return self._path

    def close(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None

    def sweep(self) -> None:
        """Remove spools of processes that no longer exist (killed before cleaning up)."""
        for stale in self.parent.glob(SPOOL_PREFIX + "*"):
            pid = stale.name.removeprefix(SPOOL_PREFIX).split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                log.warning("removing the spool of a dead process", extra={"spool": str(stale)})
                shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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
    sink = _sink_for(request.headers.get("content-type"))
    _check_declared_length(request.headers.get("content-length"), max_bytes)
    # Our own name and suffix: FFmpeg picks some demuxers by extension (HLS
    # playlists, which may fetch URLs or read local files, need .m3u8).
    fd, name = tempfile.mkstemp(prefix="vidlstm-", suffix=".upload", dir=temp_dir)
    path = Path(name)
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
        await _remove(path)


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


async def _spool(chunks: AsyncIterator[bytes], sink: _Sink, fd: int, max_bytes: int) -> int:
    """Feed ``chunks`` through ``sink`` into the file open at ``fd``; returns the bytes received.

    Writes go to a thread in ~2 MiB batches, one batch in flight while the next
    is received: receiving (the event loop) and writing (the thread) overlap.
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
    if pending:
        await _write(fd, pending)
    return received


def _write(fd: int, parts: list[bytes]) -> asyncio.Future[None]:
    """Write ``parts`` on a thread, so a slow disk cannot stall other requests.

    Per batch: a thread hop per 256 KiB chunk cost more than the write.
    """
    return asyncio.ensure_future(asyncio.to_thread(write_all, fd, parts))


def write_all(fd: int, parts: Sequence[bytes]) -> None:
    """Write ``parts`` in order at ``fd``'s offset, in as few ``writev`` calls as the OS allows.

    One system call per batch, not one per part: the writing thread then takes
    the GIL back from the event loop once per batch (per part it waited, which
    stalled a 68 MB upload by 12-17 ms). Partial writes are resumed.
    """
    views = deque(memoryview(part) for part in parts if part)
    while views:
        written = os.writev(fd, list(itertools.islice(views, IOV_MAX)))
        while written:
            head = views[0]
            if written < len(head):
                views[0] = head[written:]
                break
            written -= len(head)
            views.popleft()


async def _remove(path: Path) -> None:
    """Delete a spooled file; a big one off the event loop (freeing 70 MB takes ~5 ms).

    Shielded: a request cancelled while its file is removed still removes it.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size < REMOVE_IN_THREAD_BYTES:
        path.unlink(missing_ok=True)
        return
    await asyncio.shield(asyncio.to_thread(path.unlink, missing_ok=True))


def _check_declared_length(value: str | None, max_bytes: int) -> None:
    if value is None:
        return
    try:
        declared = int(value)
    except ValueError as err:
        raise ClientError("Content-Length is not a number") from err
    if declared > max_bytes:
        raise PayloadTooLargeError(f"the upload ({declared} bytes) exceeds {max_bytes} bytes")


def _sink_for(content_type: str | None) -> _Sink:
    if not content_type:
        raise UnsupportedMediaTypeError(
            "send multipart/form-data with a 'file' field, or a video/* body"
        )
    mime, params = parse_options_header(content_type)
    kind = mime.decode("latin-1").lower()
    if kind == "multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise ClientError("multipart/form-data without a boundary")
        return _MultipartSink(boundary)
    if kind.startswith("video/") or kind in RAW_TYPES:
        return _Sink()
    raise UnsupportedMediaTypeError(
        f"content type {kind!r} is not accepted; send multipart/form-data or video/*"
    )


class _Sink:
    """A raw body: every byte is the file."""

    found = True

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> None:
        return None


class _MultipartSink(_Sink):
    """Picks the first ``file`` part out of a multipart body as it streams by."""

    def __init__(self, boundary: bytes) -> None:
        self.found = False
        self._capturing = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._header_bytes = 0
        self._out: list[bytes] = []
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_data,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> bytes:
        try:
            self._parser.write(chunk)
        except MultipartParseError as err:
            raise ClientError("malformed multipart body") from err
        data, self._out = b"".join(self._out), []
        return data

    def finish(self) -> None:
        try:
            self._parser.finalize()
        except MultipartParseError as err:
            raise ClientError("malformed multipart body") from err
        if not self._ended:
            raise ClientError("malformed multipart body: no closing boundary")

    def _part_begin(self) -> None:
        self._headers = {}
        self._header_bytes = 0

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        # The parser hands header bytes over as they come: bound what we keep.
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise ClientError(f"a multipart part has over {MAX_PART_HEADER_BYTES} bytes of headers")

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition"))
        name = params.get(b"name", b"").decode("latin-1")
        self._capturing = name == FILE_FIELD and not self.found

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._capturing:
            self._out.append(data[start:end])

    def _end(self) -> None:
        self._ended = True

    def _part_end(self) -> None:
        if self._capturing:
            self.found = True
            self._capturing = False
