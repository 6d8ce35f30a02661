"""Media reconnection (omnicli/phone/mediarestart.py): when a call's media path dies, both
phones negotiate a new peer connection through a real in-process server, on the same call,
keeping mutes and the recording; out of time, the call ends media_failed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from phones import eventually, make_phone, until

from omnicli.phone import events as ev
from omnicli.phone.callstate import CallState
from omnicli.phone.core import Phone
from omnicli.phone.mediarestart import LinkWatch
from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.wire.protocol import EndReason, Track


@pytest.fixture
async def server():
    async with SignalingServer(ServerConfig(port=0, ring_timeout=5)) as srv:
        yield srv


async def connected(
    srv: SignalingServer, bob_recovery: float | None = None, **media: object
) -> tuple[Phone, Phone]:
    alice = make_phone(srv.url, audio_source="tone:440", **media)
    if bob_recovery is not None:
        media = {**media, "media_recovery": bob_recovery}
    bob = make_phone(srv.url, audio_source="tone:660", **media)
    await alice.create_session("alice")
    await bob.create_session("bob")
    await alice.offer_call("videocall", "bob")
    await until(bob, ev.Ringing)
    await bob.answer_call("videocall", "alice")
    await until(alice, ev.Connected)
    await until(bob, ev.Connected)
    return alice, bob


async def kill_media(phone: Phone) -> None:
    """Stop this side's ICE transport: its packets stop both ways, as on a dead network."""
    assert phone.media is not None
    transport = phone.media.link.pc.getTransceivers()[0].receiver.transport.transport
    await transport.stop()


def frames(phone: Phone) -> int:
    assert phone.media is not None
    return phone.media.link.video_in.frames_received


def test_link_watch_is_dead_after_the_grace_without_packets() -> None:
    watch = LinkWatch(grace=1.5)
    assert not watch.update(10, now=0.0)
    assert not watch.update(10, now=1.4)
    assert watch.update(10, now=1.5)
    assert not watch.update(11, now=1.6)  # a packet: alive again
    assert watch.last_packet_at == 1.6


@pytest.mark.parametrize("dies", ["alice", "bob"])
async def test_dead_media_comes_back_on_a_new_connection(server, dies: str) -> None:
    """Either side's path dies: both see MEDIA_RECONNECTING then MEDIA_RECONNECTED, the
    same call goes on with frames and tones flowing again on a new peer connection, and
    the mute made before survives."""
    alice, bob = await connected(server)
    try:
        await bob.set_mute("video")
        call_id = alice.call.call_id  # type: ignore[union-attr]
        old = alice.media.link  # type: ignore[union-attr]
        await kill_media(alice if dies == "alice" else bob)
        for phone in (alice, bob):
            lost = await until(phone, ev.MediaReconnecting, timeout=10)
            assert lost.call_id == call_id
            back = await until(phone, ev.MediaReconnected, timeout=15)
            assert back.call_id == call_id and 0 < back.gap_ms < 10_000
        assert alice.media.link is not old  # type: ignore[union-attr]
        assert alice.call.call_id == call_id  # type: ignore[union-attr]
        assert alice.call_state is CallState.CONNECTED and not alice.media_reconnecting
        before = frames(bob)
        await eventually(lambda: frames(bob) > before + 10, 5)  # alice's video, on the new link
        assert frames(alice) == 0  # bob is still muted
        assert Track.VIDEO in bob.muted
        audio = alice.media.link.audio_in  # type: ignore[union-attr]
        await eventually(lambda: audio.seconds_received > 1.0, 5)
    finally:
        await alice.close()
        await bob.close()


async def test_recording_goes_on_into_the_same_file(server, tmp_path: Path) -> None:
    """A recording started before the restart keeps growing after it, in the same file."""
    alice, bob = await connected(server)
    try:
        target = str(tmp_path / "call.mp4")
        assert await alice.recording_start(target) == target
        await kill_media(bob)
        await until(alice, ev.MediaReconnected, timeout=15)
        recorder = alice.media.recorder  # type: ignore[union-attr]
        assert recorder is not None
        video_before = recorder.video_frames if hasattr(recorder, "video_frames") else None
        await asyncio.sleep(1.5)
        path = await alice.recording_stop()
        assert path == target and Path(target).stat().st_size > 10_000
        if video_before is not None:
            assert recorder.video_frames > video_before
    finally:
        await alice.close()
        await bob.close()


async def test_gives_up_with_media_failed(server) -> None:
    """If the peer never answers a restart, the call ends media_failed after the limit."""
    alice, bob = await connected(server, bob_recovery=0.0, media_recovery=2.0)
    try:  # bob does not restart media (--media-recovery 0)
        await kill_media(bob)
        await until(alice, ev.MediaReconnecting, timeout=10)
        leave = await until(alice, ev.Leave, timeout=15)
        assert leave.reason is EndReason.MEDIA_FAILED
        assert (await until(bob, ev.Leave, timeout=5)).reason is EndReason.MEDIA_FAILED
    finally:
        await alice.close()
        await bob.close()
