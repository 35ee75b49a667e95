"""The decoder cursor: one video stream's packets, decoded forward on demand.

:class:`PacketCursor` is the mechanics under :mod:`service.media.clip`'s sampler: it
demuxes packets, may read them ahead of the decoder (no decoding) to find a
keyframe, may jump to that keyframe or seek to one, and may leave frames that
nothing references undecoded while they lie before a time it is told. It
never chooses frames; the sampler does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
import av.container
import av.packet
import av.video

from service.core.errors import LimitExceededError, NotAVideoError
from service.media.probe import Limits, check_frame_size

if TYPE_CHECKING:  # generic in PyAV's stubs only
    VideoPacket = av.packet.Packet[av.video.VideoStream]
# Corrupt packets tolerated before the file is declared undecodable.
MAX_BAD_PACKETS = 64
# A keyframe costs about as much to decode as this many predicted frames
# (measured on H.264; bench/README.md).
KEYFRAME_COST_FRAMES = 4


@dataclass(frozen=True, slots=True)
class Keyframe:
    """A keyframe found ahead: where it is in the read-ahead and its time."""

    index: int  # packets read ahead before it
    time_s: float
    # What decoding forward to the window would cost instead, in predicted frames.
    forward_cost: int

    @property
    def worth_it(self) -> bool:
        """Whether jumping (one keyframe decoded) beats decoding forward to the window."""
        return self.forward_cost >= KEYFRAME_COST_FRAMES


class PacketCursor:
    """Frames of ``stream`` in order; counts them and checks the limits on each."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.VideoStream,
        limits: Limits,
        *,
        skip_nonref: bool = False,
        skip_loop_filter: bool = False,
    ) -> None:
        self.container = container
        self.stream = stream
        self.limits = limits
        self.skip_nonref = skip_nonref
        self.decoded = 0
        self.packets = 0  # packets sent to the codec
        # Packet times as floats: Fraction arithmetic per packet costs more than demuxing.
        self._tb = float(stream.time_base) if stream.time_base is not None else None
        if skip_loop_filter:
            # No deblocking: the codec's options apply when it opens, at the first packet.
            stream.codec_context.options = {
                **stream.codec_context.options,
                "skip_loop_filter": "all",
            }
        self._skipping = False
        self._skip_before = float("-inf")
        self._ahead: deque[VideoPacket] = deque()
        self._packets: Iterator[VideoPacket] = container.demux(stream)
        self._ended = False
        self._frames: Iterator[av.VideoFrame] = self._decode()
        # Set by keyframe_alone: the codec is drained at a keyframe (its time, or None when
        # the packet had no time), and frames up to this time were already handed out.
        self._drained: tuple[float | None, float] | None = None

    def next_frame(self) -> av.VideoFrame | None:
        """The next frame in presentation order, or None at the end of the stream."""
        if self._drained is not None:
            self._resume(*self._drained)
        frame = next(self._frames, None)
        return None if frame is None else self._counted(frame)

    def _counted(self, frame: av.VideoFrame) -> av.VideoFrame:
        self.decoded += 1
        if self.decoded > self.limits.max_frames:
            raise LimitExceededError(f"the stream holds more than {self.limits.max_frames} frames")
        check_frame_size(frame.width, frame.height, self.limits)
        return frame

    def skip_before(self, time_s: float) -> None:
        """With ``skip_nonref``: frames nothing references that lie before ``time_s``
        are not decoded (they could not be chosen anyway)."""
        self._skip_before = time_s if self.skip_nonref else float("-inf")

    # -- read-ahead and jumps -------------------------------------------------------

    def keyframe_ahead(self, lo: float, centre: float, hi: float) -> Keyframe | None:
        """The keyframe in ``[lo, hi)`` nearest ``centre`` among the packets ahead.

        Reads packets without decoding them, up to the first keyframe at or past
        ``centre`` or the first packet decoded after ``hi``; they stay queued.
        """
        best: Keyframe | None = None
        cost = before = 0
        index = 0
        while True:
            packet = self._packet_at(index)
            if packet is None:
                return best
            pts, dts = self._time(packet.pts), self._time(packet.dts)
            if pts is None:
                return best  # no timestamps: nothing to reason about
            if (dts if dts is not None else pts) > hi:
                return best
            if pts < lo:
                cost += KEYFRAME_COST_FRAMES if packet.is_keyframe else 1
                before = cost
            if packet.is_keyframe and lo <= pts < hi:
                found = Keyframe(index=index, time_s=pts, forward_cost=before)
                if best is None or abs(pts - centre) < abs(best.time_s - centre):
                    best = found
                if pts >= centre:
                    return best
            index += 1

    def upcoming_keyframe(self) -> float | None:
        """The time of the next packet when it is a keyframe (read ahead, not decoded)."""
        packet = self._packet_at(0)
        if packet is None or not packet.is_keyframe:
            return None
        return self._time(packet.pts)

    def keyframe_alone(self) -> av.VideoFrame | None:
        """The next packet, a keyframe, decoded on its own: the codec is drained after it.

        A codec that reorders frames (B-frames) holds the keyframe back until it
        has decoded the packets after it; a caller that needs nothing after the
        keyframe before its next seek or jump drains it out instead (at 640x360
        H.264, one packet decoded where three were). Decoding on without moving
        still works: the cursor seeks back to the keyframe and drops up to it.
        None when the packet yields no frame; the cursor then decodes on from it.
        """
        packet = self._next_packet()
        if packet is None:
            return None
        at = self._time(packet.pts)
        ctx = self.stream.codec_context
        ctx.skip_frame, self._skipping = "DEFAULT", False
        self.packets += 1
        try:
            frames = [*packet.decode(), *ctx.decode(None)]
        except (av.FFmpegError, ValueError):
            frames = []
        if not frames or not isinstance(frames[0], av.VideoFrame):
            self._drained = (at, float("-inf"))
            return None
        self._drained = (at, at if at is not None else float("inf"))
        frame = frames[0]
        if frame.time_base is None:  # a drained frame carries no time base of its own
            frame.time_base = self.stream.time_base
        return self._counted(frame)

    def jump(self, keyframe: Keyframe) -> None:
        """Drop the packets before ``keyframe`` undecoded, and what the decoder holds."""
        for _ in range(keyframe.index):
            self._ahead.popleft()
        self.stream.codec_context.flush_buffers()
        self._drained = None
        self._frames = self._decode()

    def seek(self, time_s: float) -> bool:
        """Move to the keyframe at or before ``time_s``.

        False when the demuxer refused: the decoder is then back at the first packet.
        """
        tb = self.stream.time_base
        assert tb is not None, "seek needs a time base"
        try:
            self.container.seek(
                int(time_s / tb), stream=self.stream, backward=True, any_frame=False
            )
        except (av.FFmpegError, OverflowError, ValueError):
            self.restart()
            return False
        self._reset()
        return True

    def restart(self) -> None:
        """Back to the first packet (for files whose index cannot be trusted)."""
        try:
            self.container.seek(0)
        except av.FFmpegError as err:
            raise NotAVideoError("the video cannot be rewound for decoding") from err
        self._reset()

    def _resume(self, at: float | None, handed_out: float) -> None:
        """Decode on after keyframe_alone drained the codec: seek back to its keyframe
        and drop the frames up to ``handed_out``."""
        if at is None:
            self.restart()
        else:
            self.seek(at)  # a refused seek restarts from the first packet itself
        fresh = self._frames  # the pass that seek or restart set up
        self._frames = (f for f in fresh if f.time is None or f.time > handed_out)

    def _reset(self) -> None:
        self._drained = None
        self._ahead.clear()
        self._packets = self.container.demux(self.stream)
        self._ended = False
        self._frames = self._decode()

    # -- packets -----------------------------------------------------------------------

    def _packet_at(self, index: int) -> VideoPacket | None:
        """Packet ``index`` of the read-ahead, demuxing more as needed."""
        while len(self._ahead) <= index:
            packet = self._demux()
            if packet is None:
                return None
            self._ahead.append(packet)
        return self._ahead[index]

    def _demux(self) -> VideoPacket | None:
        if self._ended:
            return None
        try:
            packet = next(self._packets)
        except (StopIteration, av.FFmpegError, ValueError):
            # A demuxer error ends the stream; what was decoded so far stands.
            self._ended = True
            return None
        if packet.size == 0 and packet.pts is None:  # the demuxer's flush packet
            self._ended = True
        return packet

    def _next_packet(self) -> VideoPacket | None:
        return self._ahead.popleft() if self._ahead else self._demux()

    def _decode(self) -> Iterator[av.VideoFrame]:
        bad = 0
        ctx = self.stream.codec_context
        while (packet := self._next_packet()) is not None:
            pts = self._time(packet.pts)
            skip = pts is not None and pts < self._skip_before
            if skip != self._skipping:
                ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                self._skipping = skip
            self.packets += 1
            try:
                decoded = packet.decode()
            except (av.FFmpegError, ValueError) as err:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise NotAVideoError("too many corrupt packets in the video stream") from err
                continue
            for frame in decoded:
                if isinstance(frame, av.VideoFrame):
                    yield frame

    def _time(self, ts: int | None) -> float | None:
        return None if ts is None or self._tb is None else ts * self._tb
