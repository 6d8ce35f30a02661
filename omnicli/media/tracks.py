"""`SwitchableTrack`: the track actually given to the peer connection.

It forwards frames from a replaceable source, so the source can change mid-call without
renegotiation, and it can be muted.

Muting: while muted, `recv()` keeps pulling (and dropping) source frames so nothing
piles up, but returns nothing: the peer sees frames stop. aiortc's sender awaits
`recv()` in its RTP task only; RTCP (sender reports, RTT) runs in a separate task and
`RTCRtpSender.stop()` cancels the RTP task, so a `recv()` held open while muted is safe.

Timeline: output pts are re-stamped (video in 90 kHz, audio in samples at the frame's
sample rate) as ``base + (source pts - source's first pts)``. On a source change the
new base continues from the last frame seen plus the wall-clock time since (at least
one frame), so pts stay monotonic and follow the wall clock across switches and mutes.

With no source, `recv()` waits until one is set (no frames, as when muted).
"""

from __future__ import annotations

import cv2

# isort: split
import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
from av.frame import Frame

logger = logging.getLogger(__name__)

# OpenCV splits a conversion such as BGR -> I420 over a pool of one thread per core.
# At these frame sizes the split costs more CPU than it saves: the pool's thread wakes
# (and spins) for every call. Process CPU (all threads) per `yuv_frame`, one every
# 33 ms: 640x480 0.90-0.94 ms pooled, 0.78-0.80 ms in the calling thread alone;
# 1280x720 1.66 against 1.31 ms. In an omnicli endpoint at 640x480@30 the pool's
# thread was 1.3 % of a core (scripts/bench_media.py, per-thread /proc figures).
# So every OpenCV call of the process runs in its caller's thread.
cv2.setNumThreads(1)


def yuv_frame(image: Any) -> VideoFrame:
    """A BGR image (OpenCV's layout) as a yuv420p frame, the format the encoders take.

    aiortc's VP8 and H.264 encoders convert any other format with swscale in the
    encoder thread, on the frame's way to the wire. OpenCV's conversion (in the calling
    thread, see `cv2.setNumThreads` above) runs where the image is made; in process CPU
    it costs about what swscale does at 640x480 (0.78-0.80 against 0.70-0.73 ms, frame
    creation included) and less at 1280x720 (1.31 against 1.65 ms). Odd sizes stay BGR.
    """
    height, width = image.shape[:2]
    if width % 2 or height % 2:
        return VideoFrame.from_ndarray(image, format="bgr24")
    return VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")


VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
DEFAULT_VIDEO_STEP = 3000  # one frame at 30 fps, in 90 kHz ticks


class SwitchableTrack(MediaStreamTrack):
    """A track whose source can be replaced or muted while it is being sent."""

    def __init__(self, kind: str, source: MediaStreamTrack | None) -> None:
        super().__init__()
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be 'audio' or 'video', not {kind!r}")
        if source is not None and source.kind != kind:
            raise ValueError(f"a {source.kind} source cannot feed a {kind} track")
        self.kind = kind
        self._source = source
        self._muted = False
        self._changed = asyncio.Event()  # set by _signal: wakes a recv() with no source
        self._wake: asyncio.Future[None] | None = None  # done by _signal or by the frame
        self._generation = 0
        self._pending: asyncio.Future[Frame] | None = None
        self._pending_source: MediaStreamTrack | None = None
        # timeline state
        self._src_first: float | None = None  # first source time (s) of the current source
        self._base = 0.0  # output time (s) that the current source's first frame maps to
        self._last_time: float | None = None  # output time (s) of the last frame seen
        self._last_step = 0.0  # duration (s) of the last frame seen
        self._last_wall = 0.0
        self._last_pts: int | None = None
        self.frames_out = 0
        self.frame_size: tuple[int, int] | None = None  # (width, height) of the last video frame
        self.frames_dropped = 0
        # called on every outgoing frame; returns it (possibly replaced) or None to skip it
        # (the video send-rate level, see sendguards.FrameShaper)
        self.shaper: Callable[[Frame], Frame | None] | None = None
        # stop() stops the source too; PeerLink turns this off and stops sources itself,
        # because aiortc stops a sender's track whenever its RTP loop ends (a dead
        # transport too) and a media restart moves the sources to a new connection
        self.stops_source = True

    @property
    def source(self) -> MediaStreamTrack | None:
        return self._source

    @property
    def muted(self) -> bool:
        return self._muted

    def set_muted(self, muted: bool) -> None:
        """Stop (True) or resume (False) returning frames; the source keeps running."""
        if muted != self._muted:
            self._muted = muted
            self._signal()

    def set_source(self, source: MediaStreamTrack | None, *, stop_old: bool = True) -> None:
        """Switch to `source` (None: send nothing); the old source is stopped unless told not."""
        if source is not None and source.kind != self.kind:
            raise ValueError(f"a {source.kind} source cannot feed a {self.kind} track")
        old, self._source = self._source, source
        if old is source:
            return
        self._generation += 1
        self._src_first = None
        if old is not None and stop_old:
            old.stop()
        self._signal()

    def stop(self) -> None:
        if self.readyState == "live" and self._source is not None and self.stops_source:
            self._source.stop()
        self._cancel_pending()
        super().stop()
        self._signal()

    async def recv(self) -> Frame:
        while True:
            frame = await self._next_source_frame()
            self._restamp(frame)
            if self._muted:
                self.frames_dropped += 1
                continue
            if self.shaper is not None:
                shaped = self.shaper(frame)
                if shaped is None:
                    self.frames_dropped += 1
                    continue
                frame = shaped
            self.frames_out += 1
            if isinstance(frame, VideoFrame):
                self.frame_size = (frame.width, frame.height)
            return frame

    def _signal(self) -> None:
        self._changed.set()
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _next_source_frame(self) -> Frame:
        """The next frame of the current source, waiting through source changes."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source, generation = self._source, self._generation
            if source is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            if self._pending is None or self._pending_source is not source:
                self._cancel_pending()
                self._pending = asyncio.ensure_future(cast(Awaitable[Frame], source.recv()))
                self._pending_source = source
            pending: asyncio.Future[Any] = self._pending
            # one plain future per frame, done by the frame or by _signal (a task waiting
            # on an Event plus asyncio.wait cost two tasks and more loop turns a frame)
            wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def woken(_: Any, wake: asyncio.Future[None] = wake) -> None:
                if not wake.done():
                    wake.set_result(None)

            self._wake = wake
            pending.add_done_callback(woken)
            try:
                await wake
            finally:
                pending.remove_done_callback(woken)
                if self._wake is wake:
                    self._wake = None
            if self._pending is not pending or not pending.done():
                continue  # woken by mute/switch/stop: re-check, keep any pending recv
            self._pending, self._pending_source = None, None
            error = None if pending.cancelled() else pending.exception()
            if generation != self._generation or pending.cancelled():
                continue  # a frame of a replaced source
            if error is None:
                return cast(Frame, pending.result())
            if not isinstance(error, MediaStreamError):
                raise error
            logger.info("%s source ended; waiting for a new one", self.kind)
            if self._source is source:
                self._source = None
                self._generation += 1

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                self._pending.exception()  # mark retrieved: no "never retrieved" warning
            self._pending = None
            self._pending_source = None

    def _restamp(self, frame: Frame) -> None:
        now = time.monotonic()
        if isinstance(frame, AudioFrame):
            time_base = fractions.Fraction(1, frame.sample_rate)
            step = frame.samples / frame.sample_rate
        else:
            time_base = VIDEO_TIME_BASE
            step = self._last_step or DEFAULT_VIDEO_STEP / 90_000
        src_time = (
            float(frame.pts * frame.time_base)
            if frame.pts is not None and frame.time_base is not None
            else None
        )
        if self._src_first is None or src_time is None or src_time < self._src_first:
            # a new source (or one without usable pts): continue after the last frame
            if self._last_time is None:
                self._base = 0.0
            else:
                gap = max(now - self._last_wall, self._last_step or step)
                self._base = self._last_time + gap
            self._src_first = src_time if src_time is not None else 0.0
            out_time = self._base
        else:
            out_time = self._base + (src_time - self._src_first)
        pts = round(out_time / time_base)
        if self._last_pts is not None and self._last_time is not None:
            last_in_this_base = round(self._last_time / time_base)
            if pts <= last_in_this_base:
                pts = last_in_this_base + 1
                out_time = float(pts * time_base)
        if self._last_time is not None and not isinstance(frame, AudioFrame):
            delta = out_time - self._last_time
            if 0 < delta < 1:
                self._last_step = delta
        elif isinstance(frame, AudioFrame):
            self._last_step = step
        frame.pts, frame.time_base = pts, time_base
        self._last_time, self._last_wall, self._last_pts = out_time, now, pts
