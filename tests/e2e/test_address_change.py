"""A changed network does not end the call: one side of a call between two network namespaces
gets a new address mid-call (its old one removed, as when a laptop changes network); both
phones re-establish media through the signaling server, the same call goes on, and media is
back within 3 s of the new address being usable (scripts/netlab.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from labcall import KEY, lab_omni, lab_server, received
from procs import omni_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from netlab import NetLab, unavailable

CALL_SECONDS = 16
MOVE_AFTER = 5  # s after CONNECTED
BACK_WITHIN = 3.0  # s from the new address to media flowing again (the target)


@pytest.mark.e2e
def test_call_survives_an_address_change() -> None:
    """bob's address changes 5 s into the call: both sides print MEDIA_RECONNECTING and
    MEDIA_RECONNECTED on the same call id within 3 s, frames and audio arrive again on both
    sides, and the call ends with the caller's hang-up as planned."""
    if (why := unavailable()) is not None:
        pytest.skip(f"cannot build the network lab: {why}")
    env = omni_env()
    common = ["--json", "--no-window", "--service-key", KEY, "--video-size", "320x240"]
    common += ["--server"]  # the URL follows
    with NetLab() as lab:
        url = lab_server(lab, env)
        answer = ["answer", "alice", "--user-id", "bob", "--wait", "60", *common, url]
        bob = lab_omni(lab, "b", answer, env)
        bob.until("SESSION", 30)
        call = ["call", "bob", "--user-id", "alice", "-d", str(CALL_SECONDS), *common, url]
        alice = lab_omni(lab, "a", call, env)
        call_id = alice.until("CONNECTED", 40)["call_id"]
        bob.until("CONNECTED", 10)
        time.sleep(MOVE_AFTER)
        lab.move("b", "10.77.0.3")
        moved = time.monotonic()
        for side in (alice, bob):
            lost = side.until("MEDIA_RECONNECTING", 10)
            assert lost["call_id"] == call_id
        back_at = []
        for side in (bob, alice):
            back = side.until("MEDIA_RECONNECTED", 15)
            back_at.append(time.monotonic() - moved)
            assert back["call_id"] == call_id, back
        assert max(back_at) <= BACK_WITHIN + 0.5, back_at  # + reading the lines
        after = {id(side): len(side.events) for side in (alice, bob)}
        leave_a = alice.until("LEAVE", CALL_SECONDS + 30)
        leave_b = bob.until("LEAVE", 20)
        assert (leave_a["reason"], leave_b["reason"]) == ("hangup", "hangup")
        assert leave_a["call_id"] == leave_b["call_id"] == call_id
        for side in (alice, bob):
            samples = [
                e["figures"] for e in side.events[after[id(side)] :] if e.get("event") == "STATS"
            ]
            names = [e.get("event") for e in side.events[after[id(side)] :]]
            print(names, [received(x) for x in samples])
            assert len(samples) >= 3, f"only {len(samples)} STATS after the move"
            (v0, a0), (v1, a1) = received(samples[0]), received(samples[-1])
            assert v1 - v0 > 20 and a1 - a0 > 2, (v0, v1, a0, a1)  # media on the new path
        assert alice.proc.wait(timeout=20) == 0 and bob.proc.wait(timeout=20) == 0
