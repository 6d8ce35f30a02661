"""The server's pure facade: requests, disconnects and the time in, messages out.

No sockets, no tasks, no clock of its own. The driver (`omnicli.server.driver`) feeds it
requests, disconnects and the time; it answers with `Send`s addressed to a user (or, for
responses, to the asking connection), which `route()` maps to this node's connections,
and exposes `next_deadline()` for the ring, connect and resume timers.

The work is split by concern, each unit pure and written against the `Store`:

- `auth`: service keys, per-user tokens, resume tokens;
- `sessions`: this node's connections and the users' presence;
- `calls`: the call state machine (see its docstring for the states);
- `resume`: taking a session and its call back on a new connection;
- `store`: where presence and call records live (`MemoryStore` in one process).

A connection that drops without a close handshake (a network blip, a killed process,
a keepalive timeout) does not end its session at once: the session is *away* for
`resume_grace` seconds, its call goes on (media is peer to peer), and a new connection
may take it back with `resume`. A clean close, or the grace running out, ends the
session and its call (`connection_lost`). `boot` names this server run: in resume
tokens, and as the node id on the presence records this process holds.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from omnicli.server.auth import ResumeTokens, Service, admit
from omnicli.server.calls import Calls
from omnicli.server.records import (
    CallRecord,
    CallState,
    Delivery,
    Presence,
    Refusal,
    Send,
    ToConn,
    ToGateway,
    ToHolder,
    ToUser,
    UserKey,
)
from omnicli.server.resume import Resumer
from omnicli.server.sessions import Conn, Sessions
from omnicli.server.sip import GatewayEvent, SipPolicy
from omnicli.server.sipcalls import SipCalls
from omnicli.server.store import MemoryStore, Store
from omnicli.server.turn import TurnConfig, ice_server
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq
from omnicli.wire.protocol import EndReason, ErrorCode, Event

__all__ = ["RESUME_GRACE", "CallState", "Delivery", "Send", "Service", "Switchboard"]

RESUME_GRACE = 6.0  # s; keeps a killed peer's LEAVE within 10 s of its death


def _random_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


class Switchboard:
    """All sessions and calls this server process serves, over one store."""

    def __init__(
        self,
        services: list[Service],
        *,
        ring_timeout: float = 60.0,
        connect_timeout: float = 20.0,
        ice_servers: list[dict[str, Any]] | None = None,
        new_id: Callable[[str], str] = _random_id,
        require_tokens: bool = False,
        turn: TurnConfig | None = None,
        resume_secret: bytes | None = None,
        resume_grace: float = RESUME_GRACE,
        wall_clock: Callable[[], float] = time.time,
        store: Store | None = None,
        boot: str | None = None,
        sip_policy: SipPolicy | None = None,
    ) -> None:
        self.services = {s.service_id: s for s in services}
        self.ice_servers = ice_servers or []
        self._new_id = new_id
        self.require_tokens = require_tokens
        self.turn = turn
        self.resume_grace = resume_grace
        self.boot = boot or secrets.token_hex(8)  # this run: node id and resume-token stamp
        self.wall_clock = wall_clock  # Unix time, for tokens only
        self.store: Store = store if store is not None else MemoryStore()
        self.tokens = ResumeTokens(resume_secret or secrets.token_bytes(32), self.boot)
        self.sessions = Sessions(self.store, self.services, self.boot, new_id)
        self.machine = Calls(
            self.store,
            self.sessions,
            ring_timeout=ring_timeout,
            connect_timeout=connect_timeout,
            new_id=new_id,
        )
        self.resumer = Resumer(self.store, self.sessions, self.machine, self.tokens, resume_grace)
        self.sip = SipCalls(self.store, self.sessions, self.machine, sip_policy, new_id=new_id)

    # -- driver entry points -------------------------------------------------------

    def connect(self, conn: int) -> None:
        self.sessions.connect(conn)

    def handle(self, conn: int, request: rq.Request, now: float) -> list[Send]:
        """The response (always exactly one, first) and any events a request causes."""
        out: list[Send] = []
        try:
            result = self._dispatch(self.sessions.conns[conn], request.body, now, out)
        except Refusal as refusal:
            return [Send(ToConn(conn), p.error(request.id, refusal.code, refusal.message))]
        return [Send(ToConn(conn), p.ok(request.id, **result)), *out]

    def disconnect(self, conn: int, now: float, *, lost: bool = False) -> list[Send]:
        """The connection is gone. A clean close ends its session and call at once; a
        `lost` one (no close handshake) leaves the session away for `resume_grace` s."""
        c = self.sessions.conns.pop(conn, None)
        if c is None or c.service_id is None or c.user_id is None:
            return []
        service_id, user_id = c.service_id, c.user_id
        presence = self.sessions.detach(c)
        if presence is None:
            return []
        if lost and self.resume_grace > 0:
            self.sessions.go_away(presence, now + self.resume_grace)
            return []
        self.sessions.end(presence)
        out: list[Send] = []
        call = self.store.call_of(service_id, user_id)
        if call is not None:
            self.machine.end(call, EndReason.CONNECTION_LOST, user_id, out)
        self.sip.unregister(service_id, user_id, out)
        return out

    def next_deadline(self) -> float | None:
        return self.store.next_deadline()

    def expire(self, now: float) -> list[Send]:
        """End every call whose timer has run out, and every session away too long."""
        out: list[Send] = []
        gone, due = self.store.due(now)
        for due_presence in gone:
            # read again: an ending just above may have noted a missed call on it
            presence = self.store.presence(*due_presence.key)
            if presence is None or presence.session != due_presence.session:
                continue  # resumed (or ended) meanwhile
            if presence.away_until is None or presence.away_until > now:
                continue
            if not self.sessions.end(presence):
                continue
            call = self.store.call_of(*presence.key)
            if call is not None:
                self.machine.end(call, EndReason.CONNECTION_LOST, presence.user_id, out)
            self.sip.unregister(*presence.key, out)
        for call in due:
            if (current := self.store.call(call.call_id)) is not None and current.rev == call.rev:
                self.machine.expire(current, out)
        return out

    def route(self, sends: list[Send]) -> list[Delivery]:
        """The sends for connections of this node, resolved to their numbers, in order."""
        return self.sessions.route(sends)

    def gateway_orders(self, sends: list[Send]) -> list[dict[str, Any]]:
        """The orders for the SIP gateway among `sends`, in order."""
        return [s.message for s in sends if isinstance(s.to, ToGateway)]

    def gateway_event(self, event: GatewayEvent, now: float) -> list[Send]:
        """What the SIP side of a call did (reported by the gateway driver)."""
        return self.sip.gateway_event(event, now)

    def remote(self, sends: list[Send]) -> list[Send]:
        """The sends addressed to users whose connection is not on this node, and to the
        connections other nodes hold (`ToHolder`)."""
        local = self.sessions.local
        return [
            s
            for s in sends
            if (isinstance(s.to, ToUser) and (s.to.service_id, s.to.user_id) not in local)
            or (isinstance(s.to, ToHolder) and s.to.node != self.boot)
        ]

    def kick_holder(self, service_id: str, user_id: str, message: dict[str, Any]) -> list[Send]:
        """Another node took over this user's session (a resume): forget the connection
        this node held for it, and send it `message` (KICKOUT) before closing it."""
        c = self.sessions.conn_of(service_id, user_id)
        if c is None:
            return []
        self.sessions.detach(c)  # the presence is the other node's now: left alone
        return [Send(ToConn(c.conn), message, close=True)]

    def allow_user(self, conn: int, user_id: str) -> None:
        """Pin the user id a connection may register as (set by a verified token)."""
        self.sessions.conns[conn].allowed_user = user_id

    def user_of(self, conn: int) -> str | None:
        c = self.sessions.conns.get(conn)
        return c.user_id if c else None

    def service_of(self, conn: int) -> str | None:
        c = self.sessions.conns.get(conn)
        return c.service_id if c else None

    # -- requests ----------------------------------------------------------------------

    def _dispatch(self, c: Conn, body: rq.Body, now: float, out: list[Send]) -> dict[str, Any]:
        if isinstance(body, rq.Ping):
            return {}
        if isinstance(body, rq.Hello):
            return self._hello(c, body)
        if c.service_id is None:
            raise Refusal(ErrorCode.UNAUTHORIZED, "say hello first")
        if isinstance(body, rq.SessionList):
            return self._session_list(c.service_id, body.limit, body.after)
        if isinstance(body, rq.CreateSession):
            return self._create_session(c, body, now, out)
        if isinstance(body, rq.Resume):
            result = self.resumer.resume(c, body, now, self.wall_clock(), out)
            return {**self._session_result(c, now), **result}
        if c.user_id is None:
            raise Refusal(ErrorCode.SESSION_REQUIRED, "create a session first")
        if isinstance(body, rq.OfferCall):
            if body.call_type is p.CallType.SIP or p.is_sip_uri(body.callee):
                return self.sip.offer(c, body, now, out)
            return self.machine.offer(c, body, now, out)
        if isinstance(body, rq.Dtmf):
            return self.sip.dtmf(c, body, out)
        if isinstance(body, rq.AnswerCall):
            return self.machine.answer(c, body, now, out)
        if isinstance(body, rq.Leave):
            return self.machine.leave(c, body, out)
        if isinstance(body, rq.MediaState):
            return self.machine.media_state(c, body, out, now)
        if isinstance(body, rq.MediaRestart):
            return self.machine.media_restart(c, body, out)
        if isinstance(body, rq.SetMute):
            name = Event.MUTE if body.muted else Event.UNMUTE
            self.machine.relay(c, body.call_id, name, out, track=body.track.value)
            return {"track": body.track.value, "muted": body.muted}
        if isinstance(body, rq.SetRecording):
            self.machine.relay(c, body.call_id, Event.RECORDING, out, on=body.on)
            return {"on": body.on}
        raise Refusal(ErrorCode.UNKNOWN_OP, "unknown op")  # pragma: no cover

    def _hello(self, c: Conn, hello: rq.Hello) -> dict[str, Any]:
        if c.service_id is not None:
            raise Refusal(ErrorCode.WRONG_STATE, "hello was already said on this connection")
        service = self.services.get(hello.service_id)
        if service is None:
            raise Refusal(ErrorCode.UNAUTHORIZED, f"unknown service id '{hello.service_id}'")
        pinned = admit(service, hello, require_tokens=self.require_tokens, now=self.wall_clock())
        if pinned is not None:
            c.allowed_user = pinned
        c.service_id = service.service_id
        return {"version": p.VERSION, "service_id": service.service_id}

    def _create_session(
        self, c: Conn, req: rq.CreateSession, now: float, out: list[Send]
    ) -> dict[str, Any]:
        assert c.service_id is not None
        if c.user_id is not None:
            raise Refusal(ErrorCode.WRONG_STATE, f"this connection is already '{c.user_id}'")
        user_id = req.user_id or c.allowed_user
        if c.allowed_user is not None and user_id != c.allowed_user:
            raise Refusal(ErrorCode.FORBIDDEN, f"your token is for '{c.allowed_user}'")
        if user_id is None:
            user_id = self.sessions.new_user_id(c.service_id)
        elif self.sessions.taken(c.service_id, user_id):
            raise Refusal(ErrorCode.USER_ID_TAKEN, f"user id '{user_id}' is online already")
        self.sessions.check_room(c.service_id)
        if req.sip_inbound:
            self.sip.register(c.service_id, user_id, out)
        self.sessions.attach(c, user_id, self._new_id("s-"))
        pending = self.store.call_of(c.service_id, user_id)
        if pending is not None and pending.state is CallState.RESUMING:
            # the peer waits to resume a call this user no longer knows about
            self.machine.end(pending, EndReason.CONNECTION_LOST, user_id, out)
        self.machine.ring_if_pending(c, out)
        return self._session_result(c, now)

    def _session_result(self, c: Conn, now: float) -> dict[str, Any]:
        assert c.service_id is not None and c.user_id is not None and c.session is not None
        ice = list(self.ice_servers)
        if self.turn is not None:
            ice.append(ice_server(self.turn, c.user_id, self.wall_clock()))
        token = self.tokens.mint(c.service_id, c.user_id, c.session, now=self.wall_clock())
        result = {
            "session": c.session,
            "user_id": c.user_id,
            "ice_servers": ice,
            "resume_token": token,
            "resume_grace": self.resume_grace,
        }
        if (address := self.sip.address(c.service_id, c.user_id)) is not None:
            result["sip_address"] = address
        return result

    def _session_list(self, service_id: str, limit: int, after: str | None) -> dict[str, Any]:
        rows = self.session_list(service_id, limit + 1, after)  # one more: do more follow?
        total = self.store.count(service_id)
        return {"sessions": rows[:limit], "total": total, "truncated": len(rows) > limit}

    def session_list(
        self, service_id: str, limit: int = p.SESSION_LIST_LIMIT, after: str | None = None
    ) -> list[dict[str, Any]]:
        """The first `limit` sessions of a service (online or away) by user id, after `after`."""
        rows = []
        for user in self.store.first_users(service_id, limit, after):
            call = self.store.call_of(service_id, user)
            rows.append(
                {
                    "user_id": user,
                    "state": "busy" if call else "idle",
                    "call_type": call.call_type.value if call else None,
                }
            )
        return rows

    # -- inspection (tests, logs) ----------------------------------------------------------

    @property
    def conns(self) -> dict[int, Conn]:
        """This node's connections, by number."""
        return self.sessions.conns

    @property
    def users(self) -> dict[UserKey, int]:
        """Users online on this node, and their connection numbers."""
        return dict(self.sessions.local)

    @property
    def away(self) -> dict[UserKey, Presence]:
        """Sessions waiting to be resumed."""
        return {a.key: a for a in self.store.presences() if a.away}

    @property
    def calls(self) -> dict[str, CallRecord]:
        return {c.call_id: c for c in self.store.calls()}

    @property
    def user_call(self) -> dict[UserKey, str]:
        """Who is in which call."""
        return {(c.service_id, u): c.call_id for c in self.store.calls() for u in c.parties}
