"""The store contract: each write applies only to what it expects. Every store runs these
(the `store` fixture), so a shared store behaves like the in-memory one."""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

from stores import alice_calls_bob

from omnicli.server.records import (
    NEVER,
    CallRecord,
    CallState,
    Presence,
    Send,
    ToConn,
    ToHolder,
    ToUser,
)
from omnicli.server.store import Store
from omnicli.server.switchboard import Delivery, Service, Switchboard
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq


def test_records_survive_json() -> None:
    """Records are plain data: to_dict is JSON, and from_dict gives back an equal record."""
    calls = [
        alice_calls_bob(),
        alice_calls_bob(state=CallState.CONNECTED, deadline=NEVER, media_up=frozenset("ab")),
    ]
    for call in calls:
        assert CallRecord.from_dict(json.loads(json.dumps(call.to_dict(), allow_nan=False))) == call
    away = Presence("dev", "bob", "s-1", "node-a", 12.5, {"call_id": "c-1", "reason": "hangup"})
    for presence in (away, Presence("dev", "alice", "s-2", "node-b")):
        assert Presence.from_dict(json.loads(json.dumps(presence.to_dict()))) == presence


def test_a_user_id_has_one_session(store: Store) -> None:
    """add_presence refuses a user id that has a session, online or away, per service."""
    first = Presence("dev", "alice", "s-1", "node-a")
    assert store.add_presence(first)
    assert not store.add_presence(Presence("dev", "alice", "s-2", "node-b"))
    assert store.add_presence(Presence("other", "alice", "s-3", "node-b"))
    away = dataclasses.replace(first, away_until=10.0)
    assert store.swap_presence(first, away)
    assert not store.add_presence(Presence("dev", "alice", "s-4", "node-b"))
    assert store.presence("dev", "alice") == away
    assert (store.count("dev"), store.count("other"), store.count("none")) == (1, 1, 0)


def test_presence_swaps_only_from_what_was_read(store: Store) -> None:
    """swap_presence with a stale record (another session, or since changed) does nothing."""
    mine = Presence("dev", "alice", "s-1", "node-a")
    store.add_presence(mine)
    stale = dataclasses.replace(mine, session="s-0")
    assert not store.swap_presence(stale, None)
    away = dataclasses.replace(mine, away_until=5.0)
    assert store.swap_presence(mine, away)
    assert not store.swap_presence(mine, None)  # it is away now, not what we read
    assert store.swap_presence(away, None)
    assert store.presence("dev", "alice") is None and store.count("dev") == 0


def test_first_users_are_sorted_and_capped_per_service(store: Store) -> None:
    for user in ("carol", "alice", "bob"):
        store.add_presence(Presence("dev", user, f"s-{user}", "n"))
    store.add_presence(Presence("other", "aaron", "s-x", "n"))
    assert store.first_users("dev", 2) == ["alice", "bob"]
    assert store.first_users("dev", 10) == ["alice", "bob", "carol"]
    assert store.first_users("dev", 10, after="alice") == ["bob", "carol"]
    assert store.first_users("dev", 1, after="b") == ["bob"]
    assert store.first_users("dev", 10, after="carol") == []


def test_a_user_is_in_one_call_at_a_time(store: Store) -> None:
    """add_call refuses when either party is in a call already, or the id is used."""
    call = alice_calls_bob()
    assert store.add_call(call)
    assert store.call_of("dev", "alice") == call == store.call_of("dev", "bob")
    assert not store.add_call(alice_calls_bob(call_id="c-2", caller="carol"))  # bob busy
    assert not store.add_call(alice_calls_bob(call_id="c-3", callee="dave"))  # alice busy
    assert not store.add_call(alice_calls_bob(caller="carol", callee="dave"))  # same id
    assert store.call_of("dev", "carol") is None
    assert store.add_call(alice_calls_bob(call_id="c-4", service_id="other"))


def test_call_changes_apply_only_to_the_revision_read(store: Store) -> None:
    """swap_call is compare-and-set on `rev`: a second writer from the same read loses."""
    call = alice_calls_bob()
    store.add_call(call)
    answered = store.swap_call(call, dataclasses.replace(call, state=CallState.ANSWERED))
    assert answered is not None and answered.rev == call.rev + 1
    assert store.swap_call(call, None) is None  # the leave computed before the answer
    assert store.call("c-1") == answered
    connected = store.swap_call(answered, dataclasses.replace(answered, deadline=NEVER))
    assert connected is not None and connected.rev == call.rev + 2


def test_ending_a_call_frees_both_parties(store: Store) -> None:
    call = alice_calls_bob()
    store.add_call(call)
    assert store.swap_call(call, None) == call
    assert store.call("c-1") is None
    assert store.call_of("dev", "alice") is None and store.call_of("dev", "bob") is None
    assert store.swap_call(call, None) is None  # ended already
    assert store.add_call(alice_calls_bob(call_id="c-2"))


def test_deadlines_are_data(store: Store) -> None:
    """next_deadline and due read the records: call timers and away sessions' grace."""
    assert store.next_deadline() is None and store.due(1e9) == ([], [])
    store.add_call(alice_calls_bob(deadline=60.0))
    store.add_call(alice_calls_bob(call_id="c-2", caller="x", callee="y", deadline=NEVER))
    online = Presence("dev", "carol", "s-1", "n")
    store.add_presence(online)
    assert store.next_deadline() == 60.0
    away = dataclasses.replace(online, away_until=30.0)
    store.swap_presence(online, away)
    assert store.next_deadline() == 30.0
    assert store.due(29.9) == ([], [])
    assert store.due(30.0) == ([away], [])
    gone, calls = store.due(60.0)
    assert gone == [away] and [c.call_id for c in calls] == ["c-1"]


# -- two switchboards over one store -----------------------------------------------------------


class Node:
    """One server process's switchboard over a shared store, with its own connections."""

    counter = itertools.count(1)

    def __init__(self, store: Store, name: str) -> None:
        self.sb = Switchboard(
            [Service("dev", None)],
            store=store,
            boot=name,
            ring_timeout=30.0,
            resume_secret=b"shared",
        )
        self.rid = itertools.count(1)

    def send(self, conn: int, op: str, **fields: Any) -> list[Any]:
        request = rq.parse_request({"op": op, "id": next(self.rid), **fields})
        return self.sb.handle(conn, request, 0.0)

    def conn(self) -> int:
        conn = next(self.counter)
        self.sb.connect(conn)
        self.send(conn, "hello", version=p.VERSION, service_id="dev")
        return conn

    def user(self, user_id: str) -> int:
        conn = self.conn()
        assert self.send(conn, "create_session", user_id=user_id)[0].message["ok"]
        return conn

    def code(self, conn: int, op: str, **fields: Any) -> int:
        return int(self.send(conn, op, **fields)[0].message["error"]["code"])


def test_messages_are_addressed_to_users_and_routed_by_the_node_that_holds_them(
    store: Store,
) -> None:
    """Alice on node A calls bob on node B: A's sends name bob, and only B delivers them.
    The store makes alice's user id taken and both busy on every node."""
    a, b = Node(store, "node-a"), Node(store, "node-b")
    alice, bob = a.user("alice"), b.user("bob")
    assert b.code(b.conn(), "create_session", user_id="alice") == p.ErrorCode.USER_ID_TAKEN
    out = a.send(alice, "offer_call", call_type="videocall", callee="bob", sdp="v=0")
    assert [s.to for s in out] == [ToConn(alice), ToConn(alice), ToUser("dev", "bob")]
    ringing = out[2].message
    assert ringing["event"] == "RINGING" and a.sb.route(out[2:]) == []
    assert b.sb.route(out[2:]) == [Delivery(bob, ringing)]
    out = b.send(bob, "answer_call", sdp="v=0 answer")
    assert [d.conn for d in a.sb.route(out[1:])] == [alice] and b.sb.route(out[1:]) == []
    carol = b.user("carol")
    offer = {"call_type": "audiocall", "callee": "alice", "sdp": "o"}
    assert b.code(carol, "offer_call", **offer) == p.ErrorCode.BUSY
    leave = {"event": "LEAVE", "call_id": ringing["call_id"], "reason": "connection_lost"}
    assert b.sb.route(a.sb.disconnect(alice, 0.0)) == [Delivery(bob, {**leave, "by": "alice"})]
    assert store.call_of("dev", "bob") is None


def test_a_timer_set_on_one_node_fires_on_another(store: Store) -> None:
    """The ring deadline is in the call record: node B ends node A's unanswered call and
    addresses the caller, whom only node A delivers to."""
    a, b = Node(store, "node-a"), Node(store, "node-b")
    alice = a.user("alice")
    b.user("bob")
    out = a.send(alice, "offer_call", call_type="videocall", callee="bob", sdp="v=0")
    call_id = out[0].message["result"]["call_id"]
    assert b.sb.next_deadline() == 30.0 and b.sb.expire(29.0) == []
    out = b.sb.expire(30.0)
    assert {s.to for s in out} == {ToUser("dev", "alice"), ToUser("dev", "bob")}
    assert a.sb.route(out) == [
        Delivery(alice, {"event": "LEAVE", "call_id": call_id, "reason": "no_answer", "by": None})
    ]
    assert store.call(call_id) is None and a.sb.expire(31.0) == []


def test_a_resume_on_another_node_kicks_out_the_connection_the_first_one_holds(
    store: Store,
) -> None:
    """Dave resumes on node B while node A still holds his connection: B's KICKOUT is
    addressed to A's holder (ToHolder), which A turns into a closing send to that
    connection, forgetting it without ending the session B now holds."""
    a, b = Node(store, "node-a"), Node(store, "node-b")
    old = a.conn()
    token = a.send(old, "create_session", user_id="dave")[0].message["result"]["resume_token"]
    new = b.conn()
    out = b.send(new, "resume", resume_token=token)
    assert out[0].message["ok"]
    kicks = [s for s in out if isinstance(s.to, ToHolder)]
    assert [s.to for s in kicks] == [ToHolder("dev", "dave", "node-a")] and kicks[0].close
    assert b.sb.route(kicks) == [] and b.sb.remote(kicks) == kicks
    assert a.sb.remote(kicks) == []  # node A's own: not forwarded again
    closing = a.sb.kick_holder("dev", "dave", kicks[0].message)
    assert closing == [Send(ToConn(old), kicks[0].message, close=True)]
    assert kicks[0].message["event"] == "KICKOUT" and a.sb.user_of(old) is None
    assert a.sb.disconnect(old, 0.0) == []  # its close ends nothing
    presence = store.presence("dev", "dave")
    assert presence is not None and (presence.node, presence.away) == ("node-b", False)
    assert a.sb.kick_holder("dev", "dave", kicks[0].message) == []  # once
