"""Several `omni server` processes on one real Redis: calls across nodes with real media,
a node killed mid-call, Redis restarted mid-call (the call goes on)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from procs import Omni, run_omni, start_server
from redisd import RedisServer
from test_e2e_call import MEDIA, assert_received
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from omnicli.wire import protocol as p

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def nodes(redis: RedisServer) -> Iterator[list[str]]:
    """Two server nodes on the same Redis: their ws:// URLs."""
    procs = [start_server("--redis", redis.url) for _ in range(2)]
    yield [url for _, url in procs]
    for proc, _ in procs:
        proc.stop()


def callee(user: str, server: str, tone: int) -> Omni:
    proc = Omni(
        "session", "create", "--user-id", user, "--auto-answer", "--server", server,
        "--audio-source", f"tone:{tone}", *MEDIA,
    )  # fmt: skip
    assert proc.event("SESSION")["user_id"] == user
    return proc


def call(callee: str, caller: str, server: str, tone: int, seconds: float) -> list[dict]:
    done = run_omni(
        "call", callee, "--video", "--duration", str(seconds), "--user-id", caller,
        "--server", server, "--audio-source", f"tone:{tone}", *MEDIA, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_calls_cross_nodes_both_ways_with_media_and_listings_show_everyone(nodes):
    """Alice on node 1 calls bob on node 2, then dave on node 2 calls carol on node 1:
    frames and tones arrive both ways, and either node lists the users of both."""
    one, two = nodes
    bob = callee("bob", two, 660)
    carol = callee("carol", one, 550)
    try:
        for caller, server, tone, peer, peer_tone, peer_proc in (
            ("alice", one, 440, "bob", 660, bob),
            ("dave", two, 330, "carol", 550, carol),
        ):
            events = call(peer, caller, server, tone, 3)
            names = [e["event"] for e in events]
            assert names[:2] == ["SESSION", "RINGBACK"] and "CONNECTED" in names, names
            leave = events[-1]
            assert (leave["event"], leave["reason"], leave["by"]) == ("LEAVE", "hangup", caller)
            assert_received(leave["summary"], tone_hz=peer_tone, seconds=2.5)
            assert peer_proc.event("RINGING")["caller"] == caller
            peer_leave = peer_proc.event("LEAVE")
            assert (peer_leave["reason"], peer_leave["by"]) == ("hangup", caller)
            assert_received(peer_leave["summary"], tone_hz=tone, seconds=2.5)
        for server in nodes:
            assert listing(server) == [("bob", "idle"), ("carol", "idle")]
    finally:
        bob.stop()
        carol.stop()


def listing(server: str) -> list[tuple[str, str]]:
    """`omni sessions` on that node: (user id, state) rows."""
    rows = sessions(server)
    assert rows is not None, f"omni sessions failed on {server}"
    return rows


def kill9(proc: Omni) -> None:
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)


def test_a_node_killed_mid_call_ends_the_call_for_the_peer_within_10_s(redis):
    """kill -9 of bob's node while alice (on the other node) talks to him: alice hears
    connection_lost within 10 s, and the surviving node lists nobody busy afterwards."""
    one, one_url = start_server("--redis", redis.url)
    two, two_url = start_server("--redis", redis.url)
    bob = callee("bob", two_url, 660)
    alice = Omni(
        "call", "bob", "--user-id", "alice", "--duration", "60", "--server", one_url, *MEDIA
    )
    try:
        alice.event("CONNECTED", timeout=30)
        killed = time.monotonic()
        kill9(two)
        leave = alice.event("LEAVE", timeout=15)
        took = time.monotonic() - killed
        assert (leave["reason"], leave["by"]) == ("connection_lost", "bob")
        assert took < 10, took
        assert listing(one_url) == []  # bob's session ended too
    finally:
        for proc in (alice, bob, one, two):
            proc.stop()


def test_ringing_ends_when_the_callers_node_is_killed(redis):
    """kill -9 of the caller's node while its call rings on another node: the callee hears
    the call end (the deadlines are in Redis; the survivor fires them) and is idle again."""
    one, one_url = start_server("--redis", redis.url, "--ring-timeout", "4")
    two, two_url = start_server("--redis", redis.url, "--ring-timeout", "4")
    bob = Omni("session", "create", "--user-id", "bob", "--server", two_url, *MEDIA)
    alice = Omni("call", "bob", "--user-id", "alice", "--server", one_url, *MEDIA)
    try:
        assert bob.event("RINGING")["caller"] == "alice"
        killed = time.monotonic()
        kill9(one)
        cancel = bob.event("CANCEL", timeout=15)
        assert cancel["reason"] in ("no_answer", "connection_lost"), cancel
        assert time.monotonic() - killed < 10
        # alice's session is away until her node's lease and grace run out, then gone
        while (rows := listing(two_url)) != [("bob", "idle")]:
            assert time.monotonic() - killed < 10, rows
            time.sleep(0.5)
    finally:
        for proc in (alice, bob, one, two):
            proc.stop()


def test_sigterm_drains_a_node_its_call_finishes_then_it_exits(redis):
    """SIGTERM: the node refuses new sessions (/readyz 503) but lets the call of its user
    finish; it exits once that call has ended."""
    one, one_url = start_server("--redis", redis.url)
    two, two_url = start_server("--redis", redis.url)
    bob = callee("bob", two_url, 660)
    alice = Omni(
        "call", "bob", "--user-id", "alice", "--duration", "8", "--server", one_url, *MEDIA
    )
    try:
        alice.event("CONNECTED", timeout=30)
        two.proc.send_signal(signal.SIGTERM)
        ready = "http" + two_url.removeprefix("ws") + "/readyz"
        deadline = time.monotonic() + 5
        while readyz(ready) != 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        refused = run_omni("session", "create", "--user-id", "carol", "--server", two_url, *MEDIA)
        assert "shutting down" in refused.stderr, refused.stderr
        assert two.proc.poll() is None  # still serving bob's call
        assert alice.event("LEAVE", timeout=15)["reason"] == "hangup"
        assert two.wait(timeout=10) == 0
    finally:
        for proc in (alice, bob, one, two):
            proc.stop()


def readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_redis_restarted_mid_call_media_goes_on_and_nobody_stays_busy(redis):
    """Redis stops and comes back empty while alice (node 1) and bob (node 2) talk: media
    keeps flowing peer to peer meanwhile, and once Redis is back the nodes put the call
    back from their copies: both are listed busy, neither hears it end, and when alice's
    `--duration` runs out bob hears her hang up. Then both are idle and a new call to bob
    connects."""
    one, one_url = start_server("--redis", redis.url)
    two, two_url = start_server("--redis", redis.url)
    bob = callee("bob", two_url, 660)
    alice = Omni(
        "call", "bob", "--user-id", "alice", "--duration", "12", "--server", one_url,
        "--audio-source", "tone:440", *MEDIA,
    )  # fmt: skip
    try:
        call_id = alice.event("CONNECTED", timeout=30)["call_id"]
        redis.stop()
        time.sleep(2)
        redis.start()
        deadline = time.monotonic() + 10
        while (rows := sessions(one_url)) != [("alice", "busy"), ("bob", "busy")]:
            assert time.monotonic() < deadline, rows  # (empty until the nodes are back)
            time.sleep(0.3)
        leave = alice.event("LEAVE", timeout=20)  # her --duration, not the outage
        assert (leave["call_id"], leave["reason"], leave["by"]) == (call_id, "hangup", "alice")
        assert_received(leave["summary"], tone_hz=660, seconds=10)  # through the outage
        bob_leave = bob.event("LEAVE", timeout=15)
        assert (bob_leave["call_id"], bob_leave["reason"], bob_leave["by"]) == (
            call_id,
            "hangup",
            "alice",
        )
        assert_received(bob_leave["summary"], tone_hz=440, seconds=10)
        deadline = time.monotonic() + 10
        while listing(two_url) != [("bob", "idle")]:  # alice's call command has ended
            assert time.monotonic() < deadline, listing(two_url)
            time.sleep(0.5)
        events = call("bob", "carol", one_url, 550, 2)
        assert "CONNECTED" in [e["event"] for e in events]
    finally:
        for proc in (alice, bob, one, two):
            proc.stop()


def sessions(server: str) -> list[tuple[str, str]] | None:
    """`omni sessions` rows, or None while the node cannot answer (Redis down)."""
    done = run_omni("sessions", "--json", "--server", server)
    if done.returncode != 0:
        return None
    return [(r["user_id"], r["state"]) for r in map(json.loads, done.stdout.splitlines())]


class Raw:
    """A bare protocol client on one websocket: requests in order, events kept."""

    ws: Any

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str) -> Raw:
        raw = cls(await connect(url, ping_interval=None))
        await raw.ok("hello", version=p.VERSION, service_id="dev")
        return raw

    async def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(self.ids)
        await self.ws.send(json.dumps({"op": op, "id": rid, **fields}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if "event" in msg:
                self.events.append(msg)
            elif msg["id"] == rid:
                assert msg["ok"], msg
                return dict(msg["result"])

    async def event(self, name: str) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while not any(e["event"] == name for e in self.events):
                self.events.append(json.loads(await self.ws.recv()))
        return next(e for e in self.events if e["event"] == name)


async def test_resume_on_another_node_kicks_out_the_old_connection(nodes):
    """dave's session is on node 1 (its connection still open, e.g. half-open after a
    network change); his client resumes it on node 2: node 1 sends the old connection
    KICKOUT and closes it (4000), as one node does, and messages for dave reach node 2."""
    one_url, two_url = nodes
    old = await Raw.open(one_url)
    token = (await old.ok("create_session", user_id="dave"))["resume_token"]
    new = await Raw.open(two_url)
    try:
        await new.ok("resume", resume_token=token)
        kick = json.loads(await asyncio.wait_for(old.ws.recv(), 10))
        assert (kick["event"], kick["user_id"]) == ("KICKOUT", "dave")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(old.ws.recv(), 10)
        assert old.ws.close_code == p.CLOSE_KICKED_OUT
        carol = await Raw.open(one_url)  # a call from node 1 rings dave on node 2
        await carol.ok("create_session", user_id="carol")
        await carol.ok("offer_call", call_type="audiocall", callee="dave", sdp="v=0 offer")
        assert (await new.event("RINGING"))["caller"] == "carol"
        await carol.ws.close()
    finally:
        await new.ws.close()
