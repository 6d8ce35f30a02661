"""The adaptive playout buffer (playout.py), driven by a simulated clock: no devices, no sleeps."""

from __future__ import annotations

import random

import numpy as np

from omnicli.media.playout import RATE, PlayoutBuffer, PlayoutLevel

PACKET = 960  # 20 ms arrives at a time
BLOCK = 240  # 5 ms played at a time (audio_io.DEVICE_BLOCK)


def simulate(
    buf: PlayoutBuffer, seconds: float, arrival, rate_ratio: float = 1.0
) -> list[tuple[float, int]]:
    """Feed 20 ms packets at `arrival(n)` seconds and play 5 ms blocks on the sound card's
    clock (`rate_ratio` > 1: the sender's clock runs fast); (time, samples waiting) per block."""
    pushes = sorted(arrival(n) / rate_ratio for n in range(int((seconds + 1) * 50)))
    levels, p = [], 0
    for k in range(int(seconds * RATE / BLOCK)):
        now = k * BLOCK / RATE
        while p < len(pushes) and pushes[p] <= now:
            buf.push(np.ones(PACKET, np.int16))
            p += 1
        buf.take(BLOCK)
        levels.append((now, buf.buffered))
    return levels


def late_ms(levels: list[tuple[float, int]], start: float, end: float) -> float:
    """The most audio waiting between `start` and `end` s, in ms."""
    return 1000 * max(b for t, b in levels if start <= t < end) / RATE


def test_a_backlog_drains_down_to_the_margin_without_gaps():
    """While playing, 200 ms more than usual arrive at once (a sender catching up), then a
    steady stream: the buffer trims the backlog a little per block and settles near its
    margin, never running dry."""
    buf = PlayoutBuffer(max_samples=RATE // 4, prime_samples=PACKET)
    levels = simulate(
        buf, 10, lambda n: n * 0.02 + 0.001 if n < 100 else max(2.001, n * 0.02 - 0.199)
    )
    assert late_ms(levels, 2, 2.5) >= 180
    assert late_ms(levels, 8, 10) <= 30  # one packet plus the 5 ms margin, nothing more
    assert buf.underflows == 0 and buf.level.dropped > 0.15 * RATE


def test_jitter_makes_the_buffer_grow_and_calm_makes_it_shrink_back():
    """A calm first second, then arrivals 0 to 60 ms late until 30 s: a few underflows raise
    the margin and the buffer holds enough to ride the jitter; once the network is steady
    the delay comes back down."""
    rng = random.Random(7)
    jitter = {n: rng.uniform(0, 0.06) for n in range(1500)}

    def arrival(n: int) -> float:
        return n * 0.02 + (jitter[n] if 50 <= n < 1500 else 0.001)

    during = PlayoutBuffer(max_samples=RATE // 4, prime_samples=PACKET)
    simulate(during, 29, arrival)
    assert during.level.margin > PlayoutLevel().margin  # grew
    assert 1 <= during.underflows <= 6  # a few gaps, then it holds
    buf = PlayoutBuffer(max_samples=RATE // 4, prime_samples=PACKET)
    levels = simulate(buf, 120, arrival)
    assert late_ms(levels, 20, 30) >= 40  # room for the jitter
    assert late_ms(levels, 60, 120) <= 25  # calm again: one packet plus the margin
    assert buf.underflows == during.underflows  # none once calm


def test_a_fast_sender_clock_does_not_make_latency_creep_over_ten_minutes():
    """The sender's clock runs 0.3 % fast (its 20 ms packets come every 19.94 ms): without
    trimming 1.8 s would pile up in 10 minutes; the level stays where it started."""
    buf = PlayoutBuffer(max_samples=RATE, prime_samples=PACKET)
    levels = simulate(buf, 600, lambda n: n * 0.02 + 0.001, rate_ratio=1.003)
    first = late_ms(levels, 10, 60)
    assert late_ms(levels, 540, 600) <= first + 10
    assert buf.dropped_samples == 0  # kept down by trimming, not by the hard limit


def test_the_microphone_gathers_5_ms_device_blocks_into_20_ms_frames_in_order():
    """Blocks of any size come out as exact 960-sample frames, no sample lost or repeated."""
    from omnicli.media.audio_io import BLOCK, FrameGatherer

    gather = FrameGatherer(BLOCK)
    stream = np.arange(10 * BLOCK + 100, dtype=np.int16)
    frames, at = [], 0
    for size in [240, 240, 240, 100, 500, 960, 1920, 7] * 4:
        frames += gather.add(stream[at : at + size])
        at = min(at + size, len(stream))
    assert [len(f) for f in frames] == [BLOCK] * 10
    assert np.array_equal(np.concatenate(frames), stream[: len(frames) * BLOCK])
    block = np.ones(240, np.int16)
    fresh = FrameGatherer(BLOCK)
    assert [len(fresh.add(block)) for _ in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]


def test_a_stalled_device_costs_a_gap_not_lasting_delay():
    """The sound card's thread sleeps 100 ms while 20 ms packets keep arriving: dropping the
    audio due meanwhile brings the delay back to what it was; without it, 100 ms more stay."""

    def run(skip: bool) -> tuple[float, PlayoutBuffer]:
        buf = PlayoutBuffer(max_samples=RATE // 4, prime_samples=PACKET)
        pushes = [n * 0.02 + 0.001 for n in range(300)]
        levels, p, k, stalled = [], 0, 0, False
        while (now := k * BLOCK / RATE) < 5.0:
            while p < len(pushes) and pushes[p] <= now:
                buf.push(np.ones(PACKET, np.int16))
                p += 1
            if 2.0 <= now < 2.1:  # no callback: the device plays silence
                stalled, k = True, k + 1
                continue
            if stalled and skip:
                buf.device_stalled(int(0.1 * RATE), BLOCK)
            stalled = False
            buf.take(BLOCK)
            levels.append((now, buf.buffered))
            k += 1
        return late_ms(levels, 2.2, 2.6), buf

    before = late_ms(
        simulate(PlayoutBuffer(RATE // 4, PACKET), 2, lambda n: n * 0.02 + 0.001), 1, 2
    )
    skipped, buf = run(skip=True)
    kept, _ = run(skip=False)
    assert skipped <= before + 5 and kept >= before + 90
    assert buf.stalls == 1 and buf.stalled_samples >= 0.09 * RATE and buf.underflows == 0
