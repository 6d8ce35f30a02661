"""netlab: two network namespaces on a veth pair, with loss, delay and rate caps each way.

For tests and benchmarks that need a bad network on one machine. This kernel has no
`netem`, so:

- random loss is an nftables rule (``numgen random mod 1000 < N drop`` on each
  namespace's ingress);
- a rate cap is an nftables token bucket on each namespace's ingress
  (``limit rate over B bytes/second drop``): a policer, as on a thin uplink whose
  modem drops what exceeds the rate; nothing queues; the kernel's bucket holds one
  second of the rate;
- delay and bursty loss are an iptables NFQUEUE rule on each namespace's egress served
  by a small NetfilterQueue process that drops packets by a two-state Gilbert-Elliott
  model (a good state that loses nothing, a bad state that loses every packet and
  lasts a whole number of packets drawn from `burst_len`) and releases the others
  `delay_ms` later (nftables' own ``queue`` statement is missing from this kernel;
  iptables' is there);
- an address change moves one namespace's veth to a new address (the old one is
  removed, so every socket bound to it goes dead, as when a laptop changes network).

Usage::

    import sys; sys.path.insert(0, "scripts")      # from the repository root
    from netlab import NetLab, unavailable

    if (why := unavailable()) is not None:
        pytest.skip(why)
    with NetLab(loss=0.05, delay_ms=50) as lab:     # 5 % loss, 50 ms delay, each way
        server = lab.popen("a", [sys.executable, "-m", "omnicli.ui.cli", "server",
                                 "--host", lab.addr_a, ...])
        lab.run("b", ["ping", "-c", "3", lab.addr_a])   # a CompletedProcess
        lab.cmd("a", ["ss", "-tn"])     # the argv that runs a command inside namespace a

* `NetLab(loss=0.0, delay_ms=0.0, prefix="omni")`: `loss` is a fraction (0.05 = 5 %),
  applied independently to packets in each direction; `delay_ms` is added to every
  packet in each direction (so the round trip grows by twice that).
* Inside: namespace ``lab.ns["a"]`` holds ``lab.addr_a`` = 10.77.0.1/24 and namespace
  ``lab.ns["b"]`` holds ``lab.addr_b`` = 10.77.0.2/24, joined by one veth pair; each
  namespace also has its own loopback up. Nothing outside the two namespaces is
  touched: no address, route or rule of the host changes.
* `NetLab(rate_kbit=300)` caps each direction at 300 kbit/s; `lab.set_rate(None)` lifts
  the cap and `lab.set_rate(1000)` changes it while running.
* `NetLab(bursty=0.05, burst_len=(3, 10))` loses about 5 % of the packets each way, in
  bursts of 3 to 10 consecutive packets (uniformly drawn); `lab.bursty_counts` holds
  each helper's "packets N dropped D in B bursts; late>20ms L of R, worst W ms; kernel
  queue drops K; priority fifo" line once the lab is closed.
* The delay helpers run at real-time priority (SCHED_FIFO 20; `nice -10` where that is
  refused), so a loaded machine starves the call, not the lab: each one counts the
  packets it released more than 20 ms after their time and the kernel's NFQUEUE drops,
  so a benchmark can tell its harness's share (measured: see docs/performance.md).
* `lab.set_loss(fraction)` changes the random loss while running.
* `lab.move("b", "10.77.0.3")` gives side b a new address and removes its old one;
  `lab.addr["b"]` follows.
* Everything is removed on exit (the delay processes, the rules, the veth pair and the
  namespaces), also when the body raises; deleting a namespace takes its veth and
  rules with it. Processes started with `popen()` are the caller's to stop, but any
  still running on exit are killed.
* `unavailable()` says why a lab cannot be made here (not root, no `ip`/`nft`/`iptables`,
  no NetfilterQueue, namespaces refused), or None. Debian packages: iproute2 nftables
  iptables; PyPI: NetfilterQueue (needs libnetfilter-queue-dev to build).

Run ``python scripts/netlab.py selftest`` to build a lab and print ping times.
The delay helper is this same file: ``python scripts/netlab.py delay QUEUE MS``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ADDR_A = "10.77.0.1"
ADDR_B = "10.77.0.2"
PREFIX_LEN = 24
STEP_TIMEOUT = 10.0  # s for any one setup command
_counter = itertools.count()


def unavailable() -> str | None:
    """Why a NetLab cannot be built on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "iptables"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (apt-get install iproute2 nftables iptables)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "the NetfilterQueue package is not installed (pip install NetfilterQueue)"
    probe = f"omniprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        nft = subprocess.run(
            ["ip", "netns", "exec", probe, "nft", "list", "tables"],
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )
        if nft.returncode != 0:
            return f"nftables does not work in a namespace: {nft.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class NetLab:
    """Two namespaces, a veth pair between them, loss and delay; a context manager."""

    def __init__(
        self,
        *,
        loss: float = 0.0,
        delay_ms: float = 0.0,
        rate_kbit: float | None = None,
        bursty: float = 0.0,
        burst_len: tuple[int, int] = (3, 10),
        prefix: str = "omni",
    ):
        if not 0.0 <= loss < 1.0 or not 0.0 <= bursty < 0.5:
            raise ValueError("loss is a fraction from 0 to below 1 (bursty: below 0.5)")
        if not 0.0 <= delay_ms <= 5000:
            raise ValueError("delay_ms must be between 0 and 5000")
        if rate_kbit is not None and not 8 <= rate_kbit <= 10_000_000:
            raise ValueError("rate_kbit must be between 8 and 10000000")
        if not 1 <= burst_len[0] <= burst_len[1]:
            raise ValueError("burst_len is (shortest, longest), both at least 1")
        tag = f"{os.getpid() % 100000}x{next(_counter)}"
        self.ns = {"a": f"{prefix}{tag}a", "b": f"{prefix}{tag}b"}
        self.veth = {"a": f"ov{tag}a", "b": f"ov{tag}b"}  # at most 15 characters
        self.addr_a, self.addr_b = ADDR_A, ADDR_B
        self.addr = {"a": ADDR_A, "b": ADDR_B}
        self.loss = loss
        self.delay_ms = delay_ms
        self.rate_kbit = rate_kbit
        self.bursty = bursty
        self.burst_len = burst_len
        self._queue = {"a": 1000 + os.getpid() % 20000, "b": 1001 + os.getpid() % 20000}
        self._delayers: list[subprocess.Popen[bytes]] = []
        self._children: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []
        self.bursty_counts: list[str] = []

    # -- using the lab ------------------------------------------------------------------

    def cmd(self, side: str, argv: list[str]) -> list[str]:
        """The argv that runs `argv` inside namespace `side` ("a" or "b")."""
        return ["ip", "netns", "exec", self.ns[side], *argv]

    def run(self, side: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(self.cmd(side, argv), **kw)

    def popen(self, side: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside namespace `side`; killed on exit if still running."""
        proc = subprocess.Popen(self.cmd(side, argv), **kw)
        self._children.append(proc)
        return proc

    def set_loss(self, loss: float) -> None:
        """Replace the random loss in both namespaces."""
        self.loss = loss
        self._reload_ingress()

    def set_rate(self, rate_kbit: float | None) -> None:
        """Cap each direction at `rate_kbit` kbit/s (None: no cap), while running."""
        self.rate_kbit = rate_kbit
        self._reload_ingress()

    def move(self, side: str, new_addr: str) -> None:
        """Give `side` the address `new_addr` (same /24) and remove its old one."""
        dev, old = self.veth[side], self.addr[side]
        # without this, removing the old (primary) address removes the new one with it
        _sh(self.cmd(side, ["sysctl", "-qw", f"net.ipv4.conf.{dev}.promote_secondaries=1"]))
        _sh(self.cmd(side, ["ip", "addr", "add", f"{new_addr}/{PREFIX_LEN}", "dev", dev]))
        _sh(self.cmd(side, ["ip", "addr", "del", f"{old}/{PREFIX_LEN}", "dev", dev]))
        self.addr[side] = new_addr
        if side == "a":
            self.addr_a = new_addr
        else:
            self.addr_b = new_addr

    def cap_drops(self) -> dict[str, int]:
        """Packets each side's rate cap dropped on its way in (since the rule was loaded)."""
        import re

        drops = {}
        for side in ("a", "b"):
            listed = self.run(side, ["nft", "list", "chain", "inet", "omnilab", "ingress"])
            found = re.search(r"limit rate over .*? counter packets (\d+)", listed.stdout)
            drops[side] = int(found.group(1)) if found else 0
        return drops

    def harness_report(self) -> list[str]:
        """Each delay helper's lateness since the previous report (or its start): how
        much of what a call saw was the lab's own doing."""
        import select

        lines = []
        for proc in self._delayers:
            if proc.poll() is not None or proc.stderr is None:
                continue
            proc.send_signal(signal.SIGUSR1)
            ready, _, _ = select.select([proc.stderr], [], [], STEP_TIMEOUT)
            if ready:
                lines.append(proc.stderr.readline().decode(errors="replace").strip())
        return lines

    def _reload_ingress(self) -> None:
        for side in ("a", "b"):
            self._nft(side, f"flush chain inet omnilab ingress\n{self._ingress_rules(side)}")

    # -- building and tearing down --------------------------------------------------------

    def __enter__(self) -> NetLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for side in ("a", "b"):
            _sh(["ip", "netns", "add", self.ns[side]])
            self._made.append(self.ns[side])
        _sh(["ip", "link", "add", self.veth["a"], "type", "veth", "peer", "name", self.veth["b"]])
        for side in ("a", "b"):
            dev, ns = self.veth[side], self.ns[side]
            _sh(["ip", "link", "set", dev, "netns", ns])
            _sh(
                self.cmd(side, ["ip", "addr", "add", f"{self.addr[side]}/{PREFIX_LEN}", "dev", dev])
            )
            _sh(self.cmd(side, ["ip", "link", "set", dev, "up"]))
            _sh(self.cmd(side, ["ip", "link", "set", "lo", "up"]))
            self._nft(side, self._ruleset(side))
        if self.delay_ms > 0 or self.bursty > 0:
            for side in ("a", "b"):
                self._start_delayer(side)

    def _ruleset(self, side: str) -> str:
        return (
            "table inet omnilab {\n"
            "  chain ingress { type filter hook prerouting priority -300; policy accept; }\n"
            "}\n"
            f"{self._ingress_rules(side)}"
        )

    def _ingress_rules(self, side: str) -> str:
        rules = ""
        match = f'add rule inet omnilab ingress iifname "{self.veth[side]}"'
        if self.loss > 0:
            rules += f"{match} numgen random mod 1000 < {round(self.loss * 1000)} drop\n"
        if self.rate_kbit is not None:
            # The kernel's byte-mode bucket holds one second of the rate (and a `burst`
            # would be added to the rate), so: no burst clause; the first second of a
            # flow may pass up to twice the rate, the rate holds from then on.
            rate = round(self.rate_kbit * 1000 / 8)  # bytes per second
            rules += f"{match} limit rate over {rate} bytes/second counter drop\n"
        return rules

    def _nft(self, side: str, script: str) -> None:
        _sh(self.cmd(side, ["nft", "-f", "-"]), stdin=script)

    def _start_delayer(self, side: str) -> None:
        _sh(
            self.cmd(
                side,
                [
                    "iptables",
                    "-t",
                    "mangle",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    self.veth[side],
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    str(self._queue[side]),
                ],
            )
        )
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "delay",
            str(self._queue[side]),
            str(self.delay_ms),
            str(self.bursty),
            str(self.burst_len[0]),
            str(self.burst_len[1]),
        ]
        proc = subprocess.Popen(
            self.cmd(side, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._delayers.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()  # "ready" once bound
        if line != "ready":
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"the delay helper did not start: {line} {err[-400:]}")

    def close(self) -> None:
        """Remove everything this lab made; safe to call twice."""
        for proc in self._delayers:  # a clean stop: they report their loss counts
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self._children, *self._delayers]:
            if proc.poll() is None and proc not in self._delayers:
                proc.kill()
            try:
                proc.wait(timeout=STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STEP_TIMEOUT)
        for proc in self._delayers:
            if proc.stderr is not None:
                with contextlib.suppress(OSError, ValueError):
                    tail = proc.stderr.read().decode(errors="replace").strip().splitlines()
                    self.bursty_counts.extend(x for x in tail[-1:] if x.startswith("packets"))
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    stream.close()
        self._children.clear()
        self._delayers.clear()
        for ns in reversed(self._made):  # takes its veth end and its nft table along
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()


def _sh(argv: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


# -- the delay helper (runs inside a namespace) ---------------------------------------------


class GilbertElliott:
    """Two-state bursty loss: `lost()` per packet, about `average` of them in bursts.

    The good state loses nothing; each packet in it starts a burst with probability
    `enter`; the bad state loses every packet and lasts a length drawn uniformly from
    `burst_len`. With mean burst length m, the average loss is enter*m / (1 + enter*m),
    so enter = average / (m * (1 - average)).
    """

    def __init__(self, average: float, burst_len: tuple[int, int], seed: int | None = None):
        import random

        self.rng = random.Random(seed)
        self.burst_len = burst_len
        mean = (burst_len[0] + burst_len[1]) / 2
        self.enter = average / (mean * (1 - average)) if average > 0 else 0.0
        self.left = 0  # packets still to lose in the current burst
        self.packets = self.dropped = self.bursts = 0

    def lost(self) -> bool:
        self.packets += 1
        if self.left == 0 and self.enter > 0 and self.rng.random() < self.enter:
            self.left = self.rng.randint(*self.burst_len)
            self.bursts += 1
        if self.left > 0:
            self.left -= 1
            self.dropped += 1
            return True
        return False


HELPER_PRIORITY = 20  # SCHED_FIFO priority of the delay helper (1-99)
LATE_MS = 20.0  # a packet released this much after its time counts as late


def realtime() -> str:
    """Run this process before every ordinary one (SCHED_FIFO), so a busy machine delays
    the call, not the lab around it; what it got ("fifo", "nice" or "normal").
    NETLAB_PRIORITY=normal leaves it an ordinary process (to measure the difference)."""
    if os.environ.get("NETLAB_PRIORITY") == "normal":
        return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(HELPER_PRIORITY))
        return "fifo"
    except (AttributeError, OSError):
        try:
            os.nice(-10)
            return "nice"
        except OSError:
            return "normal"


class Lateness:
    """How late the helper released packets (its own starvation, not the call's)."""

    def __init__(self) -> None:
        self.released = self.late = 0
        self.worst = 0.0

    def release(self, due: float, now: float) -> None:
        self.released += 1
        late_ms = 1000 * (now - due)
        self.worst = max(self.worst, late_ms)
        if late_ms > LATE_MS:
            self.late += 1

    def line(self) -> str:
        return f"late>{LATE_MS:g}ms {self.late} of {self.released}, worst {self.worst:.0f} ms"


def queue_drops() -> str:
    """The kernel's drop counters of this namespace's NFQUEUEs (full queue, failed copy)."""
    try:
        rows = Path("/proc/self/net/netfilter/nfnetlink_queue").read_text().split()
    except OSError:
        return "kernel queue drops unknown"
    fields = 9  # queue, portid, waiting, mode, range, queue_dropped, user_dropped, id, 1
    dropped = sum(int(rows[i + 5]) + int(rows[i + 6]) for i in range(0, len(rows), fields))
    return f"kernel queue drops {dropped}"


def delay_main(
    queue_num: int, delay_ms: float, bursty: float = 0.0, burst_len: tuple[int, int] = (3, 10)
) -> None:
    """Drop packets of NFQUEUE `queue_num` by the bursty model, delay the rest `delay_ms`."""
    import asyncio
    import signal

    from netfilterqueue import COPY_META, NetfilterQueue

    model = GilbertElliott(bursty, burst_len)
    priority = realtime()
    lateness = Lateness()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        nfq = NetfilterQueue()
        delay = delay_ms / 1000.0

        def release(pkt: Any, due: float) -> None:
            pkt.accept()
            lateness.release(due, loop.time())

        def handle(pkt: Any) -> None:
            if model.lost():
                pkt.drop()
            elif delay > 0:
                arrived = pkt.get_timestamp() or 0.0  # the kernel's, if it stamped it
                late = time.time() - arrived if 0 < time.time() - arrived < 5 else 0.0
                due = loop.time() - late + delay
                loop.call_at(due, release, pkt, due)
            else:
                pkt.accept()

        nfq.bind(queue_num, handle, max_len=8192, mode=COPY_META)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_reader(nfq.get_fd(), nfq.run, False)

        def report() -> None:  # SIGUSR1: the counts so far, then start again
            nonlocal lateness
            print(f"{lateness.line()}; {queue_drops()}", file=sys.stderr, flush=True)
            lateness = Lateness()

        loop.add_signal_handler(signal.SIGUSR1, report)
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            loop.remove_reader(nfq.get_fd())
            nfq.unbind()
            print(
                f"packets {model.packets} dropped {model.dropped} in {model.bursts} bursts; "
                f"{lateness.line()}; {queue_drops()}; priority {priority}",
                file=sys.stderr,
                flush=True,
            )

    asyncio.run(serve())


def selftest() -> int:
    if (why := unavailable()) is not None:
        print(f"netlab unavailable: {why}")
        return 1
    with NetLab(loss=0.05, delay_ms=50) as lab:
        started = time.monotonic()
        out = lab.run("a", ["ping", "-c", "20", "-i", "0.05", "-q", lab.addr_b])
        print(out.stdout.strip() or out.stderr.strip())
        print(f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "delay":
        extra = sys.argv[4:7] if len(sys.argv) >= 7 else ["0", "3", "10"]
        delay_main(
            int(sys.argv[2]), float(sys.argv[3]), float(extra[0]), (int(extra[1]), int(extra[2]))
        )
    elif sys.argv[1:] == ["selftest"]:
        raise SystemExit(selftest())
    else:
        print(__doc__)
        raise SystemExit(2)
