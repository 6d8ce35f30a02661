"""Loss recovery: the pure decisions (jitter.py) and the aiortc hooks (recovery.py) under loss."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiortc.rtp import RtpPacket
from lossy import impair

from omnicli.media import recovery
from omnicli.media.jitter import MAX_NACKS, AudioJitter, NackTimer, StallWatch, extend_seq
from omnicli.media.peer import PeerLink
from omnicli.media.sources import ToneTrack


def seqs(slots) -> list[tuple[int, bool]]:
    return [(s.seq, s.packet is not None) for s in slots]


def test_extend_seq_unwraps_across_the_16_bit_boundary():
    """Sequence numbers keep counting up past 65535 and step back a little without wrapping."""
    assert extend_seq(5, None) == 5
    assert extend_seq(2, 65534) == 65538
    assert extend_seq(65534, 65538) == 65534
    assert extend_seq(100, 90) == 100


def test_in_order_packets_go_straight_through():
    """With no loss every packet is handed on at once, nothing waits, nothing is asked for."""
    j = AudioJitter()
    out = [s for n in range(10) for s in j.push(n, f"p{n}", now=n * 0.02)]
    assert seqs(out) == [(n, True) for n in range(10)]
    assert j.waiting == 0 and j.deadline() is None and j.nacks(0.2) == []


def test_a_gap_holds_later_packets_until_the_missing_one_arrives():
    """Packets behind a gap wait (not discarded); the late packet releases all of them in order."""
    j = AudioJitter()
    j.push(0, "p0", 0.0)
    assert j.push(2, "p2", 0.04) == [] and j.push(3, "p3", 0.06) == []
    assert j.nacks(0.06) == [1]
    out = j.push(1, "p1", 0.07)
    assert [s.packet for s in out] == ["p1", "p2", "p3"]
    assert j.stats.filled == 1 and j.stats.concealed == 0
    assert j.rtt < 0.1  # learnt from the quick retransmission


def test_a_gap_is_concealed_after_max_wait_and_the_rest_released():
    """When the missing packet never comes, it is concealed and the waiting packets follow."""
    j = AudioJitter(rtt=0.05)
    j.push(10, "a", 0.0)
    j.push(12, "c", 0.02)
    deadline = j.deadline()
    assert deadline is not None and deadline <= 0.02 + j.max_wait
    assert j.expire(0.02 + j.max_wait / 2) == []
    out = j.expire(0.02 + j.max_wait)
    assert seqs(out) == [(11, False), (12, True)]
    assert j.stats.concealed == 1 and j.stats.given_up == 1
    assert j.push(11, "b", 0.5) == [] and j.stats.late == 1  # too late now: dropped


def test_long_gaps_conceal_at_most_max_conceal_packets():
    """A burst loss conceals a bounded stretch, then skips, so the timeline does not balloon."""
    j = AudioJitter(max_conceal=3)
    j.push(0, "a", 0.0)
    j.push(20, "z", 0.0)
    out = j.expire(1.0)
    assert seqs(out) == [(17, False), (18, False), (19, False), (20, True)]
    assert j.stats.given_up == 19


def test_nacks_are_repeated_after_a_round_trip_and_then_stop():
    """A missing packet is asked for again each retry interval, at most MAX_NACKS times."""
    j = AudioJitter(rtt=0.05)
    j.push(0, "a", 0.0)
    j.push(2, "c", 0.0)
    now, asked = 0.0, 0
    for _ in range(20):
        asked += j.nacks(now).count(1)
        now += 0.01
    assert asked == MAX_NACKS


def test_random_loss_keeps_every_received_packet_once_and_in_order():
    """With 10 % loss and reordering, all arrivals come out once, in order, gaps concealed."""
    rng = random.Random(7)
    j = AudioJitter()
    arrivals = [n for n in range(2000) if rng.random() > 0.10]
    for i in range(3, len(arrivals) - 1, 7):  # swap some neighbours
        arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    out = []
    for i, n in enumerate(arrivals):
        now = i * 0.02
        out += j.expire(now) + j.push(n % 65536, n, now)
    out += j.expire(1e9)
    got = [s.packet for s in out if s.packet is not None]
    assert got == sorted(arrivals)
    assert [s.seq for s in out] == sorted(s.seq for s in out)
    assert j.stats.given_up == max(arrivals) - min(arrivals) + 1 - len(arrivals)
    assert 0 < j.stats.concealed <= j.stats.given_up and j.stats.late == 0


def test_nack_timer_repeats_while_packets_are_missing():
    """The video NACK timer is due at once, then not again within its interval, and resets."""
    t = NackTimer(interval=0.1)
    assert t.due(True, 0.0) and not t.due(True, 0.05) and t.due(True, 0.11)
    assert not t.due(False, 0.2) and t.due(True, 0.21)


def test_stall_watch_fires_after_the_limit_without_a_frame():
    """A stall is reported only when packets arrive but no frame completes for `limit` s."""
    w = StallWatch(limit=0.25)
    assert not w.update(True, 0.0)
    assert not w.update(False, 0.1) and not w.update(False, 0.2)
    assert w.update(False, 0.26)
    assert not w.update(True, 0.3) and not w.update(False, 0.5)


def _video_packet(seq: int, ts: int, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(payload_type=97, sequence_number=seq, timestamp=ts, marker=int(marker))
    packet._data = b"x"
    return packet


def test_video_jitter_buffer_gives_up_a_stalled_frame_and_asks_for_a_keyframe():
    """A lost packet no longer blocks video for 512 packets: after the limit, PLI and move on."""
    now = [0.0]
    out: list[int] = []
    buf = recovery.VideoRecovery(
        lambda pt, frame: out.append(frame.timestamp), clock=lambda: now[0]
    )
    buf.add(_video_packet(0, 0))
    buf.add(_video_packet(1, 3000))  # frame 0 complete
    # seq 2 (start of frame 3000's second packet) is lost; frames keep coming behind it
    results = []
    for seq in range(3, 30):
        now[0] += 0.02
        results.append(buf.add(_video_packet(seq, 3000 * (seq // 2))))
        results[-1] = (results[-1][0], len(out))
    assert any(pli for pli, _ in results), "no keyframe request"
    assert buf.stalls >= 1
    assert results[-1][1] > results[-5][1], "video stayed stuck"


@pytest.mark.parametrize("recover", [True, False], ids=["omnicli", "bare-aiortc"])
async def test_audio_delivered_under_5_percent_loss(recover, monkeypatch):
    """5 % loss both ways: omnicli delivers >= 95 % of the audio (not concealed); aiortc < 90 %."""
    if not recover:
        monkeypatch.setattr(recovery, "install", lambda receiver: False)
    tone = ToneTrack(440)
    a = PeerLink([], video=None, audio=tone)
    b = PeerLink([], video=None, audio=ToneTrack(660))
    nets = []
    try:
        offer = await a.create_offer("audiocall")
        answer = await b.accept_offer(offer)
        await a.accept_answer(answer)
        await asyncio.gather(a.wait_connected(10), b.wait_connected(10))
        nets = [impair(a.pc, 0.05, seed=1), impair(b.pc, 0.05, seed=2)]
        await asyncio.sleep(5)
        tone.stop()  # the sender ends: everything in flight is handed on or given up
        await asyncio.sleep(1.0)
        sent = tone._sent / tone.sample_rate
        hook = getattr(b.pc.getReceivers()[0], "omnicli_recovery", None)
        concealed = 0.02 * hook.stats["concealed"] if hook is not None else 0.0
        real = b.audio_in.seconds_received - concealed
        assert nets[0].dropped + nets[1].dropped > 0
        if recover:
            assert real / sent >= 0.95, (real, sent, hook.stats)
        else:
            assert real / sent < 0.90, (real, sent)
    finally:
        for net in nets:
            await net.close()
        await a.close()
        await b.close()
