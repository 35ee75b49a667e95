"""Structure-aware mutations of valid videos, as hypothesis strategies.

Random bit flips mostly hit compressed frame data, which decoders are good at
shrugging off; the dangerous bytes are the container's own bookkeeping. So
besides flips, truncation and overwritten runs, the mutators parse the
container and attack its length fields: MP4 box sizes and the 32-bit fields
of the boxes that index samples (``stsz``, ``stco``, ``stts``, ``tkhd``...),
Matroska EBML element sizes (the vint after each ID) and RIFF/AVI chunk sizes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hypothesis import strategies as st

from tests.support.hostile import VPX, X264, encode, square

# 32-bit values that break length arithmetic: zero, one, off-by-one around
# powers of two, sign boundaries, all ones.
INTERESTING_32 = (0, 1, 2, 7, 8, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)

MP4_CONTAINERS = {
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"edts", b"udta", b"mvex",
    b"moof", b"traf", b"mfra", b"meta", b"ilst",
}  # fmt: skip
# Matroska master elements (their payload is more elements): Segment, Cluster,
# Tracks, TrackEntry, Video, Info, Cues, CuePoint, BlockGroup, SeekHead, Seek, Tags.
EBML_MASTERS = {
    0x18538067, 0x1F43B675, 0x1654AE6B, 0xAE, 0xE0, 0x1549A966, 0x1C53BB6B, 0xBB,
    0xA0, 0x114D9B74, 0x4DBB, 0x1254C367, 0x1A45DFA3,
}  # fmt: skip
RIFF_LISTS = {b"RIFF", b"LIST"}


@dataclass(frozen=True, slots=True)
class Field:
    """A length or counter inside the file: where it is, how wide, big-endian or not."""

    offset: int
    width: int
    big_endian: bool = True


# -- parsers: where the length fields are ---------------------------------------------


def mp4_fields(data: bytes) -> list[Field]:
    """Every box's 32-bit size, and each 32-bit word inside the leaf boxes' first 64 bytes."""
    fields: list[Field] = []

    def walk(start: int, end: int, depth: int) -> None:
        at = start
        while at + 8 <= end and depth < 8:
            size = struct.unpack_from(">I", data, at)[0]
            kind = data[at + 4 : at + 8]
            fields.append(Field(at, 4))
            header = 16 if size == 1 else 8
            if size == 1 and at + 16 <= end:
                size = struct.unpack_from(">Q", data, at + 8)[0]
            if size < header or at + size > end:
                return
            body = at + header + (4 if kind == b"meta" else 0)
            if kind in MP4_CONTAINERS:
                walk(body, at + size, depth + 1)
            elif kind != b"mdat":
                fields.extend(Field(o, 4) for o in range(body, min(at + size, body + 64) - 3, 4))
            at += size

    walk(0, len(data), 0)
    return fields


def _vint(data: bytes, at: int) -> tuple[int, int] | None:
    """(width, value with the marker bit cleared) of the EBML vint at ``at``."""
    if at >= len(data) or data[at] == 0:
        return None
    width = 9 - data[at].bit_length()
    if at + width > len(data):
        return None
    value = int.from_bytes(data[at : at + width], "big") & ((1 << (7 * width)) - 1)
    return width, value


def ebml_fields(data: bytes) -> list[Field]:
    """Every element's size vint (Matroska, WebM)."""
    fields: list[Field] = []

    def walk(start: int, end: int, depth: int) -> None:
        at = start
        while at < end and depth < 8:
            ident = _vint(data, at)
            if ident is None:
                return
            element = int.from_bytes(data[at : at + ident[0]], "big")
            size = _vint(data, at + ident[0])
            if size is None:
                return
            fields.append(Field(at + ident[0], size[0]))
            body = at + ident[0] + size[0]
            unknown = size[1] == (1 << (7 * size[0])) - 1
            stop = end if unknown else min(body + size[1], end)
            if element in EBML_MASTERS:
                walk(body, stop, depth + 1)
            at = stop

    walk(0, len(data), 0)
    return fields


def riff_fields(data: bytes) -> list[Field]:
    """Every RIFF/AVI chunk's little-endian 32-bit size."""
    fields: list[Field] = []

    def walk(start: int, end: int, depth: int) -> None:
        at = start
        while at + 8 <= end and depth < 8:
            kind = data[at : at + 4]
            size = struct.unpack_from("<I", data, at + 4)[0]
            fields.append(Field(at + 4, 4, big_endian=False))
            if kind in RIFF_LISTS:
                walk(at + 12, min(at + 8 + size, end), depth + 1)
            at += 8 + size + (size & 1)

    walk(0, len(data), 0)
    return fields


def container_fields(data: bytes) -> list[Field]:
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"styp"):
        return mp4_fields(data)
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ebml_fields(data)
    if data[:4] == b"RIFF":
        return riff_fields(data)
    return []


# -- mutations -------------------------------------------------------------------------

Mutation = Callable[[bytearray], None]


@st.composite
def _flip_bits(draw: st.DrawFn, size: int) -> Mutation:
    positions = draw(st.lists(st.integers(0, size * 8 - 1), min_size=1, max_size=32))

    def apply(data: bytearray) -> None:
        for bit in positions:
            if bit // 8 < len(data):
                data[bit // 8] ^= 1 << (bit % 8)

    return apply


@st.composite
def _truncate(draw: st.DrawFn, size: int) -> Mutation:
    keep = draw(st.integers(0, size - 1))

    def apply(data: bytearray) -> None:
        del data[keep:]

    return apply


@st.composite
def _overwrite(draw: st.DrawFn, size: int) -> Mutation:
    at = draw(st.integers(0, size - 1))
    run = draw(st.binary(min_size=1, max_size=64))

    def apply(data: bytearray) -> None:
        data[at : at + len(run)] = run

    return apply


@st.composite
def _duplicate(draw: st.DrawFn, size: int) -> Mutation:
    """Copy a span elsewhere: repeated boxes, headers and packets."""
    start = draw(st.integers(0, size - 1))
    length = draw(st.integers(1, 4096))
    dest = draw(st.integers(0, size - 1))

    def apply(data: bytearray) -> None:
        data[dest:dest] = data[start : start + length]

    return apply


@st.composite
def _length_field(draw: st.DrawFn, fields: list[Field]) -> Mutation:
    target = draw(st.sampled_from(fields))
    limit = (1 << (8 * target.width)) - 1
    choice = draw(
        st.one_of(
            st.sampled_from(INTERESTING_32),
            st.integers(-16, 16).map(lambda d: ("delta", d)),
            st.integers(0, limit),
        )
    )

    def apply(data: bytearray) -> None:
        at, width = target.offset, target.width
        if at + width > len(data):
            return
        order: Literal["big", "little"] = "big" if target.big_endian else "little"
        old = int.from_bytes(data[at : at + width], order)
        if isinstance(choice, tuple):
            new = old + choice[1]
        elif width == 4:
            new = choice
        else:  # an EBML vint: keep its width marker, replace the value
            marker = 1 << (7 * width)
            new = marker | (choice & (marker - 1))
        data[at : at + width] = (new % (limit + 1)).to_bytes(width, order)

    return apply


_BY_SIZE = {
    "flip": _flip_bits,
    "truncate": _truncate,
    "overwrite": _overwrite,
    "duplicate": _duplicate,
}


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """One seed video with 1-4 mutations applied; returns (how it was made, the bytes)."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    fields = container_fields(seeds[name])
    kinds = ["flip", "truncate", "overwrite", "duplicate"] + ["field"] * 3 * bool(fields)
    applied = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        size = max(len(data), 1)
        strategy = _length_field(fields) if kind == "field" else _BY_SIZE[kind](size)
        draw(strategy)(data)
        applied.append(kind)
    return f"{name}+{'+'.join(applied)}", bytes(data)


# -- seeds -------------------------------------------------------------------------------


def seed_videos() -> dict[str, bytes]:
    """Small valid videos in the containers worth attacking (a few kB each)."""
    frames = square(12, 32, 48)
    h264 = {"codec": "libx264", "options": X264, "fps": 6}
    return {
        "h264.mp4": encode(frames, **h264),  # type: ignore[arg-type]
        "h264-fragmented.mp4": encode(
            frames,
            **h264,  # type: ignore[arg-type]
            container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
        ),
        "h264.mkv": encode(frames, **h264, container="matroska"),  # type: ignore[arg-type]
        "vp9.webm": encode(frames, codec="libvpx-vp9", container="webm", options=VPX, fps=6),
        "mpeg4.avi": encode(frames, codec="mpeg4", container="avi", fps=6),
        "mjpeg.avi": encode(frames, codec="mjpeg", container="avi", pix_fmt="yuvj420p", fps=6),
        "h264.ts": encode(frames, **h264, container="mpegts"),  # type: ignore[arg-type]
        "gif": encode(frames, codec="gif", container="gif", pix_fmt="rgb8", fps=6),
    }


def save_failure(directory: Path, how: str, data: bytes) -> Path:
    """Keep an input that broke a property, named by how it was made, for replay."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (how.replace("/", "_")[:150] + ".bin")
    path.write_bytes(data)
    return path


def iter_fields(data: bytes) -> Iterator[Field]:
    """The parsed length fields of ``data`` (for tests of the parsers themselves)."""
    yield from container_fields(data)
