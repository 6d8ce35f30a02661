"""Redis restarted empty (or flushed) under live nodes: the calls it lost are put back from
the nodes' copies (`omnicli.server.rebuild`). Connected calls go on (either party can
leave, the other hears it); ringing ones can still be answered, or end at their ring
timeout; a call whose party left during the outage ends; nobody stays busy."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redisd import RedisServer
from test_redis_node import Client

from omnicli.server import cluster, rebuild
from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.server.records import CallState
from omnicli.server.redisstore import RedisStore, RedisStoreError


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


async def nodes(redis: RedisServer, count: int, **config: Any) -> list[SignalingServer]:
    servers = [
        SignalingServer(ServerConfig(port=0, redis_url=redis.url, **config)) for _ in range(count)
    ]
    for server in servers:
        await server.start()
    return servers


@contextlib.asynccontextmanager
async def running(
    redis: RedisServer, count: int, **config: Any
) -> AsyncIterator[list[SignalingServer]]:
    """`count` nodes on `redis`, closed at the end."""
    servers = await nodes(redis, count, **config)
    try:
        yield servers
    finally:
        for server in servers:
            await server.close()


def store(server: SignalingServer) -> RedisStore:
    assert server.cluster is not None
    return server.cluster.store


async def until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def outage(redis: RedisServer, servers: list[SignalingServer]) -> None:
    """Redis stops until every node has seen it gone (a failed lease renewal)."""
    redis.stop()
    await until(lambda: not any(s.cluster and s.cluster.healthy for s in servers))


async def back(redis: RedisServer, servers: list[SignalingServer]) -> None:
    """Redis starts again, empty, and every node has registered its users again."""
    redis.start()
    await until(lambda: all(s.cluster and s.cluster.healthy for s in servers))


async def lose_everything(redis: RedisServer, servers: list[SignalingServer], how: str) -> None:
    """Redis loses its data: restarted empty, or flushed under the nodes (no error seen:
    they find their leases gone at the next renewal)."""
    if how == "restart":
        await outage(redis, servers)
        await back(redis, servers)
    else:
        shared = store(servers[0])
        shared.r.flushall()  # each node's re-registering is one step: both users back, both done
        await until(lambda: None not in (shared.presence("dev", u) for u in ("alice", "bob")))


async def connected_call(alice: Client, bob: Client) -> str:
    offer = await alice.ok("offer_call", call_type="audiocall", callee="bob", sdp="v=0 o")
    await bob.event("RINGING")
    await bob.ok("answer_call", call_id=offer["call_id"], sdp="v=0 a")
    await alice.event("ANSWERED")
    for client in (alice, bob):
        await client.ok("media_state", call_id=offer["call_id"], state="connected")
    for client in (alice, bob):
        assert (await client.event("CONNECTED"))["call_id"] == offer["call_id"]
    return str(offer["call_id"])


async def listing(client: Client) -> list[tuple[str, str]]:
    rows = (await client.ok("session_list"))["sessions"]
    return [(row["user_id"], row["state"]) for row in rows]


def endings(client: Client) -> list[dict[str, Any]]:
    return [e for e in client.events if e["event"] in ("LEAVE", "CANCEL")]


async def refused(client: Client, op: str, **fields: Any) -> dict[str, Any]:
    client.rid += 1
    await client.ws.send(json.dumps({"op": op, "id": client.rid, **fields}))
    while True:
        message = json.loads(await client.ws.recv())
        if message.get("id") == client.rid:
            assert not message["ok"], message
            return dict(message["error"])
        client.events.append(message)


async def a_new_call_rings(alice: Client, bob: Client) -> None:
    offer = await alice.ok("offer_call", call_type="audiocall", callee="bob", sdp="v=0 o")
    assert (await bob.event("RINGING"))["call_id"] == offer["call_id"]
    await alice.ok("leave")
    await bob.event("CANCEL")


@pytest.mark.parametrize(
    ("count", "leaver", "how"),
    [(2, "alice", "restart"), (2, "bob", "flush"), (1, "bob", "restart")],
)
async def test_a_connected_call_survives_redis_losing_it(
    redis: RedisServer, count: int, leaver: str, how: str
) -> None:
    """alice and bob talk (on two nodes, or on one); Redis loses everything. The call is
    put back CONNECTED, nobody hears it end, both are listed busy; when one leaves the
    other hears LEAVE (hangup, by the leaver), both are idle, and a new call rings."""
    async with running(redis, count) as servers:
        alice = await Client.user(servers[0], "alice")
        bob = await Client.user(servers[-1], "bob")
        call_id = await connected_call(alice, bob)
        await lose_everything(redis, servers, how)
        call = store(servers[-1]).call_of("dev", "alice")
        assert call is not None and call.call_id == call_id
        assert (call.state, call.media_up) == (CallState.CONNECTED, {"alice", "bob"})
        assert await listing(alice) == [("alice", "busy"), ("bob", "busy")]
        assert await listing(bob) == [("alice", "busy"), ("bob", "busy")]
        assert endings(alice) == endings(bob) == []
        clients = {"alice": alice, "bob": bob}
        other = clients["bob" if leaver == "alice" else "alice"]
        assert (await clients[leaver].ok("leave", call_id=call_id))["reason"] == "hangup"
        leave = await other.event("LEAVE")
        assert (leave["call_id"], leave["reason"], leave["by"]) == (call_id, "hangup", leaver)
        assert await listing(bob) == [("alice", "idle"), ("bob", "idle")]
        await a_new_call_rings(alice, bob)
        for client in (alice, bob):
            await client.ws.close()


async def test_a_ringing_call_can_be_answered_after_the_restart(redis: RedisServer) -> None:
    """bob's phone rings when Redis restarts: the call comes back ringing, bob answers
    after, the call connects, and alice's leave reaches bob."""
    async with running(redis, 2, ring_timeout=30.0) as servers:
        alice, bob = await Client.user(servers[0], "alice"), await Client.user(servers[1], "bob")
        offer = await alice.ok("offer_call", call_type="audiocall", callee="bob", sdp="v=0 o")
        await bob.event("RINGING")
        await outage(redis, servers)
        await back(redis, servers)
        call = store(servers[1]).call_of("dev", "bob")
        assert call is not None and call.state is CallState.RINGING
        assert await listing(bob) == [("alice", "busy"), ("bob", "busy")]
        await bob.ok("answer_call", call_id=offer["call_id"], sdp="v=0 a")
        await alice.event("ANSWERED")
        for client in (alice, bob):
            await client.ok("media_state", call_id=offer["call_id"], state="connected")
        for client in (alice, bob):
            await client.event("CONNECTED")
        await alice.ok("leave")
        assert (await bob.event("LEAVE"))["reason"] == "hangup"
        assert endings(alice) == [] and await listing(alice) == [("alice", "idle"), ("bob", "idle")]
        for client in (alice, bob):
            await client.ws.close()


async def test_a_ring_timeout_that_ran_out_during_the_outage_ends_the_call(
    redis: RedisServer,
) -> None:
    """The ring timeout passes while Redis is down: once it is back the call ends as an
    unanswered one (no_answer to both), so nobody stays busy."""
    async with running(redis, 2, ring_timeout=1.5) as servers:
        alice, bob = await Client.user(servers[0], "alice"), await Client.user(servers[1], "bob")
        loop = asyncio.get_running_loop()
        await alice.ok("offer_call", call_type="audiocall", callee="bob", sdp="v=0 o")
        offered = loop.time()
        await bob.event("RINGING")
        await outage(redis, servers)
        await asyncio.sleep(max(0.0, offered + 1.6 - loop.time()))
        await back(redis, servers)
        assert (await alice.event("LEAVE"))["reason"] == "no_answer"
        assert (await bob.event("CANCEL"))["reason"] == "no_answer"
        assert await listing(alice) == [("alice", "idle"), ("bob", "idle")]
        await a_new_call_rings(alice, bob)
        for client in (alice, bob):
            await client.ws.close()


async def test_a_call_a_party_left_during_the_outage_ends_for_the_other(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice leaves while Redis is down (refused: unavailable; her phone ends the call on
    its side): her node no longer vouches for it, so the call bob's node put back ends
    after REBUILD_WAIT with connection_lost for bob, and neither stays busy."""
    monkeypatch.setattr(rebuild, "REBUILD_WAIT", 1.0)
    async with running(redis, 2) as servers:
        alice, bob = await Client.user(servers[0], "alice"), await Client.user(servers[1], "bob")
        call_id = await connected_call(alice, bob)
        await outage(redis, servers)
        assert (await refused(alice, "leave", call_id=call_id))["code"] == 502
        await back(redis, servers)
        leave = await bob.event("LEAVE")
        assert (leave["call_id"], leave["reason"]) == (call_id, "connection_lost")
        assert await listing(bob) == [("alice", "idle"), ("bob", "idle")]
        assert endings(alice) == []
        await a_new_call_rings(alice, bob)
        for client in (alice, bob):
            await client.ws.close()


async def test_copies_the_store_dropped_after_the_outage_began_still_serve(
    redis: RedisServer,
) -> None:
    """A request served between Redis's return and the node's re-registering finds no call
    and the store drops its copy (cleared here, after the node saw Redis gone): the node
    set its copies aside when Redis went, so the call is put back all the same."""
    async with running(redis, 2) as servers:
        alice, bob = await Client.user(servers[0], "alice"), await Client.user(servers[1], "bob")
        call_id = await connected_call(alice, bob)
        await outage(redis, servers)
        store(servers[0])._recent.clear()
        await back(redis, servers)
        call = store(servers[0]).call_of("dev", "alice")
        assert call is not None and (call.call_id, call.state) == (call_id, CallState.CONNECTED)
        assert endings(alice) == endings(bob) == []
        await bob.ok("leave")
        assert (await alice.event("LEAVE"))["reason"] == "hangup"
        for client in (alice, bob):
            await client.ws.close()


async def test_redis_failing_half_way_through_the_rebuild_is_finished_later(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails again while node one puts its calls back (after its users were
    registered again): the next renewal finishes the job, and the call is connected."""
    failures: list[str] = []

    class Flaky(rebuild.Rebuild):
        def run(self, held: list[rebuild.Held]) -> list[Any]:
            if not failures:
                failures.append("once")
                raise RedisStoreError("Redis went away again")
            return super().run(held)

    monkeypatch.setattr(cluster, "Rebuild", Flaky)
    async with running(redis, 1) as servers:
        alice, bob = await Client.user(servers[0], "alice"), await Client.user(servers[0], "bob")
        call_id = await connected_call(alice, bob)
        await outage(redis, servers)
        await back(redis, servers)
        assert failures == ["once"]
        call = store(servers[0]).call_of("dev", "alice")
        assert call is not None and (call.call_id, call.state) == (call_id, CallState.CONNECTED)
        assert endings(alice) == endings(bob) == []
        for client in (alice, bob):
            await client.ws.close()


async def test_without_copies_the_call_ends_for_both(redis: RedisServer) -> None:
    """Neither node has a copy of the call (as after their own restart): nothing can be
    put back, so both hear it end (connection_lost) at once, as before the rebuild."""
    async with running(redis, 2) as servers:
        alice, bob = await Client.user(servers[0], "alice"), await Client.user(servers[1], "bob")
        call_id = await connected_call(alice, bob)
        await outage(redis, servers)
        for server in servers:
            assert server.cluster is not None and server.cluster._kept
            store(server)._recent.clear()
            server.cluster._kept.clear()
        await back(redis, servers)
        for client in (alice, bob):
            leave = await client.event("LEAVE")
            assert (leave["call_id"], leave["reason"], leave["by"]) == (
                call_id,
                "connection_lost",
                None,
            )
        assert await listing(alice) == [("alice", "idle"), ("bob", "idle")]
        await a_new_call_rings(alice, bob)
        for client in (alice, bob):
            await client.ws.close()
