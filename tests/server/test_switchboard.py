"""The Switchboard call state machine, driven by plain calls with an injected clock."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from board import Board as BaseBoard

from omnicli.server.records import Presence
from omnicli.server.store import Store
from omnicli.server.switchboard import Delivery, Service, Switchboard
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq

OFFER_SDP = "v=0 offer"
ANSWER_SDP = "v=0 answer"
RING = 30.0
CONNECT = 10.0


class Board(BaseBoard):
    """The driver on services dev, locked (key s3cret) and other, with numbered call ids."""

    def __init__(self, **kwargs: Any) -> None:
        ids = itertools.count(1)
        kwargs.setdefault("ring_timeout", RING)
        kwargs.setdefault("connect_timeout", CONNECT)
        super().__init__(
            [Service("dev", None), Service("locked", "s3cret"), Service("other", None)],
            now=1000.0,
            new_id=lambda prefix: f"{prefix}{next(ids)}",
            **kwargs,
        )

    def refused(self, conn: int, op: str, **fields: Any) -> p.ErrorCode:
        """The error code of a request that must fail; a refusal causes no events."""
        return p.ErrorCode(self.code(conn, op, **fields))

    def offer(self, caller: int, callee: str, call_type: str = "videocall") -> list[Delivery]:
        fields = {"call_type": call_type, "callee": callee, "sdp": OFFER_SDP}
        _, events = self.ok(caller, "offer_call", **fields)
        return events

    def call_id(self, conn: int) -> str:
        c = self.sb.conns[conn]
        assert c.service_id and c.user_id
        return self.sb.user_call[(c.service_id, c.user_id)]

    def ringing(self) -> tuple[int, int, str]:
        alice, bob = self.user("alice"), self.user("bob")
        self.offer(alice, "bob")
        return alice, bob, self.call_id(alice)

    def answered(self) -> tuple[int, int, str]:
        alice, bob, cid = self.ringing()
        self.ok(bob, "answer_call", sdp=ANSWER_SDP)
        return alice, bob, cid

    def connected(self) -> tuple[int, int, str]:
        alice, bob, cid = self.answered()
        self.ok(alice, "media_state", state="connected")
        self.ok(bob, "media_state", state="connected")
        return alice, bob, cid


def leave(cid: str, reason: str, by: str | None) -> dict[str, Any]:
    return {"event": "LEAVE", "call_id": cid, "reason": reason, "by": by}


def cancel(cid: str, reason: str, by: str | None) -> dict[str, Any]:
    return {"event": "CANCEL", "call_id": cid, "reason": reason, "by": by}


def ringing_event(cid: str, caller: str = "alice", call_type: str = "videocall") -> dict[str, Any]:
    return {
        "event": "RINGING",
        "call_id": cid,
        "caller": caller,
        "call_type": call_type,
        "record": False,
        "sdp": OFFER_SDP,
    }


@pytest.fixture
def b(store: Store) -> Board:
    return Board(store=store)


def idle_states(b: Board) -> dict[str, str]:
    return {row["user_id"]: row["state"] for row in b.sb.session_list("dev")}


# -- hello ----------------------------------------------------------------------------------


def test_hello_open_service(b: Board) -> None:
    """An open service needs no key; hello answers with version and service id."""
    conn = b.connect()
    result, events = b.ok(conn, "hello", version=1, service_id="dev")
    assert result == {"version": 1, "service_id": "dev"} and events == []


def test_hello_unknown_service(b: Board) -> None:
    """An unknown service id is UNAUTHORIZED and the connection stays without a service."""
    conn = b.connect()
    assert b.refused(conn, "hello", version=1, service_id="nope") is p.ErrorCode.UNAUTHORIZED
    assert b.refused(conn, "session_list") is p.ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("key", [None, "", "wrong", "s3cret2", "S3CRET"])
def test_hello_wrong_key(b: Board, key: str | None) -> None:
    """A keyed service refuses a missing or wrong key."""
    conn = b.connect()
    fields = {"service_key": key} if key is not None else {}
    code = b.refused(conn, "hello", version=1, service_id="locked", **fields)
    assert code is p.ErrorCode.UNAUTHORIZED


def test_hello_right_key(b: Board) -> None:
    """The right key opens a keyed service."""
    conn = b.connect()
    result, _ = b.ok(conn, "hello", version=1, service_id="locked", service_key="s3cret")
    assert result == {"version": 1, "service_id": "locked"}
    b.ok(conn, "create_session", user_id="alice")


def test_hello_twice(b: Board) -> None:
    """hello on a connection that already said it is WRONG_STATE."""
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    assert b.refused(conn, "hello", version=1, service_id="dev") is p.ErrorCode.WRONG_STATE


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        ("session_list", {}),
        ("create_session", {"user_id": "alice"}),
        ("offer_call", {"call_type": "videocall", "callee": "bob", "sdp": "x"}),
        ("answer_call", {"sdp": "x"}),
        ("leave", {}),
        ("mute", {"track": "audio"}),
    ],
)
def test_requests_before_hello(b: Board, op: str, fields: dict[str, Any]) -> None:
    """Everything but hello and ping before hello is UNAUTHORIZED."""
    conn = b.connect()
    assert b.refused(conn, op, **fields) is p.ErrorCode.UNAUTHORIZED


def test_ping_before_hello(b: Board) -> None:
    """ping works on any connection."""
    conn = b.connect()
    assert b.ok(conn, "ping") == ({}, [])


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        ("offer_call", {"call_type": "videocall", "callee": "bob", "sdp": "x"}),
        ("answer_call", {"sdp": "x"}),
        ("leave", {}),
        ("mute", {"track": "audio"}),
        ("unmute", {"track": "video"}),
        ("media_state", {"state": "connected"}),
        ("recording", {"on": True}),
    ],
)
def test_requests_before_create_session(b: Board, op: str, fields: dict[str, Any]) -> None:
    """Call requests after hello but before create_session are SESSION_REQUIRED."""
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    assert b.refused(conn, op, **fields) is p.ErrorCode.SESSION_REQUIRED


# -- create_session -------------------------------------------------------------------------


def test_create_session_chosen_id(store: Store) -> None:
    """A chosen user id is granted with a fresh session id and the ICE servers."""
    b = Board(ice_servers=[{"urls": "stun:example.org"}], store=store)
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    result, events = b.ok(conn, "create_session", user_id="alice")
    assert result.pop("resume_token") and result.pop("resume_grace") > 0
    assert result == {
        "session": "s-1",
        "user_id": "alice",
        "ice_servers": [{"urls": "stun:example.org"}],
    }
    assert events == [] and b.sb.user_of(conn) == "alice"


def test_create_session_random_id(b: Board) -> None:
    """Without a user id the server assigns a random one, distinct per connection."""
    ids = []
    for _ in range(2):
        conn = b.connect()
        b.ok(conn, "hello", version=1, service_id="dev")
        result, _ = b.ok(conn, "create_session")
        assert result["user_id"].startswith("user-") and result["session"].startswith("s-")
        ids.append(result["user_id"])
    assert ids[0] != ids[1]


def test_create_session_random_id_skips_away_sessions(store: Store) -> None:
    """A generated id whose session is away (waiting to be resumed) is not handed out."""
    names = iter(["s-1", "user-x", "user-y", "s-2"])
    sb = Switchboard([Service("dev", None)], new_id=lambda prefix: next(names), store=store)
    sb.connect(1)
    sb.handle(1, rq.parse_request({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}), 0)
    sb.handle(1, rq.parse_request({"op": "create_session", "id": 2, "user_id": "user-x"}), 0)
    sb.disconnect(1, 0, lost=True)
    assert ("dev", "user-x") in sb.away
    sb.connect(2)
    sb.handle(2, rq.parse_request({"op": "hello", "id": 1, "version": 1, "service_id": "dev"}), 0)
    out = sb.handle(2, rq.parse_request({"op": "create_session", "id": 2}), 0)
    assert out[0].message["result"]["user_id"] == "user-y"


def test_create_session_random_id_skips_taken(store: Store) -> None:
    """A generated id that is online already is not handed out again."""
    names = iter(["user-x", "s-1", "user-x", "user-y", "s-2"])
    sb = Switchboard([Service("dev", None)], new_id=lambda prefix: next(names), store=store)
    for conn in (1, 2):
        sb.connect(conn)
        hello = {"op": "hello", "id": 1, "version": 1, "service_id": "dev"}
        sb.handle(conn, rq.parse_request(hello), 0)
        out = sb.handle(conn, rq.parse_request({"op": "create_session", "id": 2}), 0)
        assert out[0].message["ok"]
    assert sb.user_of(1) == "user-x" and sb.user_of(2) == "user-y"


def test_create_session_taken_id(b: Board) -> None:
    """A user id online in the same service is USER_ID_TAKEN; another service may use it."""
    b.user("alice")
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    assert b.refused(conn, "create_session", user_id="alice") is p.ErrorCode.USER_ID_TAKEN
    b.user("alice", service="other")


def test_create_session_twice(b: Board) -> None:
    """A connection holds one session: a second create_session is WRONG_STATE."""
    conn = b.user("alice")
    assert b.refused(conn, "create_session", user_id="alice2") is p.ErrorCode.WRONG_STATE
    assert b.sb.user_of(conn) == "alice"


def test_create_session_pinned_by_token(b: Board) -> None:
    """A connection pinned to a user id (by a token) gets it by default and no other."""
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    b.sb.allow_user(conn, "alice")
    assert b.refused(conn, "create_session", user_id="bob") is p.ErrorCode.FORBIDDEN
    result, _ = b.ok(conn, "create_session")
    assert result["user_id"] == "alice"


def test_create_session_service_full(store: Store) -> None:
    """A service at its session limit refuses with SERVER_FULL."""
    b = Board(store=store)
    b.sb.services["dev"] = Service("dev", None, max_sessions=1)
    b.user("alice")
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    assert b.refused(conn, "create_session", user_id="bob") is p.ErrorCode.SERVER_FULL


# -- session_list ---------------------------------------------------------------------------


def test_session_list_idle_and_busy(b: Board) -> None:
    """session_list shows this service's users, sorted, idle or busy with the call type."""
    alice, _, _ = b.ringing()
    b.user("carol")
    b.user("dave", service="other")
    result, _ = b.ok(alice, "session_list")
    assert result == {
        "sessions": [
            {"user_id": "alice", "state": "busy", "call_type": "videocall"},
            {"user_id": "bob", "state": "busy", "call_type": "videocall"},
            {"user_id": "carol", "state": "idle", "call_type": None},
        ],
        "total": 3,
        "truncated": False,
    }


def test_session_list_without_session(b: Board) -> None:
    """session_list needs hello but not a session of one's own."""
    b.user("alice")
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    result, _ = b.ok(conn, "session_list")
    assert result == {
        "sessions": [{"user_id": "alice", "state": "idle", "call_type": None}],
        "total": 1,
        "truncated": False,
    }


def test_session_list_pages_with_after(b: Board) -> None:
    """`after` lists only the user ids after it; `truncated` says whether more follow."""
    for name in ("ann", "bea", "cid", "dan", "eve"):
        b.user(name)
    conn = b.user("zed")
    pages, after = [], None
    while True:
        result, _ = b.ok(conn, "session_list", limit=2, after=after)
        pages.append([row["user_id"] for row in result["sessions"]])
        assert result["total"] == 6
        if not result["truncated"]:
            break
        after = pages[-1][-1]
    assert pages == [["ann", "bea"], ["cid", "dan"], ["eve", "zed"]]
    result, _ = b.ok(conn, "session_list", after="zzz")
    assert result == {"sessions": [], "total": 6, "truncated": False}


def test_session_list_is_capped_with_total_and_truncated(b: Board) -> None:
    """session_list answers at most `limit` rows (default 1000), sorted, with the total."""
    for i in range(1005):
        assert b.sb.store.add_presence(Presence("dev", f"u{i:04d}", f"s-{i}", "another-node"))
    conn = b.user("alice")
    result, _ = b.ok(conn, "session_list")
    assert len(result["sessions"]) == p.SESSION_LIST_LIMIT
    assert (result["total"], result["truncated"]) == (1006, True)
    assert result["sessions"][0]["user_id"] == "alice"
    result, _ = b.ok(conn, "session_list", limit=2)
    assert [r["user_id"] for r in result["sessions"]] == ["alice", "u0000"]
    for bad in (0, 1001, "5", True):
        with pytest.raises(p.ProtocolError, match="limit"):
            rq.parse_request({"op": "session_list", "id": 1, "limit": bad})


def test_service_session_count_follows_sessions(b: Board) -> None:
    """The per-service count (used for max_sessions) goes up and down with sessions."""
    alice = b.user("alice")
    b.user("bob")
    b.user("carol", service="other")
    assert (b.sb.store.count("dev"), b.sb.store.count("other")) == (2, 1)
    b.disconnect(alice, b.now)
    assert b.sb.store.count("dev") == 1
    b.user("alice")
    assert b.sb.store.count("dev") == 2


# -- offer ----------------------------------------------------------------------------------


def test_offer_to_idle_callee(b: Board) -> None:
    """Offer: caller gets the call id and RINGBACK, callee gets RINGING with the SDP offer."""
    alice, bob = b.user("alice"), b.user("bob")
    fields = {"call_type": "audiocall", "callee": "bob", "sdp": OFFER_SDP, "record": True}
    out = b.send(alice, "offer_call", **fields)
    cid = b.call_id(alice)
    assert out[1:] == [
        Delivery(alice, {
            "event": "RINGBACK", "call_id": cid, "callee": "bob", "call_type": "audiocall",
            "record": True, "callee_online": True,
        }),
        Delivery(bob, {**ringing_event(cid, call_type="audiocall"), "record": True}),
    ]  # fmt: skip
    assert out[0].message["result"] == {"call_id": cid, "callee_online": True}
    assert b.sb.next_deadline() == b.now + RING


def test_offer_to_busy_callee(b: Board) -> None:
    """Calling someone in a call (as caller or callee) is BUSY and disturbs no one."""
    b.ringing()
    carol = b.user("carol")
    for target in ("alice", "bob"):
        assert b.refused(carol, "offer_call", call_type="videocall", callee=target, sdp="x") is (
            p.ErrorCode.BUSY
        )
    assert idle_states(b)["carol"] == "idle"


def test_offer_to_absent_callee_already_called(b: Board) -> None:
    """An offline user named by a pending call is busy for other callers too."""
    alice, carol = b.user("alice"), b.user("carol")
    b.offer(alice, "bob")
    code = b.refused(carol, "offer_call", call_type="videocall", callee="bob", sdp="x")
    assert code is p.ErrorCode.BUSY


def test_offer_to_self(b: Board) -> None:
    """Calling oneself is WRONG_STATE."""
    alice = b.user("alice")
    code = b.refused(alice, "offer_call", call_type="videocall", callee="alice", sdp="x")
    assert code is p.ErrorCode.WRONG_STATE


@pytest.mark.parametrize("who", ["caller", "callee"])
def test_offer_while_in_a_call(b: Board, who: str) -> None:
    """A user already in a call (either side) cannot place another: WRONG_STATE."""
    alice, bob, _ = b.ringing()
    b.user("carol")
    conn = alice if who == "caller" else bob
    code = b.refused(conn, "offer_call", call_type="videocall", callee="carol", sdp="x")
    assert code is p.ErrorCode.WRONG_STATE


def test_offer_invalid_callee_and_empty_sdp(b: Board) -> None:
    """A callee that is not a valid user id is INVALID_USER_ID; a blank SDP is BAD_REQUEST."""
    alice = b.user("alice")
    b.user("bob")
    code = b.refused(alice, "offer_call", call_type="videocall", callee="bo b", sdp="x")
    assert code is p.ErrorCode.INVALID_USER_ID
    code = b.refused(alice, "offer_call", call_type="videocall", callee="bob", sdp="  ")
    assert code is p.ErrorCode.BAD_REQUEST
    assert idle_states(b) == {"alice": "idle", "bob": "idle"}


def test_offer_does_not_cross_services(b: Board) -> None:
    """A callee online in another service is absent for this one."""
    alice = b.user("alice")
    b.user("bob", service="other")
    events = b.offer(alice, "bob")
    assert [s.conn for s in events] == [alice]
    assert events[0].message["callee_online"] is False


# -- late registration ----------------------------------------------------------------------


def test_absent_callee_registers_later_and_answers_seed_style(b: Board) -> None:
    """A callee registering during a pending offer gets RINGING at once and answers by caller."""
    alice = b.user("alice")
    out = b.send(alice, "offer_call", call_type="videocall", callee="bob", sdp=OFFER_SDP)
    cid = b.call_id(alice)
    assert out[0].message["result"] == {"call_id": cid, "callee_online": False}
    assert out[1:] == [
        Delivery(alice, {
            "event": "RINGBACK", "call_id": cid, "callee": "bob", "call_type": "videocall",
            "record": False, "callee_online": False,
        })
    ]  # fmt: skip
    b.now += RING - 1
    bob = b.connect()
    b.ok(bob, "hello", version=1, service_id="dev")
    result, events = b.ok(bob, "create_session", user_id="bob")
    assert result["user_id"] == "bob"
    assert events == [Delivery(bob, ringing_event(cid))]
    result, events = b.ok(bob, "answer_call", sdp=ANSWER_SDP, call_type="videocall", caller="alice")
    assert result == {"call_id": cid, "caller": "alice", "call_type": "videocall"}
    assert events == [
        Delivery(alice, {"event": "ANSWERED", "call_id": cid, "callee": "bob", "sdp": ANSWER_SDP})
    ]


def test_absent_callee_never_registers(b: Board) -> None:
    """An offer to a user who never comes online ends as unavailable at the ring timeout."""
    alice = b.user("alice")
    b.offer(alice, "bob")
    cid = b.call_id(alice)
    assert b.sb.next_deadline() == b.now + RING
    assert b.expire(b.now + RING - 0.001) == []
    assert b.expire(b.now + RING) == [Delivery(alice, leave(cid, "unavailable", None))]
    assert b.sb.next_deadline() is None and b.sb.calls == {}
    bob = b.user("bob")
    assert idle_states(b) == {"alice": "idle", "bob": "idle"}
    b.offer(bob, "alice")


def test_cancel_before_callee_registers(b: Board) -> None:
    """A caller leaving a call still waiting for an offline callee cancels it silently."""
    alice = b.user("alice")
    b.offer(alice, "bob")
    cid = b.call_id(alice)
    assert b.ok(alice, "leave") == ({"call_id": cid, "reason": "cancelled"}, [])
    conn = b.connect()
    b.ok(conn, "hello", version=1, service_id="dev")
    assert b.ok(conn, "create_session", user_id="bob")[1] == []


# -- answer ---------------------------------------------------------------------------------


def test_answer(b: Board) -> None:
    """Answering a ringing call relays the SDP answer to the caller and starts the connect timer."""
    alice, bob, cid = b.ringing()
    b.now += 5
    result, events = b.ok(bob, "answer_call", sdp=ANSWER_SDP)
    assert result == {"call_id": cid, "caller": "alice", "call_type": "videocall"}
    assert events == [
        Delivery(alice, {"event": "ANSWERED", "call_id": cid, "callee": "bob", "sdp": ANSWER_SDP})
    ]
    assert b.sb.next_deadline() == b.now + CONNECT


def test_answer_wrong_caller(b: Board) -> None:
    """Answering a caller who is not calling is NOT_FOUND; the call keeps ringing."""
    _, bob, _ = b.ringing()
    assert b.refused(bob, "answer_call", sdp="x", caller="mallory") is p.ErrorCode.NOT_FOUND
    b.ok(bob, "answer_call", sdp=ANSWER_SDP, caller="alice")


def test_answer_wrong_call_type(b: Board) -> None:
    """Answering a video call as an audio call is BAD_REQUEST; the call keeps ringing."""
    _, bob, _ = b.ringing()
    code = b.refused(bob, "answer_call", sdp="x", call_type="audiocall", caller="alice")
    assert code is p.ErrorCode.BAD_REQUEST
    b.ok(bob, "answer_call", sdp=ANSWER_SDP, call_type="videocall")


def test_answer_nothing_ringing(b: Board) -> None:
    """Answering with no call, or as the caller, is NOT_FOUND."""
    alice, _, _ = b.ringing()
    carol = b.user("carol")
    assert b.refused(carol, "answer_call", sdp="x") is p.ErrorCode.NOT_FOUND
    assert b.refused(alice, "answer_call", sdp="x") is p.ErrorCode.NOT_FOUND


def test_answer_twice_and_blank_sdp(b: Board) -> None:
    """A blank SDP answer is BAD_REQUEST; answering an answered call is WRONG_STATE."""
    _, bob, _ = b.ringing()
    assert b.refused(bob, "answer_call", sdp=" ") is p.ErrorCode.BAD_REQUEST
    b.ok(bob, "answer_call", sdp=ANSWER_SDP)
    assert b.refused(bob, "answer_call", sdp=ANSWER_SDP) is p.ErrorCode.WRONG_STATE


# -- ending a ringing call -----------------------------------------------------------------


def test_decline(b: Board) -> None:
    """The callee leaving a ringing call declines it: the caller gets LEAVE declined."""
    alice, bob, cid = b.ringing()
    result, events = b.ok(bob, "leave")
    assert result == {"call_id": cid, "reason": "declined"}
    assert events == [Delivery(alice, leave(cid, "declined", "bob"))]
    assert idle_states(b) == {"alice": "idle", "bob": "idle"}


def test_cancel_while_ringing(b: Board) -> None:
    """The caller leaving a ringing call cancels it: the callee gets CANCEL cancelled."""
    alice, bob, cid = b.ringing()
    result, events = b.ok(alice, "leave")
    assert result == {"call_id": cid, "reason": "cancelled"}
    assert events == [Delivery(bob, cancel(cid, "cancelled", "alice"))]
    assert idle_states(b) == {"alice": "idle", "bob": "idle"}


def test_ring_timeout_no_answer(b: Board) -> None:
    """An unanswered ringing call ends at the ring timeout: LEAVE to caller, CANCEL to callee."""
    alice, bob, cid = b.ringing()
    deadline = b.now + RING
    assert b.sb.next_deadline() == deadline
    assert b.expire(deadline - 0.001) == []
    assert b.expire(deadline) == [
        Delivery(alice, leave(cid, "no_answer", None)),
        Delivery(bob, cancel(cid, "no_answer", None)),
    ]
    assert b.expire(deadline + 100) == []
    assert b.sb.next_deadline() is None
    assert b.refused(bob, "answer_call", sdp="x") is p.ErrorCode.NOT_FOUND


# -- media ----------------------------------------------------------------------------------


def test_answered_but_media_never_up(b: Board) -> None:
    """An answered call whose media never comes up ends as media_failed after connect_timeout."""
    alice, bob, cid = b.ringing()
    b.now += 7
    b.ok(bob, "answer_call", sdp=ANSWER_SDP)
    b.ok(alice, "media_state", state="connected")  # only one side: not enough
    deadline = b.now + CONNECT
    assert b.sb.next_deadline() == deadline
    assert b.expire(deadline - 0.001) == []
    assert b.expire(deadline) == [
        Delivery(alice, leave(cid, "media_failed", None)),
        Delivery(bob, leave(cid, "media_failed", None)),
    ]
    assert idle_states(b) == {"alice": "idle", "bob": "idle"}


@pytest.mark.parametrize("connected_first", [False, True])
def test_media_state_failed(b: Board, connected_first: bool) -> None:
    """A media failure report ends the call as media_failed, told to both (reporter included)."""
    alice, bob, cid = b.connected() if connected_first else b.answered()
    result, events = b.ok(bob, "media_state", state="failed")
    assert result == {}
    assert events == [
        Delivery(alice, leave(cid, "media_failed", None)),
        Delivery(bob, leave(cid, "media_failed", None)),
    ]
    assert b.sb.calls == {}


def test_media_state_while_ringing(b: Board) -> None:
    """Media reports before the call is answered are WRONG_STATE."""
    alice, _, _ = b.ringing()
    assert b.refused(alice, "media_state", state="connected") is p.ErrorCode.WRONG_STATE


def test_connected_only_when_both_media_up(b: Board) -> None:
    """CONNECTED goes to both, once, and only after both sides reported media up."""
    alice, bob, cid = b.answered()
    assert b.ok(bob, "media_state", state="connected") == ({}, [])
    assert b.ok(bob, "media_state", state="connected") == ({}, [])
    _, events = b.ok(alice, "media_state", state="connected")

    def connected(peer: str) -> dict[str, Any]:
        return {
            "event": "CONNECTED", "call_id": cid, "peer": peer,
            "call_type": "videocall", "record": False,
        }  # fmt: skip

    assert events == [Delivery(alice, connected("bob")), Delivery(bob, connected("alice"))]
    assert b.ok(alice, "media_state", state="connected") == ({}, [])
    assert b.sb.next_deadline() is None
    assert b.expire(b.now + 10 * (RING + CONNECT)) == []


# -- hang-up and connection loss -------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_hangup_by_either_side(b: Board, who: str) -> None:
    """Leaving a connected call hangs up: the other side gets LEAVE hangup."""
    alice, bob, cid = b.connected()
    me, other = (alice, bob) if who == "alice" else (bob, alice)
    result, events = b.ok(me, "leave")
    assert result == {"call_id": cid, "reason": "hangup"}
    assert events == [Delivery(other, leave(cid, "hangup", who))]


def test_hangup_while_answered(b: Board) -> None:
    """Leaving after the answer but before media is up is a hangup too."""
    alice, bob, cid = b.answered()
    assert b.ok(alice, "leave")[1] == [Delivery(bob, leave(cid, "hangup", "alice"))]


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_disconnect_mid_call(b: Board, who: str) -> None:
    """A connection lost mid-call ends it: the other side gets LEAVE connection_lost."""
    alice, bob, cid = b.connected()
    me, other = (alice, bob) if who == "alice" else (bob, alice)
    assert b.disconnect(me, b.now) == [Delivery(other, leave(cid, "connection_lost", who))]
    assert idle_states(b) == {"bob" if who == "alice" else "alice": "idle"}


def test_disconnect_mid_ring_callee(b: Board) -> None:
    """A callee lost while ringing: the caller gets LEAVE connection_lost."""
    alice, bob, cid = b.ringing()
    assert b.disconnect(bob, b.now) == [Delivery(alice, leave(cid, "connection_lost", "bob"))]


def test_disconnect_mid_ring_caller(b: Board) -> None:
    """A caller lost while ringing: the callee gets CANCEL connection_lost."""
    alice, bob, cid = b.ringing()
    assert b.disconnect(alice, b.now) == [Delivery(bob, cancel(cid, "connection_lost", "alice"))]
    assert b.sb.next_deadline() is None


def test_disconnect_frees_user_id(b: Board) -> None:
    """After a disconnect the user id can be registered again; unknown conns are ignored."""
    alice = b.user("alice")
    assert b.disconnect(alice, b.now) == []
    assert b.disconnect(alice, b.now) == []
    anon = b.connect()
    assert b.disconnect(anon, b.now) == []
    b.user("alice")


# -- in-call controls -----------------------------------------------------------------------


@pytest.mark.parametrize(("op", "event"), [("mute", "MUTE"), ("unmute", "UNMUTE")])
@pytest.mark.parametrize("track", ["audio", "video"])
def test_mute_relayed_to_peer_only(b: Board, op: str, event: str, track: str) -> None:
    """mute/unmute answer the sender and send MUTE/UNMUTE to the peer only."""
    alice, bob, cid = b.connected()
    b.user("carol")
    result, events = b.ok(alice, op, track=track)
    assert result == {"track": track, "muted": op == "mute"}
    assert events == [
        Delivery(bob, {"event": event, "call_id": cid, "user_id": "alice", "track": track})
    ]


def test_recording_relayed(b: Board) -> None:
    """recording on/off answers the sender and tells the peer with RECORDING."""
    alice, bob, cid = b.connected()
    for on in (True, False):
        result, events = b.ok(bob, "recording", on=on)
        assert result == {"on": on}
        assert events == [
            Delivery(alice, {"event": "RECORDING", "call_id": cid, "user_id": "bob", "on": on})
        ]


def test_mute_while_ringing(b: Board) -> None:
    """Mute before the call is answered is WRONG_STATE."""
    alice, _, _ = b.ringing()
    assert b.refused(alice, "mute", track="audio") is p.ErrorCode.WRONG_STATE
    assert b.refused(alice, "recording", on=True) is p.ErrorCode.WRONG_STATE


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        ("leave", {}),
        ("mute", {"track": "audio"}),
        ("unmute", {"track": "video"}),
        ("recording", {"on": True}),
        ("media_state", {"state": "failed"}),
    ],
)
def test_acting_on_a_call_you_are_not_in(b: Board, op: str, fields: dict[str, Any]) -> None:
    """Call requests from a user in no call are NOT_FOUND and leave others' call alone."""
    alice, _, cid = b.connected()
    carol = b.user("carol")
    assert b.refused(carol, op, **fields) is p.ErrorCode.NOT_FOUND
    assert b.call_id(alice) == cid and b.sb.calls[cid].state.value == "connected"


def test_users_idle_after_call_and_can_call_again(b: Board) -> None:
    """After a hang-up both keep their sessions, are idle, and can call each other again."""
    alice, bob, _ = b.connected()
    b.ok(bob, "leave")
    assert idle_states(b) == {"alice": "idle", "bob": "idle"}
    assert b.refused(alice, "leave") is p.ErrorCode.NOT_FOUND
    events = b.offer(bob, "alice", call_type="audiocall")
    cid = b.call_id(bob)
    assert events[1] == Delivery(alice, ringing_event(cid, caller="bob", call_type="audiocall"))
    b.ok(alice, "answer_call", sdp=ANSWER_SDP, caller="bob")
    b.ok(alice, "media_state", state="connected")
    _, events = b.ok(bob, "media_state", state="connected")
    assert {s.message["event"] for s in events} == {"CONNECTED"}
