"""media_restart: the switchboard relays a new offer, its answer and the callee's request to
the peer, only in the roles that avoid glare, and keeps no state for it."""

from __future__ import annotations

from typing import Any

import pytest
from test_switchboard import Board

from omnicli.server.records import CallState
from omnicli.server.store import Store
from omnicli.server.switchboard import Delivery
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq


@pytest.fixture
def b(store: Store) -> Board:
    return Board(store=store)


def restart(cid: str, user: str, kind: str, sdp: str | None = None) -> dict[str, Any]:
    event = {"event": "MEDIA_RESTART", "call_id": cid, "user_id": user, "kind": kind}
    return event | ({"sdp": sdp} if sdp is not None else {})


def test_offer_answer_and_request_are_relayed(b: Board) -> None:
    """The callee asks, the caller offers, the callee answers: each reaches the other party
    only; the call stays connected and the same call throughout."""
    alice, bob, cid = b.connected()
    b.user("carol")
    result, events = b.ok(bob, "media_restart", kind="request", call_id=cid)
    assert result == {"kind": "request", "delivered": True}
    assert events == [Delivery(alice, restart(cid, "bob", "request"))]
    _, events = b.ok(alice, "media_restart", kind="offer", sdp="v=0 new offer")
    assert events == [Delivery(bob, restart(cid, "alice", "offer", "v=0 new offer"))]
    _, events = b.ok(bob, "media_restart", kind="answer", sdp="v=0 new answer")
    assert events == [Delivery(alice, restart(cid, "bob", "answer", "v=0 new answer"))]
    assert b.sb.calls[cid].state is CallState.CONNECTED
    _, events = b.ok(alice, "media_state", state="connected")  # reporting again: nothing
    assert events == []


@pytest.mark.parametrize(
    ("who", "kind"), [("bob", "offer"), ("alice", "answer"), ("alice", "request")]
)
def test_wrong_role_is_forbidden(b: Board, who: str, kind: str) -> None:
    """Only the caller offers; only the callee answers or asks (no glare)."""
    alice, bob, _ = b.connected()
    conn = {"alice": alice, "bob": bob}[who]
    fields = {"sdp": "v=0"} if kind != "request" else {}
    assert b.refused(conn, "media_restart", kind=kind, **fields) is p.ErrorCode.FORBIDDEN


def test_not_before_the_answer_nor_outside_a_call(b: Board) -> None:
    alice, _, _ = b.ringing()
    assert b.refused(alice, "media_restart", kind="offer", sdp="v=0") is p.ErrorCode.WRONG_STATE
    carol = b.user("carol")
    assert b.refused(carol, "media_restart", kind="offer", sdp="v=0") is p.ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "offer"},
        {"kind": "answer", "sdp": "  "},
        {"kind": "restart", "sdp": "v=0"},
        {"kind": "offer", "sdp": "x" * (p.MAX_SDP + 1)},
    ],
)
def test_bad_fields_are_400(fields: dict[str, Any]) -> None:
    with pytest.raises(p.ProtocolError) as err:
        rq.parse_request({"op": "media_restart", "id": 1, **fields})
    assert err.value.code is p.ErrorCode.BAD_REQUEST


def test_to_an_away_peer_is_not_delivered(b: Board) -> None:
    """A peer whose connection dropped (away, resuming) misses the relay; the result says so,
    and the call is untouched."""
    alice, bob, cid = b.connected()
    b.disconnect(bob, b.now, lost=True)
    result, events = b.ok(alice, "media_restart", kind="offer", sdp="v=0")
    assert result == {"kind": "offer", "delivered": False} and events == []
    assert cid in b.sb.calls
