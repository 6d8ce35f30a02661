"""A gap in a node's subscription (pub/sub delivers at most once): what its users missed
meanwhile reaches them once it is subscribed again (`omnicli.server.catchup`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redisd import RedisServer
from stores import alice_calls_bob
from test_redis_node import Client
from test_redis_restart import connected_call, running, store, until

from omnicli.server.catchup import Told, missed
from omnicli.server.driver import SignalingServer
from omnicli.server.records import CallRecord, CallState, Presence, ToUser
from omnicli.server.store import Store
from omnicli.wire.protocol import CallType


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


def subscriptions_cut(server: SignalingServer) -> None:
    """Redis drops every subscriber connection (the nodes subscribe again 0.5 s later)."""
    store(server).r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")


async def test_an_ending_published_during_the_gap_reaches_the_peer(redis: RedisServer) -> None:
    async with running(redis, 2) as (a, b):
        alice, bob = await Client.user(a, "alice"), await Client.user(b, "bob")
        call_id = await connected_call(alice, bob)
        assert a.cluster is not None
        undelivered = a.cluster.stats.undelivered + b.cluster.stats.undelivered  # type: ignore[union-attr]
        subscriptions_cut(a)
        await bob.ok("leave")  # LEAVE for alice is published while node a does not listen
        ending = await asyncio.wait_for(alice.event("LEAVE"), 5)
        assert ending["call_id"] == call_id and ending["reason"] == "connection_lost"
        assert b.cluster is not None
        assert a.cluster.stats.undelivered + b.cluster.stats.undelivered > undelivered
        await asyncio.sleep(0.5)  # and only once
        assert not [e for e in alice.events if e["event"] == "LEAVE"]


async def test_a_ring_published_during_the_gap_rings_and_can_be_answered(
    redis: RedisServer,
) -> None:
    async with running(redis, 2) as (a, b):
        alice, bob = await Client.user(a, "alice"), await Client.user(b, "bob")
        subscriptions_cut(b)
        offer = await alice.ok("offer_call", call_type="audiocall", callee="bob", sdp="v=0 o")
        ringing = await asyncio.wait_for(bob.event("RINGING"), 5)
        assert ringing["call_id"] == offer["call_id"] and ringing["sdp"] == "v=0 o"
        subscriptions_cut(a)  # and alice's ANSWERED goes missing too
        await bob.ok("answer_call", call_id=offer["call_id"], sdp="v=0 a")
        answered = await asyncio.wait_for(alice.event("ANSWERED"), 5)
        assert answered["sdp"] == "v=0 a"
        await asyncio.sleep(0.5)
        assert not [e for e in bob.events if e["event"] == "RINGING"]
        assert not [e for e in alice.events if e["event"] == "ANSWERED"]


async def test_a_gap_with_nothing_missed_sends_nothing(redis: RedisServer) -> None:
    async with running(redis, 2) as (a, b):
        alice, bob = await Client.user(a, "alice"), await Client.user(b, "bob")
        await connected_call(alice, bob)
        alice.events.clear()  # RINGBACK, which the call's set-up left unread
        assert a.cluster is not None
        subscribed = a.cluster._subscriptions
        subscriptions_cut(a)
        await until(lambda: a.cluster is not None and a.cluster._subscriptions > subscribed)
        await asyncio.sleep(0.3)
        assert alice.events == [] and bob.events == []


def call(state: CallState) -> CallRecord:
    return alice_calls_bob(call_id="c1", call_type=CallType.AUDIO, sdp_offer="v=0 o", state=state)


def test_missed_by_the_store(store: Store) -> None:
    for user in ("alice", "bob", "carol"):
        store.add_presence(Presence("dev", user, f"s-{user}", "node-a"))
    assert store.add_call(call(CallState.RINGING))
    sends = missed(
        store,
        [
            (("dev", "alice"), Told("c1", False, "RINGBACK")),  # still ringing: nothing
            (("dev", "bob"), None),  # never told RINGING: RINGING again
            (("dev", "carol"), Told("c0", False, "CONNECTED")),  # that call is gone: LEAVE
        ],
    )
    got = {(s.to.user_id, s.message["event"]) for s in sends if isinstance(s.to, ToUser)}
    assert got == {("bob", "RINGING"), ("carol", "LEAVE")}
    leave = next(s.message for s in sends if s.message["event"] == "LEAVE")
    assert (leave["call_id"], leave["reason"]) == ("c0", "connection_lost")
    ringing = store.call("c1")
    assert ringing is not None
    answered = ringing.evolve(state=CallState.ANSWERED, sdp_answer="v=0 a")
    assert store.swap_call(ringing, answered) is not None
    told = [
        (("dev", "alice"), Told("c1", False, "RINGBACK")),
        (("dev", "bob"), Told("c1", True, "RINGING")),
    ]
    sends = missed(store, told)
    assert [(s.message["event"], s.message.get("sdp")) for s in sends] == [("ANSWERED", "v=0 a")]
    connected = answered.evolve(state=CallState.CONNECTED, media_up=frozenset({"alice", "bob"}))
    assert store.swap_call(store.call("c1"), connected) is not None  # type: ignore[arg-type]
    sends = missed(store, told)  # the caller: ANSWERED and CONNECTED; the callee: CONNECTED
    events = [(s.to.user_id, s.message["event"]) for s in sends if isinstance(s.to, ToUser)]
    assert events == [("alice", "ANSWERED"), ("alice", "CONNECTED"), ("bob", "CONNECTED")]
    told = [(("dev", "alice"), Told("c1", False, "CONNECTED"))]
    assert missed(store, told) == []
    sends = missed(store, [(("dev", "carol"), Told("c2", True, "RINGING"))])  # rang: CANCEL
    assert [(s.message["event"], s.message["call_id"]) for s in sends] == [("CANCEL", "c2")]
