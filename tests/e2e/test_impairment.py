"""A call over a bad network: two namespaces on a veth pair with 5 % loss and 50 ms delay each way
(scripts/netlab.py) keep a 30 s video call up with video and audio still arriving at the end."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from procs import omni_env

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from netlab import NetLab, unavailable

CALL_SECONDS = 30
OMNI = [sys.executable, "-m", "omnicli.ui.cli"]
KEY = "netlab-key"


class Lines:
    """Collects a process's stdout lines on a thread (JSON objects where they parse)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))

    def next(self, timeout: float) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output in {timeout} s; seen {self.events[-5:]}") from None

    def until(self, name: str, timeout: float) -> dict[str, Any]:
        while True:
            line = self.next(timeout)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("event") == name:
                return event


def received(stats: dict[str, Any]) -> tuple[int, float]:
    return stats["video_in"]["frames_received"], stats["audio_in"]["seconds_received"]


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
        server = lab.popen(
            "a",
            [*OMNI, "server", "--host", lab.addr_a, "--port", "0", "--service", f"dev:{KEY}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        url = Lines(server).next(20).rsplit(" ", 1)[1]
        assert url.startswith(f"ws://{lab.addr_a}:")
        bob = Lines(
            lab.popen(
                "b",
                [
                    *OMNI,
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
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
        bob.until("SESSION", 30)
        alice = Lines(
            lab.popen(
                "a",
                [
                    *OMNI,
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
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
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
