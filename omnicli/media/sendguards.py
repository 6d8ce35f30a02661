"""What guards the video sender's packets on a thin link: retransmissions, keyframes,
frames. Pure or nearly (a clock and callables in); `sendhooks.py` puts them into aiortc.

Retransmissions are budgeted. aiortc's sender resends every packet a NACK names;
with omnicli's receivers asking again for what is still missing, a link losing 80 %
to a cap carried 2-3 Mbit/s of retransmissions for a 60 kbit/s target (measured in
the network lab): congestion collapse. `RetransmitBudget` is a token bucket that lets
retransmissions use at most a third of the target (at least 40 kbit/s), a quarter of
a second of it at once (at least eight packets); what does not fit is not resent, and
a packet just resent is not resent again for 0.2 s (the receiver asks again every
60 ms while it waits), nor more than twice (a receiver that still asks has given that
picture up for a keyframe and asks on regardless: measured, 4,000 requests for 130
packets the 300 kbit/s cap dropped), nor once it is older than 0.6 s (see
MAX_RESEND_AGE_S: a late resend resets aiortc's jitter buffer).

Keyframes are kept rare, because on a thin link each one is a burst the link cannot
carry at once: `KeyframeGate` serves the receivers' keyframe requests (PLI) at
most once per the time a keyframe takes on the link (0.25-0.6 s).

`FrameShaper` applies the controller's level (`sendrate.Level`) to the frames the video
track sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from omnicli.media.sendrate import SendRate, level_for

RTX_SHARE = 1 / 3
RTX_FLOOR_BPS = 40_000
RTX_BURST_S = 0.25
# ...but never less than a keyframe's worth of lost packets at once: at 40 kbit/s a
# quarter second is 1.25 kB, one video packet, so a keyframe that lost five packets
# got one back per quarter second and the picture stalled (measured at 300 kbit/s:
# 4,800 of 4,900 requests refused, 12-21 stalls in 15 s)
RTX_BURST_MIN_BYTES = 8 * 1240
RESEND_AGAIN_S = 0.2  # a packet is resent at most once in this time (receivers ask again)
MAX_RESENDS = 2  # ...and twice in all: a receiver still asking has given the picture up
# Nothing sent longer ago than this is resent. A receiver's picture has been given up for
# a keyframe by then (StallWatch: 0.25 s), and aiortc's jitter buffer throws away all it
# holds, and asks for a keyframe, when a packet 100 or more behind its origin arrives:
# old packets the budget could not afford during a cap's first burst of loss, resent
# seconds later when it had refilled, froze the picture again and again while the link
# dropped nothing (measured: 15-17 stalls in 15 s at 300 kbit/s, no drop at the cap).
MAX_RESEND_AGE_S = 0.6


class RetransmitBudget:
    """A token bucket (bytes) for retransmissions, refilled at a share of the target."""

    def __init__(self, control: SendRate) -> None:
        self.control = control
        self.tokens = 0.0
        self.at: float | None = None
        self.sent = self.refused = self.repeats = 0
        # sequence number -> (when it was last resent, how often)
        self._resent: dict[int, tuple[float, int]] = {}

    def allow(self, size: int, now: float, seq: int | None = None) -> bool:
        last, times = self._resent.get(-1 if seq is None else seq, (float("-inf"), 0))
        if now - last < RESEND_AGAIN_S or times >= MAX_RESENDS:
            self.repeats += 1  # still on its way, or hopeless
            return False
        rate = max(RTX_FLOOR_BPS, self.control.target_bps * RTX_SHARE) / 8  # bytes/s
        burst = max(rate * RTX_BURST_S, RTX_BURST_MIN_BYTES)
        if self.at is None:
            self.tokens = burst
        else:
            self.tokens = min(burst, self.tokens + rate * (now - self.at))
        self.at = now
        counts = self.control.counts
        if size > self.tokens:
            self.refused += 1
            counts["rtx_refused"] = counts.get("rtx_refused", 0) + 1
            return False
        self.tokens -= size
        self.sent += 1
        if seq is not None:
            self._resent[seq] = (now, times + 1)
            if len(self._resent) > 1024:
                self._resent = {k: v for k, v in self._resent.items() if now - v[0] < 2.0}
        counts["rtx_bytes"] = counts.get("rtx_bytes", 0) + size
        return True


class FrameShaper:
    """Drops and scales video frames to the controller's level (called per frame)."""

    def __init__(self, control: SendRate) -> None:
        self.control = control
        self.count = 0
        self.dropped = 0
        self.scaled = 0
        self._last_pts: float | None = None
        self._interval = 1 / 30  # s between source frames, smoothed

    def __call__(self, frame: Any) -> Any | None:
        self._measure(frame)
        level = self.control.level
        self.count += 1
        if level.keep_every > 1 and self.count % level.keep_every:
            self.dropped += 1
            return None
        if level.scale > 1:
            self.scaled += 1
            pts, time_base = frame.pts, frame.time_base
            width = max(2, frame.width // level.scale // 2 * 2)
            height = max(2, frame.height // level.scale // 2 * 2)
            frame = frame.reformat(width=width, height=height)
            frame.pts, frame.time_base = pts, time_base
        return frame

    def _measure(self, frame: Any) -> None:
        """The source's pixel rate (size times frame rate, from the pts) for the levels."""
        if frame.pts is None or frame.time_base is None:
            return
        at = float(frame.pts * frame.time_base)
        if self._last_pts is not None and 0 < at - self._last_pts < 1:
            self._interval = 0.7 * self._interval + 0.3 * (at - self._last_pts)
        self._last_pts = at
        control = self.control
        control.pixel_rate = frame.width * frame.height / self._interval
        control.level = level_for(control.level_bps, control.level, control.pixel_rate)


KEYFRAME_BITS = 80_000  # about a 320x240 keyframe at thin-link rates (10 kB)
# the shortest time between keyframes, at least and at most: a picture that stalls
# right after a keyframe waits this long for the next one (1 s at most made freezes of
# over a second at 130 kbit/s)
KEYFRAME_GAP_S = (0.25, 0.6)


class KeyframeGate:
    """At most one keyframe per the time one takes to send at the target (0.25-0.6 s).

    A receiver asks for a keyframe (PLI) whenever a picture stalls; on a thin link the
    keyframe itself takes a good part of a second of the link, so requests arriving
    while one is on its way would each start another, a storm that keeps the link full
    of keyframes the receiver already waits for. A request inside the gap is served
    once, when the gap ends.
    """

    def __init__(self, control: SendRate, send: Callable[[], None], clock: Callable[[], float]):
        self.control = control
        self._send = send
        self._clock = clock
        self.last = float("-inf")
        self.deferred: asyncio.TimerHandle | None = None

    def gap(self) -> float:
        low, high = KEYFRAME_GAP_S
        return max(low, min(high, KEYFRAME_BITS / max(1, self.control.target_bps)))

    def request(self) -> None:
        now = self._clock()
        wait = self.last + self.gap() - now
        if wait <= 0:
            self._fire()
        elif self.deferred is None:
            self.deferred = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self.deferred = None
        self.last = self._clock()
        self.control.counts["keyframes"] += 1
        self._send()


class TimedHistory(dict[int, Any]):
    """aiortc's RTP history (slot -> packet) that also notes when each slot was written."""

    def __init__(self, clock: Callable[[], float], *args: Any) -> None:
        super().__init__(*args)
        self._clock = clock
        self.sent_at: dict[int, float] = {}

    def __setitem__(self, key: int, value: Any) -> None:
        self.sent_at[key] = self._clock()
        super().__setitem__(key, value)
