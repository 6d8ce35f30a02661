"""/healthz, /readyz and /metrics on the server's own port, in memory and on Redis; a
Redis that stops and comes back (empty) while a node serves."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redisd import RedisServer
from websockets.asyncio.client import ClientConnection, connect

from omnicli.server.driver import ServerConfig, SignalingServer
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
