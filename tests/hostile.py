"""Hostile uploads, made in code: every case is a file (or a request) and its expected answer.

Nothing binary is checked in. Media cases encode a tiny video with PyAV and,
where the attack needs it, patch bytes afterwards (a header that claims a
16000x16000 frame, a container that claims ten hours). Each case names the one
outcome the service must give: 200 with a valid result, or a problem+json 4xx
with a stable ``type``.
"""

from __future__ import annotations

import io
import json
import select
import socket
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.video
import httpx
import numpy as np

from service.errors import PROBLEM_BASE
from service.schemas import ClassifyResponse
from tests.media import (
    H264_MP4,
    Frames,
    moving_square_frames,
    noise_frames,
    write_audio,
    write_video,
)

# A listener the playlist cases point at; a test checks nothing ever connects to it.
CANARY_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Expected:
    """200 (``slug`` None) or a problem's status and ``type`` slug."""

    status: int
    slug: str | None = None

    @property
    def label(self) -> str:
        return str(self.status) if self.slug is None else f"{self.status} {self.slug}"


OK = Expected(200)
NO_FILE = Expected(400, "no-file")
NOT_A_VIDEO = Expected(415, "not-a-video")
NO_VIDEO_STREAM = Expected(422, "no-video-stream")
FRAME_TOO_LARGE = Expected(422, "frame-too-large")
LIMIT_EXCEEDED = Expected(422, "limit-exceeded")

Make = Callable[[Path], bytes]


@dataclass(frozen=True, slots=True)
class FileCase:
    """An upload: ``make(scratch_dir)`` returns its bytes, sent as ``filename``."""

    name: str
    make: Make
    expected: Expected
    filename: str = "video.mp4"


# -- encoding ----------------------------------------------------------------------


def encode(
    frames: Frames,
    *,
    codec: str = "libx264",
    container: str = "mp4",
    pix_fmt: str = "yuv420p",
    fps: float = 8,
    times_s: Sequence[float] | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    input_format: str = "rgb24",
) -> bytes:
    """``(N, H, W, C) uint8`` frames encoded in memory; ``times_s`` gives each frame's pts."""
    n, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        assert isinstance(stream, av.video.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = dict(options or {})
        stream.codec_context.thread_count = 1
        time_base = Fraction(1, 1000) if times_s is not None else 1 / rate
        stream.codec_context.time_base = time_base
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format=input_format)
            t = times_s[i] if times_s is not None else i / rate
            frame.pts = round(Fraction(t).limit_denominator(10**6) / time_base)
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


X264 = {"preset": "ultrafast"}
VPX = {"deadline": "realtime", "cpu-used": "8"}


def square(n: int = 16, height: int = 48, width: int = 64) -> Frames:
    return moving_square_frames(n, height, width, size=min(height, width) // 3 or 1)


def video(
    *,
    n: int = 16,
    height: int = 48,
    width: int = 64,
    **kwargs: Any,
) -> Make:
    """A ``Make`` that encodes a moving square with ``encode(**kwargs)``."""
    return lambda _: encode(square(n, height, width), **kwargs)


def noise(n: int) -> Frames:
    return noise_frames(n, 48, 64, seed=n)


def _h264(**kwargs: Any) -> Make:
    return video(**{"codec": "libx264", "options": X264, **kwargs})


def _av1(_: Path) -> bytes:
    frames = square(16, 64, 64)
    return encode(frames, codec="libsvtav1", container="matroska", options={"preset": "12"})


def _gray_ffv1(_: Path) -> bytes:
    frames = square()[..., :1].copy()
    return encode(frames, codec="ffv1", container="matroska", pix_fmt="gray", input_format="gray")


def _alpha_vp9(_: Path) -> bytes:
    frames = square()
    alpha = np.full((*frames.shape[:3], 1), 128, dtype=np.uint8)
    rgba = np.concatenate([frames, alpha], axis=3)
    return encode(
        rgba,
        codec="libvpx-vp9",
        container="webm",
        pix_fmt="yuva420p",
        options=VPX,
        input_format="rgba",
    )


def _still(codec: str, muxer: str, pix_fmt: str) -> Make:
    return lambda _: encode(square(1), codec=codec, container=muxer, pix_fmt=pix_fmt)


def _audio(codec: str, suffix: str) -> Make:
    def make(scratch: Path) -> bytes:
        return write_audio(scratch / f"tone{suffix}", codec, seconds=0.5).read_bytes()

    return make


def _text(text: str) -> Make:
    return lambda _: text.encode()


def _random(size: int, seed: int = 1) -> Make:
    rng = np.random.default_rng(seed)
    return lambda _: rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def _zip(_: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("video.mp4", b"\0" * 1000)
        archive.writestr("readme.txt", "a zip, not a video")
    return buffer.getvalue()


PDF = (
    "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    "2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    "trailer << /Root 1 0 R >>\n%%EOF\n"
)
HTML = (
    "<!DOCTYPE html><html><head><title>x</title></head><body>"
    + "<p>hi</p>" * 200
    + "</body></html>"
)


# -- patched files ------------------------------------------------------------------


def _truncated(*, faststart: bool) -> Make:
    """Half of an MP4: the index (moov) at the end is lost, or kept at the start."""

    def make(scratch: Path) -> bytes:
        # faststart moves the index in a second pass over the file: it needs a real path.
        options = {"movflags": "faststart"} if faststart else {}
        path = write_video(
            scratch / "whole.mp4", noise(32), fmt=H264_MP4, fps=8, container_options=options
        )
        data = path.read_bytes()
        return data[: len(data) // 2]

    return make


def _corrupted_middle(scratch: Path) -> bytes:
    """Random bytes over the middle fifth of a faststart MP4's frames."""
    path = write_video(
        scratch / "whole.mp4",
        noise(48),
        fmt=H264_MP4,
        fps=8,
        container_options={"movflags": "faststart"},
    )
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(7)
    start, end = len(data) * 2 // 5, len(data) * 3 // 5
    data[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
    return bytes(data)


def _patch_all(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, "pattern to patch not found"
    return data.replace(old, new)


def _huge_mjpeg(_: Path) -> bytes:
    """A 16x16 MJPEG AVI whose JPEG SOF and AVI headers all claim 16000x16000."""
    data = encode(square(2, 16, 16), codec="mjpeg", container="avi", pix_fmt="yuvj420p")
    big = 16000
    # SOF0: FFC0, length, precision 8, height, width (big-endian 16 bit).
    data = _patch_all(
        data,
        b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10",
        b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", big, big),
    )
    # avih, strh rcFrame and strf BITMAPINFOHEADER sizes (little-endian 32 bit).
    return _patch_all(data, struct.pack("<II", 16, 16), struct.pack("<II", big, big))


def _png_bomb(_: Path) -> bytes:
    """A 16x16 PNG whose IHDR claims 14000x14000 (196 Mpx, ~600 MB decoded), CRC fixed up."""
    data = encode(square(1, 16, 16), codec="png", container="image2pipe", pix_fmt="rgb24")
    at = data.index(b"IHDR")
    body = b"IHDR" + struct.pack(">II", 14000, 14000) + data[at + 12 : at + 17]
    return data[:at] + body + struct.pack(">I", zlib.crc32(body)) + data[at + 21 :]


def _flat_h264(width: int, height: int, *, container: str = "mp4", frames: int = 1) -> bytes:
    """Flat ``width x height`` H.264 frames: real SPS dimensions in a small file."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream("libx264", rate=1)
        assert isinstance(stream, av.video.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "level": "6.2"}
        stream.codec_context.thread_count = 1
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                np.frombuffer(plane, dtype=np.uint8)[:] = 128  # type: ignore[call-overload]
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def _big_h264(_: Path) -> bytes:
    return _flat_h264(8192, 4320)


def size_switch(_: Path) -> bytes:
    """A raw H.264 stream that starts 64x48, switches to 8192x4320, then back."""
    small = encode(square(16), codec="libx264", options=X264, container="h264")
    return small + _flat_h264(8192, 4320, container="h264", frames=2) + small


def _claims_ten_hours(_: Path) -> bytes:
    """A 2 s Matroska file whose segment Duration element says ten hours."""
    data = encode(square(16), codec="libx264", options=X264, container="matroska")
    # Info/Duration: ID 0x4489, an 8-byte float in TimestampScale units (1 ms).
    at = data.index(b"\x44\x89\x88")
    return data[: at + 3] + struct.pack(">d", 36_000_000.0) + data[at + 11 :]


def _ten_hour_gap(_: Path) -> bytes:
    """Two frames ten hours apart: a tiny file that really is ten hours long."""
    return encode(
        square(2), codec="libx264", options=X264, container="matroska", times_s=[0.0, 36_000.0]
    )


def _playlist(lines: str, filename: str) -> FileCase:
    return FileCase(f"playlist-{filename}", _text(lines), NOT_A_VIDEO, filename=filename)


def playlist_cases(canary_port: int, local_video: Path) -> list[FileCase]:
    """HLS/concat playlists that would make FFmpeg fetch a URL or read a local file."""
    url = f"http://{CANARY_HOST}:{canary_port}"
    hls = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{}\n#EXT-X-ENDLIST\n"
    return [
        _playlist(hls.format(f"{url}/segment.ts"), "ssrf.m3u8"),
        _playlist(hls.format(local_video), "local-file.m3u8"),
        _playlist(f"ffconcat version 1.0\nfile {local_video}\nfile {url}/x.mp4\n", "list.ffconcat"),
    ]


# -- the cases ------------------------------------------------------------------------


FILE_CASES: tuple[FileCase, ...] = (
    # Every codec and container PyAV writes here.
    FileCase("h264.mp4", _h264(), OK),
    FileCase(
        "hevc.mp4",
        video(codec="libx265", options={"preset": "ultrafast", "x265-params": "log-level=none"}),
        OK,
    ),
    FileCase("vp8.webm", video(codec="libvpx", container="webm", options=VPX), OK, "v.webm"),
    FileCase("vp9.webm", video(codec="libvpx-vp9", container="webm", options=VPX), OK, "v.webm"),
    FileCase("av1.mkv", _av1, OK, "v.mkv"),
    FileCase("mpeg2.mpg", video(codec="mpeg2video", container="mpeg"), OK, "v.mpg"),
    FileCase("mpeg4.avi", video(codec="mpeg4", container="avi"), OK, "v.avi"),
    FileCase("mjpeg.avi", video(codec="mjpeg", container="avi", pix_fmt="yuvj420p"), OK, "v.avi"),
    FileCase(
        "prores.mov", video(codec="prores_ks", container="mov", pix_fmt="yuv422p10le"), OK, "v.mov"
    ),
    FileCase("ffv1.mkv", video(codec="ffv1", container="matroska"), OK, "v.mkv"),
    FileCase("h264.mov", _h264(container="mov"), OK, "v.mov"),
    FileCase("h264.ts-no-index", _h264(container="mpegts"), OK, "v.ts"),
    FileCase("mpeg2.ts", video(codec="mpeg2video", container="mpegts"), OK, "v.ts"),
    # Pixel formats and geometry.
    FileCase("10-bit", _h264(pix_fmt="yuv420p10le", container="matroska"), OK),
    FileCase("yuv444p", _h264(pix_fmt="yuv444p"), OK),
    FileCase("gray", _gray_ffv1, OK, "v.mkv"),
    FileCase("alpha-vp9", _alpha_vp9, OK, "v.webm"),
    FileCase("odd-size-33x17", video(height=17, width=33, codec="ffv1", container="matroska"), OK),
    FileCase("16x16", _h264(height=16, width=16), OK),
    FileCase("aspect-4096x16", _h264(height=16, width=4096, n=4), OK),
    FileCase("aspect-16x2048", _h264(height=2048, width=16, n=4), OK),
    # Timing.
    FileCase("one-frame", _h264(n=1), OK),
    FileCase("fewer-frames-than-samples", _h264(n=3), OK),
    FileCase("1-fps", _h264(n=8, fps=1), OK),
    FileCase("120-fps", _h264(n=240, height=24, width=32, fps=120), OK),
    FileCase(
        "one-keyframe-in-600",
        _h264(
            n=600,
            height=24,
            width=32,
            fps=60,
            options={**X264, "x264-params": "keyint=600:min-keyint=600:scenecut=0"},
        ),
        OK,
    ),
    FileCase(
        "fragmented-mp4",
        _h264(container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
        OK,
    ),
    FileCase(
        "non-zero-start", _h264(container="matroska", times_s=[5 + i / 8 for i in range(16)]), OK
    ),
    FileCase(
        "variable-frame-rate",
        _h264(container="matroska", times_s=list(np.cumsum([0, *[0.02, 0.3] * 7, 0.1]))),
        OK,
    ),
    # Pictures.
    FileCase("animated-gif", video(codec="gif", container="gif", pix_fmt="rgb8"), OK, "a.gif"),
    FileCase("png-still", _still("png", "image2pipe", "rgb24"), OK, "a.png"),
    FileCase("jpeg-still", _still("mjpeg", "image2pipe", "yuvj420p"), OK, "a.jpg"),
    # No picture at all.
    FileCase("audio-only-aac", _audio("aac", ".m4a"), NO_VIDEO_STREAM, "a.m4a"),
    FileCase("audio-only-opus", _audio("libopus", ".ogg"), NO_VIDEO_STREAM, "a.ogg"),
    FileCase(
        "subtitles-only-srt",
        _text(
            "1\n00:00:00,000 --> 00:00:01,000\nhello\n\n2\n00:00:01,000 --> 00:00:02,000\nworld\n"
        ),
        NO_VIDEO_STREAM,
        "s.srt",
    ),
    FileCase(
        "subtitles-only-vtt",
        _text("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n"),
        NO_VIDEO_STREAM,
        "s.vtt",
    ),
    FileCase("zero-bytes", lambda _: b"", NO_FILE),
    FileCase("random-bytes", _random(100_000), NOT_A_VIDEO),
    FileCase("text-as-mp4", _text("just some text, honestly\n" * 100), NOT_A_VIDEO),
    FileCase("html-as-mp4", _text(HTML), NOT_A_VIDEO),
    FileCase("pdf-as-mp4", _text(PDF), NOT_A_VIDEO),
    FileCase("zip-as-mp4", _zip, NOT_A_VIDEO),
    # Damaged files.
    FileCase("truncated-moov-at-end", _truncated(faststart=False), NOT_A_VIDEO),
    FileCase("truncated-moov-at-start", _truncated(faststart=True), OK),
    FileCase("corrupted-middle", _corrupted_middle, OK),
    # Lies about size and length.
    FileCase("h264-8192x4320", _big_h264, FRAME_TOO_LARGE),
    FileCase("mjpeg-claims-16000x16000", _huge_mjpeg, FRAME_TOO_LARGE, "v.avi"),
    FileCase("png-claims-14000x14000", _png_bomb, FRAME_TOO_LARGE, "a.png"),
    FileCase("h264-switches-to-8192x4320", size_switch, OK, "v.h264"),
    FileCase("mkv-claims-ten-hours", _claims_ten_hours, LIMIT_EXCEEDED, "v.mkv"),
    FileCase("ten-hours-between-two-frames", _ten_hour_gap, LIMIT_EXCEEDED, "v.mkv"),
)


# -- protocol cases -------------------------------------------------------------------

HTTP_LAYER = "http"  # refused by the HTTP server itself (plain text), before the app
BAD_REQUEST = Expected(400, "bad-request")
INVALID_PARAMETER = Expected(422, "invalid-parameter")
UNSUPPORTED_TYPE = Expected(415, "unsupported-media-type")
UPLOAD_TIMEOUT = Expected(408, "upload-timeout")
NO_ANSWER = Expected(0, "client-gone")  # the client hung up; nobody reads an answer


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server listens, and a small valid video to send."""

    host: str
    port: int
    video: bytes

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: status (0: nothing), content type and body."""

    status: int
    content_type: str = ""
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ProtocolCase:
    name: str
    send: Callable[[Target], Reply]
    expected: Expected


def _http(method: str, path: str = "/classify", **kwargs: object) -> Callable[[Target], Reply]:
    """A request through httpx; ``kwargs`` may be functions of the target's video."""

    def send(target: Target) -> Reply:
        args = {k: v(target.video) if callable(v) else v for k, v in kwargs.items()}
        with httpx.Client(base_url=target.base_url, timeout=30) as client:
            response = client.request(method, path, **args)  # type: ignore[arg-type]
        return Reply(
            response.status_code, response.headers.get("content-type", ""), response.content
        )

    return send


def _raw(head: str, body: bytes = b"") -> Callable[[Target], Reply]:
    """Bytes on a socket, exactly as given (``{video}`` marks where the video goes)."""

    def send(target: Target) -> Reply:
        data = head.replace("\n", "\r\n").encode("latin-1") + body
        with socket.create_connection((target.host, target.port), timeout=30) as sock:
            sock.sendall(data)
            return read_reply(sock)

    return send


def read_reply(sock: socket.socket) -> Reply:
    """Read one HTTP/1.1 response until the server closes (requests say Connection: close)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    raw = b"".join(chunks)
    if not raw.startswith(b"HTTP/"):
        return Reply(0)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return Reply(int(lines[0].split()[1]), headers.get("content-type", ""), body)


def _multipart(parts: Sequence[tuple[str, bytes]], boundary: str = "hostile") -> bytes:
    """A multipart body from (part header lines, content) pairs."""
    out = bytearray()
    for headers, content in parts:
        out += f"--{boundary}\r\n{headers}\r\n\r\n".encode("latin-1") + content + b"\r\n"
    return bytes(out + f"--{boundary}--\r\n".encode())


def _file_part(filename: str) -> str:
    return f'Content-Disposition: form-data; name="file"; filename="{filename}"'


def _multipart_post(
    parts: Callable[[bytes], Sequence[tuple[str, bytes]]],
) -> Callable[[Target], Reply]:
    return _http(
        "POST",
        content=lambda video: _multipart(parts(video)),
        headers={"Content-Type": "multipart/form-data; boundary=hostile"},
    )


def _post_with(
    head_extra: str, body: bytes, content_type: str = "video/mp4"
) -> Callable[[Target], Reply]:
    return _raw(
        "POST /classify HTTP/1.1\nHost: test\nConnection: close\n"
        f"Content-Type: {content_type}\n{head_extra}\n",
        body,
    )


def _chunked(target: Target) -> Reply:
    chunks = [target.video[i : i + 1000] for i in range(0, len(target.video), 1000)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = "Transfer-Encoding: chunked\n"
    return _post_with(head, body)(target)


def _trickle(*, pause_s: float, stop_after: int | None) -> Callable[[Target], Reply]:
    """Headers, then one byte every ``pause_s`` (stopping after ``stop_after`` bytes)."""

    def send(target: Target) -> Reply:
        head = (
            "POST /classify HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            "Content-Type: video/mp4\r\nContent-Length: 100000\r\n\r\n"
        )
        with socket.create_connection((target.host, target.port), timeout=30) as sock:
            sock.sendall(head.encode())
            sent = 0
            # Bounded: the server must answer long before 15 s.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                readable, _, _ = select.select([sock], [], [], pause_s)
                if readable:
                    break
                if stop_after is None or sent < stop_after:
                    try:
                        sock.sendall(b"\0")
                    except OSError:
                        break
                    sent += 1
            return read_reply(sock)

    return send


def _hang_up(target: Target) -> Reply:
    """Half of a declared body, then the connection closes: nobody waits for an answer."""
    head = (
        "POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: video/mp4\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    with socket.create_connection((target.host, target.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\0" * 500_000)
    return Reply(0)


TRAVERSAL_NAME = "../../../../../tmp/vidlstm-hostile-traversal.mp4"


def protocol_cases(max_upload_bytes: int) -> list[ProtocolCase]:
    video = "video/mp4"
    many_parts = "".join(f"X-{i}: {'v' * 16}\n" for i in range(2500))
    return [
        ProtocolCase("no-file-field", _http("POST", files={"note": (None, b"hi")}), NO_FILE),
        ProtocolCase(
            "empty-raw-body", _http("POST", content=b"", headers={"Content-Type": video}), NO_FILE
        ),
        ProtocolCase(
            "empty-multipart-body",
            _http("POST", content=b"", headers={"Content-Type": "multipart/form-data; boundary=b"}),
            BAD_REQUEST,
        ),
        ProtocolCase(
            "two-files",
            _multipart_post(lambda v: [(_file_part("a.mp4"), v), (_file_part("b.mp4"), b"junk")]),
            OK,
        ),
        ProtocolCase(
            "file-after-2000-parts",
            _multipart_post(
                lambda v: [
                    *((f'Content-Disposition: form-data; name="f{i}"', b"x") for i in range(2000)),
                    (_file_part("v.mp4"), v),
                ]
            ),
            OK,
        ),
        ProtocolCase(
            "part-header-of-100-kib",
            _multipart_post(lambda v: [(_file_part("v.mp4") + "\r\nX-Junk: " + "j" * 100_000, v)]),
            BAD_REQUEST,
        ),
        ProtocolCase(
            "multipart-without-boundary",
            _http("POST", content=b"abc", headers={"Content-Type": "multipart/form-data"}),
            BAD_REQUEST,
        ),
        ProtocolCase(
            "filename-with-traversal",
            _multipart_post(lambda v: [(_file_part(TRAVERSAL_NAME), v)]),
            OK,
        ),
        ProtocolCase(
            "filename-absolute", _multipart_post(lambda v: [(_file_part("/etc/passwd"), v)]), OK
        ),
        ProtocolCase(
            "filename-with-nul-and-newline",
            _multipart_post(lambda v: [(_file_part("a\x00b\nc.mp4"), v)]),
            OK,
        ),
        ProtocolCase(
            "filename-of-10000-chars",  # python-multipart's line limit
            _multipart_post(lambda v: [(_file_part("x" * 10_000 + ".mp4"), v)]),
            BAD_REQUEST,
        ),
        *(
            ProtocolCase(
                f"top_k={value}",
                _http(
                    "POST",
                    f"/classify?top_k={value}",
                    content=lambda v: v,
                    headers={"Content-Type": video},
                ),
                INVALID_PARAMETER,
            )
            for value in ("abc", "-1", "0", "1000", "1" + "0" * 30, "1.5")
        ),
        ProtocolCase(
            "segments=maybe",
            _http(
                "POST",
                "/classify?segments=maybe",
                content=lambda v: v,
                headers={"Content-Type": video},
            ),
            INVALID_PARAMETER,
        ),
        ProtocolCase(
            "window_s=nan",
            _http(
                "POST",
                "/classify?segments=true&window_s=nan",
                content=lambda v: v,
                headers={"Content-Type": video},
            ),
            INVALID_PARAMETER,
        ),
        ProtocolCase("GET-classify", _http("GET"), Expected(405, "method-not-allowed")),
        ProtocolCase(
            "PUT-classify", _http("PUT", content=b"x"), Expected(405, "method-not-allowed")
        ),
        ProtocolCase(
            "DELETE-health", _http("DELETE", "/health"), Expected(405, "method-not-allowed")
        ),
        ProtocolCase("unknown-path", _http("GET", "/../../etc/passwd"), Expected(404, "not-found")),
        ProtocolCase(
            "content-type-text",
            _http("POST", content=b"hello", headers={"Content-Type": "text/plain"}),
            UNSUPPORTED_TYPE,
        ),
        ProtocolCase(
            "content-type-json",
            _http("POST", json={"file": "AAAA"}),
            UNSUPPORTED_TYPE,
        ),
        ProtocolCase("no-content-type", _http("POST", content=lambda v: v), UNSUPPORTED_TYPE),
        ProtocolCase(
            "content-length-not-a-number",
            _post_with("Content-Length: ten\n", b""),
            Expected(400, HTTP_LAYER),
        ),
        ProtocolCase(
            "content-length-negative",
            _post_with("Content-Length: -5\n", b""),
            Expected(400, HTTP_LAYER),
        ),
        ProtocolCase(
            "content-length-over-cap",
            _post_with(f"Content-Length: {max_upload_bytes + 1}\n", b""),
            Expected(413, "payload-too-large"),
        ),
        ProtocolCase(
            "content-length-and-chunked",
            _post_with("Content-Length: 5\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
            Expected(400, HTTP_LAYER),
        ),
        ProtocolCase("chunked-upload", _chunked, OK),
        ProtocolCase("garbage-request-line", _raw("HELLO THERE\n\n"), Expected(400, HTTP_LAYER)),
        ProtocolCase(
            "header-of-100-kib",
            _http("GET", "/health", headers={"X-Junk": "j" * 100_000}),
            Expected(431, "headers-too-large"),
        ),
        ProtocolCase(
            "2500-headers",
            _raw(f"GET /health HTTP/1.1\nHost: test\nConnection: close\n{many_parts}\n"),
            Expected(431, "headers-too-large"),
        ),
        ProtocolCase(
            "query-of-20-kib",
            _http("GET", "/health?q=" + "q" * 20_000),
            Expected(414, "uri-too-long"),
        ),
        ProtocolCase(
            "slowloris-byte-per-0.3s", _trickle(pause_s=0.3, stop_after=None), UPLOAD_TIMEOUT
        ),
        ProtocolCase("body-stalls", _trickle(pause_s=0.1, stop_after=3), UPLOAD_TIMEOUT),
        ProtocolCase("hang-up-mid-upload", _hang_up, NO_ANSWER),
    ]


def mismatch(reply: Reply, expected: Expected) -> str | None:
    """Why ``reply`` is not the ``expected`` answer, or None when it is.

    A 200 must carry a result that fits the response schema; a problem must be
    ``application/problem+json`` with the expected ``type``; a refusal by the
    HTTP layer must not pretend to be one.
    """
    if reply.status != expected.status:
        return f"status {reply.status}, expected {expected.label}: {reply.body[:300]!r}"
    if expected.status == 0:
        return None
    if expected.status == 200:
        try:
            body = ClassifyResponse.model_validate_json(reply.body)
        except ValueError as err:
            return f"200 body does not fit the schema: {err}"
        if abs(sum(body.probabilities.values()) - 1) > 1e-4:
            return "probabilities do not sum to 1"
        if len(body.top) != min(5, len(body.probabilities)) or body.video.width <= 0:
            return f"implausible result: {body.model_dump_json()[:300]}"
        return None
    if expected.slug == HTTP_LAYER:
        if reply.content_type.startswith("application/problem+json"):
            return "expected the HTTP server's own refusal, got a problem"
        return None
    if reply.content_type != "application/problem+json":
        return f"content type {reply.content_type!r}: {reply.body[:300]!r}"
    problem = json.loads(reply.body)
    if (
        problem.get("type") != PROBLEM_BASE + str(expected.slug)
        or problem.get("status") != expected.status
    ):
        return f"problem {problem}, expected {expected.label}"
    return None
