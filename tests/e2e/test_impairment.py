"""A call over a bad network: two namespaces on a veth pair with 5 % loss and 50 ms delay each way
(scripts/netlab.py) keep a 30 s video call up with video and audio still arriving at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from labcall import KEY, lab_omni, lab_server, received
from procs import omni_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from netlab import NetLab, unavailable

CALL_SECONDS = 30


@pytest.mark.e2e
def test_call_survives_loss_and_delay() -> None:
    """With 5 % loss and 50 ms delay each way the call stays up for 30 s and both sides still
    receive video and audio in its last seconds; it ends with a normal hang-up."""
    if (why := unavailable()) is not None:
        pytest.skip(f"cannot build the network lab: {why}")
    env = omni_env()
    common = [
        "--json",
        "--no-window",
        "--service-key",
        KEY,
        "--video-size",
        "320x240",
        "--fps",
        "15",
    ]
    with NetLab(loss=0.05, delay_ms=50) as lab:
        url = lab_server(lab, env)
        assert url.startswith(f"ws://{lab.addr_a}:")
        bob = lab_omni(
            lab,
            "b",
            [
                "answer",
                "alice",
                "--user-id",
                "bob",
                "--wait",
                "60",
                "--server",
                url,
                *common,
                "--audio-source",
                "tone:660",
            ],
            env,
        )
        bob.until("SESSION", 30)
        alice = lab_omni(
            lab,
            "a",
            [
                "call",
                "bob",
                "--user-id",
                "alice",
                "--duration",
                str(CALL_SECONDS),
                "--server",
                url,
                *common,
            ],
            env,
        )
        for side in (alice, bob):
            side.until("CONNECTED", 40)
        leave_a = alice.until("LEAVE", CALL_SECONDS + 30)
        leave_b = bob.until("LEAVE", 20)
        assert (leave_a["reason"], leave_b["reason"]) == ("hangup", "hangup")
        assert leave_a["summary"]["duration_s"] >= CALL_SECONDS - 1
        for side in (alice, bob):
            samples = [e["figures"] for e in side.events if e.get("event") == "STATS"]
            assert len(samples) >= CALL_SECONDS // 2, f"only {len(samples)} STATS samples"
            (v0, a0), (v1, a1), (v2, a2) = (
                received(samples[-21]),
                received(samples[-6]),
                received(samples[-1]),
            )
            assert v2 - v0 > 60 and a2 - a0 > 5, (v0, v2, a0, a2)  # last ~20 s: ≥ 3 fps
            assert v2 > v1 and a2 > a1, (v1, v2, a1, a2)  # and still arriving at the end
            rtts = [s["rtt_ms"] for s in samples if s.get("rtt_ms")]
            assert rtts and sorted(rtts)[len(rtts) // 2] >= 90  # the delay is really there
        assert alice.proc.wait(timeout=20) == 0 and bob.proc.wait(timeout=20) == 0
