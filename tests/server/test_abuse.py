"""The server under abuse (issue #10): each attack reproduced on loopback, bounded in count
and time, and the bound it must keep asserted (the server process's memory and
descriptors from /proc, its log lines, a legitimate client's latency)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hostile import gone, open_ws, ping_flood, read_json, rss_mib, text
from procs import Omni, start_server

import omnicli.server.connection as bounded
import omnicli.server.driver as srv
from omnicli.server.driver import ServerConfig, SignalingServer
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
            while server.gate.total or server._clients:
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
            while server.gate.total or server._clients:
                await asyncio.sleep(0.02)
