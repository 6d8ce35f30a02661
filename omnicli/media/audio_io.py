"""The microphone as an aiortc track and the speaker as a sink, through PortAudio.

PortAudio calls its callbacks on a thread of its own; nothing here blocks the event
loop. Both streams run in 5 ms device blocks (`DEVICE_BLOCK`): through PortAudio's
ALSA host API and PulseAudio's ALSA plugin, the block size sets the period and so
what the device path holds; 20 ms in and 10 ms out held ~45 ms more from mouth to
ear than 5 ms both ways (scripts/bench_audio.py, docs/performance.md). The
microphone's callback gathers its 5 ms blocks into the 20 ms frames aiortc's Opus
encoder takes and hands them to `MicrophoneTrack.recv` through a `DropQueue` that
keeps at most `QUEUE_BLOCKS` of them (older audio is dropped, so latency cannot
grow). `SpeakerSink.feed` takes the remote track's decoded frames into
a `playout.PlayoutBuffer` (at most `max_buffer_s`), which keeps as little audio waiting
as the arrivals allow and adapts to jitter and loss; when it runs dry the callback
plays silence until it is primed again.

A device that cannot be opened raises `DeviceMissing`; one that stops delivering
mid-call calls `on_lost(reason)` once (the call-core falls back to a synthetic source).
"""

from __future__ import annotations

import cv2  # noqa: F401  (must precede av and aiortc: see "Known traps" in docs/architecture.md)

# isort: split
import fractions
import logging
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from omnicli.errors import DeviceMissing
from omnicli.media.devices import load_sounddevice, resolve_audio_device
from omnicli.media.handoff import DropQueue
from omnicli.media.playout import PlayoutBuffer

log = logging.getLogger(__name__)

RATE = 48_000
BLOCK = 960  # 20 ms at 48 kHz: what aiortc's Opus encoder takes per frame
DEVICE_BLOCK = 240  # 5 ms: what each PortAudio callback takes or gives (see above)
QUEUE_BLOCKS = 5  # 100 ms of microphone audio at most waits for the sender
FIRST_BLOCK_TIMEOUT = 6.0  # PortAudio through PulseAudio takes up to ~2 s to start
STALL_TIMEOUT = 2.0  # no audio for this long after it flowed: the device is gone


class FrameGatherer:
    """Gathers device blocks of any size into frames of exactly `size` samples (one thread)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._parts: list[np.ndarray] = []
        self._count = 0

    def add(self, samples: np.ndarray) -> list[np.ndarray]:
        """Take `samples` (copied); the frames they complete, oldest first."""
        self._parts.append(samples.copy())
        self._count += len(samples)
        if self._count < self.size:
            return []
        joined = np.concatenate(self._parts)
        whole = len(joined) // self.size * self.size
        frames = [joined[i : i + self.size] for i in range(0, whole, self.size)]
        rest = joined[whole:]
        self._parts, self._count = ([rest] if len(rest) else []), len(rest)
        return frames


def _device_name(sd: Any, device: int | str) -> str:
    try:
        return str(sd.query_devices(device)["name"])
    except Exception:
        return str(device)


class MicrophoneTrack(MediaStreamTrack):
    """Mono 48 kHz s16 audio from a PortAudio input device, in 20 ms frames."""

    kind = "audio"

    def __init__(
        self, device_id: str | None = None, *, on_lost: Callable[[str], None] | None = None
    ) -> None:
        super().__init__()
        sd = load_sounddevice()
        self.device = resolve_audio_device("input", device_id)
        self.name = _device_name(sd, self.device)
        self.on_lost = on_lost
        self.overflows = 0
        self._queue: DropQueue[np.ndarray] = DropQueue(QUEUE_BLOCKS)
        self._gather = FrameGatherer(BLOCK)  # (re)made for the rate the device opens at
        self._captured = 0  # samples captured so far (including dropped ones)
        self._sent = 0
        self._lost = False
        self._rate = RATE
        self._resampler: av.AudioResampler | None = None
        try:
            self._stream = self._open(sd, RATE)
        except sd.PortAudioError:
            rate = int(sd.query_devices(self.device)["default_samplerate"])
            try:  # the device refuses 48 kHz: capture at its own rate, resample
                self._stream = self._open(sd, rate)
            except sd.PortAudioError as exc:
                raise DeviceMissing(f"cannot open microphone '{self.name}': {exc}") from None
            self._rate = rate
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self._stream.start()
        log.info("microphone %s (%s) open at %d Hz", self.device, self.name, self._rate)

    def _open(self, sd: Any, rate: int) -> Any:
        self._gather = FrameGatherer(rate * BLOCK // RATE)
        return sd.InputStream(
            device=self.device,
            channels=1,
            samplerate=rate,
            dtype="int16",
            blocksize=rate * DEVICE_BLOCK // RATE,
            latency="low",
            callback=self._callback,
        )

    @property
    def dropped_blocks(self) -> int:
        return self._queue.dropped

    def _callback(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        for block in self._gather.add(indata[:, 0]):
            self._queue.put(block)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        timeout = STALL_TIMEOUT if self._captured else FIRST_BLOCK_TIMEOUT
        try:
            block = await self._queue.get(timeout)
        except TimeoutError:
            self._lose(f"microphone '{self.name}' delivered no audio for {timeout:g} s")
            raise MediaStreamError from None
        self._captured += len(block)
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        if self._resampler is not None:
            frames = self._resampler.resample(frame)
            if not frames:
                return await self.recv()
            frame = frames[0]
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += frame.samples
        return frame

    def _lose(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        log.warning("%s", reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def stop(self) -> None:
        if self.readyState == "live":
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # the device may be gone already
                log.debug("closing the microphone stream failed", exc_info=True)
        super().stop()


class SpeakerSink:
    """Plays remote audio frames on a PortAudio output device through a `PlayoutBuffer`."""

    def __init__(
        self,
        device_id: str | None = None,
        *,
        max_buffer_s: float = 0.120,
        prime_s: float = 0.010,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        sd = load_sounddevice()
        self.device = resolve_audio_device("output", device_id)
        self.name = _device_name(sd, self.device)
        self.buffer = PlayoutBuffer(int(max_buffer_s * RATE), int(prime_s * RATE))
        self.on_lost = on_lost
        self._closing = False
        self._last_callback: float | None = None
        self._ride_out = 0.0  # s the device's own buffer plays without a callback
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        channels = min(2, int(sd.query_devices(self.device)["max_output_channels"]) or 1)
        self.channels = channels
        try:
            self._stream = sd.OutputStream(
                device=self.device,
                channels=channels,
                samplerate=RATE,
                dtype="int16",
                blocksize=DEVICE_BLOCK,
                latency="low",
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._ride_out = float(self._stream.latency) + DEVICE_BLOCK / RATE
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceMissing(f"cannot open speaker '{self.name}': {exc}") from None
        log.info("speaker %s (%s) open", self.device, self.name)

    def feed(self, frame: av.AudioFrame) -> None:
        """Queue one decoded frame for playing (from the event loop)."""
        if self._closing:
            return
        for out in self._resampler.resample(frame):
            self.buffer.push(out.to_ndarray().reshape(-1))

    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        now = time.monotonic()
        if self._last_callback is not None:
            # no callback for longer than the device's buffer lasts: it ran dry and
            # played silence; the audio due meanwhile is stale (see playout.py)
            stalled = now - self._last_callback - self._ride_out
            if stalled > 0:
                self.buffer.device_stalled(int(stalled * RATE), frames)
        self._last_callback = now
        outdata[:] = self.buffer.take(frames).reshape(-1, 1)  # to every channel

    def _finished(self) -> None:
        if not self._closing and self.on_lost is not None:
            self.on_lost(f"speaker '{self.name}' stopped playing")

    def snapshot(self) -> dict[str, Any]:
        b = self.buffer
        return {
            "device": self.name,
            "underflows": b.underflows,
            "device_stalls": b.stalls,
            "stalled_ms": round(1000 * b.stalled_samples / RATE, 1),
            "dropped_samples": b.dropped_samples,
            "played_samples": b.played_samples,
            "max_buffered_ms": round(1000 * b.max_buffered / RATE, 1),
            "buffered_ms": round(1000 * b.buffered / RATE, 1),
            "margin_ms": round(1000 * b.level.margin / RATE, 1),
            "trimmed_ms": round(1000 * b.level.dropped / RATE, 1),
        }

    def close(self) -> None:
        """Stop playing and release the device; idempotent."""
        if self._closing:
            return
        self._closing = True
        log.info("speaker closed: %s", self.snapshot())
        try:
            self._stream.stop()
            self._stream.close()
        except Exception:
            log.debug("closing the speaker stream failed", exc_info=True)
