"""What a new user meets (issue #12): small manners of the output, tested directly."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from desktop import wait_until
from procs import CALL_MEDIA, Omni, answering_peer, start_server

from omnicli.phone import events as ev
from omnicli.phone.callstate import CallState
from omnicli.phone.figures import CallFigures
from omnicli.ui.callwindow import window_texts
from omnicli.ui.flows import media_gap
from omnicli.ui.render import Output
from omnicli.ui.statusline import Status, status_lines
from omnicli.wire.protocol import CallType


def test_the_same_notice_is_said_once_to_a_person_and_every_time_to_a_script() -> None:
    """A device fallback repeated on every call is shown once; --json still gets each one."""
    note = ev.Notice("no camera: test pattern instead")
    err = io.StringIO()
    human = Output(json_mode=False, stderr=err)
    for _ in range(3):
        human.event(note)
    human.event(ev.Notice("recording to x.mp4"))
    assert err.getvalue().count("no camera") == 1
    assert "recording to x.mp4" in err.getvalue()
    out = io.StringIO()
    script = Output(json_mode=True, stdout=out)
    for _ in range(3):
        script.event(note)
    assert out.getvalue().count("no camera") == 3


def test_media_gap_is_the_freshest_unmuted_track() -> None:
    """The gap is over the tracks the peer has not muted; nothing received yet is no gap."""
    figures = CallFigures(audio_in={"paused_for_s": 2.5}, video_in={"paused_for_s": 0.1})
    assert media_gap(figures) == 0.1
    assert media_gap(figures, frozenset({"video"})) == 2.5
    assert media_gap(figures, frozenset({"audio", "video"})) is None
    assert media_gap(CallFigures(audio_in={"paused_for_s": None})) is None


@pytest.mark.e2e
def test_a_caller_whose_peer_dies_is_told_no_media_comes() -> None:
    """bob killed mid-call: alice hears 'no media from bob for N s' within a few seconds."""
    server, url = start_server()
    bob = answering_peer("bob", url, "--json", "--audio-source", "tone", *CALL_MEDIA)
    alice = None
    try:
        alice = Omni(
            "call",
            "bob",
            "--user-id",
            "alice",
            "--server",
            url,
            "--audio-source",
            "tone",
            *CALL_MEDIA,
        )
        bob.event("CONNECTED")
        wait_until(
            lambda: any("CONNECTED" in line for line in alice.stderr_lines), 15, "alice connected"
        )
        time.sleep(1)  # media flowing for a moment before bob dies
        bob.proc.kill()
        killed = time.monotonic()
        wait_until(
            lambda: any("no media from bob for" in line for line in alice.stderr_lines),
            8,
            "alice told that no media comes from bob",
        )
        assert time.monotonic() - killed < 6
    finally:
        if alice is not None:
            alice.stop()
        bob.stop()
        server.stop()


def test_the_status_line_speaks_of_the_call_as_it_is() -> None:
    """'calling bob', not 'calling with bob'; an audio call shows no video state."""
    calling = Status("alice", CallState.CALLING, peer="bob", call_type=CallType.VIDEO)
    assert status_lines(calling)[0].startswith("alice · calling bob · you: audio on video on")
    audio = Status("alice", CallState.CONNECTED, peer="bob", call_type=CallType.AUDIO)
    line = status_lines(audio)[0]
    assert "connected with bob" in line and "video" not in line, line


def test_the_window_says_whose_camera_is_off() -> None:
    """The window's status line says 'your camera off', never 'bob · camera off'."""
    caption, status = window_texts("bob", "connected", {"video"}, recording=False)
    assert caption == "omni · bob · connected"
    assert status == "bob · connected · your camera off"


def test_the_demo_installs_only_what_a_call_needs() -> None:
    """scripts/env.sh installs PortAudio and OpenCV's libraries; the test tools only for tests."""
    root = Path(__file__).resolve().parents[2]

    def packages(**env: str) -> set[str]:
        listed = subprocess.run(
            ["bash", str(root / "scripts" / "env.sh")],
            env={**os.environ, "OMNI_LIST_PACKAGES": "1", **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return set(listed.stdout.split())

    call = packages()
    assert call == {"libportaudio2", "libgl1", "libglib2.0-0"}
    tests = packages(OMNI_TEST_TOOLS="1")
    assert call < tests and {"chromium", "coturn", "gcc", "pulseaudio", "xvfb"} <= tests
    assert "OMNI_TEST_TOOLS" not in (root / "scripts" / "demo.sh").read_text()
    assert "OMNI_TEST_TOOLS=1" in (root / "scripts" / "test.sh").read_text()
