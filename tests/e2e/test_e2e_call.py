"""End to end: real `omni` processes call each other over a real server on loopback."""

from __future__ import annotations

import json

import pytest
from procs import Omni, answering_peer, run_omni, start_server

pytestmark = pytest.mark.e2e

# explicit synthetic media and no speaker: the same on a laptop with real devices
MEDIA = (
    "--json",
    "--no-window",
    "--video-size",
    "320x240",
    "--video-source",
    "test",
    "--speaker",
    "none",
)


@pytest.fixture
def server():
    proc, url = start_server()
    yield url
    proc.stop()


def assert_received(summary: dict, tone_hz: float, seconds: float) -> None:
    """Frames with advancing counters and the peer's tone arrived."""
    video = summary["received"]["video"]
    audio = summary["received"]["audio"]
    assert video["frames_received"] >= 20 * seconds * 0.6, video
    assert video["frames_coded"] >= video["frames_received"] * 0.9, video
    assert video["last_counter"] - video["first_counter"] >= 20 * seconds * 0.6, video
    assert video["counters_missing"] <= 0.1 * video["frames_received"], video
    assert (video["width"], video["height"]) == (320, 240)
    assert audio["seconds_received"] >= seconds * 0.6, audio
    assert audio["dominant_hz"] == pytest.approx(tone_hz, abs=10), audio


def test_call_between_two_processes_carries_video_and_audio_both_ways(server):
    """`session create --auto-answer` and `call` exchange frames and tones, then hang up."""
    bob = answering_peer("bob", server, "--audio-source", "tone:660", *MEDIA)
    try:
        call = run_omni(
            "call",
            "bob",
            "--video",
            "--duration",
            "4",
            "--user-id",
            "alice",
            "--server",
            server,
            "--audio-source",
            "tone:440",
            *MEDIA,
            timeout=60,
        )
        assert call.returncode == 0, call.stderr
        events = [json.loads(line) for line in call.stdout.splitlines()]
        names = [e["event"] for e in events]
        assert names[:2] == ["SESSION", "RINGBACK"], names
        assert "CONNECTED" in names and names[-1] == "LEAVE", names
        leave = events[-1]
        assert leave["reason"] == "hangup" and leave["by"] == "alice"
        assert_received(leave["summary"], tone_hz=660, seconds=3.5)
        assert leave["summary"]["avg_fps_in"] > 20

        assert bob.event("RINGING")["caller"] == "alice"
        assert bob.event("CONNECTED")["peer"] == "alice"
        bob_leave = bob.event("LEAVE")
        assert bob_leave["reason"] == "hangup" and bob_leave["by"] == "alice"
        assert_received(bob_leave["summary"], tone_hz=440, seconds=3.5)

        listing = run_omni("sessions", "--json", "--server", server)
        assert listing.returncode == 0, listing.stderr
        rows = [json.loads(line) for line in listing.stdout.splitlines()]
        assert rows == [{"user_id": "bob", "state": "idle", "call_type": None}]
    finally:
        bob.stop()
    assert bob.proc.returncode == 0, bob.stderr_lines


def test_answer_waits_for_a_call_and_the_callee_hangs_up(server):
    """`omni answer alice --user-id bob` waits for alice's call, answers it, and hangs up."""
    bob = Omni("answer", "alice", "--user-id", "bob", "--duration", "2", "--server", server, *MEDIA)
    try:
        assert bob.event("SESSION")["user_id"] == "bob"
        call = run_omni("call", "bob", "--user-id", "alice", "--server", server, *MEDIA, timeout=60)
        assert call.returncode == 0, call.stderr
        leave = json.loads(call.stdout.splitlines()[-1])
        assert (leave["event"], leave["reason"], leave["by"]) == ("LEAVE", "hangup", "bob")
        assert bob.wait() == 0
    finally:
        bob.stop()


def test_late_registering_callee_answers_a_pending_offer(server):
    """A callee that registers after the offer gets RINGING at once and answers it (seed step 3)."""
    alice = Omni(
        "call",
        "bob",
        "--audio",
        "--user-id",
        "alice",
        "--duration",
        "2",
        "--server",
        server,
        *MEDIA,
    )
    try:
        ringback = alice.event("RINGBACK")
        assert ringback["callee_online"] is False
        answer = run_omni(
            "answer", "alice", "--user-id", "bob", "--audio", "--server", server, *MEDIA, timeout=60
        )
        assert answer.returncode == 0, answer.stderr
        names = [json.loads(line)["event"] for line in answer.stdout.splitlines()]
        assert names[:2] == ["SESSION", "RINGING"] and "CONNECTED" in names, names
        assert alice.event("CONNECTED")["call_type"] == "audiocall"
        assert alice.event("LEAVE")["reason"] == "hangup"
        assert alice.wait() == 0
    finally:
        alice.stop()


def test_calling_a_busy_user_exits_rejected(server):
    """A call to a user who is in another call ends at once with `busy` and exit code 5."""
    bob = answering_peer("bob", server, *MEDIA)
    alice = Omni("call", "bob", "--user-id", "alice", "--server", server, *MEDIA)
    try:
        alice.event("CONNECTED")
        carol = run_omni("call", "bob", "--user-id", "carol", "--server", server, *MEDIA)
        assert carol.returncode == 5
        assert carol.stderr.strip().splitlines()[-1] == "omni: bob is busy"
        assert "Traceback" not in carol.stderr
    finally:
        alice.stop()
        bob.stop()
    assert alice.proc.returncode == 0


def test_video_at_5_fps_arrives_well_within_one_frame_interval(server):
    """At 5 fps a frame interval is 200 ms; frames arrive much sooner because the receiver
    releases each frame on its last packet instead of waiting for the next frame (#11)."""
    bob = answering_peer("bob", server, "--fps", "5", "--audio-source", "tone:660", *MEDIA)
    try:
        call = run_omni(
            "call", "bob", "--video", "--duration", "4", "--user-id", "alice",
            "--server", server, "--fps", "5", "--audio-source", "tone:440", *MEDIA,
            timeout=60,
        )  # fmt: skip
        assert call.returncode == 0, call.stderr
        leave = [json.loads(line) for line in call.stdout.splitlines()][-1]
        video = leave["summary"]["received"]["video"]
        assert video["frames_coded"] >= 10, video
        # bare aiortc: about one interval (200 ms) plus the rest; here encode + decode +
        # loopback, with room for a loaded CI machine
        assert video["latency_ms_median"] < 100, video
        assert video["receive"]["on_marker"] >= video["frames_received"] - 2, video
    finally:
        bob.stop()
