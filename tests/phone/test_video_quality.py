"""Video quality mid-call: size, frame rate and a bitrate ceiling reach the receiver."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from phones import call_connected, eventually, make_phone

from omnicli.errors import UsageError
from omnicli.phone.core import Phone
from omnicli.server.driver import ServerConfig, SignalingServer

FOLLOW_S = 6.0  # "within a few seconds"
SLACK = 1.25  # a 1 s window of a CBR encoder: its overshoot, packet headers, a keyframe


async def received(bob: Phone, alice: Phone, seconds: float) -> dict[str, Any]:
    """What bob received over `seconds`: video size and frames per second, and the video
    kbit/s (all bytes bob's transport received, less the audio alice sent meanwhile)."""
    probe = bob.media.link.video_in
    frames, start = probe.frames_received, time.monotonic()
    in0, audio0 = await _bytes_in(bob), await _audio_out(alice)
    await asyncio.sleep(seconds)
    in1, audio1 = await _bytes_in(bob), await _audio_out(alice)
    elapsed = time.monotonic() - start
    return {
        "size": (probe.width, probe.height),
        "fps": (probe.frames_received - frames) / elapsed,
        "video_kbps": 8 * ((in1 - in0) - (audio1 - audio0)) / elapsed / 1000,
    }


async def _bytes_in(phone: Phone) -> int:
    report = await phone.media.link.pc.getStats()
    return sum(e.bytesReceived for e in report.values() if e.type == "transport")


async def _audio_out(phone: Phone) -> int:
    report = await phone.media.link.pc.getStats()
    return sum(
        e.bytesSent for e in report.values() if e.type == "outbound-rtp" and e.kind == "audio"
    )


async def until_received(
    bob: Phone, alice: Phone, check: Any, timeout: float = FOLLOW_S
) -> tuple[float, dict[str, Any]]:
    """Seconds until a 1 s window of what bob receives passes `check`, and that window."""
    start = time.monotonic()
    seen: dict[str, Any] = {}
    while time.monotonic() - start < timeout:
        seen = await received(bob, alice, 1.0)
        if check(seen):
            return time.monotonic() - start, seen
    raise AssertionError(f"not within {timeout} s; last 1 s window: {seen}")


async def test_size_fps_and_bitrate_cap_follow_mid_call() -> None:
    """alice sends 640x480 at 30 fps, then asks for 320x240 at 15 fps under 150 kbit/s:
    bob receives that within seconds, with no new offer; lifting the cap brings the rate back."""
    async with SignalingServer(ServerConfig(port=0)) as srv:
        alice = make_phone(srv.url, width=640, height=480, fps=30)
        bob = make_phone(srv.url)
        try:
            await call_connected(alice, bob)
            pc = alice.media.link.pc
            local_sdp = pc.localDescription.sdp
            _, before = await until_received(
                bob,
                alice,
                lambda r: r["size"] == (640, 480) and r["fps"] > 20 and r["video_kbps"] > 300,
            )

            await alice.set_video_quality(size=(320, 240), fps=15, max_bitrate=150_000)
            took, after = await until_received(
                bob,
                alice,
                lambda r: (
                    r["size"] == (320, 240)
                    and 10 <= r["fps"] <= 18
                    and r["video_kbps"] < 150 * SLACK
                ),
            )
            assert alice.media.link.video_cap.applied_bps == 150_000
            assert pc.localDescription.sdp == local_sdp  # no renegotiation
            assert alice.media.link.pc is pc

            await alice.set_video_quality(max_bitrate=0)
            lifted_s, lifted = await until_received(bob, alice, lambda r: r["video_kbps"] > 200)
            print(
                f"before {before}; capped after {took:.1f} s: {after}; "
                f"lifted after {lifted_s:.1f} s: {lifted}"
            )
            assert alice.config.media.max_bitrate == 0
            assert (alice.config.media.width, alice.config.media.fps) == (320, 15)
        finally:
            await alice.close()
            await bob.close()


async def test_a_cap_set_before_the_call_holds_from_the_start() -> None:
    """--max-bitrate (MediaOptions.max_bitrate) caps the encoder once media flows."""
    async with SignalingServer(ServerConfig(port=0)) as srv:
        alice = make_phone(srv.url, width=320, height=240, fps=15, max_bitrate=100_000)
        bob = make_phone(srv.url)
        try:
            await call_connected(alice, bob)
            await until_received(bob, alice, lambda r: 0 < r["video_kbps"] < 100 * SLACK)
            # the encoder starts under the ceiling (the send-rate controller's start), so the
            # rate can be under it before the cap's own hook has run on an RTCP packet
            cap = alice.media.link.video_cap
            await eventually(lambda: cap.applied_bps == 100_000, 5)
        finally:
            await alice.close()
            await bob.close()


async def test_quality_outside_a_call_is_kept_and_bad_values_are_refused() -> None:
    """Set between calls, the values are the next call's; out of range is one UsageError."""
    phone = make_phone("ws://127.0.0.1:9")
    await phone.set_video_quality(size=(800, 600), fps=12, max_bitrate=400_000)
    media = phone.config.media
    assert (media.width, media.height, media.fps, media.max_bitrate) == (800, 600, 12, 400_000)
    for bad in ({"size": (8, 8)}, {"fps": 0}, {"fps": 61}, {"max_bitrate": 1000}):
        with pytest.raises(UsageError):
            await phone.set_video_quality(**bad)
    assert phone.config.media == media
    await phone.close()


def test_every_link_of_a_call_gets_its_cap() -> None:
    """A call's media gives its bitrate cap to each PeerLink it is given (the first one and
    any that replaces it), reading the phone's options afresh."""
    from types import SimpleNamespace

    from omnicli.phone.callmedia import CallMedia

    options = SimpleNamespace(max_bitrate=300_000)
    host = SimpleNamespace(media_options=options)
    caps: list[tuple[str, int | None]] = []

    def link(name: str) -> Any:
        return SimpleNamespace(set_max_bitrate=lambda bps: caps.append((name, bps)))

    media = CallMedia(host)  # type: ignore[arg-type]  # the part of MediaHost it reads
    media.link = link("first")
    options.max_bitrate = 0
    media.link = link("restarted")
    assert caps == [("first", 300_000), ("restarted", None)]
