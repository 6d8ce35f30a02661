"""Local media sources, each an aiortc `MediaStreamTrack`: the test pattern (with a
frame code), a tone, silence, and a media file looped (decoded in its own thread).
The camera and the microphone are `camera.CameraTrack` and `audio_io.MicrophoneTrack`;
which track a source spec names, and the fallback to a synthetic one, is `sourcespec`.

Every track paces itself against the wall clock and stamps pts in its own clock
(video 90 kHz, audio samples). `track.stop()` releases everything a track holds,
including the decoder thread and container of a file source.
"""

from __future__ import annotations

import cv2  # (must precede av and aiortc: see "Known traps" in docs/architecture.md)

# isort: split
import asyncio
import fractions
import logging
import math
import queue
import threading
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from omnicli.errors import SourceError
from omnicli.media import framecode
from omnicli.media.tracks import yuv_frame

logger = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_PTIME = 0.020
AUDIO_RATE = 48_000


def now_ms() -> int:
    """Wall-clock milliseconds, truncated to the 48 bits a frame code carries."""
    return (time.time_ns() // 1_000_000) & framecode.TS_MASK


class _Pacer:
    """Sleeps until a media time (seconds from the first frame) is due on the wall clock."""

    def __init__(self) -> None:
        self._start: float | None = None

    async def wait(self, media_time: float) -> None:
        if self._start is None:
            self._start = time.time() - media_time
            return
        delay = self._start + media_time - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class TestPatternTrack(VideoStreamTrack):
    """Colour bars with a sweeping bar, the frame counter as text and as a frame code."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30) -> None:
        super().__init__()
        if width < 160 or height < 120 or fps <= 0:
            raise SourceError(
                f"test pattern needs at least 160x120 and fps > 0, not {width}x{height}@{fps}"
            )
        self.width, self.height, self.fps = width, height, fps
        self.counter = 0
        self._pacer = _Pacer()
        self._background = _colour_bars(width, height)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        counter = self.counter
        await self._pacer.wait(counter / self.fps)
        self.counter += 1
        frame = yuv_frame(self.render(counter, now_ms()))
        frame.pts = round(counter * VIDEO_CLOCK / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def render(self, counter: int, ts_ms: int) -> np.ndarray:
        """The BGR image of frame `counter`, stamped with (counter, ts_ms)."""
        img = self._background.copy()
        w, h = self.width, self.height
        bar = max(4, w // 16)
        x = int(counter * w / (2 * self.fps)) % (w + bar) - bar  # crosses in 2 s
        img[:, max(0, x) : max(0, x + bar)] = (255, 255, 255)
        top = framecode.strip_height(w)
        scale = h / 240
        cv2.putText(
            img,
            f"#{counter}",
            (w // 20, min(h - 4, top + int(40 * scale))),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            max(1, int(3 * scale)),
            cv2.LINE_AA,
        )
        framecode.stamp(img, counter, ts_ms)
        return img


def _colour_bars(width: int, height: int) -> np.ndarray:
    colours = [
        (192, 192, 192),
        (0, 192, 192),
        (192, 192, 0),
        (0, 192, 0),
        (192, 0, 192),
        (0, 0, 192),
        (192, 0, 0),
        (16, 16, 16),
    ]  # BGR
    img = np.zeros((height, width, 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        img[:, i * width // 8 : (i + 1) * width // 8] = colour
    return img


class ToneTrack(AudioStreamTrack):
    """A sine tone: 20 ms mono s16 frames, continuous phase, paced by the wall clock."""

    def __init__(
        self, frequency: float = 440.0, sample_rate: int = AUDIO_RATE, amplitude: float = 0.3
    ) -> None:
        super().__init__()
        self.frequency, self.sample_rate, self.amplitude = frequency, sample_rate, amplitude
        self.samples_per_frame = int(sample_rate * AUDIO_PTIME)
        self._sent = 0
        self._pacer = _Pacer()

    def _samples(self, start: int, count: int) -> np.ndarray:
        n = np.arange(start, start + count, dtype=np.float64)
        wave = np.sin(2 * math.pi * self.frequency * n / self.sample_rate)
        return (wave * self.amplitude * 32767).astype(np.int16)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        start = self._sent
        await self._pacer.wait(start / self.sample_rate)
        self._sent += self.samples_per_frame
        pcm = self._samples(start, self.samples_per_frame)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        return frame


class SilenceTrack(ToneTrack):
    """Digital silence in the same framing as `ToneTrack`."""

    def __init__(self, sample_rate: int = AUDIO_RATE) -> None:
        super().__init__(frequency=0.0, sample_rate=sample_rate, amplitude=0.0)

    def _samples(self, start: int, count: int) -> np.ndarray:
        return np.zeros(count, dtype=np.int16)


class FileTrack(MediaStreamTrack):
    """One stream of a media file, looped forever, paced by the wall clock.

    A thread decodes only the chosen stream into a small bounded queue (so the file is
    never read far ahead), stamps a monotonic media time across loops, and converts
    audio to 20 ms s16 stereo 48 kHz frames (what aiortc's Opus encoder takes).
    `stop()` ends the thread, which closes the container.
    """

    QUEUE_FRAMES = 8

    def __init__(self, path: str, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.path = path
        try:
            container = av.open(path, mode="r")
        except (OSError, av.FFmpegError) as exc:
            raise SourceError(f"cannot open media file {path}: {_reason(exc)}") from exc
        streams = [s for s in container.streams if s.type == kind]
        if not streams:
            container.close()
            raise SourceError(f"media file {path} has no {kind} stream")
        self._queue: queue.Queue[tuple[float, av.frame.Frame] | None] = queue.Queue(
            self.QUEUE_FRAMES
        )
        self._quit = threading.Event()
        self._pacer = _Pacer()
        self._thread = threading.Thread(
            target=self._decode, args=(container, streams[0]), name=f"file-{kind}", daemon=True
        )
        self._thread.start()

    async def recv(self) -> av.frame.Frame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.005)
                continue
            if item is None:
                self.stop()
                raise MediaStreamError
            media_time, frame = item
            await self._pacer.wait(media_time)
            return frame

    def stop(self) -> None:
        super().stop()
        self._quit.set()

    def _put(self, item: tuple[float, av.frame.Frame] | None) -> bool:
        while not self._quit.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self, container: av.container.InputContainer, stream: av.stream.Stream) -> None:
        resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=AUDIO_RATE, frame_size=int(AUDIO_RATE * AUDIO_PTIME)
        )
        rate = getattr(stream, "average_rate", None)
        interval = float(1 / rate) if rate else 1 / 30
        offset, last, samples = 0.0, 0.0, 0
        try:
            while not self._quit.is_set():
                first: float | None = None
                for frame in container.decode(stream):
                    if self._quit.is_set():
                        return
                    if isinstance(frame, av.AudioFrame):
                        for out in resampler.resample(frame):
                            out.pts, out.time_base = samples, fractions.Fraction(1, AUDIO_RATE)
                            samples += out.samples
                            last = samples / AUDIO_RATE
                            if not self._put((last - out.samples / AUDIO_RATE, out)):
                                return
                        continue
                    if not isinstance(frame, av.VideoFrame) or frame.time is None:
                        continue
                    first = frame.time if first is None else first
                    last = offset + frame.time - first
                    frame.pts, frame.time_base = round(last * VIDEO_CLOCK), VIDEO_TIME_BASE
                    if not self._put((last, frame)):
                        return
                if first is None and samples == 0:
                    logger.warning("media file %s has no decodable %s", self.path, self.kind)
                    self._put(None)
                    return
                offset = last + interval
                container.seek(0)
        except av.FFmpegError as exc:
            logger.warning("media file %s: %s", self.path, exc)
            self._put(None)
        finally:
            container.close()


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]
