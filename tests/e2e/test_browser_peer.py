"""A browser page written from docs/protocol.md calls, and is called by, real `omni` users."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from chromium import PAGE, Chromium, chromium_binary
from procs import answering_peer, run_omni, start_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        chromium_binary() is None,
        reason="chromium is not installed (scripts/test.sh installs it as root)",
    ),
]

MEDIA = ("--json", "--no-window", "--video-size", "320x240", "--audio-source", "tone:440")


@pytest.fixture
def server():
    proc, url = start_server()
    yield url
    proc.stop()


def page_url(**params: str) -> str:
    return f"{PAGE.as_uri()}?{urlencode(params)}"


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_browser_calls_an_omni_user(server, codec):
    """Chromium offers a videocall (VP8 or H.264) to `omni session create --auto-answer`;
    media flows both ways, and omni releases Chromium's frames on their marker bit."""
    bob = answering_peer("bob", server, *MEDIA)
    browser = None
    try:
        browser = Chromium(
            page_url(server=server, user="web", callee="bob", seconds="4", codec=codec)
        )
        assert bob.event("RINGING")["caller"] == "web"
        assert bob.event("CONNECTED", timeout=30)["peer"] == "web"
        page = browser.wait_for(lambda r: r.get("connected") and r["videoFramesDecoded"] > 30)
        assert page["error"] is None
        assert page["remoteWidth"] == 320
        assert page["videoCodecSent"] == f"video/{codec}"
        assert page["audioSamplesReceived"] > 48000 // 2
        leave = bob.event("LEAVE", timeout=30)
        assert (leave["reason"], leave["by"]) == ("hangup", "web")
        video = leave["summary"]["received"]["video"]
        audio = leave["summary"]["received"]["audio"]
        assert video["frames_received"] > 30, video
        assert audio["seconds_received"] > 2, audio
        # every frame but the first (whose start the receiver cannot know yet) on its marker
        receive = video["receive"]
        assert receive["on_marker"] >= video["frames_received"] - 2 - receive["stalls"], receive
    finally:
        if browser is not None:
            browser.close()
        bob.stop()


def test_omni_calls_a_browser(server):
    """`omni call` reaches a browser page that answers; the page decodes omni's test pattern."""
    browser = Chromium(page_url(server=server, user="web"))
    try:
        browser.wait_for(lambda r: r.get("userId") == "web")
        call = run_omni(
            "call",
            "web",
            "--user-id",
            "alice",
            "--duration",
            "3",
            "--server",
            server,
            *MEDIA,
            timeout=60,
        )
        assert call.returncode == 0, call.stderr
        page = browser.wait_for(lambda r: r.get("ended") == "hangup")
        assert page["error"] is None and page["connected"]
        assert page["videoFramesDecoded"] > 30 and page["remoteWidth"] == 320
        assert page["audioSamplesReceived"] > 48000
    finally:
        browser.close()


def test_frame_codes_cross_between_browser_and_omni(server):
    """The latency benchmark's mechanism (scripts/benchchrome.py): the page's canvas
    carries omnicli's frame code drawn in JS, omni reads it, and the page reads the code
    of omni's frames; both stamps are wall-clock ms that the other side's clock agrees with."""
    bob = answering_peer("bob", server, *MEDIA)
    browser = None
    try:
        browser = Chromium(
            page_url(server=server, user="web", callee="bob", seconds="4", framecode="1",
                     width="320", height="240", fps="15")
        )  # fmt: skip
        page = browser.wait_for(lambda r: (r.get("frameCodes") or {}).get("read", 0) > 20)
        codes = page["frameCodes"]
        assert page["error"] is None
        assert codes["backwards"] == 0, codes  # omni's counter, read in order
        assert -5 < codes["lastLatencyMs"] < 1000, codes  # omni's clock, read by the page
        leave = bob.event("LEAVE", timeout=30)
        video = leave["summary"]["received"]["video"]
        sent = browser.evaluate("bench.source.state.sent")  # frames the canvas has drawn
        assert video["frames_coded"] > 20, video  # the JS-drawn code, read by omni
        assert 0 <= video["first_counter"] < video["last_counter"] < sent, (video, sent)
        assert 0 <= video["latency_ms_median"] < 1000, video  # the page's clock, in omni
    finally:
        if browser is not None:
            browser.close()
        bob.stop()
