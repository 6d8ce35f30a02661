"""Hooks that put `omnicli.media.jitter`'s loss recovery into an aiortc `RTCRtpReceiver`.

`install(receiver)` is called by `PeerLink` for every remote track. It replaces two
private objects of aiortc 1.x's receiver (and nothing else):

- audio: the jitter buffer becomes an `AudioRecovery`. It reorders packets with
  `AudioJitter`, asks for missing ones with RTCP NACK (aiortc's sender, and so the
  peer's omnicli, retransmits any packet in its history; other senders ignore it),
  and when a gap is given up it hands the decoder a one-byte Opus packet (the TOC
  byte alone), which libopus decodes as packet loss concealment.
- video: the NACK generator asks again for packets still missing (`NackTimer`), and
  the jitter buffer gives up a picture stalled behind a gap and asks for a keyframe
  (`StallWatch`), instead of waiting for 512 packets.

The attribute names are aiortc's name-mangled privates; if they are not there (another
aiortc version), nothing is installed and a warning says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver

from omnicli.media.jitter import AudioJitter, NackTimer, Slot, StallWatch

logger = logging.getLogger(__name__)

_PREFIX = "_RTCRtpReceiver__"
OPUS_SAMPLES = 960  # 20 ms at 48 kHz, aiortc's packet size
TS_MOD = 1 << 32


def _private(receiver: RTCRtpReceiver, name: str) -> Any:
    return getattr(receiver, _PREFIX + name)


def install(receiver: RTCRtpReceiver) -> bool:
    """Put loss recovery into `receiver` (audio or video); False if it cannot be done."""
    if getattr(receiver, "omnicli_recovery", None) is not None:
        return True
    try:
        kind = _private(receiver, "kind")
        _private(receiver, "jitter_buffer")
        _private(receiver, "decoder_queue")
    except AttributeError:
        logger.warning("this aiortc version has no receiver hooks: loss recovery is off")
        return False
    hook: AudioRecovery | VideoRecovery
    if kind == "audio":
        hook = AudioRecovery(receiver)
    else:
        hook = VideoRecovery()
        setattr(receiver, _PREFIX + "nack_generator", RetryingNackGenerator())
    setattr(receiver, _PREFIX + "jitter_buffer", hook)
    receiver.omnicli_recovery = hook  # type: ignore[attr-defined]
    return True


class AudioRecovery:
    """Stands in for aiortc's audio `JitterBuffer`: hands frames to the decoder itself.

    aiortc calls `add(packet)` for every packet (already depayloaded into `_data`) and
    decodes what it returns; this returns nothing and queues frames for the decoder
    thread directly, because a given-up gap releases several at once.
    """

    capacity = 1 << 16

    def __init__(
        self, receiver: RTCRtpReceiver, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.jitter = AudioJitter()
        self._receiver = receiver
        self._clock = clock
        self._codecs: dict[int, Any] = _private(receiver, "codecs")
        self._queue = _private(receiver, "decoder_queue")
        self._mapper = _private(receiver, "timestamp_mapper")
        self._codec: Any = None
        self._ssrc: int | None = None
        self._last: tuple[int, int] | None = None  # (seq, rtp timestamp) last handed on
        self._toc = 0xFC  # TOC of the last packet: 20 ms CELT fullband stereo by default
        self._step = OPUS_SAMPLES
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def stats(self) -> dict[str, int]:
        return self.jitter.stats.as_dict()

    def add(self, packet: Any) -> tuple[bool, None]:
        now = self._clock()
        self._ssrc = packet.ssrc
        self._codec = self._codecs.get(packet.payload_type, self._codec)
        self._hand_on(self.jitter.push(packet.sequence_number, packet, now))
        self._after(now)
        return False, None

    def _on_timer(self) -> None:
        self._timer = None
        if _private(self._receiver, "decoder_thread") is None:
            return  # the receiver stopped
        now = self._clock()
        self._hand_on(self.jitter.expire(now))
        self._after(now)

    def _after(self, now: float) -> None:
        lost = self.jitter.nacks(now)
        if lost and self._ssrc is not None:
            task = asyncio.ensure_future(self._receiver._send_rtcp_nack(self._ssrc, lost))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        deadline = self.jitter.deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - now) + 0.001, self._on_timer)

    def _hand_on(self, slots: list[Slot]) -> None:
        if not slots or self._codec is None or _private(self._receiver, "decoder_thread") is None:
            return
        for slot in slots:
            if slot.packet is not None:
                data, timestamp = slot.packet._data, slot.packet.timestamp
                if self._last is not None and slot.seq > self._last[0]:
                    step = (timestamp - self._last[1]) % TS_MOD // (slot.seq - self._last[0])
                    if 0 < step <= 4 * OPUS_SAMPLES:
                        self._step = step
                if data:
                    self._toc = data[0]
            else:
                data = bytes([self._toc & 0xFC])  # code 0, no frame data: PLC
                base_seq, base_ts = self._last or (slot.seq - 1, 0)
                timestamp = (base_ts + self._step * (slot.seq - base_seq)) % TS_MOD
            self._last = (slot.seq, timestamp)
            frame = JitterFrame(data=data, timestamp=self._mapper.map(timestamp))
            self._queue.put((self._codec, frame))


class RetryingNackGenerator(NackGenerator):
    """aiortc's NACK generator, also due again while packets stay missing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.timer = NackTimer()
        self._clock = clock

    def add(self, packet: Any) -> bool:
        new_gap = super().add(packet)
        now = self._clock()
        if new_gap:
            self.timer.sent(now)
            return True
        return self.timer.due(bool(self.missing), now)


class VideoRecovery(JitterBuffer):
    """aiortc's video jitter buffer that gives up a stalled picture for a keyframe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity=512, is_video=True)
        self.watch = StallWatch()
        self.stalls = 0
        self._clock = clock

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if self.watch.update(frame is not None, self._clock()):
            gap = self._last_gap()
            if gap is not None:
                self.stalls += 1
                self.smart_remove(gap + 1)
                return True, frame
        return pli, frame

    def _last_gap(self) -> int | None:
        """Slots from the origin to the last missing packet that packets wait behind.

        A stall asks for a keyframe, and the pictures behind any gap before it depend on
        what the gap lost, so everything up to the last gap goes: giving up one gap per
        stall let a backlog of seconds build up when a thin link kept losing packets
        (measured: 7.7 s of latency at 300 kbit/s).
        """
        if self._origin is None:
            return None
        last_gap = None
        pending_gap = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                pending_gap = count
            elif pending_gap is not None:
                last_gap, pending_gap = pending_gap, None
        return last_gap
