"""The call-core API (`Phone`) against a real in-process server, with real aiortc media."""

from __future__ import annotations

import asyncio

import pytest
from phones import call_connected, eventually, make_phone, until

from omnicli.errors import CallRejected, SourceError, UsageError
from omnicli.phone import events as ev
from omnicli.phone.core import Phone
from omnicli.server.driver import ServerConfig, SignalingServer


@pytest.fixture
async def server():
    async with SignalingServer(ServerConfig(port=0, ring_timeout=5)) as srv:
        yield srv


def phone(srv: SignalingServer, tone: str = "tone:440") -> Phone:
    return make_phone(srv.url, audio_source=tone)


async def connected_pair(srv: SignalingServer) -> tuple[Phone, Phone]:
    alice, bob = phone(srv), phone(srv, "tone:660")
    await call_connected(alice, bob)
    return alice, bob


async def test_mute_and_unmute_reach_the_peer_as_events_and_stopped_frames(server):
    """set_mute(video) gives the peer MUTE and no frames; set_unmute brings both back."""
    alice, bob = await connected_pair(server)
    try:
        probe = bob.media.link.video_in
        await eventually(lambda: probe.frames_received > 10)
        await alice.set_mute("video")
        mute = await until(bob, ev.Mute)
        assert (mute.user_id, mute.track) == ("alice", "video")
        await asyncio.sleep(0.3)  # frames in flight drain
        before = probe.frames_received
        await asyncio.sleep(0.7)
        assert probe.frames_received - before <= 1
        await alice.set_unmute("video")
        assert (await until(bob, ev.Unmute)).track == "video"
        await eventually(lambda: probe.frames_received > before + 10, timeout=3)
        assert alice.muted == frozenset()
    finally:
        await alice.close()
        await bob.close()


async def test_video_sinks_set_mid_call_get_frames_until_they_are_taken_away(server):
    """set_video_sinks during a call routes remote and local video at once; None stops both."""
    alice, bob = await connected_pair(server)
    remote: list[object] = []
    local: list[object] = []
    try:
        await asyncio.sleep(0.3)
        assert remote == [] and local == []
        bob.set_video_sinks(remote.append, local.append)
        await eventually(lambda: len(remote) > 5 and len(local) > 2)
        assert remote[-1].shape == (240, 320, 3)
        bob.set_video_sinks(None, None)
        await asyncio.sleep(0.2)  # a frame already on its way may still land
        seen = len(remote), len(local)
        await asyncio.sleep(0.5)
        assert (len(remote), len(local)) == seen
    finally:
        await alice.close()
        await bob.close()


async def test_switching_the_video_source_mid_call_keeps_frames_coming(server):
    """set_video_device to another source changes what the peer gets, with no renegotiation."""
    alice, bob = await connected_pair(server)
    try:
        probe = bob.media.link.video_in
        await eventually(lambda: probe.width == 320)
        await alice.set_video_device("test")  # same kind of source, new instance
        frames = probe.frames_received
        await eventually(lambda: probe.frames_received > frames + 15, timeout=3)
        with pytest.raises(SourceError):
            await alice.set_video_device("/no/such/clip.mp4")
        assert alice.config.media.video_source == "test"  # a failed switch changes nothing
    finally:
        await alice.close()
        await bob.close()


async def test_session_survives_the_call_and_takes_the_next_one(server):
    """After a hang-up both users are idle and can call again on the same session."""
    alice, bob = await connected_pair(server)
    try:
        probe = alice.media.link.video_in
        await eventually(lambda: probe.frames_received > 0)
        assert await alice.leave() == "hangup"
        assert (await until(bob, ev.Leave)).reason == "hangup"
        leave = await until(alice, ev.Leave)
        assert leave.summary["received"]["video"]["frames_received"] > 0
        assert {p.state for p in await alice.session_list()} == {"idle"}
        await bob.offer_call("audiocall", "alice")
        await until(alice, ev.Ringing)
        await alice.answer_call()
        assert (await until(bob, ev.Connected)).call_type == "audiocall"
        with pytest.raises(UsageError, match="sends no video"):
            await bob.set_mute("video")
    finally:
        await alice.close()
        await bob.close()


async def test_decline_and_cancel_reach_the_other_side(server):
    """leave() while ringing declines (caller hears it); while calling it cancels."""
    alice, bob = phone(server), phone(server)
    try:
        await alice.create_session("alice")
        await bob.create_session("bob")
        await alice.offer_call("videocall", "bob")
        await until(bob, ev.Ringing)
        assert await bob.leave() == "declined"
        assert (await until(alice, ev.Leave)).reason == "declined"
        await alice.offer_call("videocall", "bob")
        await until(bob, ev.Ringing)
        assert await alice.leave() == "cancelled"
        assert (await until(bob, ev.Cancel)).reason == "cancelled"
        assert bob.call_state == "idle"
    finally:
        await alice.close()
        await bob.close()


async def test_answer_waits_for_a_late_offer_and_busy_is_rejected(server):
    """answer_call(wait=) waits for the ring; a third caller then gets CallRejected('busy')."""
    alice, bob, carol = phone(server), phone(server), phone(server)
    try:
        await bob.create_session("bob")
        answering = asyncio.create_task(bob.answer_call("videocall", "alice", wait=5))
        await asyncio.sleep(0.2)  # the answer gets to its wait (no state shows it)
        assert not answering.done()  # waiting for the ring, not refused at once
        await alice.create_session("alice")
        await alice.offer_call("videocall", "bob")
        info = await answering
        assert (info.peer, info.role) == ("alice", "callee")
        await carol.create_session("carol")
        with pytest.raises(CallRejected) as rejected:
            await carol.offer_call("videocall", "bob")
        assert rejected.value.reason == "busy"
    finally:
        for p in (alice, bob, carol):
            await p.close()
