"""Races across three `omni server` processes on one Redis, and within one (a node on Redis
serves requests concurrently: they pause at each round trip), from raw protocol clients:
a user id is online once, and a callee rings for one caller only (and every node's
`omni_calls{state}` says so, as the call records in Redis do)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from procs import Omni, start_server
from redisd import RedisServer
from websockets.asyncio.client import ClientConnection, connect

from omnicli.server.cluster import LEASE_TTL
from omnicli.wire import protocol as p

pytestmark = pytest.mark.e2e
REDIS_URLS: list[str] = []  # the module's Redis, for nodes a test starts itself
REDIS_OF: dict[str, str] = {}  # a node's URL -> its Redis's


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[list[str]]:
    redis = RedisServer().start()
    REDIS_URLS[:] = [redis.url]
    procs: list[Omni] = []
    urls: list[str] = []
    try:
        for _ in range(3):
            proc, url = start_server("--redis", redis.url, "--rate-limit", "0")
            procs.append(proc)
            urls.append(url)
            REDIS_OF[url] = redis.url
        yield urls
    finally:
        for proc in procs:
            proc.stop()
        redis.close()


@pytest.fixture(scope="module")
def one_node() -> Iterator[list[str]]:
    redis = RedisServer().start()
    proc, url = start_server("--redis", redis.url, "--rate-limit", "0")
    REDIS_OF[url] = redis.url
    try:
        yield [url]
    finally:
        proc.stop()
        redis.close()


LAYOUTS = pytest.mark.parametrize("layout", ["three_nodes", "one_node"])


class Client:
    """One raw protocol connection: requests by id, events kept aside."""

    ids = itertools.count(1)

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str) -> Client:
        client = cls(await connect(url))
        assert (await client.request("hello", version=p.VERSION, service_id="dev"))["ok"]
        return client

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(self.ids)
        await self.ws.send(json.dumps({"op": op, "id": rid, **fields}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == rid:
                return message
            self.events.append(message)

    async def event(self, name: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.events:
                    if message.get("event") == name:
                        self.events.remove(message)
                        return message
                self.events.append(json.loads(await self.ws.recv()))


def scanned_states(redis_url: str) -> dict[str, int]:
    """Calls per state as the records in Redis say (a full SCAN: what a scrape does not)."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as r:
        keys = list(r.scan_iter(match="omni:{dev}:c:*", count=1000))
        records = [json.loads(text) for text in r.mget(keys)] if keys else []
    return dict(Counter(record["state"] for record in records))


def metrics_states(url: str) -> dict[str, int]:
    """`omni_calls{state}` from the node's /metrics."""
    http = url.replace("ws://", "http://", 1).rstrip("/") + "/metrics"
    with urllib.request.urlopen(http, timeout=5) as resp:
        text = resp.read().decode()
    rows = [line for line in text.splitlines() if line.startswith('omni_calls{state="')]
    return {row.split('"')[1]: int(float(row.split()[-1])) for row in rows}


async def states_everywhere(urls: list[str]) -> dict[str, int]:
    """The calls per state, the same on every node's /metrics and in the records."""
    scraped = [await asyncio.to_thread(metrics_states, url) for url in urls]
    scanned = await asyncio.to_thread(scanned_states, REDIS_OF[urls[0]])
    assert all(states == scanned for states in scraped), (scraped, scanned)
    return scanned


async def open_all(urls: list[str], n: int) -> list[Client]:
    return list(await asyncio.gather(*(Client.open(urls[i % len(urls)]) for i in range(n))))


@LAYOUTS
async def test_100_clients_register_one_user_id_at_once_and_exactly_one_wins(layout, request):
    clients = await open_all(request.getfixturevalue(layout), 100)
    try:
        replies = await asyncio.gather(
            *(c.request("create_session", user_id="same") for c in clients)
        )
        winners = [r for r in replies if r["ok"]]
        codes = {r["error"]["code"] for r in replies if not r["ok"]}
        assert len(winners) == 1 and codes == {p.ErrorCode.USER_ID_TAKEN}, codes
        listing = await clients[1].request("session_list")
        assert [s["user_id"] for s in listing["result"]["sessions"]] == ["same"]
    finally:
        await asyncio.gather(*(c.ws.close() for c in clients))


@LAYOUTS
async def test_50_callers_call_one_callee_at_once_one_rings_and_nobody_stays_busy(layout, request):
    urls = request.getfixturevalue(layout)
    callee = await Client.open(urls[0])
    callers = await open_all(urls, 50)
    try:
        assert (await callee.request("create_session", user_id="target"))["ok"]
        for i, c in enumerate(callers):
            assert (await c.request("create_session", user_id=f"caller{i:02d}"))["ok"]
        offer = {"call_type": "audiocall", "callee": "target", "sdp": "v=0"}
        replies = await asyncio.gather(*(c.request("offer_call", **offer) for c in callers))
        won = [i for i, r in enumerate(replies) if r["ok"]]
        codes = {r["error"]["code"] for r in replies if not r["ok"]}
        assert len(won) == 1 and codes == {p.ErrorCode.BUSY}, (won, codes)
        ringing = await callee.event("RINGING")
        assert ringing["caller"] == f"caller{won[0]:02d}"
        assert await states_everywhere(urls) == {"ringing": 1}
        assert (await callee.request("leave"))["result"]["reason"] == "declined"
        assert (await callers[won[0]].event("LEAVE"))["reason"] == "declined"
        assert await states_everywhere(urls) == {}
        assert not [e for e in callee.events if e.get("event") == "RINGING"]  # one ring only
        listing = await callers[7].request("session_list", limit=100)
        rows = listing["result"]["sessions"]
        assert len(rows) == 51 and {r["state"] for r in rows} == {"idle"}
        again = await callers[(won[0] + 1) % 50].request("offer_call", **offer)
        assert again["ok"], again
        assert (await callee.event("RINGING"))["caller"] == f"caller{(won[0] + 1) % 50:02d}"
        assert await states_everywhere(urls) == {"ringing": 1}
    finally:
        await asyncio.gather(*(c.ws.close() for c in [callee, *callers]))


async def test_a_client_of_a_killed_node_resumes_its_session_and_call_on_another(three_nodes):
    """Bob's node is killed mid-call: bob resumes with his token on a surviving node, the
    call goes on (alice hears no ending), and a hangup afterwards reaches alice."""
    doomed, doomed_url = start_server("--redis", REDIS_URLS[0], "--rate-limit", "0")
    alice = await Client.open(three_nodes[0])
    bob = await Client.open(doomed_url)
    try:
        assert (await alice.request("create_session", user_id="alice2"))["ok"]
        session = await bob.request("create_session", user_id="bob2")
        token = session["result"]["resume_token"]
        offer = {"call_type": "audiocall", "callee": "bob2", "sdp": "v=0"}
        call_id = (await alice.request("offer_call", **offer))["result"]["call_id"]
        assert (await bob.request("answer_call", sdp="v=0 a"))["ok"]
        for who in (alice, bob):
            assert (await who.request("media_state", call_id=call_id, state="connected"))["ok"]
        assert (await alice.event("CONNECTED"))["peer"] == "bob2"
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        bob2 = await Client.open(three_nodes[1])
        described = {"call_id": call_id, "peer": "alice2", "role": "callee"}
        described["call_type"] = "audiocall"
        resumed = await bob2.request("resume", resume_token=token, **described)
        assert resumed["ok"], resumed
        assert resumed["result"]["call"]["call_id"] == call_id
        assert resumed["result"]["ended"] is None
        await asyncio.sleep(LEASE_TTL + 1)  # the dead node's lease runs out: nothing ends
        assert not [e for e in alice.events if e.get("event") in ("LEAVE", "CANCEL")]
        assert (await bob2.request("leave"))["result"]["reason"] == "hangup"
        leave = await alice.event("LEAVE")
        assert (leave["reason"], leave["by"]) == ("hangup", "bob2")
        await bob2.ws.close()
    finally:
        doomed.stop()
        await asyncio.gather(alice.ws.close(), bob.ws.close(), return_exceptions=True)
