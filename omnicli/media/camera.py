"""A camera as an aiortc video track: OpenCV `VideoCapture` read in a thread of its own.

The reader thread blocks in `capture.read()` (never the event loop) and hands each
image to `recv()` through a two-slot `DropQueue`: a sender that falls behind gets the
newest image, so latency cannot grow. Frames are stamped with their capture time.
The capture is asked for `width`x`height` at `fps` (cameras pick the nearest mode
they have) and the thread never reads faster than `fps`.

A camera that cannot be opened raises `DeviceMissing`; one that stops delivering
(unplugged, taken by another program) calls `on_lost(reason)` once and ends the track.
"""

from __future__ import annotations

import cv2

# isort: split
import fractions
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from omnicli.errors import DeviceMissing
from omnicli.media.devices import open_capture
from omnicli.media.handoff import DropQueue
from omnicli.media.tracks import yuv_frame

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
QUEUE_FRAMES = 2
FIRST_FRAME_TIMEOUT = 5.0
FAILED_READS = 10  # this many failed reads in a row: the camera is gone


class CameraTrack(MediaStreamTrack):
    """BGR frames from a camera (or anything `cv2.VideoCapture` opens)."""

    kind = "video"

    def __init__(
        self,
        index: int,
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 30,
        on_lost: Callable[[str], None] | None = None,
        capture: Any = None,
    ) -> None:
        super().__init__()
        self.name = f"camera {index}"
        self.on_lost = on_lost
        self.fps = fps
        self.frames_read = 0
        self._cap = capture if capture is not None else open_capture(int(index))
        if not self._cap.isOpened():
            self._cap.release()
            raise DeviceMissing(f"cannot open {self.name} (missing or busy)")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._queue: DropQueue[tuple[float, av.VideoFrame] | None] = DropQueue(QUEUE_FRAMES)
        self._quit = threading.Event()
        self._lost_reason: str | None = None
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._read, name="camera", daemon=True)
        self._thread.start()

    @property
    def dropped_frames(self) -> int:
        return self._queue.dropped

    def _read(self) -> None:
        interval = 1.0 / self.fps
        next_at = time.monotonic()
        failures = 0
        try:
            while not self._quit.is_set():
                ok, image = self._cap.read()
                if not ok or image is None:
                    failures += 1
                    if failures >= FAILED_READS:
                        self._lose(f"{self.name} stopped delivering images")
                        return
                    time.sleep(interval)
                    continue
                failures = 0
                self.frames_read += 1
                at = time.monotonic()
                self._queue.put((at, yuv_frame(image)))  # converted here, off the event loop
                next_at = max(next_at + interval, time.monotonic() - interval)
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._quit.wait(delay)
        finally:
            self._cap.release()

    def _lose(self, reason: str) -> None:
        self._lost_reason = reason
        log.warning("%s", reason)
        if self.on_lost is not None:
            self.on_lost(reason)
        self._queue.put(None)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        timeout = FIRST_FRAME_TIMEOUT if self.frames_read == 0 else None
        try:
            item = await self._queue.get(timeout)
        except TimeoutError:
            self._quit.set()
            self._lose(f"{self.name} delivered no image in {timeout:g} s")
            raise MediaStreamError from None
        if item is None:
            raise MediaStreamError
        at, frame = item
        frame.pts = round((at - self._start) * VIDEO_CLOCK)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame

    def stop(self) -> None:
        super().stop()
        self._quit.set()
