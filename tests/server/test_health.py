"""/healthz, /readyz and /metrics on the server's own port, in memory and on Redis; a
Redis that stops and comes back (empty) while a node serves; a scrape on Redis that costs
the same with ten calls open or thousands."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as redis_py
from redisd import RedisServer
from websockets.asyncio.client import ClientConnection, connect

from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.server.records import NEVER, CallRecord, CallState
from omnicli.server.redisstore import RedisStore
from omnicli.wire import protocol as p


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def get(srv: SignalingServer, path: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(http_get, f"http://127.0.0.1:{srv.port}{path}")


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.rid = 0

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.rid += 1
        await self.ws.send(json.dumps({"op": op, "id": self.rid, **fields}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == self.rid:
                return message


async def user(srv: SignalingServer, user_id: str) -> Client:
    client = Client(await connect(srv.url))
    assert (await client.request("hello", version=p.VERSION, service_id="dev"))["ok"]
    assert (await client.request("create_session", user_id=user_id))["ok"]
    return client


@pytest.fixture
async def memory_server() -> AsyncIterator[SignalingServer]:
    async with SignalingServer(ServerConfig(port=0)) as srv:
        yield srv


async def test_health_ready_and_metrics_of_a_call_in_memory(memory_server):
    """The three paths answer plain HTTP; the metrics count a call from offer to hangup."""
    srv = memory_server
    assert (await get(srv, "/healthz"))[0] == 200
    assert (await get(srv, "/readyz"))[:1] == (200,)
    alice, bob = await user(srv, "alice"), await user(srv, "bob")
    offer = await alice.request("offer_call", call_type="audiocall", callee="bob", sdp="v=0")
    call_id = offer["result"]["call_id"]
    assert (await bob.request("answer_call", sdp="v=0 a"))["ok"]
    for who in (alice, bob):
        assert (await who.request("media_state", call_id=call_id, state="connected"))["ok"]
    status, kind, text = await get(srv, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert metric(text, "omni_sessions_online") == 2
    assert metric(text, 'omni_sessions{service="dev"}') == 2
    assert metric(text, 'omni_calls{state="connected"}') == 1
    assert metric(text, "omni_call_setup_seconds_count") == 1
    assert (await alice.request("leave"))["ok"]
    text = (await get(srv, "/metrics"))[2]
    assert metric(text, 'omni_calls_ended_total{reason="hangup"}') == 1
    assert metric(text, 'omni_calls{state="connected"}') is None
    assert metric(text, "omni_rate_limited_requests_total") == 0
    for c in (alice, bob):
        await c.ws.close()


async def test_redis_down_makes_the_node_unready_and_refuses_sessions_until_it_returns():
    """Redis stops: /healthz stays 200, /readyz turns 503, create_session gets error 502.
    Redis comes back empty: the node is ready again and registers its users again."""
    redis = RedisServer().start()
    try:
        async with SignalingServer(ServerConfig(port=0, redis_url=redis.url)) as srv:
            assert srv.cluster is not None
            assert (await get(srv, "/readyz"))[0] == 200
            alice = await user(srv, "alice")
            text = (await get(srv, "/metrics"))[2]  # alice's commands, timed
            assert (metric(text, "omni_redis_command_seconds_count") or 0) >= 1
            assert 0 < (metric(text, "omni_redis_command_seconds_sum") or 0) < 1
            redis.stop()
            async with asyncio.timeout(10):
                while (await get(srv, "/readyz"))[0] != 503:
                    await asyncio.sleep(0.2)
            assert (await get(srv, "/healthz"))[0] == 200
            bob = Client(await connect(srv.url))
            assert (await bob.request("hello", version=p.VERSION, service_id="dev"))["ok"]
            refused = await bob.request("create_session", user_id="bob")
            assert refused["error"]["code"] == p.ErrorCode.UNAVAILABLE, refused
            assert "Redis" in refused["error"]["message"]
            text = (await get(srv, "/metrics"))[2]
            assert (metric(text, "omni_redis_errors_total") or 0) >= 1
            redis.start()
            async with asyncio.timeout(10):
                while (await get(srv, "/readyz"))[0] != 200:
                    await asyncio.sleep(0.2)
            assert (await bob.request("create_session", user_id="bob"))["ok"]
            listing = await bob.request("session_list")
            assert [s["user_id"] for s in listing["result"]["sessions"]] == ["alice", "bob"]
            for c in (alice, bob):
                await c.ws.close()
    finally:
        redis.close()


STATES = (CallState.RINGING, CallState.ANSWERED, CallState.CONNECTED)


def open_calls(store: RedisStore, first: int, last: int) -> None:
    """Calls first..last-1 between pairs of users nobody else uses, in STATES by turn."""
    far = time.time() + 3600  # no timer fires during the test
    for i in range(first, last):
        state = STATES[i % len(STATES)]
        call = CallRecord(
            call_id=f"c{i}",
            service_id="dev",
            caller=f"a{i}",
            callee=f"b{i}",
            call_type=p.CallType.AUDIO,
            record=False,
            sdp_offer="v=0",
            state=state,
            deadline=NEVER if state is CallState.CONNECTED else far,
        )
        assert store.add_call(call)


def commands(watcher: redis_py.Redis) -> dict[str, int]:
    stats = watcher.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}


async def scrape_cost(srv: SignalingServer, watcher: redis_py.Redis) -> tuple[str, dict[str, int]]:
    """The /metrics text and the Redis commands one scrape issued: the fewest of five
    scrapes, so that the node's timer and lease commands meanwhile do not count."""
    costs = []
    for _ in range(5):
        before = commands(watcher)
        text = (await get(srv, "/metrics"))[2]
        after = commands(watcher)
        costs.append({k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)})
    return text, min(costs, key=lambda cost: sum(cost.values()))


async def test_a_scrape_on_redis_reads_counts_not_calls():
    """With 30 and then 3,000 calls open on Redis, a /metrics scrape issues the same
    commands, none of them a SCAN or an MGET of call records, and counts each state."""
    redis = RedisServer().start()
    watcher = redis_py.Redis.from_url(redis.url, decode_responses=True)
    try:
        async with SignalingServer(ServerConfig(port=0, redis_url=redis.url)) as srv:
            writer = RedisStore.from_url(redis.url)  # another node's writes, as it were
            seen = []
            done = 0
            for n in (30, 3000):
                await asyncio.to_thread(open_calls, writer, done, n)
                done = n
                text, cost = await scrape_cost(srv, watcher)
                for state in STATES:
                    expected = sum(1 for i in range(n) if STATES[i % 3] is state)
                    assert metric(text, f'omni_calls{{state="{state.value}"}}') == expected
                assert not {"scan", "mget", "get", "keys"} & cost.keys(), cost
                seen.append(cost)
            assert seen[0] == seen[1], seen
            assert sum(seen[0].values()) <= 4, seen  # a few reads per service
    finally:
        watcher.close()
        redis.close()
