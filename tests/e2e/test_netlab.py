"""The network lab's impairments do what they say: a rate cap caps, bursty loss comes in
bursts of the asked length, a moved address is the only one that works afterwards
(scripts/netlab.py, plain UDP between the two namespaces)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from netlab import GilbertElliott, NetLab, unavailable

# A receiver that counts datagrams (and the numbers they carry) for `secs` seconds, and a
# sender that sends numbered datagrams of `size` bytes at `kbit` kbit/s for `secs` seconds.
RECEIVER = """
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5555)); s.settimeout(0.2)
print("ready", flush=True)
seen, nbytes, end = [], 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        data = s.recv(2048)
    except socket.timeout:
        continue
    seen.append(int(data[:8])); nbytes += len(data)
print(json.dumps({"seen": seen, "bytes": nbytes}), flush=True)
"""
SENDER = """
import socket, sys, time
addr, kbit, size, secs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
gap, start, n = size * 8 / (kbit * 1000), time.monotonic(), 0
while time.monotonic() - start < secs:
    s.sendto(b"%08d" % n + b"x" * (size - 8), (addr, 5555)); n += 1
    time.sleep(max(0.0, start + n * gap - time.monotonic()))
print(n, flush=True)
"""


def blast(
    lab: NetLab, kbit: float, size: int, secs: float, to: str | None = None
) -> tuple[int, list[int], int]:
    """Send from a to b; (datagrams sent, numbers received, payload bytes received)."""
    recv = lab.popen(
        "b",
        [sys.executable, "-c", RECEIVER, str(secs + 1.5)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
    sent = lab.run(
        "a", [sys.executable, "-c", SENDER, to or lab.addr_b, str(kbit), str(size), str(secs)]
    )
    got = json.loads(recv.stdout.readline())
    recv.wait(timeout=10)
    return int(sent.stdout), got["seen"], got["bytes"]


@pytest.fixture(autouse=True)
def _needs_lab() -> None:
    if (why := unavailable()) is not None:
        pytest.skip(f"cannot build the network lab: {why}")


def test_rate_cap_holds_and_lifts() -> None:
    """1 Mbit/s offered into a 300 kbit/s cap arrives at about 300 kbit/s once the bucket's
    first second is spent (the token bucket drops the rest); with the cap lifted, all."""
    with NetLab(rate_kbit=300) as lab:
        sent, seen, _ = blast(lab, 1000, 1000, 4.0)
        steady = [n for n in seen if n >= sent // 4]  # sent in the last 3 s
        kbit = len(steady) * 1028 * 8 / 3.0 / 1000  # with IP and UDP headers
        assert 250 <= kbit <= 350, kbit
        lab.set_rate(None)
        sent, seen, _ = blast(lab, 1000, 1000, 2.0)
        assert len(seen) >= 0.98 * sent, (len(seen), sent)


def test_rate_cap_counts_its_drops() -> None:
    """What the cap drops is counted per side: about what was offered above the rate."""
    with NetLab(rate_kbit=300) as lab:
        sent, seen, _ = blast(lab, 1000, 1000, 3.0)
        drops = lab.cap_drops()
    # (another packet of the namespace, IPv6 neighbour discovery say, may be one of them)
    assert drops["a"] <= 3  # nothing else went from b to a
    assert abs(drops["b"] - (sent - len(seen))) <= 3, (drops, sent, len(seen))
    assert drops["b"] > sent / 3


def test_delay_helpers_run_first_and_report_their_lateness() -> None:
    """The delay helpers run at real-time priority, so the lab's own delay holds on a busy
    machine: each report counts what it released, and almost nothing late (> 20 ms)."""
    with NetLab(delay_ms=20) as lab:
        lab.harness_report()
        sent, seen, _ = blast(lab, 400, 200, 3.0)
        lines = lab.harness_report()
    assert len(seen) >= 0.98 * sent
    assert len(lines) == 2, lines
    counts = [tuple(int(x) for x in re.findall(r"(\d+) of (\d+)", line)[0]) for line in lines]
    assert max(released for _, released in counts) >= 0.98 * sent, (counts, sent)
    assert all(late <= 0.01 * released for late, released in counts), lines
    assert all(line.endswith("kernel queue drops 0") for line in lines), lines
    assert lab.bursty_counts and all(c.endswith("priority fifo") for c in lab.bursty_counts)


def test_bursty_loss_comes_in_bursts() -> None:
    """About 5 % of the datagrams are lost, in runs of 3 to 10 consecutive ones (6.5 on average)."""
    with NetLab(bursty=0.05, burst_len=(3, 10)) as lab:
        # 250 datagrams a second, 3000 in all: about 23 bursts, so the share lost is steady
        sent, seen, _ = blast(lab, 400, 200, 12.0)
    lost = sorted(set(range(sent)) - set(seen))
    runs: list[list[int]] = []
    for i, n in enumerate(lost):
        if i and n == lost[i - 1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    # a burst that began before the first datagram or ran past the last one looks shorter
    inner = [len(r) for r in runs if r[0] > 0 and r[-1] < sent - 1]
    assert 0.02 <= len(lost) / sent <= 0.10, (len(lost), sent)
    # two bursts can touch, so a run may be longer than 10; none is shorter than 3
    # (another packet of the namespace, IGMP say, can take one place in a burst)
    assert inner and min(inner) >= 2 and sum(inner) / len(inner) >= 4, runs
    assert lab.bursty_counts and all(c.startswith("packets") for c in lab.bursty_counts)


def test_gilbert_elliott_average_and_burst_lengths() -> None:
    """The model alone: 5 % average over 200,000 packets, every burst 3 to 10 long."""
    model = GilbertElliott(0.05, (3, 10), seed=7)
    drops = [model.lost() for _ in range(200_000)]
    assert 0.045 <= sum(drops) / len(drops) <= 0.055
    assert model.bursts > 1000
    assert sum(drops) / model.bursts == pytest.approx(6.5, abs=0.4)


def test_move_changes_the_address() -> None:
    """After move() the new address answers and the old one does not."""
    with NetLab() as lab:
        old = lab.addr_b
        assert blast(lab, 100, 100, 0.5)[1]
        lab.move("b", "10.77.0.3")
        assert lab.addr_b == "10.77.0.3" == lab.addr["b"]
        assert blast(lab, 100, 100, 0.5)[1]
        assert not blast(lab, 100, 100, 0.5, to=old)[1]
