"""Hostile load: what attacks cost `omni server` and the clients it still serves.

Each attack runs against a fresh `omni server` child process, from raw sockets on
loopback (attackers do not answer pings and do not read), while a legitimate client
repeats one cycle: connect, hello, create_session, session_list, and a whole call with
a second legitimate client (offer, RINGING, answer, ANSWERED, media_state from both,
CONNECTED, leave). Figures per attack: the server's peak resident memory during the
attack and a few seconds after it, the legitimate cycle's latency (median, max, and
how many cycles failed), connections held at the caps, and the lines the server
logged per second.

1. ping flood: connections that never say hello flood ping frames and never read
   (the issue's attack: 330 MB held per connection).
2. idle connections: hello-only connections from one address, then from many, and
   connections that never say hello, under a descriptor limit of 1,024 soft / 4,096
   hard (the attack locked every client out at about 1,000).
3. session_list amplification: 1,000 sessions; connections ask for the whole list
   within the rate limit and never read (the attack grew the server by 1 GB).

Baseline in the same run: the same legitimate cycle and the memory of the same server
with no attack.

    .venv/bin/python scripts/bench_hostile.py [--seconds 10] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import benchlib as bl
from hostile import PongKeeper, fd_count, open_ws, ping_flood, read_json, rss_mib, text

FAKE_SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"


class Run:
    """One server under one attack: its log, its memory, the legitimate client's figures."""

    root = bl.ROOT  # the checkout whose server runs (--before: another one)

    def __init__(self, *extra: str, prefix: list[str] | None = None) -> None:
        # open for the run's life, closed by close()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="omni-hostile-", suffix=".log")  # noqa: SIM115
        self.server = bl.Server(*extra, prefix=prefix, log=self.log, root=self.root)
        self.url = self.server.url
        self.peak = rss_mib(self.server.pid)
        self.latencies: list[float] = []
        self.failures = 0
        self._n = 0
        self._stop = threading.Event()

    def lines(self) -> int:
        with open(self.log.name) as f:
            return sum(1 for _ in f)

    def sample(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.peak = max(self.peak, rss_mib(self.server.pid))

    def cycle(self) -> None:
        """One legitimate cycle; its latency, or a failure."""
        self._n += 1
        n = self._n
        started = time.perf_counter()
        socks: list[socket.socket] = []
        try:
            for who in ("a", "b"):
                sock = open_ws(self.url, source="127.0.9.1", timeout=5)
                socks.append(sock)
                sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
                sock.sendall(text({"op": "create_session", "id": 2, "user_id": f"{who}{n}"}))
                assert read_json(sock)["ok"] and read_json(sock)["ok"]
            a, b = socks
            a.sendall(text({"op": "session_list", "id": 3, "limit": 20}))
            assert read_json(a)["ok"]
            offer = {"call_type": "audiocall", "callee": f"b{n}", "sdp": FAKE_SDP}
            a.sendall(text({"op": "offer_call", "id": 4, **offer}))
            assert read_json(a)["ok"]  # then RINGBACK
            assert read_json(b)["event"] == "RINGING"
            b.sendall(text({"op": "answer_call", "id": 3, "sdp": FAKE_SDP}))
            assert read_json(b)["ok"]
            assert read_json(a)["event"] == "RINGBACK" and read_json(a)["event"] == "ANSWERED"
            for sock, rid in ((a, 5), (b, 4)):
                sock.sendall(text({"op": "media_state", "id": rid, "state": "connected"}))
            for sock in (a, b):
                while read_json(sock).get("event") != "CONNECTED":
                    pass
            a.sendall(text({"op": "leave", "id": 6}))
            assert read_json(a)["ok"] and read_json(b)["event"] == "LEAVE"
            self.latencies.append((time.perf_counter() - started) * 1000)
        except (OSError, AssertionError, KeyError, ValueError):
            self.failures += 1
        finally:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"\x88\x82\0\0\0\0\x03\xe8")  # close 1000: ends at once
                sock.close()

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """Sample memory and run legitimate cycles in a thread while the block runs."""

        def loop() -> None:
            while not self._stop.is_set():
                self.sample()
                self.cycle()
                self._stop.wait(0.2)

        self.latencies.clear()
        self.failures = 0
        self._stop.clear()
        lines = self.lines()
        started = time.monotonic()
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self.sample()
            self.lines_per_s = (self.lines() - lines) / (time.monotonic() - started)

    def after(self, seconds: float) -> float:
        """Resident memory `seconds` after the attack ended."""
        time.sleep(seconds)
        return rss_mib(self.server.pid)

    def figures(self, **extra: Any) -> dict[str, Any]:
        lat = bl.summary(self.latencies)
        return {
            "peak_mib": round(self.peak, 1),
            "legit_ms_median": lat["median"],
            "legit_ms_max": lat["max"],
            "legit_cycles": lat["count"],
            "legit_failed": self.failures,
            "log_lines_per_s": round(self.lines_per_s, 1),
            **extra,
        }

    def close(self) -> None:
        self.server.stop()
        self.log.close()


def in_threads(jobs: list[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def hello_only(url: str, sources: list[str], each: int, hello: bool = True) -> list[socket.socket]:
    held = []
    for source in sources:
        failed = 0
        for _ in range(each):
            try:
                sock = open_ws(url, source=source, timeout=2)
                failed = 0
            except OSError:
                failed += 1
                if failed >= 20:  # the server takes no more (an older one may hang them)
                    break
                continue
            if hello:
                sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
            held.append(sock)
    return held


def alive(socks: list[socket.socket]) -> int:
    """How many of `socks` the server still holds (not closed or reset)."""
    count = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            while sock.recv(1 << 16):  # what the server sent before any close or reset
                pass
        except BlockingIOError:
            count += 1  # nothing more to read, and no close: still held
        except OSError:
            pass
    return count


def _flood(url: str, seconds: float, sent: Any) -> None:
    sock = open_ws(url, source="127.0.1.1", rcvbuf=4096)
    sent.value = ping_flood(sock, seconds)
    sock.close()


def baseline(seconds: float) -> dict[str, Any]:
    run = Run()
    try:
        with run.measuring():
            time.sleep(seconds)
        return run.figures(rss_mib=round(rss_mib(run.server.pid), 1))
    finally:
        run.close()


def attack_ping_flood(seconds: float, flooders: int) -> dict[str, Any]:
    run = Run()
    try:
        base = rss_mib(run.server.pid)
        # each flooder in its own process: spinning threads here would slow the probe
        sent = [multiprocessing.Value("q", 0) for _ in range(flooders)]
        procs = [multiprocessing.Process(target=_flood, args=(run.url, seconds, v)) for v in sent]
        with run.measuring():
            for proc in procs:
                proc.start()
            for proc in procs:
                proc.join()
        return run.figures(
            base_mib=round(base, 1),
            after_mib=round(run.after(3), 1),
            flood_mib_sent=round(sum(v.value for v in sent) / 2**20, 1),
            connections=flooders,
        )
    finally:
        run.close()


def attack_idle(seconds: float, per_address: int, addresses: int) -> dict[str, Any]:
    run = Run(prefix=["prlimit", "--nofile=1024:4096"])
    try:
        base = rss_mib(run.server.pid)
        keeper = PongKeeper()  # the hello-only ones answer keepalive pings, as a library would
        with run.measuring():
            one = hello_only(run.url, ["127.0.2.1"], per_address * 4)
            held_one = alive(one)
            keeper.add(one)
            many = []
            for n in range(1, addresses + 1):
                many += (group := hello_only(run.url, [f"127.0.3.{n}"], 300))
                keeper.add(group)
            mute = hello_only(run.url, [f"127.0.4.{n}" for n in range(1, 5)], 250, hello=False)
            held_mute = alive(mute)
            fds = fd_count(run.server.pid)
            time.sleep(seconds)
            keeper.stop()
            held_all = alive(one + many + mute)
        for sock in one + many + mute:
            sock.close()
        return run.figures(
            base_mib=round(base, 1),
            after_mib=round(run.after(3), 1),
            tried=per_address * 4 + addresses * 300 + 1000,
            held_from_one_address=held_one,
            held_in_total=held_all,
            held_unauthenticated=held_mute,
            server_fds=fds,
        )
    finally:
        run.close()


def attack_list(seconds: float, sessions: int, askers: int) -> dict[str, Any]:
    run = Run(*(() if Run.root != bl.ROOT else ("--max-per-address", str(sessions + askers + 10))))
    try:
        users = []
        for n in range(sessions):
            try:
                sock = open_ws(run.url, source="127.0.5.1")
            except OSError as exc:
                with open(run.log.name) as f:
                    tail = f.read()[-2000:]
                raise RuntimeError(f"registering session {n}: {exc}; server log:\n{tail}") from exc
            sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
            sock.sendall(text({"op": "create_session", "id": 2, "user_id": f"user-{n:05d}"}))
            users.append(sock)
        for sock in users:
            assert read_json(sock)["ok"] and read_json(sock)["ok"]
        base = rss_mib(run.server.pid)
        socks = [open_ws(run.url, source="127.0.6.1", rcvbuf=4096) for _ in range(askers)]
        for sock in socks:
            sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))

        def ask(sock: socket.socket) -> None:  # 20 a second: within the rate limit
            sock.settimeout(0.5)
            end = time.monotonic() + seconds
            n = 2
            while time.monotonic() < end:
                with contextlib.suppress(OSError):
                    sock.send(text({"op": "session_list", "id": n}))
                n += 1
                time.sleep(0.05)

        with run.measuring():
            in_threads([lambda s=s: ask(s) for s in socks])
        held = alive(socks)
        for sock in (*socks, *users):
            sock.close()
        return run.figures(
            base_mib=round(base, 1),
            after_mib=round(run.after(3), 1),
            sessions=sessions,
            askers=askers,
            askers_still_held=held,
        )
    finally:
        run.close()


def attacks(seconds: float, quick: bool) -> dict[str, dict[str, Any]]:
    return {
        "none": baseline(seconds),
        "ping flood": attack_ping_flood(seconds, 4),
        "idle conns": attack_idle(seconds, 256, 10 if quick else 16),
        "session_list": attack_list(seconds, 300 if quick else 1000, 20 if quick else 100),
    }


def show(figures: dict[str, dict[str, Any]], seconds: float) -> None:
    rows = []
    for name, f in figures.items():
        rows.append(
            [
                name,
                f.get("base_mib", f.get("rss_mib")),
                f["peak_mib"],
                f.get("after_mib"),
                f["legit_ms_median"],
                f["legit_ms_max"],
                f"{f['legit_failed']}/{f['legit_cycles'] + f['legit_failed']}",
                f["log_lines_per_s"],
            ]
        )
    headers = ["attack", "base MiB", "peak MiB", "after MiB", "legit ms", "max ms", "failed"]
    bl.table([*headers, "log/s"], rows)
    flood, idle, listing = figures["ping flood"], figures["idle conns"], figures["session_list"]
    print(
        f"ping flood: {flood['connections']} connections sent {flood['flood_mib_sent']} MiB "
        "of pings"
    )
    print(
        f"idle: {idle['tried']} tried, held {idle['held_from_one_address']} from one address, "
        f"{idle['held_unauthenticated']} without hello (server descriptors "
        f"{idle['server_fds']}), {idle['held_in_total']} in total {seconds:g} s later"
    )
    print(
        f"session_list: {listing['sessions']} sessions, {listing['askers']} askers, "
        f"{listing['askers_still_held']} still held at the end"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="each attack's length")
    ap.add_argument("--quick", action="store_true", help="3 s attacks, fewer connections")
    ap.add_argument(
        "--before", type=Path, help="also attack the server of this checkout (an older commit)"
    )
    args = ap.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    print(f"load before: {[round(x, 2) for x in os.getloadavg()]}")
    result: dict[str, Any] = {"seconds": seconds}
    if args.before:
        Run.root = args.before.resolve()
        print(f"== the server of {Run.root}")
        result["before"] = before = attacks(seconds, args.quick)
        show(before, seconds)
        Run.root = bl.ROOT
        print(f"== the server of {bl.ROOT}")
    result["after"] = now = attacks(seconds, args.quick)
    show(now, seconds)
    print(f"load after: {[round(x, 2) for x in os.getloadavg()]}")
    bl.write("hostile", result)


if __name__ == "__main__":
    main()
