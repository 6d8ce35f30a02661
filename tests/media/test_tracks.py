"""SwitchableTrack: muting stops frames, unmuting resumes them, switches keep pts monotonic."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from aiortc.mediastreams import MediaStreamError

from omnicli.media import framecode
from omnicli.media.probes import luma
from omnicli.media.sources import TestPatternTrack, ToneTrack
from omnicli.media.tracks import SwitchableTrack


async def frames_within(track: SwitchableTrack, seconds: float) -> list:
    """Frames recv() returns within `seconds` (the pending recv is cancelled at the end)."""
    frames = []

    async def pull() -> None:
        while True:
            frames.append(await track.recv())

    task = asyncio.ensure_future(pull())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return frames


async def test_mute_stops_frames_and_unmute_resumes() -> None:
    """Muted: no frames returned while the source is drained; unmuted: frames within ~1 frame."""
    source = TestPatternTrack(160, 120, fps=30)
    track = SwitchableTrack("video", source)
    assert len(await frames_within(track, 0.3)) >= 7
    track.set_muted(True)
    assert track.muted
    assert await frames_within(track, 0.4) == []
    assert track.frames_dropped >= 10  # the source kept running
    track.set_muted(False)
    start = time.monotonic()
    first = await track.recv()
    assert time.monotonic() - start < 0.1
    # no burst of stale frames: the counter is the live one
    assert framecode.read(luma(first))[0] >= source.counter - 2
    track.stop()
    assert source.readyState == "ended"


async def test_switch_keeps_pts_monotonic_and_continuous() -> None:
    """Switching video sources (and sizes) keeps 90 kHz pts increasing by about a frame."""
    track = SwitchableTrack("video", TestPatternTrack(160, 120))
    frames = [await track.recv() for _ in range(5)]
    old = track.source
    track.set_source(TestPatternTrack(320, 240))
    assert old.readyState == "ended"
    frames += [await track.recv() for _ in range(5)]
    track.set_source(TestPatternTrack(160, 120), stop_old=True)
    frames += [await track.recv() for _ in range(5)]
    track.stop()
    pts = [f.pts for f in frames]
    steps = [b - a for a, b in itertools.pairwise(pts)]
    assert all(s > 0 for s in steps), pts
    assert all(s < 3 * 3000 for s in steps), steps  # no jump back to 0, no big gap
    assert [f.width for f in frames] == [160] * 5 + [320] * 5 + [160] * 5


async def test_audio_switch_and_mute_keep_sample_pts() -> None:
    """Audio pts count samples across a switch and a mute (they follow the wall clock)."""
    track = SwitchableTrack("audio", ToneTrack(440))
    frames = [await track.recv() for _ in range(3)]
    track.set_source(ToneTrack(880))
    frames += [await track.recv() for _ in range(3)]
    track.set_muted(True)
    assert await frames_within(track, 0.2) == []  # the sender keeps pulling while muted
    track.set_muted(False)
    frames += [await track.recv() for _ in range(2)]
    track.stop()
    pts = [f.pts for f in frames]
    assert pts[:3] == [0, 960, 1920]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert pts[6] - pts[5] >= 0.15 * 48000  # the muted time is a gap in the timeline


async def test_no_source_waits_until_one_is_set() -> None:
    """With no source recv() waits; setting a source starts frames; stop ends recv()."""
    track = SwitchableTrack("video", None)
    assert await frames_within(track, 0.2) == []
    track.set_source(TestPatternTrack(160, 120))
    frame = await asyncio.wait_for(track.recv(), 1)
    assert frame.width == 160
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, 1)


def test_kind_mismatch_rejected() -> None:
    """An audio source cannot feed a video SwitchableTrack."""
    with pytest.raises(ValueError, match="audio source"):
        SwitchableTrack("video", ToneTrack())
