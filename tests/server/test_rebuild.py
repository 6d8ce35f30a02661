"""Putting back the calls a store lost (`rebuild`): each node holds copies of its users'
calls; what comes back, by state, and how the second node joins what the first put back.
Two switchboards on one store stand for two nodes; every test runs over every store."""

from __future__ import annotations

from typing import Any

import pytest
from stores import alice_calls_bob

from omnicli.server.rebuild import REBUILD_WAIT, Held, Rebuild
from omnicli.server.records import NEVER, CallRecord, CallState, Presence, Send, ToUser
from omnicli.server.store import Store
from omnicli.server.switchboard import Service, Switchboard

NOW = 1000.0


def node(store: Store, name: str) -> Switchboard:
    return Switchboard([Service("dev", "k")], store=store, boot=name, connect_timeout=20.0)


def a_call(**changes: Any) -> CallRecord:
    connected = {"state": CallState.CONNECTED, "deadline": NEVER, "rev": 4}
    return alice_calls_bob(**{**connected, "media_up": frozenset({"alice", "bob"}), **changes})


@pytest.fixture
def nodes(store: Store) -> tuple[Switchboard, Switchboard]:
    """alice online on node one, bob on node two; the store holds no call."""
    assert store.add_presence(Presence("dev", "alice", "s-a", "one"))
    assert store.add_presence(Presence("dev", "bob", "s-b", "two"))
    return node(store, "one"), node(store, "two")


def held(user: str, copy: CallRecord | None, ringing: bool = False) -> Held:
    return Held(("dev", user), "c-1", ringing, copy)


def run(board: Switchboard, *users: Held, now: float = NOW) -> tuple[list[Send], Rebuild]:
    rebuild = Rebuild(board.machine, now)
    return rebuild.run(list(users)), rebuild


def events(sends: list[Send]) -> list[tuple[str, str, str | None]]:
    return [
        (s.to.user_id, s.message["event"], s.message.get("reason"))
        for s in sends
        if isinstance(s.to, ToUser)
    ]


def test_a_connected_call_comes_back_once_both_nodes_vouch_for_it(nodes, store) -> None:
    """Node one puts it back RESUMING with alice, waiting REBUILD_WAIT s for bob's node;
    node two's add loses (the call is there) and joins it: CONNECTED, no deadline, and
    nobody was told anything."""
    one, two = nodes
    sends, rebuild = run(one, held("alice", a_call()))
    assert sends == [] and rebuild.outcomes == {"rebuilt": 1}
    call = store.call_of("dev", "alice")
    assert call is not None and call.state is CallState.RESUMING
    assert (call.media_up, call.deadline) == ({"alice"}, NOW + REBUILD_WAIT)
    assert store.call_states("dev") == {"resuming": 1}  # what /metrics says: counted again
    sends, rebuild = run(two, held("bob", a_call()), now=NOW + 1)
    assert sends == [] and rebuild.outcomes == {"joined": 1}
    call = store.call_of("dev", "bob")
    assert call is not None and call.call_id == "c-1"
    assert (call.state, call.deadline, call.media_up) == (
        CallState.CONNECTED,
        NEVER,
        {"alice", "bob"},
    )
    assert store.next_deadline() is None  # nothing left to fire
    assert store.call_states("dev") == {"connected": 1}


def test_both_parties_on_one_node_come_back_connected_at_once(store) -> None:
    assert store.add_presence(Presence("dev", "alice", "s-a", "one"))
    assert store.add_presence(Presence("dev", "bob", "s-b", "one"))
    sends, rebuild = run(node(store, "one"), held("alice", a_call()), held("bob", a_call()))
    assert sends == [] and rebuild.outcomes == {"rebuilt": 1, "joined": 1}
    call = store.call_of("dev", "bob")
    assert call is not None and (call.state, call.deadline) == (CallState.CONNECTED, NEVER)


def test_a_call_one_side_no_longer_holds_ends_at_the_wait(nodes, store) -> None:
    """bob's client left during the outage (his node no longer vouches): the call alice's
    node put back ends REBUILD_WAIT s later, alice hears connection_lost, both are free."""
    one, _ = nodes
    run(one, held("alice", a_call()))
    assert one.expire(NOW + REBUILD_WAIT - 0.1) == []
    sends = one.expire(NOW + REBUILD_WAIT)
    assert events(sends) == [("alice", "LEAVE", "connection_lost")]
    assert store.call_of("dev", "alice") is None and store.call_of("dev", "bob") is None


def test_a_ringing_call_comes_back_with_its_ring_deadline(nodes, store) -> None:
    """The callee may still answer; unanswered, it ends at the ring timeout set at the
    offer (no_answer to both), not later."""
    one, two = nodes
    ringing = a_call(state=CallState.RINGING, deadline=NOW + 20, media_up=frozenset())
    sends, _ = run(one, held("alice", ringing, ringing=True))
    assert sends == []
    sends, rebuild = run(two, held("bob", ringing, ringing=True))
    assert sends == [] and rebuild.outcomes == {"joined": 1}
    call = store.call_of("dev", "bob")
    assert call is not None and (call.state, call.deadline) == (CallState.RINGING, NOW + 20)
    assert store.next_deadline() == NOW + 20
    sends = one.expire(NOW + 20)
    assert sorted(events(sends)) == [
        ("alice", "LEAVE", "no_answer"),
        ("bob", "CANCEL", "no_answer"),
    ]
    assert store.call_of("dev", "bob") is None


def test_an_answered_call_joins_the_media_reports_of_both_copies(nodes, store) -> None:
    """Each node's copy knows its own party's media report: node one puts the call back
    answered (its connect deadline kept) with alice's, node two adds bob's, and both
    parties hear CONNECTED."""
    one, two = nodes
    answered = a_call(state=CallState.ANSWERED, deadline=NOW + 15, media_up=frozenset())
    sends, _ = run(one, held("alice", answered.evolve(media_up=frozenset({"alice"}))))
    call = store.call_of("dev", "alice")
    assert sends == [] and call is not None
    assert (call.state, call.deadline) == (CallState.ANSWERED, NOW + 15)
    sends, rebuild = run(two, held("bob", answered.evolve(media_up=frozenset({"bob"}))))
    assert rebuild.outcomes == {"joined": 1}
    assert sorted(events(sends)) == [("alice", "CONNECTED", None), ("bob", "CONNECTED", None)]
    call = store.call_of("dev", "bob")
    assert call is not None and (call.state, call.deadline) == (CallState.CONNECTED, NEVER)


def test_without_a_copy_the_call_ends_for_the_user(nodes, store) -> None:
    """No copy (the node restarted, or a copy of an older call): LEAVE, or CANCEL for a
    call that was ringing, with connection_lost; nothing is added."""
    one, _ = nodes
    sends, rebuild = run(one, held("alice", None), held("bob", a_call(call_id="c-0"), True))
    assert rebuild.outcomes == {"ended": 2}
    assert events(sends) == [
        ("alice", "LEAVE", "connection_lost"),
        ("bob", "CANCEL", "connection_lost"),
    ]
    assert store.call_of("dev", "alice") is None and store.call_of("dev", "bob") is None


def test_a_party_taken_by_another_call_ends_the_one_the_user_knew(nodes, store) -> None:
    """bob is in another call by the time alice's node puts c-1 back: c-1 cannot come
    back, so alice hears it end; bob's call is left alone."""
    one, _ = nodes
    assert store.add_presence(Presence("dev", "carol", "s-c", "two"))
    other = a_call(call_id="c-2", caller="carol", rev=0)
    assert store.add_call(other)
    sends, rebuild = run(one, held("alice", a_call()))
    assert rebuild.outcomes == {"ended": 1}
    assert events(sends) == [("alice", "LEAVE", "connection_lost")]
    current = store.call_of("dev", "bob")
    assert current is not None and current.call_id == "c-2"
