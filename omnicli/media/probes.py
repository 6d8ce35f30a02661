"""Sinks for remote tracks that measure what arrives: `VideoProbe` and `AudioProbe`.

Each probe owns one asyncio task that pulls `track.recv()` until the track ends or the
probe is stopped. Figures are read with `snapshot()` (a JSON-able dict). Callbacks
(`on_frame`, `on_audio`) may be set or changed at any time, before or after `start`.
"""

from __future__ import annotations

import cv2  # noqa: F401  (must precede av and aiortc: see "Known traps" in docs/architecture.md)

# isort: split
import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from omnicli.media import framecode

logger = logging.getLogger(__name__)

FPS_WINDOW_S = 1.0
LATENCY_SAMPLES = 600
RMS_WINDOW_S = 0.5
FFT_WINDOW_S = 1.0
LUMA_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12", "gray")


class _Probe:
    """The task that drains a track; subclasses handle each frame."""

    kind = "unknown"

    def __init__(self) -> None:
        self.track: MediaStreamTrack | None = None
        self.ended = False
        self._task: asyncio.Task[None] | None = None

    def start(self, track: MediaStreamTrack) -> None:
        """Start consuming `track` (replacing any previous one)."""
        if self._task is not None:
            self._task.cancel()
        self.track = track
        self.ended = False
        self._task = asyncio.ensure_future(self._run(track))

    async def stop(self) -> None:
        """Stop consuming; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                try:
                    self._handle(frame)
                except Exception:  # a bad frame or callback must not kill the probe
                    logger.exception("%s probe failed on a frame", self.kind)
        except MediaStreamError:
            logger.debug("remote %s track ended", self.kind)
        finally:
            self.ended = True

    def _handle(self, frame: Any) -> None:
        raise NotImplementedError


def luma(frame: VideoFrame) -> np.ndarray:
    """The Y (luma) plane of a frame as an HxW uint8 array, without a colour conversion."""
    if frame.format.name in LUMA_FORMATS:
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        return rows[: frame.height, : frame.width]
    return cast(np.ndarray, frame.to_ndarray(format="gray"))


class VideoProbe(_Probe):
    """Counts frames, reads their frame codes (counter, latency), measures fps and size."""

    kind = "video"

    def __init__(self, on_frame: Callable[[np.ndarray], None] | None = None) -> None:
        super().__init__()
        self.on_frame = on_frame
        self.frames_received = 0
        self.frames_coded = 0  # frames that carried a readable frame code
        self.first_counter: int | None = None
        self.last_counter: int | None = None
        self.counters_missing = 0
        self.counter_resets = 0
        self.width: int | None = None
        self.height: int | None = None
        self.last_frame_at: float | None = None  # time.monotonic() of the last frame
        self.latencies_ms: collections.deque[int] = collections.deque(maxlen=LATENCY_SAMPLES)
        # (arrival, media time) of recent frames: a rate is frames over the media time
        # they span, so a burst after a stall never reads as more than the sender made
        self._arrivals: collections.deque[tuple[float, float | None]] = collections.deque()
        # the receive hook's counters (recovery.VideoRecovery.stats), when one is installed
        self.receive_stats: Callable[[], dict[str, int]] | None = None

    def _handle(self, frame: VideoFrame) -> None:
        now = time.monotonic()
        self.frames_received += 1
        self.width, self.height = frame.width, frame.height
        self.last_frame_at = now
        media_time = (
            float(frame.pts * frame.time_base)
            if frame.pts is not None and frame.time_base is not None
            else None
        )
        self._arrivals.append((now, media_time))
        while self._arrivals and self._arrivals[0][0] < now - FPS_WINDOW_S:
            self._arrivals.popleft()
        code = framecode.read(luma(frame))
        if code is not None:
            self._count(*code)
        if self.on_frame is not None:
            self.on_frame(frame.to_ndarray(format="bgr24"))

    def _count(self, counter: int, ts_ms: int) -> None:
        self.frames_coded += 1
        now_ms = time.time_ns() // 1_000_000
        self.latencies_ms.append((now_ms - ts_ms) & framecode.TS_MASK)
        if self.first_counter is None:
            self.first_counter = counter
        elif self.last_counter is not None:
            if counter > self.last_counter:
                self.counters_missing += counter - self.last_counter - 1
            else:  # a new source started counting again
                self.counter_resets += 1
        self.last_counter = counter

    def fps(self) -> float:
        """The rate of the frames received in the last second (0 once frames stop).

        At most the frames that arrived in that second, and at most those frames over
        the media time they span (their timestamps): frames held up and then delivered
        together count at the rate they were made, never faster (issue #12).
        """
        cutoff = time.monotonic() - FPS_WINDOW_S
        recent = [media for arrived, media in self._arrivals if arrived >= cutoff]
        arrived_rate = float(len(recent)) / FPS_WINDOW_S
        stamps = [m for m in recent if m is not None]
        if len(stamps) < len(recent) or len(stamps) < 2:
            return arrived_rate
        # the media time between successive frames; a jump back or of more than a
        # second is a new source starting its clock, not time the frames span
        steps = [b - a for a, b in itertools.pairwise(stamps) if 0 < b - a < 1.0]
        span = sum(steps)
        made_rate = len(steps) / span if span > 0 else arrived_rate
        return min(arrived_rate, made_rate)

    def latency_ms(self, quantile: float = 0.5) -> float | None:
        """A quantile (0.5 median, 0.99 p99) of recent frame-code latencies, in ms."""
        if not self.latencies_ms:
            return None
        return float(np.quantile(np.fromiter(self.latencies_ms, dtype=np.float64), quantile))

    def paused_for(self) -> float | None:
        """Seconds since the last frame arrived (None before the first)."""
        return None if self.last_frame_at is None else time.monotonic() - self.last_frame_at

    def snapshot(self) -> dict[str, Any]:
        return {
            "frames_received": self.frames_received,
            "frames_coded": self.frames_coded,
            "first_counter": self.first_counter,
            "last_counter": self.last_counter,
            "counters_missing": self.counters_missing,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps(), 1),
            "latency_ms_median": _round(self.latency_ms(0.5)),
            "latency_ms_p99": _round(self.latency_ms(0.99)),
            "paused_for_s": _round(self.paused_for(), 3),
            "ended": self.ended,
        } | ({"receive": self.receive_stats()} if self.receive_stats is not None else {})


class AudioProbe(_Probe):
    """Counts audio, measures its level (RMS) and dominant frequency (FFT)."""

    kind = "audio"

    def __init__(self, on_audio: Callable[[AudioFrame], None] | None = None) -> None:
        super().__init__()
        self.on_audio = on_audio
        self.frames_received = 0
        self.samples_received = 0
        self.seconds_received = 0.0
        self.sample_rate: int | None = None
        self.last_frame_at: float | None = None
        # the last second of audio as it came (samples, channels, planar, scale): made
        # mono only when a figure is read (about once a second), not per 20 ms frame
        self._chunks: collections.deque[tuple[np.ndarray, int, bool, float]] = collections.deque()
        self._buffered = 0

    def _handle(self, frame: AudioFrame) -> None:
        self.frames_received += 1
        self.samples_received += frame.samples
        self.seconds_received += frame.samples / frame.sample_rate
        self.last_frame_at = time.monotonic()
        if frame.sample_rate != self.sample_rate:
            self._chunks.clear()
            self._buffered = 0
            self.sample_rate = frame.sample_rate
        data = frame.to_ndarray()
        channels = len(frame.layout.channels)
        self._chunks.append(
            (data, channels, frame.format.is_planar, SCALE.get(frame.format.name, 1.0))
        )
        self._buffered += data.size // channels
        keep = int(FFT_WINDOW_S * frame.sample_rate)
        while self._buffered - self._chunks[0][0].size // self._chunks[0][1] >= keep:
            head = self._chunks.popleft()
            self._buffered -= head[0].size // head[1]
        if self.on_audio is not None:
            self.on_audio(frame)

    def _recent(self, seconds: float) -> np.ndarray:
        if not self._chunks or not self.sample_rate:
            return np.zeros(0)
        samples = np.concatenate([_mono(*chunk) for chunk in self._chunks])
        return samples[-int(seconds * self.sample_rate) :]

    def rms(self) -> float:
        """RMS of the last ~0.5 s, full scale = 1.0 (0.0 before any audio)."""
        recent = self._recent(RMS_WINDOW_S)
        return float(np.sqrt(np.mean(recent**2))) if recent.size else 0.0

    def dominant_frequency(self) -> float | None:
        """The strongest frequency (Hz) over the last ~1 s, None if silent or too little."""
        recent = self._recent(FFT_WINDOW_S)
        if recent.size < 256 or not self.sample_rate or self.rms() < 1e-4:
            return None
        return dominant_frequency(recent, self.sample_rate)

    def snapshot(self) -> dict[str, Any]:
        return {
            "frames_received": self.frames_received,
            "samples_received": self.samples_received,
            "seconds_received": round(self.seconds_received, 3),
            "sample_rate": self.sample_rate,
            "rms": round(self.rms(), 4),
            "dominant_hz": _round(self.dominant_frequency()),
            "paused_for_s": _round(
                None if self.last_frame_at is None else time.monotonic() - self.last_frame_at, 3
            ),
            "ended": self.ended,
        }


SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2.0**31, "s32p": 2.0**31}  # full scale


def mono_samples(frame: AudioFrame) -> np.ndarray:
    """The frame's samples as float64 mono in [-1, 1]."""
    return _mono(
        frame.to_ndarray(),
        len(frame.layout.channels),
        frame.format.is_planar,
        SCALE.get(frame.format.name, 1.0),
    )


def _mono(data: np.ndarray, channels: int, planar: bool, scale: float) -> np.ndarray:
    if planar:
        data = data.reshape(channels, -1).mean(axis=0)
    else:
        data = data.reshape(-1, channels).mean(axis=1)
    return cast(np.ndarray, data.astype(np.float64) / scale)


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    """Frequency (Hz) of the largest peak of a Hann-windowed spectrum, interpolated."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    offset = 0.0
    if 0 < peak < len(spectrum) - 1:  # parabolic interpolation between bins
        a, b, c = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom else 0.0
    return float((peak + offset) * sample_rate / len(samples))


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
