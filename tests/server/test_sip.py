"""sipcall in the switchboard, the SIP policy and the SIP code mapping: pure, no gateway."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from omnicli.server import sip
from omnicli.server.sip import GATEWAY, GatewayEvent, GatewayEventKind, SipPolicy
from omnicli.server.switchboard import Send, Service, Switchboard
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq

URI = "sip:carol@pbx.example"
K = GatewayEventKind
ALL = SipPolicy()


class Board:
    current: Board  # the board of the running test, for `events()`

    def __init__(self, policy: SipPolicy | None = ALL, ring: float = 30.0) -> None:
        self.inbound = policy is not None and policy.registrar is not None
        ids = itertools.count(1)
        self.sb = Switchboard(
            [Service("dev", None), Service("other", None)],
            ring_timeout=ring,
            connect_timeout=10.0,
            new_id=lambda prefix: f"{prefix}{next(ids)}",
            sip_policy=policy,
        )
        self.conns = itertools.count(1)
        self.now = 1000.0
        Board.current = self

    def user(self, user_id: str, service: str = "dev", sip_inbound: bool = False) -> int:
        conn = next(self.conns)
        self.sb.connect(conn)
        self.request(conn, "hello", version=p.VERSION, service_id=service)
        self.last = self.request(conn, "create_session", user_id=user_id, sip_inbound=sip_inbound)
        return conn

    def request(self, conn: int, op: str, **fields: Any) -> list[Send]:
        return self.sb.handle(conn, rq.parse_request({"op": op, "id": 1, **fields}), self.now)

    def offer(self, conn: int, uri: str = URI, call_type: str = "sipcall") -> list[Send]:
        return self.request(conn, "offer_call", call_type=call_type, callee=uri, sdp="v=0 offer")

    def gateway(self, call_id: str, kind: K, **fields: Any) -> list[Send]:
        return self.sb.gateway_event(GatewayEvent(call_id, kind, **fields), self.now)


def orders(sends: list[Send]) -> list[dict[str, Any]]:
    return [s.message for s in sends if s.to == GATEWAY]


def hangups(sends: list[Send]) -> list[str]:
    """The call ids the gateway is told to hang up."""
    return [m["call_id"] for m in orders(sends) if m["op"] == "hangup"]


def events(sends: list[Send], conn: int) -> list[dict[str, Any]]:
    """The events among `sends` that reach connection `conn`."""
    routed = Board.current.sb.route(sends)
    return [d.message for d in routed if d.conn == conn and "event" in d.message]


def test_an_offer_to_a_sip_address_becomes_a_dial_order_and_no_ringback_yet() -> None:
    b = Board()
    alice = b.user("alice")
    resp, *rest = b.offer(alice)
    assert resp.message["ok"] and resp.message["result"]["callee_online"] is False
    assert orders(rest) == [sip.dial("c-2", "alice", URI, "v=0 offer")]
    assert events(rest, alice) == []  # RINGBACK waits for the phone to ring


def test_a_sip_call_rings_answers_connects_and_hangs_up() -> None:
    b = Board()
    alice = b.user("alice")
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    ringback = events(b.gateway(call_id, K.RINGING), alice)
    assert [e["event"] for e in ringback] == ["RINGBACK"] and ringback[0]["callee"] == URI
    assert events(b.gateway(call_id, K.RINGING), alice) == []  # 180 then 183: one RINGBACK
    answered = events(b.gateway(call_id, K.ANSWERED, sdp="v=0 answer"), alice)
    assert answered == [p.event(p.Event.ANSWERED, call_id=call_id, callee=URI, sdp="v=0 answer")]
    assert events(b.request(alice, "media_state", state="connected"), alice) == []
    connected = events(b.gateway(call_id, K.MEDIA_UP), alice)
    assert connected[0]["event"] == "CONNECTED" and connected[0]["peer"] == URI
    out = b.request(alice, "leave")
    assert out[0].message["result"]["reason"] == "hangup"
    assert hangups(out) == [call_id]
    assert b.sb.session_list("dev")[0]["state"] == "idle"


def test_a_phone_that_answers_without_ringing_still_gives_ringback_first() -> None:
    b = Board()
    alice = b.user("alice")
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    out = events(b.gateway(call_id, K.ANSWERED, sdp="v=0 answer"), alice)
    assert [e["event"] for e in out] == ["RINGBACK", "ANSWERED"]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (486, "busy"),
        (603, "declined"),
        (408, "no_answer"),
        (480, "unavailable"),
        (404, "unavailable"),
        (487, "cancelled"),
        (488, "media_failed"),
        (500, "unavailable"),
    ],
)
def test_a_refusal_from_the_phone_ends_the_call_with_its_reason(code: int, reason: str) -> None:
    b = Board()
    alice = b.user("alice")
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    b.gateway(call_id, K.RINGING)
    out = b.gateway(call_id, K.ENDED, code=code)
    assert events(out, alice) == [p.event(p.Event.LEAVE, call_id=call_id, reason=reason, by=URI)]
    assert orders(out) == []  # the gateway ended it: no hang-up order back
    assert b.offer(alice)[0].message["ok"]  # alice is free to call again


def test_a_bye_after_the_answer_is_a_hangup_by_the_phone() -> None:
    b = Board()
    alice = b.user("alice")
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    b.gateway(call_id, K.ANSWERED, sdp="v=0 answer")
    out = b.gateway(call_id, K.ENDED, code=200)
    assert events(out, alice)[0]["reason"] == "hangup"


def test_the_gateway_failing_ends_the_call_unavailable_or_connection_lost() -> None:
    b = Board()
    alice = b.user("alice")
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    assert events(b.gateway(call_id, K.FAILED), alice)[0]["reason"] == "unavailable"
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    b.gateway(call_id, K.ANSWERED, sdp="v=0 answer")
    assert events(b.gateway(call_id, K.FAILED), alice)[0]["reason"] == "connection_lost"


def test_ring_timeout_and_a_vanished_caller_hang_up_the_gateway_leg() -> None:
    b = Board(ring=5.0)
    alice, bob = b.user("alice"), b.user("bob")
    first = b.offer(alice)[0].message["result"]["call_id"]
    refused = b.offer(bob)[0].message["error"]  # one call per SIP address in the store
    assert refused["code"] == 486, refused
    second = b.offer(bob, uri="sip:dave@pbx.example")[0].message["result"]["call_id"]
    b.gateway(first, K.RINGING)
    b.now += 6
    out = b.sb.expire(b.now)
    assert sorted(hangups(out)) == sorted([first, second])
    assert events(out, alice)[0]["reason"] == "no_answer"
    assert events(out, bob)[0]["reason"] == "unavailable"  # it never even rang
    third = b.offer(alice)[0].message["result"]["call_id"]
    assert hangups(b.sb.disconnect(alice, b.now)) == [third]


def test_late_gateway_news_about_a_call_that_is_gone_is_hung_up() -> None:
    b = Board()
    assert hangups(b.gateway("c-unknown", K.ANSWERED, sdp="x")) == ["c-unknown"]
    assert b.gateway("c-unknown", K.ENDED, code=486) == []


def test_sip_offers_are_checked() -> None:
    b = Board(policy=None)
    alice = b.user("alice")
    refusal = b.offer(alice)[0].message["error"]
    assert refusal["code"] == 403 and "no SIP gateway" in refusal["message"]
    b = Board(policy=SipPolicy(domains=("pbx.example",)))
    alice = b.user("alice")
    assert b.offer(alice, call_type="audiocall")[0].message["error"]["code"] == 400
    assert b.offer(alice, uri="bob", call_type="sipcall")[0].message["error"]["code"] == 400
    assert b.offer(alice, uri="sip:a@b?x=y")[0].message["error"]["code"] == 422
    refused = b.offer(alice, uri="sip:a@evil.example")[0].message["error"]
    assert refused["code"] == 403 and "not allowed" in refused["message"]
    assert b.offer(alice)[0].message["ok"]


def test_the_policy_allows_domains_subdomains_and_services() -> None:
    policy = SipPolicy(domains=("pbx.example", ".corp.example"), services=("dev",))
    assert policy.refuse("dev", "sip:a@pbx.example") is None
    assert policy.refuse("dev", "sip:a@PBX.example:5060") is None
    assert policy.refuse("dev", "sip:a@x.corp.example") is None
    assert policy.refuse("dev", "sip:a@corp.example.evil") is not None
    assert policy.refuse("dev", "sip:a@xpbx.example") is not None
    assert policy.refuse("other", "sip:a@pbx.example") is not None
    assert SipPolicy().refuse("any", "sip:a@anywhere") is None


@pytest.mark.parametrize(
    "uri",
    [
        "sip:alice@pbx.example",
        "sip:10.0.0.1:5060",
        "sip:a@[::1]:5070",
        "sip:%41b@x.y",
        "sip:+4930@h",
    ],
)
def test_good_sip_addresses(uri: str) -> None:
    assert p.check_sip_uri(uri) is None


@pytest.mark.parametrize(
    "uri",
    [
        "sip:a@b;transport=tcp",  # parameters could steer the gateway
        "sip:a@b?Subject=x",  # headers
        "sip:<a>@b",
        "sip:a b@c",
        "sip:a@b\r\nVia: x",
        "sip:a@b:0",
        "sip:a@b:70000",
        "sips:a@b",
        "sip:",
        "sip:a@-b",
        "sip:" + "a" * 200 + "@b",
    ],
)
def test_bad_sip_addresses(uri: str) -> None:
    assert p.check_sip_uri(uri) is not None


INBOUND = SipPolicy(registrar="sip:10.0.0.9:5060", domain="omni.example")
DAVE = "sip:dave@pbx.example"


def incoming(b: Board, user: str = "bob", call_id: str = "c-sip1") -> list[Send]:
    event = GatewayEvent(
        call_id, K.INCOMING, sdp="v=0 janus", service_id="dev", user=user, peer=DAVE
    )
    return b.sb.gateway_event(event, b.now)


def test_a_user_registered_for_sip_is_rung_and_answers_through_the_gateway() -> None:
    b = Board(policy=INBOUND)
    bob = b.user("bob", sip_inbound=True)
    assert b.last[0].message["result"]["sip_address"] == "sip:bob@omni.example"
    assert orders(b.last) == [sip.register("dev", "bob")]
    ringing = events(incoming(b), bob)
    assert ringing[0]["event"] == "RINGING" and ringing[0]["caller"] == DAVE
    assert ringing[0]["call_type"] == "sipcall" and ringing[0]["sdp"] == "v=0 janus"
    out = b.request(bob, "answer_call", sdp="v=0 bob")
    assert orders(out) == [sip.accept("c-sip1", "v=0 bob")]
    b.request(bob, "media_state", state="connected")
    assert events(b.gateway("c-sip1", K.MEDIA_UP), bob)[0]["event"] == "CONNECTED"
    out = b.gateway("c-sip1", K.ENDED, code=200)
    assert events(out, bob)[0]["reason"] == "hangup" and events(out, bob)[0]["by"] == DAVE
    assert orders(b.sb.disconnect(bob, b.now)) == [sip.unregister("dev", "bob")]


def test_incoming_sip_calls_are_declined_with_the_right_code() -> None:
    b = Board(policy=INBOUND)
    bob = b.user("bob", sip_inbound=True)
    incoming(b)
    out = b.request(bob, "leave")
    assert orders(out) == [{"op": "hangup", "call_id": "c-sip1", "code": 603}]  # declined
    b.user("alice")
    incoming(b, call_id="c-sip2")
    out = incoming(b, call_id="c-sip3")  # bob is being rung already
    assert orders(out) == [{"op": "hangup", "call_id": "c-sip3", "code": 486}]
    out = incoming(b, user="alice", call_id="c-sip4")  # alice takes no SIP calls
    assert orders(out) == [{"op": "hangup", "call_id": "c-sip4", "code": 480}]
    b.now += 31
    assert orders(b.sb.expire(b.now)) == [{"op": "hangup", "call_id": "c-sip2", "code": 480}]


def test_a_caller_that_cancels_ends_the_ringing_with_cancel() -> None:
    b = Board(policy=INBOUND)
    bob = b.user("bob", sip_inbound=True)
    incoming(b)
    out = b.gateway("c-sip1", K.ENDED, code=487)
    assert events(out, bob) == [
        p.event(p.Event.CANCEL, call_id="c-sip1", reason="cancelled", by=DAVE)
    ]


def test_sip_inbound_needs_a_registrar_and_one_service_per_user() -> None:
    b = Board()
    b.user("bob", sip_inbound=True)
    assert b.last[0].message["error"]["code"] == 403
    b = Board(policy=INBOUND)
    b.user("bob", sip_inbound=True)
    b.user("bob", service="other", sip_inbound=True)
    assert b.last[0].message["error"]["code"] == 409


def test_touch_tones_go_to_the_gateway_for_answered_sip_calls_only() -> None:
    b = Board()
    alice, bob = b.user("alice"), b.user("bob")
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    assert b.request(alice, "dtmf", digits="1")[0].message["error"]["code"] == 412  # ringing
    b.gateway(call_id, K.ANSWERED, sdp="v=0 answer")
    out = b.request(alice, "dtmf", digits="12#*ab")
    assert orders(out) == [sip.dtmf(call_id, "12#*AB")]
    b.request(bob, "offer_call", call_type="audiocall", callee="carol", sdp="v=0")
    assert b.request(bob, "dtmf", digits="1")[0].message["error"]["code"] == 412  # not SIP


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "1" * 33])
def test_bad_touch_tones_are_refused(digits: str) -> None:
    with pytest.raises(p.ProtocolError):
        rq.parse_request({"op": "dtmf", "id": 1, "digits": digits})


def test_a_sip_caller_whose_connection_blips_resumes_its_call() -> None:
    b = Board()
    alice = b.user("alice")
    token = b.last[0].message["result"]["resume_token"]
    call_id = b.offer(alice)[0].message["result"]["call_id"]
    b.gateway(call_id, K.ANSWERED, sdp="v=0 answer")
    assert orders(b.sb.disconnect(alice, b.now, lost=True)) == []  # away: the leg stays
    conn = next(b.conns)
    b.sb.connect(conn)
    b.request(conn, "hello", version=p.VERSION, service_id="dev")
    described = {"call_id": call_id, "peer": URI, "role": "caller", "call_type": "sipcall"}
    resp = b.request(conn, "resume", resume_token=token, **described)[0].message
    assert resp["ok"] and resp["result"]["call"]["peer"] == URI, resp
    assert hangups(b.request(conn, "leave")) == [call_id]
