"""Recording a call to a file: the remote video, and both parties' audio mixed.

`AudioMixer` is pure: it lays each party's audio on one timeline by arrival time
(a gap longer than `GAP_S` becomes silence) and mixes what every party has delivered,
waiting at most `lag_s` for a party that is late or silent. `CallRecorder` feeds it
from the event loop and hands video images and mixed audio to a writer thread that
encodes them with PyAV (H.264 and AAC in MP4, or whatever the file's suffix names):
encoding never blocks the call. Video is stamped with its arrival time, starts with a
black frame and ends with the last image repeated at the stop time, so the file lasts
as long as the recording did.
"""

from __future__ import annotations

import cv2

# isort: split
import fractions
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from omnicli.errors import UsageError
from omnicli.media.probes import mono_samples

log = logging.getLogger(__name__)

RATE = 48_000
GAP_S = 0.1
LAG_S = 0.25
VIDEO_BACKLOG = 30  # images waiting for the encoder beyond this are dropped
MS = fractions.Fraction(1, 1000)


class AudioMixer:
    """Mixes mono float audio of several parties that arrives in chunks, by arrival time."""

    def __init__(
        self, parties: tuple[str, ...] = ("local", "remote"), rate: int = RATE, lag_s: float = LAG_S
    ) -> None:
        self.rate = rate
        self.lag = int(lag_s * rate)
        self.gap = int(GAP_S * rate)
        self._pos = 0  # timeline index of the first sample not mixed yet
        self._buf = {p: np.zeros(0, np.float32) for p in parties}  # from _pos on
        self._end = dict.fromkeys(parties, 0)  # timeline index after each party's last sample

    def add(self, party: str, samples: np.ndarray, at: float) -> None:
        """`samples` (floats in [-1, 1]) of `party` arrived at `at` s on the timeline."""
        end = max(self._end[party], self._pos)
        start = round(at * self.rate) - len(samples)
        pad = start - end if start > end + self.gap else 0
        pieces = [self._buf[party]]  # empty if the party fell behind what was mixed
        if pad:
            pieces.append(np.zeros(pad, np.float32))
        pieces.append(samples.astype(np.float32, copy=False))
        self._buf[party] = np.concatenate(pieces)
        self._end[party] = end + pad + len(samples)

    def pull(self, at: float) -> np.ndarray:
        """Mixed int16 samples ready at `at` s (every party in, or `lag_s` waited)."""
        ready = min(max(e, self._pos) for e in self._end.values())
        return self._mix(max(ready, round(at * self.rate) - self.lag))

    def flush(self, at: float) -> np.ndarray:
        """Everything up to `at` s (silence where nobody spoke) and all that was buffered."""
        return self._mix(max([round(at * self.rate), *self._end.values()]))

    def _mix(self, upto: int) -> np.ndarray:
        count = upto - self._pos
        if count <= 0:
            return np.zeros(0, np.int16)
        mixed = np.zeros(count, np.float32)
        for party, buf in self._buf.items():
            take = buf[:count]
            mixed[: len(take)] += take
            self._buf[party] = buf[count:]
        self._pos = upto
        return (np.clip(mixed, -1.0, 1.0) * 32767).astype(np.int16)


@dataclass(frozen=True)
class Recording:
    path: str
    duration_s: float
    video_frames: int
    dropped_frames: int


class CallRecorder:
    """Writes one call to `path`; `add_*` from the event loop, `stop()` to finish."""

    def __init__(
        self, path: str, *, video: bool, size: tuple[int, int] = (640, 480), fps: int = 30
    ) -> None:
        self.path = path
        self.size = (size[0] // 2 * 2, size[1] // 2 * 2)  # H.264 wants even sizes
        self.video = video
        self.video_frames = 0
        self.dropped_frames = 0
        target = Path(path)
        if target.parent and not target.parent.is_dir():
            raise UsageError(f"cannot record to {path}: no such directory")
        try:
            self._container = av.open(path, mode="w")
        except (OSError, av.FFmpegError, ValueError) as exc:
            raise UsageError(f"cannot record to {path}: {exc}") from None
        self._mixer = AudioMixer()
        self._audio_stream = self._container.add_stream("aac", rate=RATE)
        self._audio_stream.layout = "mono"
        self._video_stream: Any = None
        if video:
            vs = self._container.add_stream("libx264", rate=fps)
            vs.width, vs.height = self.size
            vs.pix_fmt = "yuv420p"
            vs.options = {"preset": "ultrafast"}
            vs.codec_context.time_base = MS
            self._video_stream = vs
        self._queue: queue.Queue[tuple[str, Any, int] | None] = queue.Queue()
        self._backlog = 0
        self._last_image: np.ndarray | None = None
        self._last_ms = -1
        self._start = time.monotonic()
        self._end: float | None = None
        self._thread = threading.Thread(target=self._write, name="recorder", daemon=True)
        self._thread.start()
        if video:
            w, h = self.size
            self.add_video(np.zeros((h, w, 3), np.uint8))

    def _now(self) -> float:
        return time.monotonic() - self._start

    def add_video(self, bgr: np.ndarray) -> None:
        """A remote image, stamped now (dropped if the encoder is behind)."""
        if not self.video or self._end is not None:
            return
        ms = round(self._now() * 1000)
        if ms <= self._last_ms:
            return
        if self._backlog >= VIDEO_BACKLOG:
            self.dropped_frames += 1
            return
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        self._last_image, self._last_ms = bgr, ms
        self._backlog += 1
        self._queue.put(("video", bgr, ms))

    def add_audio(self, party: str, frame: av.AudioFrame) -> None:
        """A frame of `party`'s audio ("local" or "remote"), arriving now."""
        if self._end is not None:
            return
        samples = mono_samples(frame)
        if frame.sample_rate != RATE:
            count = round(len(samples) * RATE / frame.sample_rate)
            samples = np.interp(
                np.linspace(0, len(samples) - 1, count), np.arange(len(samples)), samples
            )
        now = self._now()
        self._mixer.add(party, samples, now)
        self._put_audio(self._mixer.pull(now))

    def _put_audio(self, pcm: np.ndarray) -> None:
        if pcm.size:
            self._queue.put(("audio", pcm, 0))

    def finish(self) -> float:
        """Stop taking media and queue the end of the file; the duration in seconds."""
        if self._end is None:
            self._end = self._now()
            self._put_audio(self._mixer.flush(self._end))
            end_ms = round(self._end * 1000)
            if self.video and self._last_image is not None and end_ms > self._last_ms:
                self._queue.put(("video", self._last_image, end_ms))
            self._queue.put(None)
        return self._end

    def stop(self) -> Recording:
        """Finish the file and wait until it is written (blocks: encoding catches up)."""
        end = self.finish()
        self._thread.join(timeout=30)
        return Recording(self.path, round(end, 3), self.video_frames, self.dropped_frames)

    def _write(self) -> None:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=RATE, frame_size=1024)
        samples = 0
        try:
            while (item := self._queue.get()) is not None:
                kind, data, ms = item
                if kind == "video":
                    self._backlog -= 1
                    frame = av.VideoFrame.from_ndarray(data, format="bgr24")
                    frame.pts, frame.time_base = ms, MS
                    self._mux(self._video_stream.encode(frame))
                    self.video_frames += 1
                    continue
                chunk = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
                chunk.sample_rate = RATE
                for out in resampler.resample(chunk):
                    out.pts, samples = samples, samples + out.samples
                    self._mux(self._audio_stream.encode(out))
            for out in resampler.resample(None):
                out.pts, samples = samples, samples + out.samples
                self._mux(self._audio_stream.encode(out))
            if self._video_stream is not None:
                self._mux(self._video_stream.encode(None))
            self._mux(self._audio_stream.encode(None))
        except (av.FFmpegError, ValueError):
            log.exception("recording to %s failed", self.path)
        finally:
            self._container.close()

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self._container.mux(packet)


def default_path(me: str, peer: str, when: float | None = None) -> str:
    """``omni-ME-PEER-YYYYmmdd-HHMMSS.mp4`` in the current directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return f"omni-{me}-{peer}-{stamp}.mp4"
