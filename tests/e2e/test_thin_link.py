"""A thin link keeps the voice: a 640x480 call between two network namespaces whose link is
capped at 300 kbit/s each way (an nftables token bucket, scripts/netlab.py) keeps its audio
while the video adapts down (lower bitrate, frame rate, size); when the cap is lifted the
video climbs back (omnicli/media/sendrate.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from labcall import KEY, Lines, lab_omni, lab_server
from procs import omni_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from netlab import NetLab, unavailable

from omnicli.media.sendrate import REMB_FLOOR_BPS

CAPPED = 20  # s of the call under the cap
FREE = 12  # s after the cap is lifted


def stats(side: Lines, since: int, until: int | None = None) -> list[dict[str, Any]]:
    return [e["figures"] for e in side.events[since:until] if e.get("event") == "STATS"]


@pytest.mark.e2e
def test_capped_call_keeps_its_audio_and_adapts_its_video() -> None:
    """Under a 300 kbit/s cap each side's video target falls (median) below the cap and the video
    goes to half size or half rate, while over the last 10 capped seconds at least 95 % of
    the audio arrives and video keeps arriving; lifting the cap lets the target climb."""
    if (why := unavailable()) is not None:
        pytest.skip(f"cannot build the network lab: {why}")
    env = omni_env()
    common = ["--json", "--no-window", "--service-key", KEY, "--video-size", "640x480"]
    with NetLab(rate_kbit=300) as lab:  # no delay helper: the kernel alone shapes the link
        url = lab_server(lab, env)
        answer = ["answer", "alice", "--user-id", "bob", "--wait", "60", *common]
        bob = lab_omni(lab, "b", [*answer, "--server", url, "--audio-source", "tone:660"], env)
        bob.until("SESSION", 30)
        call = ["call", "bob", "--user-id", "alice", "-d", str(CAPPED + FREE), *common]
        alice = lab_omni(lab, "a", [*call, "--server", url], env)
        for side in (alice, bob):
            side.until("CONNECTED", 40)
        start = {id(s): len(s.events) for s in (alice, bob)}
        deadline = time.monotonic() + CAPPED
        while time.monotonic() < deadline:  # read both sides as it goes
            alice.until("STATS", 10)
            bob.until("STATS", 10)
        lab.set_rate(None)
        lifted = {id(s): len(s.events) for s in (alice, bob)}
        alice.until("LEAVE", FREE + 30)
        bob.until("LEAVE", 20)
        for side in (alice, bob):
            capped = stats(side, start[id(side)], lifted[id(side)])
            assert len(capped) >= CAPPED - 3, len(capped)
            last = capped[-10:]
            audio = (
                last[-1]["audio_in"]["seconds_received"] - last[0]["audio_in"]["seconds_received"]
            )
            frames = (
                last[-1]["video_in"]["frames_received"] - last[0]["video_in"]["frames_received"]
            )
            span = len(last) - 1  # STATS come once a second
            assert audio >= 0.95 * span * 0.98, (audio, span)  # 2 % for the STATS clock
            assert frames > 2 * span, frames  # video still arrives
            # ...and keeps arriving: no three STATS seconds in a row without a new frame
            # (the send side once froze for 3.4 s at this cap; see docs/performance.md)
            got = [s["video_in"]["frames_received"] for s in last]
            assert all(got[i + 3] > got[i] for i in range(len(got) - 3)), got
            # It probes up, then cuts back to what got through: it keeps going below the
            # 300 kbit/s link (audio needs room too), and a probe's overshoot stays small.
            targets = sorted(s["video_target_kbps"] for s in last)
            assert targets[0] < 300 and targets[len(targets) // 2] < 350, targets
            adapted = [s for s in last if s["width_out"] == 320 or (s["fps_out"] or 30) <= 20]
            assert len(adapted) >= len(last) // 2, [(s["width_out"], s["fps_out"]) for s in last]
            free = stats(side, lifted[id(side)])
            # once the cap is gone it climbs well above what it held under the cap, or at
            # least to the 250 kbit/s that REMB alone cannot hold it under: above that, how
            # far it gets in 12 s is REMB's (the peer's delay estimate), which a loaded
            # receiver keeps low, and a target held close under the cap is already near it
            lifted_max = max(s["video_target_kbps"] for s in free)
            climbed = min(1.3 * targets[len(targets) // 2], REMB_FLOOR_BPS / 1000)
            assert lifted_max >= climbed, (lifted_max, targets)
