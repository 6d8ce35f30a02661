"""The server under abuse (issue #10): each attack reproduced on loopback, bounded in count
and time, and the bound it must keep asserted (the server process's memory and
descriptors from /proc, its log lines, a legitimate client's latency)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hostile import fd_count, frame, gone, open_ws, ping_flood, read_frame, read_json, rss_mib, text
from procs import Omni, run_omni, start_server
from websockets.asyncio.client import connect

import omnicli.server.connection as bounded
import omnicli.server.driver as srv
from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.server.switchboard import Service
from omnicli.wire import tokens

KEY = "acme-key"


@contextlib.contextmanager
def server_process(*extra: str, prefix: tuple[str, ...] = ()) -> Iterator[tuple[Omni, str]]:
    server, url = start_server(*extra, prefix=prefix)
    try:
        yield server, url
    finally:
        server.stop()


def legit_cycle(url: str, source: str, name: str, **hello: Any) -> float:
    """Seconds a well-behaved client takes to connect, hello, register, list and leave."""
    hello.setdefault("service_id", "dev")
    started = time.monotonic()
    sock = open_ws(url, source=source)
    try:
        sock.sendall(text({"op": "hello", "id": 1, "version": 1, **hello}))
        assert read_json(sock)["ok"]
        sock.sendall(text({"op": "create_session", "id": 2, "user_id": name}))
        assert read_json(sock)["ok"]
        sock.sendall(text({"op": "session_list", "id": 3, "limit": 5}))
        assert read_json(sock)["ok"]
    finally:
        sock.close()
    return time.monotonic() - started


class Sampler:
    """Samples a process's resident memory in a thread; `peak` after `stop()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def in_threads(*jobs: Callable[[], object]) -> list[object]:
    results: list[object] = [None] * len(jobs)

    def run(i: int, job: Callable[[], object]) -> None:
        results[i] = job()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- 1. ping floods --------------------------------------------------------------------------


def test_ping_flood_without_hello_pins_no_memory() -> None:
    """Two clients flood ping frames for 3 s with no hello and never read (the attack left
    330 MB per connection): the server grows by a few MiB at most, and a legitimate client
    is served meanwhile."""
    with server_process("--service", f"acme:{KEY}", "--require-tokens") as (server, url):
        pid = server.proc.pid

        def hello(user: str) -> dict[str, str]:
            now = time.time()
            token = tokens.mint_user_token(KEY, service_id="acme", user_id=user, ttl=60, now=now)
            return {"service_id": "acme", "token": token}

        legit_cycle(url, "127.0.0.2", "warm", **hello("warm"))  # first-use allocations
        base = rss_mib(pid)
        sampler = Sampler(pid)
        flooders = [open_ws(url, rcvbuf=4096) for _ in range(2)]
        latency: list[float] = []

        def probe() -> None:
            time.sleep(1.0)
            latency.append(legit_cycle(url, "127.0.0.2", "alice", **hello("alice")))

        sent = in_threads(*(lambda s=s: ping_flood(s, 3.0) for s in flooders), probe)
        peak = sampler.stop()
        for s in flooders:
            s.close()
        assert sum(n for n in sent if isinstance(n, int)) > 1 << 20  # the flood did go out
        assert peak - base < 8, f"server grew {peak - base:.1f} MiB under the flood"
        assert latency and latency[0] < 1.0


async def test_a_client_that_reads_nothing_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that said hello and floods pings without reading: once its writes stay
    paused for WRITE_STALL the server aborts it (the connection and its buffers go)."""
    monkeypatch.setattr(bounded, "WRITE_STALL", 1.0)
    async with SignalingServer(ServerConfig(port=0)) as server:
        sock = await asyncio.to_thread(open_ws, server.url, None, 4096)
        sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
        started = time.monotonic()
        await asyncio.to_thread(ping_flood, sock, 6.0)
        assert time.monotonic() - started < 4.0  # aborted: the flood stopped early
        assert await asyncio.to_thread(gone, sock, 2.0)
        sock.close()
        async with asyncio.timeout(2):
            while server.admission.gate.total or server._clients:
                await asyncio.sleep(0.02)


async def test_a_close_the_server_decides_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hello timeout closes a ping flooder that reads nothing within CLOSE_TIMEOUT more,
    although the close handshake can never be done (it used to wait for ever)."""
    monkeypatch.setattr(srv, "HELLO_TIMEOUT", 0.5)
    monkeypatch.setattr(bounded, "WRITE_STALL", 60.0)  # not the stall deadline: the close
    async with SignalingServer(ServerConfig(port=0)) as server:
        sock = await asyncio.to_thread(open_ws, server.url, None, 4096)
        started = time.monotonic()
        await asyncio.to_thread(ping_flood, sock, 6.0)
        assert time.monotonic() - started < 0.5 + srv.CLOSE_TIMEOUT + 1.5
        sock.close()
        async with asyncio.timeout(2):
            while server.admission.gate.total or server._clients:
                await asyncio.sleep(0.02)


# -- 2. descriptor exhaustion ----------------------------------------------------------------


def hello_only(url: str, source: str, count: int) -> list[Any]:
    """`count` connections from `source` that say hello and nothing more; the ones the
    server took (the others were refused)."""
    held = []
    for _ in range(count):
        try:
            sock = open_ws(url, source=source, timeout=2.0)
            sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
            held.append(sock)
        except OSError:
            pass
    return held


def test_idle_connections_cannot_lock_everyone_out() -> None:
    """With a descriptor limit of 256 (so at most 192 connections), 150 hello-only
    connections from one address and 100 from each of six more (the attack made every
    client time out with 1,000 of them): the server holds 100 per address, never runs out
    of descriptors or floods its log, and fresh clients still register, list and call."""
    prefix = ("prlimit", "--nofile=256:256")
    with server_process("--max-per-address", "100", prefix=prefix) as (server, url):
        pid = server.proc.pid
        held = hello_only(url, "127.0.0.1", 150)
        assert 90 <= len(held) <= 100  # the per-address cap (a few may be closed by now)
        for n in range(3, 9):
            held += hello_only(url, f"127.0.0.{n}", 100)
        assert fd_count(pid) < 256 - 16
        latencies = [legit_cycle(url, f"127.0.1.{n}", f"user{n}") for n in range(1, 6)]
        assert max(latencies) < 1.0, latencies
        # a whole call between two fresh clients while the caps are hit
        alice, bob = (open_ws(url, source=f"127.0.2.{n}") for n in (1, 2))
        for sock, name in ((alice, "alice"), (bob, "bob")):
            sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
            sock.sendall(text({"op": "create_session", "id": 2, "user_id": name}))
            assert read_json(sock)["ok"] and read_json(sock)["ok"]
        alice.sendall(text({"op": "offer_call", "id": 3, "call_type": "audiocall",
                            "callee": "bob", "sdp": "o"}))  # fmt: skip
        assert read_json(alice)["ok"] and read_json(bob)["event"] == "RINGING"
        bob.sendall(text({"op": "answer_call", "id": 3, "sdp": "a"}))
        assert read_json(bob)["ok"]
        bob.sendall(text({"op": "leave", "id": 4}))
        assert read_json(bob)["result"]["reason"] == "hangup"
        for sock in (*held, alice, bob):
            sock.close()
        log = "\n".join(server.stderr_lines)
        assert "out of system resource" not in log
        assert len(server.stderr_lines) < 400, len(server.stderr_lines)
        assert "refused: 100 connections from 127.0.0.1" in log


# -- 3. session_list amplification -----------------------------------------------------------


def register(url: str, names: list[str], source: str) -> list[Any]:
    socks = []
    for name in names:
        sock = open_ws(url, source=source)
        sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
        sock.sendall(text({"op": "create_session", "id": 2, "user_id": name}))
        assert read_json(sock)["ok"] and read_json(sock)["ok"]
        socks.append(sock)
    return socks


def test_session_list_answers_cannot_pile_up() -> None:
    """300 sessions with long ids (a 29 KB answer); ten clients pipeline session_list for
    3 s and never read (the attack grew the server by 273 MB): the server stops reading
    them instead of queueing answers, grows a few MiB at most, and a legitimate client's
    list still comes back at once."""
    with server_process("--max-per-address", "1000") as (server, url):
        pid = server.proc.pid
        names = [f"user-{n:03d}-" + "x" * 50 for n in range(300)]
        held = register(url, names, "127.0.0.1")
        probe = register(url, ["probe"], "127.0.0.3")[0]
        base = rss_mib(pid)
        sampler = Sampler(pid)
        attackers = [open_ws(url, source="127.0.0.2", rcvbuf=4096) for _ in range(10)]
        for sock in attackers:
            sock.sendall(text({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}))
        ask = b"".join(text({"op": "session_list", "id": n}) for n in range(2, 66))

        def pipeline(sock: Any) -> None:
            sock.settimeout(0.05)
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                with contextlib.suppress(TimeoutError):
                    sock.send(ask)

        latency: list[float] = []

        def probe_list() -> None:
            time.sleep(1.5)
            started = time.monotonic()
            probe.sendall(text({"op": "session_list", "id": 9, "limit": 1000}))
            answer = read_json(probe)
            latency.append(time.monotonic() - started)
            assert answer["result"]["total"] == 301

        in_threads(*(lambda s=s: pipeline(s) for s in attackers), probe_list)
        peak = sampler.stop()
        for sock in (*held, *attackers, probe):
            sock.close()
        assert peak - base < 10, f"server grew {peak - base:.1f} MiB"
        assert latency and latency[0] < 1.0, latency


def test_sessions_command_says_when_the_list_is_cut() -> None:
    """`omni sessions --limit 5` with 12 online says it shows 5 of 12; `--all` pages
    through every one (session_list with `after`)."""
    with server_process() as (_, url):
        held = register(url, [f"u{n:02d}" for n in range(12)], "127.0.0.1")
        try:
            cut = run_omni("sessions", "--server", url, "--limit", "5")
            assert cut.returncode == 0, cut.stderr
            assert "showing the first 5 of 12 sessions" in cut.stderr
            every = run_omni("sessions", "--server", url, "--all", "--json", "--limit", "5")
            rows = [json.loads(line)["user_id"] for line in every.stdout.splitlines()]
            assert rows == [f"u{n:02d}" for n in range(12)]
            assert "showing" not in every.stderr
        finally:
            for sock in held:
                sock.close()


# -- 4. one response per request ------------------------------------------------------------


@pytest.mark.parametrize("count", [500, 10_000])
async def test_every_pipelined_request_gets_one_response(count: int) -> None:
    """A client that reads its answers and pipelines `count` pings (the attack got no
    answer to 234 of 500, and a 1008 close at 10,000): one response each, in order, 429
    beyond the rate limit, and the connection stays open."""
    async with SignalingServer(ServerConfig(port=0)) as server, connect(server.url) as ws:
        got: list[dict[str, Any]] = []

        async def read() -> None:
            while len(got) < count:
                got.append(json.loads(await ws.recv()))

        reader = asyncio.create_task(read())
        for rid in range(1, count + 1):
            await ws.send(json.dumps({"op": "ping", "id": rid}))
        await asyncio.wait_for(reader, 30)
        assert [r["id"] for r in got] == list(range(1, count + 1))
        codes = {r["error"]["code"] for r in got if not r["ok"]}
        assert codes == {429} and sum(r["ok"] for r in got) >= 40
        await asyncio.sleep(0.2)
        await ws.send(json.dumps({"op": "ping", "id": 0}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["ok"]


# -- 5. log injection ----------------------------------------------------------------------


def test_client_text_cannot_forge_log_lines() -> None:
    """Newlines, NUL and escape sequences in client fields reach the log escaped: no line
    of the server's log is the forged one (a service id with a newline forged one)."""
    forged = "x\n12:00:00 FORGED admin online\x00\x1b[2J"
    with server_process() as (server, url):
        sock = open_ws(url)
        requests = [
            {"op": "hello", "id": 1, "version": 1, "service_id": forged},
            {"op": "hello", "id": 2, "version": 1, "service_id": "dev", "client": forged},
            {"op": "create_session", "id": 3, "user_id": forged},
            {"op": "create_session", "id": 4, "user_id": "alice"},
            {"op": "answer_call", "id": 5, "caller": forged, "sdp": "a"},
            {"op": "offer_call", "id": 6, "call_type": "audiocall", "callee": forged, "sdp": "o"},
            {"op": forged, "id": 7},
        ]
        for request in requests:
            sock.sendall(text(request))
            read_json(sock)
        sock.sendall(text({"op": "ping", "id": 8}))
        read_json(sock)
        sock.close()
        deadline = time.monotonic() + 5
        while "FORGED" not in "".join(server.stderr_lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = list(server.stderr_lines)
    assert any("FORGED" in line for line in lines)  # it was logged, escaped
    assert any("\\n12:00:00 FORGED" in line for line in lines)
    for line in lines:  # the forged line would start a line of its own
        assert not line.startswith("12:00:00 FORGED")
        assert "\x00" not in line and "\x1b" not in line


# -- 6. guessing service keys ----------------------------------------------------------------


async def test_failed_hellos_are_throttled_per_address(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One address reconnecting and guessing keys as fast as it can for 2 s (the attack
    made 2,200-3,100 guesses a second, each one logged): a handful are checked, the rest
    are turned away (429 or HTTP 429), the log has a summary line, not one per guess, and
    another address is served meanwhile."""
    monkeypatch.setattr(srv, "AUTH_REPORT", 0.5)
    caplog.set_level(logging.INFO, logger="omnicli.server.driver")
    config = ServerConfig(port=0, services=(Service("acme", KEY),))
    async with SignalingServer(config) as server:
        checked = turned_away = 0

        def guess() -> None:
            nonlocal checked, turned_away
            end = time.monotonic() + 2.0
            n = 0
            while time.monotonic() < end:
                try:
                    sock = open_ws(server.url, source="127.0.0.5")
                except ConnectionError:
                    turned_away += 1  # HTTP 429 at the handshake
                    continue
                try:
                    for _ in range(5):
                        n += 1
                        hello = {"service_id": "acme", "service_key": f"guess-{n}"}
                        sock.sendall(text({"op": "hello", "id": n, "version": 1, **hello}))
                        code = read_json(sock)["error"]["code"]
                        checked += code == 401
                        turned_away += code == 429
                except ConnectionError:
                    pass
                finally:
                    sock.close()

        guesser = asyncio.create_task(asyncio.to_thread(guess))
        await asyncio.sleep(1.0)
        other = await asyncio.to_thread(
            legit_cycle, server.url, "127.0.0.6", "bob", service_id="acme", service_key=KEY
        )
        await guesser
        await asyncio.sleep(0.6)  # one summary
    assert checked <= 5 + 3, checked  # 5 free, then blocks of 1 s and 2 s
    assert turned_away > 20
    assert other < 1.0
    summaries = [r.getMessage() for r in caplog.records if "failed hellos" in r.getMessage()]
    assert summaries and all(m.startswith("127.0.0.5:") for m in summaries)
    assert len(caplog.records) < 40, [r.getMessage() for r in caplog.records][:40]


# -- 7. fragments ------------------------------------------------------------------------------


async def test_too_many_fragments_close_with_1009() -> None:
    """A message in 100 fragments is fine; one in 5,000 closes the connection with 1009
    'too many fragments' (docs/protocol.md §1)."""
    async with SignalingServer(ServerConfig(port=0)) as server:
        for pieces, closed in ((100, False), (5000, True)):
            sock = await asyncio.to_thread(open_ws, server.url)
            body = json.dumps({"op": "ping", "id": 1, "pad": "p" * pieces}).encode()
            chunks = [body[i : i + 1] for i in range(len(body))]
            head, *middle, last = chunks
            data = frame(0x1, head, fin=False)
            data += b"".join(frame(0x0, c, fin=False) for c in middle) + frame(0x0, last)
            sock.sendall(data)
            if closed:
                opcode, payload = await asyncio.to_thread(read_frame, sock)
                assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1009
                assert b"too many fragments" in payload
            else:
                assert (await asyncio.to_thread(read_json, sock))["ok"]
            sock.close()
