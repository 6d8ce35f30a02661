"""What the video receiver has given up stays given up (recovery.py, on the real aiortc
objects): no more NACKs for packets behind its buffer, and a packet far behind the buffer
is dropped instead of throwing the buffer away."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import NackGenerator
from test_framing import Sink, packet, vp8_buffer

from omnicli.media import recovery


def test_seq_behind_wraps_around():
    assert recovery.seq_behind(5, 10) == 5
    assert recovery.seq_behind(65530, 4) == 10  # across the wrap
    assert recovery.seq_behind(10, 5) == 0 and recovery.seq_behind(7, 7) == 0


def test_a_gap_given_up_for_a_keyframe_is_no_longer_nacked():
    """Packet 2 is lost; the picture stalls behind it and is given up (StallWatch). aiortc's
    generator would still hold 2 (it keeps 128 sequence numbers) and ours asked again every
    60 ms; now 2 leaves the missing set and no NACK is due, while 2 stays in aiortc's."""
    now = [0.0]
    sink = Sink()
    buf = recovery.VideoRecovery(sink, lambda pt: "video/VP8", clock=lambda: now[0])
    nacks = recovery.RetryingNackGenerator(clock=lambda: now[0], horizon=lambda: buf.origin)
    plain = NackGenerator()

    def receive(seq: int, ts: int, marker: bool = True) -> bool:
        """As aiortc's receiver does: the NACK generator first, then the buffer."""
        plain.add(packet(seq, ts, marker))
        due = nacks.add(packet(seq, ts, marker))
        buf.add(packet(seq, ts, marker))
        now[0] += 0.05
        return due

    receive(0, 0)
    receive(1, 3000, marker=False)
    assert receive(3, 3000)  # seq 2 lost: a new gap, a NACK
    asked = [receive(seq, 3000 * seq) for seq in range(4, 9)]  # 0.25 s: the stall
    assert buf.stalls == 1 and buf.origin is not None and buf.origin > 2
    assert any(asked)  # while the picture waited, 2 was asked for again
    assert 2 in nacks.missing or nacks.forgotten == 1
    later = [receive(seq, 3000 * seq) for seq in range(9, 40)]  # 1.5 s more
    assert 2 not in nacks.missing and nacks.forgotten == 1
    assert not any(later)  # nothing missing that the buffer still waits for: no NACK
    assert 2 in plain.missing  # aiortc's own generator would still ask for it
    assert [f.timestamp for f in sink.frames][-1] == 3000 * 39  # the picture goes on


def test_a_gap_the_buffer_still_waits_for_is_still_nacked():
    """Only what is behind the buffer is forgotten: a gap in front of it is asked for again."""
    now = [0.0]
    buf = recovery.VideoRecovery(Sink(), lambda pt: "video/VP8", clock=lambda: now[0])
    nacks = recovery.RetryingNackGenerator(clock=lambda: now[0], horizon=lambda: buf.origin)
    for seq in (0, 1, 3):
        nacks.add(packet(seq, 3000 * seq, True))
        buf.add(packet(seq, 3000 * seq, True))
        now[0] += 0.07
    assert nacks.missing == {2} and buf.origin == 2
    assert nacks.add(packet(4, 12000, True))  # due again: 2 is still awaited
    assert nacks.missing == {2} and nacks.forgotten == 0


def frames(buf: JitterBuffer, seqs: range, ts0: int = 0) -> list[bool]:
    """One-packet VP8 frames; the PLI flags the buffer returned."""
    return [buf.add(packet(seq, ts0 + 3000 * seq, marker=True))[0] for seq in seqs]


def test_a_packet_far_behind_the_buffer_is_dropped_not_a_reset():
    """A retransmission 130 behind: aiortc's buffer throws all it holds away and asks for a
    keyframe; ours drops that packet and goes on."""
    aiortc_buffer = JitterBuffer(capacity=512, is_video=True)
    frames(aiortc_buffer, range(150))
    assert aiortc_buffer.add(packet(20, 60_000, marker=True))[0]  # aiortc: reset + PLI

    sink = Sink()
    buf = vp8_buffer(sink)
    assert not any(frames(buf, range(150)))
    assert buf.origin == 150
    assert buf.add(packet(20, 60_000, marker=True)) == (False, None)
    assert buf.late == 1 and buf.origin == 150 and buf.stats["late"] == 1
    assert not any(frames(buf, range(150, 153)))
    assert [f.timestamp for f in sink.frames] == [3000 * s for s in range(153)]


def test_a_sender_whose_numbers_went_back_is_followed_after_a_streak():
    """LATE_RESET_STREAK packets in a row far behind: not late packets but a sender that
    restarted its numbers; then the buffer resets as aiortc's does (and asks a keyframe)."""
    sink = Sink()
    buf = vp8_buffer(sink)
    frames(buf, range(150))
    streak = recovery.LATE_RESET_STREAK
    pli = frames(buf, range(10, 10 + streak), ts0=1_000_000)
    assert pli == [False] * (streak - 1) + [True]
    assert buf.late == streak - 1
    restart = 10 + streak - 1
    assert buf.origin == restart + 1  # its frame went out at once
    frames(buf, range(restart + 1, restart + 3), ts0=1_000_000)
    assert [f.timestamp for f in sink.frames][150:] == [
        1_000_000 + 3000 * s for s in range(restart, restart + 3)
    ]
