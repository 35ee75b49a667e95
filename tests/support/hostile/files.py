"""Hostile files: media encoded in code, patched where the attack needs it, each with its answer."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.video
import numpy as np

from tests.support.hostile.encoding import VPX, X264, encode, noise, square
from tests.support.hostile.outcomes import (
    FRAME_TOO_LARGE,
    LIMIT_EXCEEDED,
    NO_FILE,
    NO_VIDEO_STREAM,
    NOT_A_VIDEO,
    OK,
    Expected,
)
from tests.support.media import (
    H264_MP4,
    write_audio,
    write_video,
)

# A listener the playlist cases point at; a test checks nothing ever connects to it.
CANARY_HOST = "127.0.0.1"


Make = Callable[[Path], bytes]


@dataclass(frozen=True, slots=True)
class FileCase:
    """An upload: ``make(scratch_dir)`` returns its bytes, sent as ``filename``."""

    name: str
    make: Make
    expected: Expected
    filename: str = "video.mp4"


# -- encoding ----------------------------------------------------------------------


def video(
    *,
    n: int = 16,
    height: int = 48,
    width: int = 64,
    **kwargs: Any,
) -> Make:
    """A ``Make`` that encodes a moving square with ``encode(**kwargs)``."""
    return lambda _: encode(square(n, height, width), **kwargs)


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
