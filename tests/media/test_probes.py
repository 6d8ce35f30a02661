"""The receiving probe's frame rate: frames over the time they span, never above the sender's."""

from __future__ import annotations

import fractions

import av

from omnicli.media.probes import VideoProbe

TIME_BASE = fractions.Fraction(1, 90_000)


def frame_at(n: int, fps: int = 30) -> av.VideoFrame:
    frame = av.VideoFrame(64, 48, "yuv420p")
    frame.pts = n * 90_000 // fps
    frame.time_base = TIME_BASE
    return frame


def test_a_burst_after_a_stall_reads_as_the_senders_rate() -> None:
    """72 frames of a 30 fps source delivered at once: 30 fps, not 72 (issue #12)."""
    probe = VideoProbe()
    for n in range(72):
        probe._handle(frame_at(n))
    assert 29.5 <= probe.fps() <= 30.5, probe.fps()


def test_a_trickle_reads_as_what_arrived() -> None:
    """Two frames in the last second of a 30 fps source: 2 fps, not 30."""
    probe = VideoProbe()
    probe._handle(frame_at(0))
    probe._handle(frame_at(1))
    assert probe.fps() == 2.0


def test_frames_without_timestamps_count_by_arrival() -> None:
    """A frame with no pts still counts, per second of arrival."""
    probe = VideoProbe()
    for _ in range(5):
        probe._handle(av.VideoFrame(64, 48, "yuv420p"))
    assert probe.fps() == 5.0


def test_a_new_source_restarting_its_clock_does_not_slow_the_rate() -> None:
    """Timestamps that start again from 0 mid-window (a source switch) still read 30 fps."""
    probe = VideoProbe()
    for n in list(range(300, 315)) + list(range(15)):
        probe._handle(frame_at(n))
    assert 29.5 <= probe.fps() <= 30.5, probe.fps()
