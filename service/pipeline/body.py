"""Body framing: which bytes of a streamed request body are the video.

A raw body (``video/*`` or ``application/octet-stream``) is the file itself;
``multipart/form-data`` is parsed incrementally by python-multipart's streaming
parser and the first ``file`` part kept, other parts discarded as they pass.
The content type says how the body is framed, never what it holds: the
decoder decides that from the bytes.
"""

from __future__ import annotations

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.core.errors import ClientError, UnsupportedMediaTypeError

# A multipart part's headers are a name and a filename; more is an attack on memory.
MAX_PART_HEADER_BYTES = 16 * 1024
FILE_FIELD = "file"
RAW_TYPES = ("application/octet-stream",)


def sink_for(content_type: str | None) -> Sink:
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
        return MultipartSink(boundary)
    if kind.startswith("video/") or kind in RAW_TYPES:
        return Sink()
    raise UnsupportedMediaTypeError(
        f"content type {kind!r} is not accepted; send multipart/form-data or video/*"
    )


class Sink:
    """A raw body: every byte is the file."""

    found = True

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> None:
        return None


class MultipartSink(Sink):
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
