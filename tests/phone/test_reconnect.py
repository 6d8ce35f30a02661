"""Signaling faults: a dropped connection resumes its session and call; a clean close or an
expired grace ends the call as connection_lost; a restarted server rebuilds declared calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from board import Board as BaseBoard
from board import events_of
from netproxy import CuttableProxy
from phones import call_connected, eventually, make_phone, until

from omnicli.errors import ServerUnreachable
from omnicli.phone import events as ev
from omnicli.phone import reconcile
from omnicli.phone.core import Phone, SessionInfo
from omnicli.server.driver import ServerConfig, SignalingServer
from omnicli.server.switchboard import Delivery, Service
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq
from omnicli.wire import tokens
from omnicli.wire.messages import ResumeResult
from omnicli.wire.protocol import CallType, Role

SECRET = b"resume-secret-for-tests"
GRACE = 5.0


class Board(BaseBoard):
    """The driver on services dev and other, with resume on, keeping each user's token."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("resume_secret", SECRET)
        kw.setdefault("resume_grace", GRACE)
        super().__init__([Service("dev", None), Service("other", None)], now=100.0, **kw)
        self.tokens: dict[str, str] = {}

    def user(self, user_id: str, service: str = "dev", **hello: Any) -> int:
        conn = self.hello(service, **hello)
        result, _ = self.ok(conn, "create_session", user_id=user_id)
        self.tokens[user_id] = result["resume_token"]
        return conn

    def connected(self) -> tuple[int, int, str]:
        alice, bob = self.user("alice"), self.user("bob")
        result, _ = self.ok(alice, "offer_call", call_type="videocall", callee="bob", sdp="o")
        self.ok(bob, "answer_call", sdp="a")
        self.ok(alice, "media_state", state="connected")
        _, events = self.ok(bob, "media_state", state="connected")
        assert {e.message["event"] for e in events} == {"CONNECTED"}
        return alice, bob, result["call_id"]

    def resume(self, user: str, **fields: Any) -> tuple[int, dict[str, Any], list[Delivery]]:
        conn = self.hello()
        result, events = self.ok(conn, "resume", resume_token=self.tokens[user], **fields)
        self.tokens[user] = result["resume_token"]
        return conn, result, events


# -- the switchboard ---------------------------------------------------------------------------


def test_lost_connection_keeps_the_call_and_resume_takes_it_back() -> None:
    """A dropped connection (no close handshake) ends nothing at once; resume within the grace
    gets the same session and call back, and the call works both ways again."""
    b = Board()
    alice, bob, call_id = b.connected()
    session = b.sb.conns[bob].session
    assert b.disconnect(bob, b.now, lost=True) == []
    b.now += GRACE - 0.5
    assert b.expire(b.now) == []
    assert b.code(b.hello(), "create_session", user_id="bob") == 409  # still bob's
    bob2, result, events = b.resume("bob")
    assert (result["user_id"], result["session"], result["ended"]) == ("bob", session, None)
    assert result["call"] == {
        "call_id": call_id,
        "state": "connected",
        "peer": "alice",
        "role": "callee",
        "call_type": "videocall",
        "record": False,
    }
    assert events == []
    _, out = b.ok(alice, "mute", track="audio")
    assert events_of(out, bob2)[0]["event"] == "MUTE"
    _, out = b.ok(bob2, "leave", call_id=call_id)
    assert events_of(out, alice)[0]["reason"] == "hangup"


def test_clean_close_ends_the_call_at_once() -> None:
    """A clean close gives the peer LEAVE connection_lost immediately, with no grace."""
    b = Board()
    alice, bob, call_id = b.connected()
    out = b.disconnect(bob, b.now, lost=False)
    assert events_of(out, alice) == [
        {"event": "LEAVE", "call_id": call_id, "reason": "connection_lost", "by": "bob"}
    ]
    assert b.sb.away == {}


def test_grace_running_out_ends_the_call_and_a_late_resume_learns_it() -> None:
    """After the grace the peer gets LEAVE connection_lost; a late resume gets a fresh
    session under the same user id and is told its call ended."""
    b = Board()
    alice, bob, call_id = b.connected()
    b.disconnect(bob, b.now, lost=True)
    assert b.sb.next_deadline() == pytest.approx(b.now + GRACE)
    b.now += GRACE
    out = b.expire(b.now)
    assert events_of(out, alice) == [
        {"event": "LEAVE", "call_id": call_id, "reason": "connection_lost", "by": "bob"}
    ]
    _, result, _ = b.resume(
        "bob", call_id=call_id, peer="alice", role="callee", call_type="videocall"
    )
    assert result["call"] is None
    assert result["ended"] == {"call_id": call_id, "reason": "connection_lost", "by": None}


def test_an_end_missed_while_away_is_told_on_resume() -> None:
    """If the peer hangs up while we are away, resume says so (reason and who)."""
    b = Board()
    alice, bob, call_id = b.connected()
    b.disconnect(bob, b.now, lost=True)
    b.ok(alice, "leave")
    _, result, _ = b.resume("bob")
    assert result["call"] is None
    assert result["ended"] == {"call_id": call_id, "reason": "hangup", "by": "alice"}


def test_resume_on_a_half_open_connection_kicks_the_old_one_out() -> None:
    """Resuming while the server still holds the old connection: the old one gets KICKOUT and
    is closed, the call moves to the new connection, and the old one's end changes nothing."""
    b = Board()
    alice, bob, call_id = b.connected()
    bob2, result, events = b.resume("bob")
    assert result["call"]["call_id"] == call_id
    assert [(e.conn, e.message["event"], e.close) for e in events] == [(bob, "KICKOUT", True)]
    assert b.disconnect(bob, b.now, lost=False) == []
    _, out = b.ok(alice, "mute", track="video")
    assert [s.conn for s in out] == [bob2]


def test_a_ringing_callee_is_rung_again_on_resume() -> None:
    """A callee that drops while its call rings gets RINGING again when it resumes."""
    b = Board()
    alice, bob = b.user("alice"), b.user("bob")
    b.ok(alice, "offer_call", call_type="audiocall", callee="bob", sdp="offer")
    b.disconnect(bob, b.now, lost=True)
    _, result, events = b.resume("bob")
    assert result["call"]["state"] == "ringing"
    assert [e.message["event"] for e in events] == ["RINGING"]
    assert events[0].message["sdp"] == "offer"


@pytest.mark.parametrize("case", ["garbage", "other-secret", "other-service"])
def test_bad_resume_tokens_are_refused(case: str) -> None:
    """A resume token that is not ours, or is for another service, is 401."""
    b = Board()
    b.user("bob")
    token = b.tokens["bob"]
    conn = b.hello("other" if case == "other-service" else "dev")
    if case == "garbage":
        token = "not.a.token"
    elif case == "other-secret":
        token = Board(resume_secret=b"another").sb._session_result(b.sb.conns[1], 0)["resume_token"]
    assert b.code(conn, "resume", resume_token=token) == 401


def test_restarted_server_rebuilds_a_call_both_sides_declare() -> None:
    """A new server run with the same secret: the first party's resume holds the call, the
    second's completes it; then it works like any connected call."""
    old = Board()
    _, _, call_id = old.connected()
    new = Board()
    new.tokens = dict(old.tokens)
    a2, result, _ = new.resume(
        "alice", call_id=call_id, peer="bob", role="caller", call_type="videocall"
    )
    assert result["call"]["state"] == "resuming" and result["ended"] is None
    assert (
        new.code(new.user("carol"), "offer_call", call_type="videocall", callee="bob", sdp="o")
        == 486
    )  # bob is held for the call
    b2, result, _ = new.resume(
        "bob", call_id=call_id, peer="alice", role="callee", call_type="videocall"
    )
    assert result["call"]["state"] == "connected"
    _, out = new.ok(b2, "mute", track="audio")
    assert events_of(out, a2)[0]["event"] == "MUTE"
    assert new.sb.next_deadline() is None


def test_restarted_server_ends_a_call_only_one_side_declares() -> None:
    """If the other party never comes back, the declared call ends after the grace."""
    old = Board()
    _, _, call_id = old.connected()
    new = Board()
    new.tokens = dict(old.tokens)
    a2, _, _ = new.resume(
        "alice", call_id=call_id, peer="bob", role="caller", call_type="videocall"
    )
    new.now += GRACE
    out = new.expire(new.now)
    assert events_of(out, a2) == [
        {"event": "LEAVE", "call_id": call_id, "reason": "connection_lost", "by": "bob"}
    ]
    assert new.sb.calls == {} and new.sb.user_call == {}


def test_restarted_server_does_not_join_mismatched_declarations() -> None:
    """Two declarations of one call id that disagree (roles, peers) do not make a call."""
    old = Board()
    _, _, call_id = old.connected()
    new = Board()
    new.tokens = dict(old.tokens)
    new.resume("alice", call_id=call_id, peer="bob", role="caller", call_type="videocall")
    _, result, _ = new.resume(
        "bob", call_id=call_id, peer="alice", role="caller", call_type="videocall"
    )
    assert result["call"] is None
    assert result["ended"] == {"call_id": call_id, "reason": "connection_lost", "by": None}
    assert new.sb.calls[call_id].state.value == "resuming"  # alice's still waits for bob


def test_a_caller_that_missed_answered_while_away_gets_it_on_resume() -> None:
    """ANSWERED sent while the caller was away is sent again when it resumes without
    describing the call (it was still `calling`), with the callee's answer SDP."""
    b = Board()
    alice, bob = b.user("alice"), b.user("bob")
    result, _ = b.ok(alice, "offer_call", call_type="videocall", callee="bob", sdp="o")
    b.disconnect(alice, b.now, lost=True)
    b.ok(bob, "answer_call", sdp="the-answer")
    a2, resumed, events = b.resume("alice")
    assert resumed["call"]["state"] == "answered"
    assert [(e.message["event"], e.message.get("sdp")) for e in events] == [
        ("ANSWERED", "the-answer")
    ]
    # one that describes the call (it had the answer) is not told again
    b.disconnect(a2, b.now, lost=True)
    _, _, events = b.resume(
        "alice", call_id=result["call_id"], peer="bob", role="caller", call_type="videocall"
    )
    assert events == []


def test_restarted_server_does_not_declare_a_call_with_an_online_idle_peer() -> None:
    """After a restart, an old resume token cannot make a call with a peer that is online
    with a session and no such call (it would make that user busy at will)."""
    old = Board()
    _, _, call_id = old.connected()
    new = Board()
    new.tokens = dict(old.tokens)
    new.user("bob")  # bob registered afresh on the new run
    for _ in range(3):
        conn, result, _ = new.resume(
            "alice", call_id=call_id, peer="bob", role="caller", call_type="videocall"
        )
        assert result["call"] is None and result["ended"]["call_id"] == call_id
        new.disconnect(conn, new.now)
    assert new.sb.calls == {} and new.sb.user_call == {}


def test_a_resume_token_naming_a_bad_user_id_is_refused() -> None:
    """A resume token whose subject is not a valid user id is 401."""
    b = Board()
    claims = {
        "typ": "resume",
        "svc": "dev",
        "sub": "bad id",
        "sid": "s-1",
        "boot": "x",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    forged = tokens.encode(claims, SECRET)
    assert b.code(b.hello(), "resume", resume_token=forged) == 401


def test_resume_parsing() -> None:
    """resume needs a token; describing a call needs all of its fields."""
    body = rq.parse_request({"op": "resume", "id": 1, "resume_token": "t"}).body
    assert body == rq.Resume("t")
    with pytest.raises(p.ProtocolError, match="peer"):
        rq.parse_request({"op": "resume", "id": 1, "resume_token": "t", "call_id": "c-1"})
    with pytest.raises(p.ProtocolError, match="resume_token"):
        rq.parse_request({"op": "resume", "id": 1})


# -- the client's plan after a resume ----------------------------------------------------------

LOCAL = reconcile.LocalCall("c-1", "connected", "bob", Role.CALLER, CallType.VIDEO, False, True)
LOCAL_MEDIA_DOWN = reconcile.LocalCall(
    "c-1", "connecting", "bob", Role.CALLER, CallType.VIDEO, False
)


def _server_call(call_id: str = "c-1", state: str = "connected", role: str = "caller") -> dict:
    return {
        "call_id": call_id,
        "state": state,
        "peer": "bob",
        "role": role,
        "call_type": "videocall",
        "record": False,
    }


@pytest.mark.parametrize(
    ("local", "result", "expected"),
    [
        (LOCAL, {"call": _server_call()}, reconcile.Plan(continues="c-1")),
        (
            LOCAL,
            {"call": _server_call(state="answered")},
            reconcile.Plan(report_media=True, continues="c-1"),
        ),
        (
            LOCAL_MEDIA_DOWN,
            {"call": _server_call(state="answered")},
            reconcile.Plan(continues="c-1"),
        ),
        (
            LOCAL,
            {"call": None, "ended": {"call_id": "c-1", "reason": "hangup", "by": "bob"}},
            reconcile.Plan(end_reason="hangup", end_by="bob"),
        ),
        (LOCAL, {"call": None}, reconcile.Plan(end_reason="connection_lost")),
        (None, {"call": _server_call()}, reconcile.Plan(leave_call_id="c-1")),
        (None, {"call": _server_call(state="ringing", role="callee")}, reconcile.Plan()),
        (
            LOCAL,
            {"call": _server_call("c-2", state="ringing", role="callee")},
            reconcile.Plan(end_reason="connection_lost"),
        ),
    ],
    ids=[
        "same",
        "answered",
        "answered-media-down",
        "missed-hangup",
        "gone",
        "stray",
        "ringing-here",
        "other-ringing",
    ],
)
def test_resume_plan(local, result, expected) -> None:
    """The phone keeps, ends or cleans up its call according to the resume result."""
    parsed = ResumeResult.parse({"session": "s-1", "user_id": "alice", **result})
    assert reconcile.plan(local, parsed) == expected


def test_only_calls_past_the_sdp_exchange_are_declared() -> None:
    """A ringing/calling call is not described in resume; a connecting or connected one is."""
    assert (
        reconcile.declaration(
            reconcile.LocalCall("c-1", "calling", "bob", Role.CALLER, CallType.VIDEO, False)
        )
        == {}
    )
    assert reconcile.declaration(LOCAL) == {
        "call_id": "c-1",
        "peer": "bob",
        "role": "caller",
        "call_type": "videocall",
        "record": False,
    }


# -- real phones, real media -------------------------------------------------------------------


def phone(url: str, tone: str = "tone:440") -> Phone:
    return make_phone(url, audio_source=tone)


async def call_up(url: str) -> tuple[Phone, Phone]:
    alice, bob = phone(url), phone(url, "tone:660")
    await call_connected(alice, bob)
    return alice, bob


async def test_network_blip_mid_call_resumes_and_media_keeps_flowing() -> None:
    """Cutting every signaling connection mid-call: both phones show RECONNECTING then
    RECONNECTED, video keeps arriving meanwhile, and the call then hangs up normally."""
    async with (
        SignalingServer(ServerConfig(port=0)) as srv,
        CuttableProxy("127.0.0.1", srv.port) as proxy,
    ):
        alice, bob = await call_up(proxy.url)
        try:
            probe = bob.media.link.video_in
            proxy.accepting = False
            proxy.cut()
            for ph in (alice, bob):
                assert "no close frame" in (await until(ph, ev.Reconnecting)).reason
            during = probe.frames_received
            # media does not need signaling: frames go on while it cannot reconnect
            await eventually(lambda: probe.frames_received - during > 10)
            proxy.accepting = True
            for ph, name in ((alice, "alice"), (bob, "bob")):
                back = await until(ph, ev.Reconnected)
                assert back.user_id == name and back.call_id == alice.call.call_id
            assert bob.call_state == "connected"
            await alice.set_mute("audio")
            assert (await until(bob, ev.Mute)).track == "audio"
            assert await alice.leave() == "hangup"
            assert (await until(bob, ev.Leave)).reason == "hangup"
        finally:
            await alice.close()
            await bob.close()


Restart = Callable[[bytes], Awaitable[SignalingServer]]


@contextlib.asynccontextmanager
async def call_then_server_gone(
    config: ServerConfig,
) -> AsyncIterator[tuple[Phone, Phone, Restart]]:
    """alice and bob in a call on a server (started with `config`) that is then closed;
    `restart(secret)` starts a new one on the same port, its state lost."""
    first = SignalingServer(config)
    await first.start()
    port = first.port  # known only while it listens
    started: list[SignalingServer] = [first]

    async def restart(secret: bytes) -> SignalingServer:
        server = SignalingServer(ServerConfig(port=port, resume_secret=secret))
        started.append(server)
        await server.start()
        return server

    alice, bob = await call_up(first.url)
    try:
        await first.close()
        yield alice, bob, restart
    finally:
        await alice.close()
        await bob.close()
        for server in started:
            await server.close()


async def test_server_restart_mid_call_resumes_the_call() -> None:
    """The server process is replaced (same port, same resume secret, state lost): both phones
    resume, the server rebuilds the call, and a hang-up reaches the other side."""
    async with call_then_server_gone(ServerConfig(port=0, resume_secret=SECRET)) as (
        alice,
        bob,
        restart,
    ):
        for ph in (alice, bob):
            await until(ph, ev.Reconnecting)
        second = await restart(SECRET)
        for ph in (alice, bob):
            assert (await until(ph, ev.Reconnected)).call_id is not None
        assert {c.state.value for c in second.board.calls.values()} == {"connected"}
        assert await bob.leave() == "hangup"
        leave = await until(alice, ev.Leave)
        assert (leave.reason, leave.by) == ("hangup", "bob")


async def test_grace_passing_ends_the_call_on_both_sides() -> None:
    """With the server gone longer than the grace, each phone ends its call as connection_lost
    and reports SERVER_LOST, within the grace plus a margin."""
    async with call_then_server_gone(ServerConfig(port=0, resume_grace=1.5)) as (alice, bob, _):
        started = time.monotonic()
        for ph in (alice, bob):
            assert (await until(ph, ev.Reconnecting)).grace_s == 1.5
        for ph in (alice, bob):
            assert (await until(ph, ev.Leave)).reason == "connection_lost"
            assert "not resumed" in (await until(ph, ev.ServerLost)).reason
        assert time.monotonic() - started < 1.5 + 3.0
        assert alice.call is None and bob.call is None


async def test_restart_without_the_secret_ends_the_call_clearly() -> None:
    """A server restarted with another resume secret refuses the resume (401): each phone says
    so, ends its call as connection_lost and reports SERVER_LOST, without waiting the grace."""
    async with call_then_server_gone(ServerConfig(port=0, resume_secret=SECRET)) as (
        alice,
        bob,
        restart,
    ):
        await restart(b"another secret")
        for ph in (alice, bob):
            while "could not resume" not in (await until(ph, ev.Notice)).text:
                pass
            assert (await until(ph, ev.Leave)).reason == "connection_lost"
            lost = await until(ph, ev.ServerLost)
            assert "refused" in lost.reason and "not resumed within" not in lost.reason
            assert ph.call_state == "offline"


async def test_overlapping_connects_share_one_socket() -> None:
    """session_list and create_session racing on a phone with no socket open one connection
    (and one hello) between them, not one each."""
    async with SignalingServer(ServerConfig(port=0)) as srv:
        ph = phone(srv.url)
        try:
            await asyncio.gather(ph.session_list(), ph.session_list(), ph.create_session("alice"))
            assert len(srv.board.conns) == 1
            assert [p.user_id for p in await ph.session_list()] == ["alice"]
        finally:
            await ph.close()


async def test_no_auto_connect_while_resuming() -> None:
    """While a resume owns reconnecting, session_list says so instead of opening a socket."""
    async with SignalingServer(ServerConfig(port=0)) as srv:
        ph = phone(srv.url)
        ph.reconnector.active = True
        try:
            with pytest.raises(ServerUnreachable, match="reconnecting"):
                await ph.session_list()
            assert srv.board.conns == {}
        finally:
            ph.reconnector.active = False
            await ph.close()


async def test_a_resume_attempt_never_runs_past_the_grace() -> None:
    """A server that accepts TCP but never answers the handshake cannot hold a resume attempt
    past the grace: SERVER_LOST comes at the grace, not after the open timeout."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    hole = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    ph = phone(f"ws://127.0.0.1:{port}")
    ph.session, ph.resume_token, ph.resume_grace = SessionInfo("s-1", "alice"), "t", 1.0
    try:
        started = time.monotonic()
        await ph.reconnector.run("test")
        lost = await until(ph, ev.ServerLost, timeout=10)
        assert time.monotonic() - started < 1.0 + 2.5  # the open timeout alone is 5 s
        assert "not resumed within 1 s" in lost.reason
        assert ph.call_state == "offline"
    finally:
        await ph.close()
        hole.close()


async def test_server_lost_without_resume_clears_ringing_and_goes_offline() -> None:
    """With no resume possible, losing the server cancels a call ringing here, leaves the
    phone offline (not idle) and reports SERVER_LOST."""
    srv = SignalingServer(ServerConfig(port=0, resume_grace=0))
    await srv.start()
    alice, bob = phone(srv.url), phone(srv.url, "tone:660")
    try:
        await alice.create_session("alice")
        await bob.create_session("bob")
        await alice.offer_call("audiocall", "bob")
        await until(bob, ev.Ringing)
        await srv.close()
        assert (await until(bob, ev.Cancel)).reason == "connection_lost"
        await until(bob, ev.ServerLost)
        assert bob.ringing_from == [] and bob.call_state == "offline"
    finally:
        await alice.close()
        await bob.close()
