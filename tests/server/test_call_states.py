"""The calls-per-state counts a store keeps (`Store.call_states`, what `/metrics` reads):
after every step of a call, and every way it ends, they equal what the call records say,
on every store; on Redis also with many nodes racing on one database."""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from board import events_of
from stores import redis_store, shared_redis
from test_switchboard import ANSWER_SDP, CONNECT, RING, Board

from omnicli.server.records import NEVER, CallRecord, CallState, Presence
from omnicli.server.redisstore import RedisStore
from omnicli.server.store import Store
from omnicli.server.switchboard import Service, Switchboard
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq

GRACE = 5.0


def counted(store: Store, service_id: str = "dev") -> dict[str, int]:
    """The store's counts, checked against the records themselves (a full read)."""
    records = Counter(c.state.value for c in store.calls() if c.service_id == service_id)
    counts = store.call_states(service_id)
    assert counts == dict(records), (counts, records)
    return counts


@pytest.fixture
def b(store: Store) -> Board:
    return Board(store=store, resume_grace=GRACE)


def a_call(call_id: str, caller: str, callee: str, state: CallState, **changes: Any) -> CallRecord:
    call = CallRecord(
        call_id=call_id,
        service_id="dev",
        caller=caller,
        callee=callee,
        call_type=p.CallType.AUDIO,
        record=False,
        sdp_offer='v=0 "rev":7, "state":"connected" \\"rev\\":8',  # the keys, as data
        state=state,
        deadline=60.0,
    )
    return dataclasses.replace(call, **changes)


# -- the store writes ------------------------------------------------------------------------


def test_each_write_moves_the_counts_with_the_record(store: Store) -> None:
    """add counts a call in its state; a change of state moves it; a change within a state,
    a refused change and a refused add count nothing; an ending takes it away; services
    are counted apart."""
    ringing = a_call("c-1", "alice", "bob", CallState.RINGING)
    assert store.add_call(ringing) and counted(store) == {"ringing": 1}
    assert not store.add_call(a_call("c-2", "alice", "carol", CallState.RINGING))  # busy
    assert store.add_call(a_call("c-3", "carol", "dave", CallState.CONNECTED, deadline=NEVER))
    assert store.add_call(dataclasses.replace(ringing, call_id="c-4", service_id="other"))
    assert counted(store) == {"ringing": 1, "connected": 1}
    assert counted(store, "other") == {"ringing": 1} and counted(store, "none") == {}
    answered = store.swap_call(ringing, ringing.evolve(state=CallState.ANSWERED))
    assert answered is not None and counted(store) == {"answered": 1, "connected": 1}
    assert store.swap_call(ringing, None) is None  # stale: refused, nothing moves
    half = store.swap_call(answered, answered.evolve(media_up=frozenset({"alice"})))
    assert half is not None and counted(store) == {"answered": 1, "connected": 1}
    assert store.swap_call(half, None) is not None
    assert counted(store) == {"connected": 1}
    assert counted(store, "other") == {"ringing": 1}


def test_place_call_counts_ringing_or_calling(store: Store) -> None:
    """An offer to an online callee counts as ringing, to an absent one as calling; a busy
    party or a used id counts nothing."""
    store.add_presence(Presence("dev", "bob", "s-1", "n"))
    assert store.place_call(a_call("c-1", "alice", "bob", CallState.RINGING)).call is not None
    assert store.place_call(a_call("c-2", "carol", "dave", CallState.RINGING)).call is not None
    assert counted(store) == {"ringing": 1, "calling": 1}
    assert store.place_call(a_call("c-3", "erin", "bob", CallState.RINGING)).call is None
    assert store.place_call(a_call("c-1", "erin", "frank", CallState.RINGING)).call is None
    assert counted(store) == {"ringing": 1, "calling": 1}


# -- a call through the switchboard, to each ending ------------------------------------------

ENDINGS = [
    # (how it ends, the state it ends from, the reason the switchboard counts)
    ("leave", "connected", "hangup"),
    ("caller_leaves", "ringing", "cancelled"),
    ("callee_leaves", "ringing", "declined"),
    ("ring_timeout", "ringing", "no_answer"),
    ("connect_timeout", "answered", "media_failed"),
    ("media_failed", "answered", "media_failed"),
    ("media_failed", "connected", "media_failed"),
    ("connection_lost", "connected", "connection_lost"),
    ("grace_runs_out", "connected", "connection_lost"),
]


@pytest.mark.parametrize(("how", "state", "reason"), ENDINGS)
def test_counts_follow_a_call_to_its_end(b: Board, how: str, state: str, reason: str) -> None:
    store = b.sb.store
    assert counted(store) == {}
    alice, bob = b.user("alice"), b.user("bob")
    b.offer(alice, "bob")
    assert counted(store) == {"ringing": 1}
    if state != "ringing":
        b.ok(bob, "answer_call", sdp=ANSWER_SDP)
        assert counted(store) == {"answered": 1}
        b.ok(alice, "media_state", state="connected")
        assert counted(store) == {"answered": 1}  # one side up: still answered
    if state == "connected":
        b.ok(bob, "media_state", state="connected")
        assert counted(store) == {"connected": 1}
    if how == "leave" or how == "caller_leaves":
        b.ok(alice, "leave")
    elif how == "callee_leaves":
        b.ok(bob, "leave")
    elif how == "ring_timeout":
        b.expire(b.now + RING)
    elif how == "connect_timeout":
        b.expire(b.now + CONNECT)
    elif how == "media_failed":
        b.ok(bob, "media_state", state="failed")
    elif how == "connection_lost":
        b.disconnect(bob, b.now)  # a clean close: the session and the call end at once
    elif how == "grace_runs_out":
        b.disconnect(bob, b.now, lost=True)
        assert counted(store) == {"connected": 1}  # bob may still resume
        assert b.expire(b.now + GRACE)
    assert b.sb.machine.ended == {reason: 1}
    assert counted(store) == {}


def test_a_held_call_counts_as_calling_then_ringing_or_unavailable(store: Store) -> None:
    """An offer to an away callee is held (calling); it rings when the callee comes back,
    or ends unavailable at its deadline."""
    b = Board(store=store, resume_grace=2 * RING)  # the ring deadline comes first
    alice, bob = b.user("alice"), b.hello()
    resume_token = b.result(bob, "create_session", user_id="bob")["resume_token"]
    b.disconnect(bob, b.now, lost=True)
    b.offer(alice, "bob")
    assert counted(store) == {"calling": 1}
    back = b.hello()
    _, events = b.ok(back, "resume", resume_token=resume_token)
    assert [e["event"] for e in events_of(events, back)] == ["RINGING"]
    assert counted(store) == {"ringing": 1}
    b.ok(alice, "leave")
    carol = b.user("carol")
    b.disconnect(carol, b.now, lost=True)
    b.offer(alice, "carol")
    assert counted(store) == {"calling": 1}
    assert b.expire(b.now + RING)
    assert b.sb.machine.ended["unavailable"] == 1 and counted(store) == {}


def test_a_store_that_restarts_empty_counts_the_calls_rebuilt_after_it(store: Store) -> None:
    """The store loses everything (Redis restarted without persistence): the counts are gone
    with the calls, and the call the two clients describe when they resume is counted
    again, resuming then connected, until it ends."""
    first = Board(store=store, boot="run-1", resume_secret=b"k")
    alice, bob = first.hello(), first.hello()
    tokens = {
        name: first.result(conn, "create_session", user_id=name)["resume_token"]
        for name, conn in (("alice", alice), ("bob", bob))
    }
    first.offer(alice, "bob")
    first.ok(bob, "answer_call", sdp=ANSWER_SDP)
    for conn in (alice, bob):
        first.ok(conn, "media_state", state="connected")
    call_id = first.call_id(alice)
    assert counted(store) == {"connected": 1}
    empty = redis_store() if isinstance(store, RedisStore) else type(store)()  # flushed
    assert counted(empty) == {}
    second = Board(store=empty, boot="run-2", resume_secret=b"k")
    described = {"call_id": call_id, "call_type": "videocall"}
    conn = second.hello()
    second.ok(conn, "resume", resume_token=tokens["alice"], peer="bob", role="caller", **described)
    assert counted(empty) == {"resuming": 1}
    other = second.hello()
    second.ok(other, "resume", resume_token=tokens["bob"], peer="alice", role="callee", **described)
    assert counted(empty) == {"connected": 1}
    second.ok(other, "leave")
    assert counted(empty) == {}


# -- many nodes racing on one Redis ----------------------------------------------------------

NODES = 6
USERS_PER_NODE = 8
STEPS = 150


def test_counts_stay_equal_to_the_records_with_many_nodes_racing_on_one_redis() -> None:
    """Six switchboards, each with its own Redis connection and thread, offer, answer,
    report media, leave and fire each other's short timers on the same users at once.
    Whenever they stop, the counts equal what a SCAN of the call records finds; once
    every user has left, every count is 0."""
    redis_store()  # an empty database
    url = shared_redis().url
    names = [f"u{i:02d}" for i in range(NODES * USERS_PER_NODE)]
    boards: list[Switchboard] = []
    conns: list[dict[str, int]] = []
    for n in range(NODES):
        sb = Switchboard(
            [Service("dev", None)],
            store=RedisStore.from_url(url),
            boot=f"node-{n}",
            ring_timeout=0.05,
            connect_timeout=0.08,
            resume_secret=b"shared",
        )
        mine = {}
        for i, user in enumerate(names[n::NODES]):
            conn = n * 1000 + i
            sb.connect(conn)
            sb.handle(conn, request("hello", version=p.VERSION, service_id="dev"), 0.0)
            assert sb.handle(conn, request("create_session", user_id=user), 0.0)[0].message["ok"]
            mine[user] = conn
        boards.append(sb)
        conns.append(mine)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        rng = random.Random(n)
        sb, mine = boards[n], list(conns[n].values())
        try:
            for _ in range(STEPS):
                conn = rng.choice(mine)
                op, fields = rng.choice(ACTIONS)
                if op == "offer_call":
                    fields = {**fields, "callee": rng.choice(names)}
                sb.handle(conn, request(op, **fields), time.time())
                sb.expire(time.time())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    seen_open = 0
    for _ in range(2):  # race, check, race again on what is left
        threads = [threading.Thread(target=run, args=(n,)) for n in range(NODES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        scanned = scan_states(boards[0].store)
        assert boards[0].store.call_states("dev") == scanned
        seen_open += sum(scanned.values())
    assert seen_open > 0  # the counts were compared with calls open, not only with none
    ended = sum(sum(sb.machine.ended.values()) for sb in boards)
    assert ended >= 20, ended  # the race did end calls, in several ways
    assert len({r for sb in boards for r in sb.machine.ended}) >= 3
    for sb, mine in zip(boards, conns, strict=True):
        for conn in mine.values():
            sb.handle(conn, request("leave"), time.time())
    for sb in boards:
        sb.expire(time.time() + 60)
    store = boards[0].store
    assert isinstance(store, RedisStore)
    assert scan_states(store) == {} == store.call_states("dev")
    assert set(store.r.hvals(store._k("dev", "states"))) == {"0"}


ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("offer_call", {"call_type": "audiocall", "sdp": "v=0"}),
    ("offer_call", {"call_type": "audiocall", "sdp": "v=0"}),
    ("answer_call", {"sdp": "v=0 a"}),
    ("answer_call", {"sdp": "v=0 a"}),
    ("media_state", {"state": "connected"}),
    ("media_state", {"state": "connected"}),
    ("media_state", {"state": "failed"}),
    ("leave", {}),
]
_rids = iter(range(1, 1 << 62))


def request(op: str, **fields: Any) -> rq.Request:
    return rq.parse_request({"op": op, "id": next(_rids), **fields})


def scan_states(store: Any) -> dict[str, int]:
    """Calls per state as the records in Redis say, by SCAN (what a scrape used to do)."""
    assert isinstance(store, RedisStore)
    keys = list(store.r.scan_iter(match=store._k("dev", "c", "*"), count=1000))
    records = [CallRecord.from_dict(json.loads(t)) for t in store.r.mget(keys)]
    return dict(Counter(c.state.value for c in records)) if keys else {}
