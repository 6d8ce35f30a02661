"""Loss recovery decisions for received media, as pure code: time in, decisions out.

Why this exists: aiortc's audio jitter buffer (16 slots, prefetch 4) stops at the
first missing packet and only moves on when the buffer overflows, and then it throws
away the good packets still waiting in front of the gap. Each lost packet therefore
costs about five (one lost plus about four discarded), so 5 % network loss became
about 25 % missing audio. It also never asks for the lost packet again and never
conceals it. Its video path asks for a lost packet once (NACK), only when a new gap
appears, and waits up to 512 packets before giving up on a gap: a lost
retransmission freezes the picture for a second or more.

`AudioJitter` keeps audio in order and never discards a packet that arrived in time:
a gap holds the packets behind it until the missing one arrives (it is asked for
again with NACK, which aiortc's sender answers from its history) or until the oldest
waiting packet has waited `max_wait`; then the gap is given up and up to
`max_conceal` packets are concealed (the caller decodes them with the codec's
packet loss concealment). `max_wait` follows the measured NACK round trip.

`NackTimer` tells the video path when packets still missing should be asked for
again, and `StallWatch` when a stalled video picture should be given up for a
keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEQ_MOD = 1 << 16
RESET_GAP = 1000  # a jump this far (ahead or back) is a new stream, not a gap
MIN_WAIT = 0.06
MAX_WAIT = 0.30
MAX_NACKS = 3


def extend_seq(seq: int, last_ext: int | None) -> int:
    """The 16-bit RTP sequence number `seq` unwrapped next to `last_ext`."""
    if last_ext is None:
        return seq
    delta = (seq - last_ext + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
    return last_ext + delta


@dataclass(frozen=True)
class Slot:
    """One place in the output: a packet, or None where the packet is concealed."""

    seq: int  # extended sequence number
    packet: Any | None


@dataclass
class JitterStats:
    released: int = 0  # packets handed on in order
    concealed: int = 0  # packets replaced by concealment
    given_up: int = 0  # packets never received (concealed or skipped)
    late: int = 0  # packets that came after their place was given up, or twice
    filled: int = 0  # packets that filled a gap (reordered or retransmitted)
    nacks: int = 0  # sequence numbers asked for again

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class AudioJitter:
    """Orders audio packets, asks for missing ones, decides when to conceal them."""

    def __init__(self, *, max_conceal: int = 5, rtt: float = 0.1) -> None:
        self.max_conceal = max_conceal
        self.rtt = rtt  # smoothed NACK-to-arrival time, seconds
        self.stats = JitterStats()
        self._next: int | None = None  # extended seq of the next packet to hand on
        self._top: int | None = None  # highest extended seq seen
        self._pending: dict[int, tuple[Any, float]] = {}  # seq -> (packet, arrival)
        self._asked: dict[int, tuple[float, int]] = {}  # seq -> (last NACK time, count)

    @property
    def max_wait(self) -> float:
        """How long packets wait behind a gap: room for about two NACK round trips."""
        return min(MAX_WAIT, max(MIN_WAIT, 2.2 * self.rtt + 0.02))

    @property
    def retry_after(self) -> float:
        return 1.2 * self.rtt + 0.01

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def push(self, seq: int, packet: Any, now: float) -> list[Slot]:
        """A packet arrived: the slots that can be handed on now, in order."""
        ext = extend_seq(seq, self._top)
        out: list[Slot] = []
        if self._next is None:
            self._next = ext
        if abs(ext - self._next) > RESET_GAP:  # far ahead or far behind: a new stream
            out += self._flush()
            self._next, self._top = ext, None
        if ext < self._next or ext in self._pending:
            self.stats.late += 1
            return out
        if self._top is None or ext > self._top:
            self._top = ext
        elif ext < self._top:
            self.stats.filled += 1
        asked = self._asked.pop(ext, None)
        if asked is not None:
            self.rtt = 0.8 * self.rtt + 0.2 * max(0.0, now - asked[0])
        self._pending[ext] = (packet, now)
        return out + self._drain(now)

    def expire(self, now: float) -> list[Slot]:
        """Time passed: the slots handed on because a gap was given up."""
        return self._drain(now)

    def deadline(self) -> float | None:
        """When `expire` or `nacks` next has something to do (None: nothing waits)."""
        if not self._pending:
            return None
        give_up = min(arrival for _, arrival in self._pending.values()) + self.max_wait
        retries = [t + self.retry_after for t, n in self._asked.values() if n < MAX_NACKS]
        return min([give_up, *retries])

    def nacks(self, now: float) -> list[int]:
        """16-bit sequence numbers to ask for (again) now."""
        if self._next is None or self._top is None:
            return []
        due = []
        for ext in range(self._next, self._top):
            if ext in self._pending:
                continue
            last, count = self._asked.get(ext, (None, 0))
            if count >= MAX_NACKS or (last is not None and now - last < self.retry_after):
                continue
            self._asked[ext] = (now, count + 1)
            due.append(ext % SEQ_MOD)
        self.stats.nacks += len(due)
        return due

    def _drain(self, now: float) -> list[Slot]:
        out: list[Slot] = []
        assert self._next is not None or not self._pending
        while self._pending:
            nxt = self._next
            assert nxt is not None
            if nxt in self._pending:
                out.append(Slot(nxt, self._pending.pop(nxt)[0]))
                self.stats.released += 1
                self._next = nxt + 1
                continue
            oldest = min(arrival for _, arrival in self._pending.values())
            if now - oldest < self.max_wait:
                break
            first = min(self._pending)
            missing = first - nxt
            conceal = min(missing, self.max_conceal)
            out += [Slot(seq, None) for seq in range(first - conceal, first)]
            self.stats.concealed += conceal
            self.stats.given_up += missing
            self._next = first
        self._forget_asked()
        return out

    def _flush(self) -> list[Slot]:
        out = [Slot(seq, self._pending[seq][0]) for seq in sorted(self._pending)]
        self.stats.released += len(out)
        self._pending.clear()
        self._asked.clear()
        return out

    def _forget_asked(self) -> None:
        if self._next is not None:
            for seq in [s for s in self._asked if s < self._next]:
                del self._asked[seq]


class NackTimer:
    """When video packets still missing should be asked for again.

    aiortc asks for a lost video packet only when a new gap appears; if that NACK or
    the retransmission is lost too, the picture waits for the next loss to ask again.
    """

    def __init__(self, interval: float = 0.06) -> None:
        self.interval = interval
        self._last: float | None = None

    def due(self, missing: bool, now: float) -> bool:
        """True if a NACK should be sent now (packets are missing and none was sent lately)."""
        if not missing:
            self._last = None
            return False
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True

    def sent(self, now: float) -> None:
        """A NACK went out for another reason (a new gap)."""
        self._last = now


class StallWatch:
    """When a video picture has waited too long behind a gap and should be given up.

    Packets keep arriving but no frame completes: after `limit` seconds the caller
    drops what blocks and asks for a keyframe (PLI).
    """

    def __init__(self, limit: float = 0.25) -> None:
        self.limit = limit
        self._since: float | None = None

    def update(self, frame_out: bool, now: float) -> bool:
        """One packet went in; True if the stall has lasted `limit` (then it restarts)."""
        if frame_out or self._since is None:
            self._since = now
            return False
        if now - self._since >= self.limit:
            self._since = now
            return True
        return False
