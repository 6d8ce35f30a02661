"""A node on Redis: ring timeouts fire on time (a node's own deadlines when due, another
node's within the timer poll, `timers.TIMER_POLL`); a node whose lease ran out during a
stall takes its users' sessions back; a hung Redis delays only the requests that need it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redisd import RedisServer
from websockets.asyncio.client import ClientConnection, connect

from omnicli.server import cluster, timers
from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.wire import protocol as p

RING = 0.3


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.rid = 0
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def user(cls, srv: SignalingServer, user_id: str) -> Client:
        client = cls(await connect(srv.url))
        await client.ok("hello", version=p.VERSION, service_id="dev")
        await client.ok("create_session", user_id=user_id)
        return client

    async def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        self.rid += 1
        await self.ws.send(json.dumps({"op": op, "id": self.rid, **fields}))
        while True:
            message = json.loads(await self.ws.recv())
            if "event" in message:
                self.events.append(message)
            elif message.get("id") == self.rid:
                assert message["ok"], message
                return dict(message["result"])

    async def event(self, name: str) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                for i, message in enumerate(self.events):
                    if message["event"] == name:
                        return self.events.pop(i)
                self.events.append(json.loads(await self.ws.recv()))


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


async def ring_out(alice: Client) -> float:
    """Seconds from alice's offer to bob (who does not answer) until she hears no_answer."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await alice.ok("offer_call", call_type="audiocall", callee="bob", sdp="v=0")
    leave = await alice.event("LEAVE")
    assert leave["reason"] == "no_answer"
    return loop.time() - start


async def test_a_nodes_own_ring_timeout_fires_when_due(redis: RedisServer) -> None:
    """The node wrote the deadline itself: its timer moves to it without reading Redis,
    so the call ends at the ring timeout, not at the next poll of the shared deadlines."""
    config = ServerConfig(port=0, redis_url=redis.url, ring_timeout=RING)
    async with SignalingServer(config) as one:
        alice, bob = await Client.user(one, "alice"), await Client.user(one, "bob")
        for _ in range(4):
            took = await ring_out(alice)
            assert RING <= took < RING + 0.2, took
            await bob.event("CANCEL")
        for c in (alice, bob):
            await c.ws.close()


async def test_a_ring_timeout_set_by_another_node_fires_within_the_poll(
    redis: RedisServer,
) -> None:
    """Node one's timers are stopped (as if it hung): node two, which reads the shared
    deadlines every TIMER_POLL s, ends node one's unanswered call at most that late."""
    config = ServerConfig(port=0, redis_url=redis.url, ring_timeout=RING)
    async with SignalingServer(config) as one, SignalingServer(config) as two:
        assert one._timer is not None and timers.TIMER_POLL <= 0.25
        one._timer.cancel()
        alice, bob = await Client.user(one, "alice"), await Client.user(two, "bob")
        for _ in range(3):
            took = await ring_out(alice)
            assert RING <= took < RING + 0.5, took  # TIMER_POLL (0.25 s) late at most
            await bob.event("CANCEL")
        for c in (alice, bob):
            await c.ws.close()


async def test_a_node_reaped_during_a_stall_takes_its_sessions_back(redis: RedisServer) -> None:
    """Node one stops renewing its lease (a stall) long enough for node two to reap it:
    alice's session turns away. When node one renews again it finds its lease dropped and
    takes alice's session back, so the grace timer does not end it."""
    config = ServerConfig(port=0, redis_url=redis.url, resume_grace=5.0)
    async with SignalingServer(config) as one, SignalingServer(config) as two:
        assert one.cluster is not None and two.cluster is not None
        assert cluster.LEASE_TTL == 3.0  # the lease below is just past it: away for 1.8 s
        alice = await Client.user(one, "alice")
        one.cluster.lease.stall_limit = 0.0  # as if its loop hung: the thread stops renewing
        one.cluster._tasks[0].cancel()  # and the loop's lease task with it
        store = two.cluster.store
        store.r.hset("omni:nodes", one.cluster.node, repr(time.time() - 3.2))
        async with asyncio.timeout(10):
            while store.r.hget("omni:nodes", one.cluster.node) is not None:
                await asyncio.sleep(0.1)  # node two reaped it: alice is away
        presence = store.presence("dev", "alice")
        assert presence is not None and presence.away
        one.cluster.renew()  # the stall is over
        presence = store.presence("dev", "alice")
        assert presence is not None and not presence.away
        await asyncio.sleep(2.5)  # past the grace it was given: still online
        presence = store.presence("dev", "alice")
        assert presence is not None and not presence.away and presence.node == one.cluster.node
        assert (await alice.ok("session_list"))["sessions"][0]["user_id"] == "alice"
        await alice.ws.close()


async def test_a_busy_event_loop_keeps_its_lease(redis: RedisServer) -> None:
    """Node one's event loop is blocked past LEASE_TTL (as while it accepts thousands of
    connections): its lease thread renews all the same, so when the loop runs again node
    two does not reap it and alice stays online. Renewed on the loop, the lease would be
    as old as the block."""
    config = ServerConfig(port=0, redis_url=redis.url, resume_grace=5.0)
    async with SignalingServer(config) as one, SignalingServer(config) as two:
        assert one.cluster is not None and two.cluster is not None
        alice = await Client.user(one, "alice")
        time.sleep(cluster.LEASE_TTL + 1.5)  # the loop (both nodes') blocked
        renewed = float(two.cluster.store.r.hget("omni:nodes", one.cluster.node))
        assert time.time() - renewed < cluster.LEASE_RENEW + 0.5, time.time() - renewed
        await asyncio.sleep(1.5)  # node two's reaper runs (at most once a second)
        presence = two.cluster.store.presence("dev", "alice")
        assert presence is not None and not presence.away
        assert (await alice.ok("session_list"))["sessions"][0]["user_id"] == "alice"
        await alice.ws.close()


async def test_a_hung_redis_delays_only_the_requests_that_need_it(redis: RedisServer) -> None:
    """Redis stops answering (SIGSTOP): a request that needs it is refused within the
    pipe's timeout, and meanwhile the node answers everyone else (hello needs no Redis)."""
    import os
    import signal

    async with SignalingServer(ServerConfig(port=0, redis_url=redis.url)) as srv:
        await Client.user(srv, "alice")
        bob = Client(await connect(srv.url))
        await bob.ok("hello", version=p.VERSION, service_id="dev")
        assert redis.proc is not None
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            bob.rid += 1
            await bob.ws.send(json.dumps({"op": "create_session", "id": bob.rid, "user_id": "bob"}))
            quick = []
            for _ in range(5):  # other clients are served while bob's request waits
                t0 = loop.time()
                carol = Client(await connect(srv.url))
                await carol.ok("hello", version=p.VERSION, service_id="dev")
                quick.append(loop.time() - t0)
                await carol.ws.close()
            refused = json.loads(await asyncio.wait_for(bob.ws.recv(), 5))
            took = loop.time() - start
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        assert refused["error"]["code"] == p.ErrorCode.UNAVAILABLE, refused
        assert took < 2.5, took
        assert max(quick) < 0.5, quick
        assert sum(quick) < took  # they were answered while bob's request was pending
