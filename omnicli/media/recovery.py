"""Hooks that put omnicli's receive path into an aiortc `RTCRtpReceiver`.

`install(receiver)` is called by `PeerLink` for every remote track. It replaces two
private objects of aiortc's receiver (and nothing else):

- audio: the jitter buffer becomes an `AudioRecovery`. It reorders packets with
  `AudioJitter`, asks for missing ones with RTCP NACK (aiortc's sender, and so the
  peer's omnicli, retransmits any packet in its history; other senders ignore it),
  and when a gap is given up it hands the decoder a one-byte Opus packet (the TOC
  byte alone), which libopus decodes as packet loss concealment. It hands each packet
  on as soon as it is in order (aiortc's buffer holds four, 80 ms).
- video: the jitter buffer becomes a `VideoRecovery`: a frame goes to the decoder as
  soon as its last packet arrives (`framing.py`; aiortc waits for the next frame's
  first packet), and a picture stalled behind a gap is given up for a keyframe
  (`StallWatch`) instead of waiting for 512 packets. The NACK generator asks again
  for packets still missing (`NackTimer`), but not for those the buffer has given up
  (behind its origin: aiortc's generator would ask for them until 128 newer packets
  came). A packet far behind the buffer (a late retransmission) is dropped, where
  aiortc's buffer would throw away all it holds and ask for a keyframe.

These are aiortc privates (name-mangled attributes, the jitter buffer's ring), read
and written by this module only. `missing_privates()` checks every one of them when a
hook is installed; if one is absent (another aiortc version) nothing is installed and
a warning names what is missing. `PRIVATES` lists them; `pyproject.toml` pins the
aiortc versions they were checked against.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import jitterbuffer
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver

from omnicli.media.framing import begins_frame, complete_frame
from omnicli.media.jitter import AudioJitter, NackTimer, Slot, StallWatch

logger = logging.getLogger(__name__)

_PREFIX = "_RTCRtpReceiver__"
OPUS_SAMPLES = 960  # 20 ms at 48 kHz, aiortc's packet size
TS_MOD = 1 << 32
SEQ_MOD = 1 << 16
# aiortc's video buffer throws all it holds away, and asks for a keyframe, when a packet
# this far behind its origin arrives; VideoRecovery drops such a packet instead, unless
# LATE_RESET_STREAK of them come in a row (the sender's numbers really went back).
MAX_MISORDER: int = getattr(jitterbuffer, "MAX_MISORDER", 100)
LATE_RESET_STREAK = 16

# Every aiortc private the hooks use, and why.
PRIVATES: dict[str, str] = {
    "RTCRtpReceiver.__kind": "audio or video: which hook to install",
    "RTCRtpReceiver.__jitter_buffer": "replaced by AudioRecovery / VideoRecovery",
    "RTCRtpReceiver.__nack_generator": "replaced by RetryingNackGenerator (video)",
    "RTCRtpReceiver.__decoder_queue": "the hooks queue encoded frames for the decoder thread",
    "RTCRtpReceiver.__codecs": "payload type -> codec, for the frames the hooks queue",
    "RTCRtpReceiver.__timestamp_mapper": "RTP -> frame timestamps, as aiortc maps them",
    "RTCRtpReceiver.__decoder_thread": "None once the receiver stopped: queue nothing then",
    "RTCRtpReceiver._send_rtcp_nack": "audio NACKs (aiortc sends them for video only)",
    "RTCRtpReceiver._handle_rtp_packet -> packet._data": "the depayloaded bytes of a packet",
    "JitterBuffer.add -> _remove_frame": "VideoRecovery replaces the release rule",
    "JitterBuffer._origin, _packets, remove, smart_remove": "the ring VideoRecovery reads",
    "NackGenerator.missing": "RetryingNackGenerator asks again while it is not empty, "
    "and drops from it what the buffer gave up",
    "JitterBuffer.add resets MAX_MISORDER behind": "VideoRecovery drops such a packet",
}

_RECEIVER_ATTRS = (
    "kind",
    "jitter_buffer",
    "nack_generator",
    "decoder_queue",
    "codecs",
    "timestamp_mapper",
    "decoder_thread",
)


def _private(receiver: RTCRtpReceiver, name: str) -> Any:
    return getattr(receiver, _PREFIX + name)


def missing_privates(receiver: RTCRtpReceiver) -> list[str]:
    """The aiortc privates the hooks need that `receiver` (its aiortc) does not have."""
    missing = [
        f"RTCRtpReceiver.__{n}" for n in _RECEIVER_ATTRS if not hasattr(receiver, _PREFIX + n)
    ]
    if not callable(getattr(receiver, "_send_rtcp_nack", None)):
        missing.append("RTCRtpReceiver._send_rtcp_nack")
    handle = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    names = getattr(getattr(handle, "__code__", None), "co_names", ())
    if "_data" not in names or _PREFIX + "jitter_buffer" not in names:
        missing.append("RTCRtpReceiver._handle_rtp_packet -> packet._data")
    if "_remove_frame" not in JitterBuffer.add.__code__.co_names:
        missing.append("JitterBuffer.add -> _remove_frame")
    probe = JitterBuffer(capacity=16, is_video=True)
    for name in ("_origin", "_packets", "remove", "smart_remove", "capacity"):
        if not hasattr(probe, name):
            missing.append(f"JitterBuffer.{name}")
    if not hasattr(NackGenerator(), "missing"):
        missing.append("NackGenerator.missing")
    return missing


def install(receiver: RTCRtpReceiver) -> bool:
    """Put omnicli's receive path into `receiver` (audio or video); False if it cannot."""
    if getattr(receiver, "omnicli_recovery", None) is not None:
        return True
    missing = missing_privates(receiver)
    if missing:
        logger.warning(
            "this aiortc version lacks what omnicli's receive hooks need (%s): "
            "loss recovery and early frame release are off",
            ", ".join(missing),
        )
        return False
    hook: AudioRecovery | VideoRecovery
    if _private(receiver, "kind") == "audio":
        hook = AudioRecovery(receiver)
    else:
        codecs: dict[int, Any] = _private(receiver, "codecs")

        def mime_of(payload_type: int) -> str | None:
            codec = codecs.get(payload_type)
            return None if codec is None else str(codec.mimeType)

        video = hook = VideoRecovery(_decoder_feed(receiver), mime_of)
        nacks = RetryingNackGenerator(horizon=lambda: video.origin)
        setattr(receiver, _PREFIX + "nack_generator", nacks)
    setattr(receiver, _PREFIX + "jitter_buffer", hook)
    receiver.omnicli_recovery = hook  # type: ignore[attr-defined]
    return True


def _decoder_feed(receiver: RTCRtpReceiver) -> Callable[[int, JitterFrame], None]:
    """Queue an encoded video frame for `receiver`'s decoder thread, as aiortc would."""
    codecs: dict[int, Any] = _private(receiver, "codecs")
    queue = _private(receiver, "decoder_queue")
    mapper = _private(receiver, "timestamp_mapper")

    def feed(payload_type: int, frame: JitterFrame) -> None:
        codec = codecs.get(payload_type)
        if codec is None or _private(receiver, "decoder_thread") is None:
            return
        frame.timestamp = mapper.map(frame.timestamp)
        queue.put((codec, frame))

    return feed


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


def seq_behind(seq: int, origin: int) -> int:
    """How far RTP sequence number `seq` is behind `origin` (0 if it is not behind)."""
    back = (origin - seq) % SEQ_MOD
    return back if 0 < back < SEQ_MOD // 2 else 0


class RetryingNackGenerator(NackGenerator):
    """aiortc's NACK generator, also due again while packets stay missing, and asking
    for none the jitter buffer has given up: those behind `horizon()` (its origin)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        horizon: Callable[[], int | None] = lambda: None,
    ) -> None:
        super().__init__()
        self.timer = NackTimer()
        self.forgotten = 0  # missing packets not asked for again: the buffer gave them up
        self._clock = clock
        self._horizon = horizon

    def add(self, packet: Any) -> bool:
        new_gap = super().add(packet)
        origin = self._horizon()
        if self.missing and origin is not None:
            gone = [seq for seq in self.missing if seq_behind(seq, origin)]
            self.missing.difference_update(gone)
            self.forgotten += len(gone)
        now = self._clock()
        if new_gap:
            self.timer.sent(now)
            return True
        return self.timer.due(bool(self.missing), now)


class VideoRecovery(JitterBuffer):
    """aiortc's video jitter buffer, releasing frames on their marker and giving up stalls.

    A frame goes to the decoder as soon as its last packet is there (`framing.py`),
    not when the next frame begins; a picture stalled behind a gap is given up for a
    keyframe (`StallWatch`). Frames go out through `deliver(payload_type, frame)`
    (every frame that completed, in order: a retransmission that fills a gap can
    complete several at once), so `add` itself returns no frame.
    """

    def __init__(
        self,
        deliver: Callable[[int, JitterFrame], None],
        mime_of: Callable[[int], str | None] = lambda payload_type: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity=512, is_video=True)
        self.watch = StallWatch()
        self.stalls = 0
        self.on_marker = 0  # frames released on their marker bit
        self.on_next = 0  # frames released when the next frame began (aiortc's rule)
        self.late = 0  # packets dropped far behind the origin (aiortc resets on them)
        self._late_streak = 0
        self._deliver = deliver
        self._mime_of = mime_of
        self._clock = clock
        self._next_start: int | None = None  # seq right after the last released frame
        self._ready: list[tuple[int, JitterFrame]] = []

    @property
    def stats(self) -> dict[str, int]:
        return {
            "stalls": self.stalls,
            "on_marker": self.on_marker,
            "on_next": self.on_next,
            "late": self.late,
        }

    @property
    def origin(self) -> int | None:
        """The next sequence number the buffer waits for; all before it is done with."""
        return self._origin

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        origin = self._origin
        if origin is not None and seq_behind(packet.sequence_number, origin) >= MAX_MISORDER:
            self._late_streak += 1
            if self._late_streak < LATE_RESET_STREAK:
                self.late += 1
                return False, None
        self._late_streak = 0
        pli, _ = super().add(packet)  # fills self._ready through _remove_frame
        ready, self._ready = self._ready, []
        if self.watch.update(bool(ready), self._clock()):
            gap = self._last_gap()
            if gap is not None:
                self.stalls += 1
                self.smart_remove(gap + 1)
                pli = True
        for payload_type, frame in ready:
            self._deliver(payload_type, frame)
        return pli, None

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        """Collect every frame complete at the front (aiortc returns at most one)."""
        while (found := self._front_frame()) is not None:
            self._ready.append(found)
        return None

    def _front_frame(self) -> tuple[int, JitterFrame] | None:
        if self._origin is None:
            return None
        first = self._packets[self._origin % self.capacity]
        if first is None:
            return None
        start_known = self._start_known(first)
        packets: list[Any] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                break
            packets.append(packet)
            if packet.timestamp != first.timestamp or (packet.marker and start_known):
                break
        done = complete_frame([(p.timestamp, bool(p.marker)) for p in packets], start_known)
        if done is None:
            return None
        data = b"".join(p._data for p in packets[: done.packets])
        self.remove(done.packets)
        self._next_start = self._origin
        if done.on_marker:
            self.on_marker += 1
        else:
            self.on_next += 1
        return first.payload_type, JitterFrame(data=data, timestamp=first.timestamp)

    def _start_known(self, first: Any) -> bool:
        if self._origin == self._next_start:
            return True
        mime = self._mime_of(first.payload_type)
        return mime is not None and begins_frame(mime, first.payload)

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
