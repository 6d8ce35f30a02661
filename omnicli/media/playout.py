"""The speaker's playout buffer: as little audio waiting as the arrivals allow.

Decoded audio arrives in 20 ms frames whenever the network and the event loop hand
it on; the sound card takes 5 ms blocks on its own clock. What waits in between is
latency. A fixed buffer is either too small under jitter (gaps) or too large on a
quiet network (delay for nothing), and a sender whose clock runs a little fast
makes it fill up slowly over a long call.

`PlayoutLevel` decides, as pure code, from what the buffer held after each block
was played:

- it keeps the low-water mark (the least audio left over in the last `window` of
  playing) at `margin` by dropping the excess, a little at a time (at most an
  eighth of each block), so a buffer that filled up (a burst after a stall, a
  faster sender clock) drains back down instead of staying late;
- an underflow (the buffer ran dry) raises `margin` by `step` (up to `max_margin`):
  jitter or a retransmission wait (loss) make it grow;
- every window without an underflow lowers `margin` by an eighth of what it has
  above `min_margin` (at least `decay`): it shrinks back, slower than it grew, when
  the network calms down.

`max_margin` is 60 ms: on a machine starved of CPU (measured at load 10 to 15 on two
cores) underflows come from the sound card's own thread being late, and a margin let
grow to 200 ms made the mouth-to-ear delay worse than a fixed 60 ms buffer.

`PlayoutBuffer` is the buffer itself, shared by the event loop (`push`) and the
PortAudio thread (`take`). When the sound card's thread was stalled (a busy CPU, the
GIL held elsewhere) longer than the device could ride out, the device played
silence meanwhile while the network kept filling the buffer; `device_stalled` drops
that much of the oldest audio at once (keeping the margin and one block), so a
stall costs a gap, as it must, but never adds its length to the delay for the rest
of the call. Measured at load 10 to 15 on two cores: without it the speaker took
half the audio it was due and the buffer sat at its 120 ms limit.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

RATE = 48_000


@dataclass
class PlayoutLevel:
    """How much audio the playout buffer keeps; samples at 48 kHz throughout."""

    margin: int = 240  # low-water mark aimed at (5 ms)
    min_margin: int = 240
    max_margin: int = 2880  # 60 ms: past that, a gap costs less than the delay would
    step: int = 480  # 10 ms more after an underflow
    decay: int = 24  # at least 0.5 ms less per quiet window (and 1/16 of the excess)
    window: int = RATE  # samples played between two decisions (1 s)
    hysteresis: int = 240  # excess below this is left alone
    dropped: int = 0  # samples dropped to bring the level down
    _low: int | None = None
    _played: int = 0
    _underflowed: bool = False
    _to_drop: int = 0

    def played(self, count: int, left: int, underflow: bool) -> None:
        """`count` samples were played (or due) and `left` remain; `underflow`: it ran dry."""
        if underflow:
            self.margin = min(self.max_margin, self.margin + self.step)
            self._underflowed, self._low, self._to_drop = True, None, 0
        elif left >= 0:
            self._low = left if self._low is None else min(self._low, left)
        self._played += count
        if self._played < self.window:
            return
        if not self._underflowed:
            shrink = max(self.decay, (self.margin - self.min_margin) // 8)
            self.margin = max(self.min_margin, self.margin - shrink)
            if self._low is not None and self._low > self.margin + self.hysteresis:
                self._to_drop = self._low - self.margin
        self._played, self._low, self._underflowed = 0, None, False

    def drop_now(self, count: int) -> int:
        """Samples to drop before playing the next block of `count` samples."""
        n = min(self._to_drop, count // 8)
        self._to_drop -= n
        self.dropped += n
        return n


class PlayoutBuffer:
    """The speaker's buffer: at most `max_samples`, silence on underflow, adaptive level.

    `push` (event loop) drops the oldest samples beyond `max_samples`; `take` (the
    PortAudio thread) returns exactly the samples asked for, zero-padded when the
    buffer runs dry, and after such an underflow plays silence until `prime_samples`
    (or the level's margin, if larger) are buffered again, so a slow feed gives clean
    gaps instead of a stutter loop; what piled up beyond that while it was not
    playing (a sound card that starts late) is dropped when it starts. `level` trims
    what waits while playing (see `PlayoutLevel`).
    """

    def __init__(
        self, max_samples: int, prime_samples: int, level: PlayoutLevel | None = None
    ) -> None:
        self.max_samples = max_samples
        self.prime_samples = prime_samples
        self.level = level or PlayoutLevel()
        self.underflows = 0
        self.stalls = 0  # times the device was stalled (see `device_stalled`)
        self.stalled_samples = 0  # dropped because the device was stalled
        self.dropped_samples = 0  # beyond max_samples
        self.played_samples = 0
        self.max_buffered = 0
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._buffered = 0
        self._playing = False
        self._lock = threading.Lock()

    @property
    def buffered(self) -> int:
        return self._buffered

    def push(self, samples: np.ndarray) -> None:
        with self._lock:
            self._chunks.append(samples.astype(np.int16, copy=False))
            self._buffered += len(samples)
            excess = self._buffered - self.max_samples
            if excess > 0:
                self.dropped_samples += self._skip(excess)
            self.max_buffered = max(self.max_buffered, self._buffered)

    def take(self, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.int16)
        with self._lock:
            if not self._playing:
                prime = max(self.prime_samples, self.level.margin)
                if self._buffered < prime:
                    return out
                self._playing = True
                # (re)starting: what piled up before (the device starting late) is stale
                self.level.dropped += self._skip(self._buffered - prime)
            self._skip(min(self.level.drop_now(count), max(0, self._buffered - count)))
            filled = 0
            while filled < count and self._chunks:
                head = self._chunks[0]
                n = min(count - filled, len(head))
                out[filled : filled + n] = head[:n]
                if n == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[n:]
                filled += n
            self._buffered -= filled
            self.played_samples += filled
            underflow = filled < count
            if underflow:
                self.underflows += 1
                self._playing = False
            self.level.played(count, self._buffered, underflow)
        return out

    def device_stalled(self, samples: int, block: int) -> int:
        """The device played nothing for `samples` while it should have played; drop as
        much of the oldest audio, keeping the margin plus one `block`; how many dropped."""
        with self._lock:
            self.stalls += 1
            keep = self.level.margin + block
            dropped = self._skip(max(0, min(samples, self._buffered - keep)))
            self.stalled_samples += dropped
        return dropped

    def _skip(self, count: int) -> int:
        """Drop `count` samples from the front (the oldest); how many were dropped."""
        dropped = 0
        while dropped < count and self._chunks:
            head = self._chunks[0]
            cut = min(len(head), count - dropped)
            if cut == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[cut:]
            dropped += cut
        self._buffered -= dropped
        return dropped
