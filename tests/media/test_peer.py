"""Two real PeerLinks in one process (ice_servers=[]) exchanging synthetic media."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from phones import eventually

from omnicli.errors import MediaFailed
from omnicli.media.peer import PeerLink
from omnicli.media.sources import TestPatternTrack, ToneTrack


@contextlib.asynccontextmanager
async def call(
    call_type: str = "videocall",
    *,
    a_video: bool = True,
    b_video: bool = True,
    states: list[str] | None = None,
) -> AsyncIterator[tuple[PeerLink, PeerLink]]:
    """A (offerer, 440 Hz) and B (answerer, 660 Hz), connected; closed on exit."""
    a = PeerLink(
        [],
        video=TestPatternTrack() if a_video else None,
        audio=ToneTrack(440),
        on_state=states.append if states is not None else None,
    )
    b = PeerLink([], video=TestPatternTrack() if b_video else None, audio=ToneTrack(660))
    try:
        answer = await b.accept_offer(await a.create_offer(call_type))
        await a.accept_answer(answer)
        await asyncio.gather(a.wait_connected(5), b.wait_connected(5))
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_video_call_both_ways() -> None:
    """640x480 video and tones flow both ways with few gaps, >20 fps, right pitch, RTT known."""
    states: list[str] = []
    async with call(states=states) as (a, b):
        assert states[-1] == "connected" and "connecting" in states
        # three seconds' worth at 30 fps (a loaded machine takes longer)
        await eventually(
            lambda: min(a.video_in.frames_received, b.video_in.frames_received) >= 90, 10
        )
        for link in (a, b):
            video = link.video_in
            assert video.frames_received > 60
            assert video.last_counter - video.first_counter > 60
            assert video.counters_missing <= 3
            assert video.fps() > 20
            assert (video.width, video.height) == (640, 480)
            assert video.latency_ms(0.5) < 300
        assert abs(a.audio_in.dominant_frequency() - 660) < 10
        assert abs(b.audio_in.dominant_frequency() - 440) < 10
        assert a.audio_in.rms() > 0.1
        await a.stats()  # the baseline that bitrates are measured from
        await asyncio.sleep(0.2)
        figures = await a.stats()
        for _ in range(30):  # RTT needs an RTCP RR that answers the latest SR
            if figures["rtt_ms"] is not None:
                break
            await asyncio.sleep(0.2)
            figures = await a.stats()
        assert figures["rtt_ms"] is not None and figures["rtt_ms"] < 100
        assert figures["bitrate_in_kbps"] > 100 and figures["bitrate_out_kbps"] > 100
        assert figures["fps_in"] > 20 and figures["width_in"] == 640
        assert figures["loss_pct"] == 0.0 and figures["jitter_ms"] is not None
        assert figures["audio_level"] > 0.1
    assert states[-1] == "closed"


async def test_mute_stops_media_and_unmute_resumes() -> None:
    """Muting A's video and audio stops them arriving at B; unmuting brings them back."""
    async with call() as (a, b):
        await eventually(lambda: b.video_in.frames_received > 10, 3)
        a.video_out.set_muted(True)
        a.audio_out.set_muted(True)
        await asyncio.sleep(0.3)  # frames in flight drain
        video, audio = b.video_in.frames_received, b.audio_in.frames_received
        await asyncio.sleep(0.7)
        assert b.video_in.frames_received == video
        assert b.audio_in.frames_received == audio
        assert b.video_in.paused_for() > 0.6
        # fps() counts the last second: 0 once the last frame has left that window
        await eventually(lambda: b.video_in.fps() == 0, 1)
        assert b.video_in.frames_received == video
        assert a.video_in.frames_received > 0 and a.video_in.fps() > 20  # other way still on
        a.video_out.set_muted(False)
        a.audio_out.set_muted(False)
        await eventually(lambda: b.video_in.frames_received > video + 5, 2)
        await eventually(lambda: b.audio_in.frames_received > audio + 5, 2)


async def test_switch_source_mid_call() -> None:
    """Switching A's video to a 320x240 pattern keeps frames arriving at B, at the new size."""
    async with call() as (a, b):
        await eventually(lambda: b.video_in.frames_received > 10, 3)
        old = a.video_out.source
        a.video_out.set_source(TestPatternTrack(320, 240))
        assert old.readyState == "ended"
        await eventually(lambda: b.video_in.width == 320, 2)
        before = b.video_in.frames_received
        await eventually(lambda: b.video_in.frames_received - before > 10, 2)
        assert b.video_in.height == 240 and b.video_in.fps() > 20


async def test_audio_call_and_recvonly_video() -> None:
    """An audiocall negotiates audio only; a side without video still receives the other's."""
    async with call("audiocall") as (a, b):
        await eventually(lambda: b.audio_in.seconds_received > 0.5, 3)
        assert a.video_in.track is None and b.video_in.track is None
        assert "m=video" not in a.pc.localDescription.sdp
        assert a.sends("audio") and not a.sends("video") and not b.sends("video")
    async with call(a_video=False) as (a, b):
        await eventually(lambda: a.video_in.frames_received > 5, 3)
        assert b.video_in.frames_received == 0
        assert not a.sends("video") and b.sends("video")


async def test_wait_connected_times_out_and_close_is_idempotent() -> None:
    """Without an answer wait_connected raises MediaFailed; close() twice is fine."""
    link = PeerLink([], video=None, audio=ToneTrack())
    await link.create_offer("audiocall")
    with pytest.raises(MediaFailed, match="did not connect"):
        await link.wait_connected(0.2)
    await link.close()
    await link.close()
    with pytest.raises(MediaFailed, match="closed"):
        await link.wait_connected(1)


async def test_loopback_fallback_when_no_other_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine whose only address is loopback, ICE falls back to 127.0.0.1 and connects."""
    from aioice import ice

    monkeypatch.setattr(ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [])
    async with call("audiocall") as (a, b):
        assert "127.0.0.1" in a.pc.localDescription.sdp
        await eventually(lambda: b.audio_in.frames_received > 5, 3)
