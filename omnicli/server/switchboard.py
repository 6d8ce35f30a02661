"""The server's registry of sessions and its call state machine.

Pure: no sockets, no tasks, no clock of its own. The driver (`omnicli.server.driver`)
feeds it requests, disconnects and the time; it answers with `Send`s (a message
for one connection) and exposes `next_deadline()` for the ring and connect timers.

A call moves through::

    calling ──(callee registers)──> ringing ──answer──> answered ──both media up──> connected
       │                               │                   │                           │
       └── ring timeout: unavailable   ├── timeout: no_answer                          │
       └── caller leaves: cancelled    ├── callee leaves: declined                     │
                                       └── caller leaves: cancelled                    │
                                           answered: connect timeout / media failed ───┤
                                           anyone leaves: hangup; socket gone: connection_lost

A user is busy from the moment a call names it (even before it is online) until
the call ends; after that it is idle again and keeps its session.

A connection that drops without a close handshake (a network blip, a killed process,
a keepalive timeout) does not end its session at once: the session is *away* for
`resume_grace` seconds, its call goes on (media is peer to peer), and a new connection
may take it back with `resume` and the resume token it was given. A clean close, or
the grace running out, ends the session and its call (`connection_lost`). Resume
tokens are signed with the server's resume secret and name the server run (`boot`)
that issued them, so a restarted server with the same secret accepts them too and
rebuilds a connected call once both parties have described it the same way.
"""

from __future__ import annotations

import heapq
import hmac
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omnicli.server.turn import TurnConfig, ice_server
from omnicli.wire import protocol as p
from omnicli.wire import tokens
from omnicli.wire.protocol import EndReason, ErrorCode, Event

RESUME_GRACE = 6.0  # s; keeps a killed peer's LEAVE within 10 s of its death
RESUME_TOKEN_TTL = 24 * 3600


class CallState(StrEnum):
    CALLING = "calling"  # callee not online yet: the offer is held
    RINGING = "ringing"
    ANSWERED = "answered"  # SDP answer sent; waiting for both media reports
    CONNECTED = "connected"
    RESUMING = "resuming"  # rebuilt after a server restart; waiting for the other party


@dataclass(frozen=True)
class Send:
    conn: int
    message: dict[str, Any]
    close: bool = False  # close this connection after the message (KICKOUT)


@dataclass(frozen=True)
class Service:
    service_id: str
    key: str | None  # None: open service, no key needed
    max_sessions: int = 100_000


@dataclass
class Conn:
    conn: int
    service_id: str | None = None
    user_id: str | None = None
    session: str | None = None
    allowed_user: str | None = None  # set when a token pins the user id


@dataclass
class Away:
    """A session whose connection dropped; it may be resumed until `deadline`."""

    session: str
    deadline: float
    missed: dict[str, Any] | None = None  # how its call ended while it was away


@dataclass
class Call:
    call_id: str
    service_id: str
    caller: str
    callee: str
    call_type: p.CallType
    record: bool
    sdp_offer: str
    state: CallState
    deadline: float
    media_up: set[str] = field(default_factory=set)
    started: float = 0.0
    sdp_answer: str = ""  # re-sent to a caller that resumes before it heard ANSWERED

    def other(self, user_id: str) -> str:
        return self.callee if user_id == self.caller else self.caller


class Refusal(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _random_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


class Switchboard:
    """All sessions and calls of one server process."""

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
    ) -> None:
        self.services = {s.service_id: s for s in services}
        self.ring_timeout = ring_timeout
        self.connect_timeout = connect_timeout
        self.ice_servers = ice_servers or []
        self._new_id = new_id
        self.require_tokens = require_tokens
        self.turn = turn
        self.resume_secret = resume_secret or secrets.token_bytes(32)
        self.resume_grace = resume_grace
        self.boot = secrets.token_hex(8)  # names this run in resume tokens
        self.wall_clock = wall_clock  # Unix time, for token expiry only
        self.conns: dict[int, Conn] = {}
        self.users: dict[tuple[str, str], int] = {}  # (service, user) -> conn
        self.away: dict[tuple[str, str], Away] = {}  # sessions waiting to be resumed
        self.calls: dict[str, Call] = {}
        self.user_call: dict[tuple[str, str], str] = {}  # (service, user) -> call id
        self.held: dict[str, int] = {}  # service -> sessions online or away

    # -- driver entry points -------------------------------------------------------

    def connect(self, conn: int) -> None:
        self.conns[conn] = Conn(conn)

    def handle(self, conn: int, request: p.Request, now: float) -> list[Send]:
        """The response (always exactly one, first) and any events a request causes."""
        out: list[Send] = []
        try:
            result = self._dispatch(self.conns[conn], request.body, now, out)
        except Refusal as refusal:
            return [Send(conn, p.error(request.id, refusal.code, refusal.message))]
        return [Send(conn, p.ok(request.id, **result)), *out]

    def disconnect(self, conn: int, now: float, *, lost: bool = False) -> list[Send]:
        """The connection is gone. A clean close ends its session and call at once; a
        `lost` one (no close handshake) leaves the session away for `resume_grace` s."""
        c = self.conns.pop(conn, None)
        if c is None or c.user_id is None or c.service_id is None:
            return []
        key = (c.service_id, c.user_id)
        if self.users.get(key) != conn:
            return []
        del self.users[key]
        if lost and self.resume_grace > 0 and c.session is not None:
            self.away[key] = Away(c.session, now + self.resume_grace)
            return []
        self._count(c.service_id, -1)
        out: list[Send] = []
        call = self._call_of(c.service_id, c.user_id)
        if call is not None:
            self._end(call, EndReason.CONNECTION_LOST, c.user_id, out)
        return out

    def next_deadline(self) -> float | None:
        finite = [c.deadline for c in self.calls.values() if c.deadline != float("inf")]
        finite += [a.deadline for a in self.away.values()]
        return min(finite, default=None)

    def expire(self, now: float) -> list[Send]:
        """End every call whose timer has run out, and every session away too long."""
        out: list[Send] = []
        for key, away in list(self.away.items()):
            if away.deadline <= now:
                del self.away[key]
                self._count(key[0], -1)
                call = self._call_of(*key)
                if call is not None:
                    self._end(call, EndReason.CONNECTION_LOST, key[1], out)
        for call in [c for c in self.calls.values() if c.deadline <= now]:
            if call.state is CallState.CALLING:
                self._end(call, EndReason.UNAVAILABLE, None, out)
            elif call.state is CallState.RINGING:
                self._end(call, EndReason.NO_ANSWER, None, out)
            elif call.state is CallState.ANSWERED:
                self._end(call, EndReason.MEDIA_FAILED, None, out)
            elif call.state is CallState.RESUMING:
                missing = call.other(next(iter(call.media_up))) if call.media_up else None
                self._end(call, EndReason.CONNECTION_LOST, missing, out)
        return out

    def allow_user(self, conn: int, user_id: str) -> None:
        """Pin the user id a connection may register as (set by a verified token)."""
        self.conns[conn].allowed_user = user_id

    def user_of(self, conn: int) -> str | None:
        c = self.conns.get(conn)
        return c.user_id if c else None

    # -- requests ----------------------------------------------------------------------

    def _dispatch(self, c: Conn, body: p.Body, now: float, out: list[Send]) -> dict[str, Any]:
        if isinstance(body, p.Ping):
            return {}
        if isinstance(body, p.Hello):
            return self._hello(c, body)
        if c.service_id is None:
            raise Refusal(ErrorCode.UNAUTHORIZED, "say hello first")
        if isinstance(body, p.SessionList):
            return self._session_list(c.service_id, body.limit, body.after)
        if isinstance(body, p.CreateSession):
            return self._create_session(c, body, now, out)
        if isinstance(body, p.Resume):
            return self._resume(c, body, now, out)
        if c.user_id is None:
            raise Refusal(ErrorCode.SESSION_REQUIRED, "create a session first")
        if isinstance(body, p.OfferCall):
            return self._offer(c, body, now, out)
        if isinstance(body, p.AnswerCall):
            return self._answer(c, body, now, out)
        if isinstance(body, p.Leave):
            call = self._own_call(c, body.call_id)
            reason = self._leave_reason(call, c.user_id)
            self._end(call, reason, c.user_id, out)
            return {"call_id": call.call_id, "reason": reason.value}
        if isinstance(body, p.MediaState):
            return self._media_state(c, body, now, out)
        if isinstance(body, p.SetMute):
            call = self._own_call(c, body.call_id, need_answered=True)
            name = Event.MUTE if body.muted else Event.UNMUTE
            msg = p.event(name, call_id=call.call_id, user_id=c.user_id, track=body.track.value)
            self._tell(call, call.other(c.user_id), msg, out)
            return {"track": body.track.value, "muted": body.muted}
        if isinstance(body, p.SetRecording):
            call = self._own_call(c, body.call_id, need_answered=True)
            msg = p.event(Event.RECORDING, call_id=call.call_id, user_id=c.user_id, on=body.on)
            self._tell(call, call.other(c.user_id), msg, out)
            return {"on": body.on}
        raise Refusal(ErrorCode.UNKNOWN_OP, "unknown op")  # pragma: no cover

    def _hello(self, c: Conn, hello: p.Hello) -> dict[str, Any]:
        if c.service_id is not None:
            raise Refusal(ErrorCode.WRONG_STATE, "hello was already said on this connection")
        service = self.services.get(hello.service_id)
        if service is None:
            raise Refusal(ErrorCode.UNAUTHORIZED, f"unknown service id '{hello.service_id}'")
        if hello.token is not None and service.key is not None:
            # a token alone authenticates: it was minted from the service key
            try:
                claims = tokens.check_user_token(
                    hello.token,
                    service.key,
                    service_id=service.service_id,
                    now=self.wall_clock(),
                )
            except tokens.TokenError as exc:
                raise Refusal(ErrorCode.UNAUTHORIZED, f"bad token: {exc}") from None
            c.allowed_user = claims.user_id
        elif self.require_tokens:
            raise Refusal(ErrorCode.UNAUTHORIZED, "this server needs a token (omni token create)")
        elif service.key is not None and not hmac.compare_digest(
            (hello.service_key or "").encode(), service.key.encode()
        ):
            raise Refusal(ErrorCode.UNAUTHORIZED, "wrong service key")
        c.service_id = service.service_id
        return {"version": p.VERSION, "service_id": service.service_id}

    def _create_session(
        self, c: Conn, req: p.CreateSession, now: float, out: list[Send]
    ) -> dict[str, Any]:
        assert c.service_id is not None
        if c.user_id is not None:
            raise Refusal(ErrorCode.WRONG_STATE, f"this connection is already '{c.user_id}'")
        user_id = req.user_id or c.allowed_user
        if c.allowed_user is not None and user_id != c.allowed_user:
            raise Refusal(ErrorCode.FORBIDDEN, f"your token is for '{c.allowed_user}'")
        if user_id is None:
            user_id = self._new_user_id(c.service_id)
        elif self._taken(c.service_id, user_id):
            raise Refusal(ErrorCode.USER_ID_TAKEN, f"user id '{user_id}' is online already")
        self._check_room(c.service_id)
        self._attach(c, user_id, self._new_id("s-"))
        pending = self._call_of(c.service_id, user_id)
        if pending is not None and pending.state is CallState.RESUMING:
            # the peer waits to resume a call this user no longer knows about
            self._end(pending, EndReason.CONNECTION_LOST, user_id, out)
        self._ring_if_pending(c, out)
        return self._session_result(c, now)

    def _resume(self, c: Conn, req: p.Resume, now: float, out: list[Send]) -> dict[str, Any]:
        assert c.service_id is not None
        if c.user_id is not None:
            raise Refusal(ErrorCode.WRONG_STATE, f"this connection is already '{c.user_id}'")
        try:
            claims = tokens.decode(
                req.resume_token, self.resume_secret, now=self.wall_clock(), kind="resume"
            )
        except tokens.TokenError as exc:
            raise Refusal(ErrorCode.UNAUTHORIZED, f"cannot resume: {exc}") from None
        user_id, session = claims["sub"], claims.get("sid")
        if claims["svc"] != c.service_id or not isinstance(session, str) or not session:
            raise Refusal(ErrorCode.UNAUTHORIZED, "cannot resume: token is for another service")
        if why := p.check_user_id(user_id):
            raise Refusal(ErrorCode.UNAUTHORIZED, f"cannot resume: {why}")
        if c.allowed_user is not None and user_id != c.allowed_user:
            raise Refusal(ErrorCode.FORBIDDEN, f"your token is for '{c.allowed_user}'")
        key = (c.service_id, user_id)
        missed: dict[str, Any] | None = None
        restarted = False
        away = self.away.get(key)
        holder = self.conns.get(self.users.get(key, -1))
        if away is not None and away.session == session:
            del self.away[key]
            self._count(c.service_id, -1)
            missed = away.missed
        elif holder is not None and holder.session == session:
            # the old connection is half-open (its drop not noticed yet): replace it
            holder.user_id = holder.session = None
            del self.users[key]
            self._count(c.service_id, -1)
            kick = p.event(Event.KICKOUT, user_id=user_id, reason="resumed on another connection")
            out.append(Send(holder.conn, kick, close=True))
        elif self._taken(*key):
            raise Refusal(ErrorCode.USER_ID_TAKEN, f"user id '{user_id}' has another session")
        else:
            restarted = claims.get("boot") != self.boot
            self._check_room(c.service_id)
        self._attach(c, user_id, session)
        call = self._call_of(*key)
        held = call is not None and call.state is CallState.RESUMING
        if (call is None or held) and req.call_id is not None and restarted:
            call = self._redeclare(c, req, now) or call
        if call is not None and call.state is CallState.RESUMING and user_id not in call.media_up:
            call = None  # a description that does not match the other party's: not joined
        if req.call_id is not None and (call is None or call.call_id != req.call_id):
            missed = missed or {"call_id": req.call_id, "reason": "connection_lost", "by": None}
        self._ring_if_pending(c, out, again=True)
        if (
            call is not None
            and call.state is CallState.ANSWERED
            and call.caller == user_id
            and req.call_id != call.call_id
            and call.sdp_answer
        ):
            # a caller that did not describe the call never heard its ANSWERED: tell it again
            answered = p.event(
                Event.ANSWERED, call_id=call.call_id, callee=call.callee, sdp=call.sdp_answer
            )
            out.append(Send(c.conn, answered))
        result = self._session_result(c, now)
        result["call"] = self._describe(call, user_id) if call is not None else None
        result["ended"] = missed
        return result

    def _redeclare(self, c: Conn, req: p.Resume, now: float) -> Call | None:
        """After a restart: rebuild the connected call the client describes, or None."""
        assert c.service_id is not None and c.user_id is not None
        assert req.call_id and req.peer and req.role and req.call_type
        if req.role is p.Role.CALLER:
            caller, callee = c.user_id, req.peer
        else:
            caller, callee = req.peer, c.user_id
        call = self.calls.get(req.call_id)
        if call is None:
            # only with a peer that has not come back yet: one online without this call
            # (or in another) would be made busy by whoever holds an old resume token
            if req.peer == c.user_id or self._call_of(c.service_id, req.peer) is not None:
                return None
            if (c.service_id, req.peer) in self.users:
                return None
            call = Call(
                call_id=req.call_id,
                service_id=c.service_id,
                caller=caller,
                callee=callee,
                call_type=req.call_type,
                record=req.record,
                sdp_offer="",
                state=CallState.RESUMING,
                deadline=now + self.resume_grace,
                started=now,
            )
            call.media_up.add(c.user_id)  # in RESUMING: who has come back
            self.calls[call.call_id] = call
            self.user_call[(c.service_id, caller)] = call.call_id
            self.user_call[(c.service_id, callee)] = call.call_id
            return call
        same = (call.service_id, call.caller, call.callee, call.call_type) == (
            c.service_id,
            caller,
            callee,
            req.call_type,
        )
        if call.state is CallState.RESUMING and same and c.user_id not in call.media_up:
            call.state = CallState.CONNECTED
            call.deadline = float("inf")
            call.media_up = {caller, callee}
            return call
        return None

    # -- sessions ----------------------------------------------------------------------

    def _taken(self, service_id: str, user_id: str) -> bool:
        return (service_id, user_id) in self.users or (service_id, user_id) in self.away

    def _count(self, service_id: str, delta: int) -> None:
        self.held[service_id] = self.held.get(service_id, 0) + delta

    def _check_room(self, service_id: str) -> None:
        service = self.services[service_id]
        if self.held.get(service_id, 0) >= service.max_sessions:
            raise Refusal(ErrorCode.SERVER_FULL, "this service holds its maximum of sessions")

    def _attach(self, c: Conn, user_id: str, session: str) -> None:
        assert c.service_id is not None
        c.user_id, c.session = user_id, session
        self.users[(c.service_id, user_id)] = c.conn
        self._count(c.service_id, +1)

    def _ring_if_pending(self, c: Conn, out: list[Send], *, again: bool = False) -> None:
        """RINGING for a call held for this user; `again`: also one that rang already."""
        assert c.service_id is not None and c.user_id is not None
        pending = self._call_of(c.service_id, c.user_id)
        if pending is None or pending.callee != c.user_id:
            return
        if pending.state is CallState.CALLING or (again and pending.state is CallState.RINGING):
            pending.state = CallState.RINGING
            out.append(Send(c.conn, self._ringing(pending)))

    def _session_result(self, c: Conn, now: float) -> dict[str, Any]:
        assert c.service_id is not None and c.user_id is not None and c.session is not None
        ice = list(self.ice_servers)
        if self.turn is not None:
            ice.append(ice_server(self.turn, c.user_id, self.wall_clock()))
        wall = int(self.wall_clock())
        claims = {
            "typ": "resume",
            "svc": c.service_id,
            "sub": c.user_id,
            "sid": c.session,
            "boot": self.boot,
            "iat": wall,
            "exp": wall + RESUME_TOKEN_TTL,
        }
        return {
            "session": c.session,
            "user_id": c.user_id,
            "ice_servers": ice,
            "resume_token": tokens.encode(claims, self.resume_secret),
            "resume_grace": self.resume_grace,
        }

    @staticmethod
    def _describe(call: Call, user_id: str) -> dict[str, Any]:
        return {
            "call_id": call.call_id,
            "state": call.state.value,
            "peer": call.other(user_id),
            "role": "caller" if user_id == call.caller else "callee",
            "call_type": call.call_type.value,
            "record": call.record,
        }

    def _offer(self, c: Conn, req: p.OfferCall, now: float, out: list[Send]) -> dict[str, Any]:
        assert c.service_id is not None and c.user_id is not None
        if self._call_of(c.service_id, c.user_id) is not None:
            raise Refusal(ErrorCode.WRONG_STATE, "you are in a call already; leave it first")
        if why := p.check_user_id(req.callee):
            raise Refusal(ErrorCode.INVALID_USER_ID, f"callee: {why}")
        if req.callee == c.user_id:
            raise Refusal(ErrorCode.WRONG_STATE, "you cannot call yourself")
        if self._call_of(c.service_id, req.callee) is not None:
            raise Refusal(ErrorCode.BUSY, f"'{req.callee}' is busy")
        if not req.sdp.strip():
            raise Refusal(ErrorCode.BAD_REQUEST, "field 'sdp' is empty")
        online = (c.service_id, req.callee) in self.users
        call = Call(
            call_id=self._new_id("c-"),
            service_id=c.service_id,
            caller=c.user_id,
            callee=req.callee,
            call_type=req.call_type,
            record=req.record,
            sdp_offer=req.sdp,
            state=CallState.RINGING if online else CallState.CALLING,
            deadline=now + self.ring_timeout,
            started=now,
        )
        self.calls[call.call_id] = call
        self.user_call[(c.service_id, call.caller)] = call.call_id
        self.user_call[(c.service_id, call.callee)] = call.call_id
        ringback = p.event(
            Event.RINGBACK,
            call_id=call.call_id,
            callee=call.callee,
            call_type=call.call_type.value,
            record=call.record,
            callee_online=online,
        )
        out.append(Send(c.conn, ringback))
        if online:
            out.append(Send(self.users[(c.service_id, call.callee)], self._ringing(call)))
        return {"call_id": call.call_id, "callee_online": online}

    def _answer(self, c: Conn, req: p.AnswerCall, now: float, out: list[Send]) -> dict[str, Any]:
        assert c.service_id is not None and c.user_id is not None
        if req.call_id is not None:
            self._own_call(c, req.call_id)
        call = self._call_of(c.service_id, c.user_id)
        if call is None or call.callee != c.user_id or (req.caller and req.caller != call.caller):
            who = f" from '{req.caller}'" if req.caller else ""
            raise Refusal(ErrorCode.NOT_FOUND, f"no call{who} is ringing for you")
        if call.state is not CallState.RINGING:
            raise Refusal(ErrorCode.WRONG_STATE, f"the call is {call.state.value}, not ringing")
        if req.call_type is not None and req.call_type is not call.call_type:
            raise Refusal(
                ErrorCode.BAD_REQUEST,
                f"the call is {call.call_type.value}, not {req.call_type.value}",
            )
        if not req.sdp.strip():
            raise Refusal(ErrorCode.BAD_REQUEST, "field 'sdp' is empty")
        call.state = CallState.ANSWERED
        call.deadline = now + self.connect_timeout
        call.sdp_answer = req.sdp
        answered = p.event(Event.ANSWERED, call_id=call.call_id, callee=call.callee, sdp=req.sdp)
        self._tell(call, call.caller, answered, out)
        return {"call_id": call.call_id, "caller": call.caller, "call_type": call.call_type.value}

    def _media_state(
        self, c: Conn, req: p.MediaState, now: float, out: list[Send]
    ) -> dict[str, Any]:
        call = self._own_call(c, req.call_id, need_answered=True)
        assert c.user_id is not None
        if req.state == "failed":
            self._end(call, EndReason.MEDIA_FAILED, None, out)
            return {}
        call.media_up.add(c.user_id)
        if call.state is CallState.ANSWERED and call.media_up >= {call.caller, call.callee}:
            call.state = CallState.CONNECTED
            call.deadline = float("inf")
            for user in (call.caller, call.callee):
                msg = p.event(
                    Event.CONNECTED,
                    call_id=call.call_id,
                    peer=call.other(user),
                    call_type=call.call_type.value,
                    record=call.record,
                )
                self._tell(call, user, msg, out)
        return {}

    # -- helpers -----------------------------------------------------------------------

    def _session_list(self, service_id: str, limit: int, after: str | None) -> dict[str, Any]:
        rows = self.session_list(service_id, limit, after)
        total = self.held.get(service_id, 0)
        left = (
            total if after is None else sum(1 for user in self._users(service_id) if user > after)
        )
        return {"sessions": rows, "total": total, "truncated": left > len(rows)}

    def _users(self, service_id: str) -> Iterator[str]:
        return (user for svc, user in (*self.users, *self.away) if svc == service_id)

    def session_list(
        self, service_id: str, limit: int = p.SESSION_LIST_LIMIT, after: str | None = None
    ) -> list[dict[str, Any]]:
        """The first `limit` sessions of a service (online or away) by user id, after `after`."""
        users = self._users(service_id)
        names = heapq.nsmallest(limit, users if after is None else (u for u in users if u > after))
        rows = []
        for user in names:
            call = self._call_of(service_id, user)
            rows.append(
                {
                    "user_id": user,
                    "state": "busy" if call else "idle",
                    "call_type": call.call_type.value if call else None,
                }
            )
        return rows

    def _new_user_id(self, service_id: str) -> str:
        while True:
            candidate = self._new_id("user-")
            if not self._taken(service_id, candidate):
                return candidate

    def _call_of(self, service_id: str, user_id: str) -> Call | None:
        call_id = self.user_call.get((service_id, user_id))
        return self.calls.get(call_id) if call_id else None

    def _own_call(
        self, c: Conn, call_id: str | None = None, *, need_answered: bool = False
    ) -> Call:
        """The sender's current call; `call_id`, when given, must name it."""
        assert c.service_id is not None and c.user_id is not None
        call = self._call_of(c.service_id, c.user_id)
        if call_id is not None and (call is None or call.call_id != call_id):
            other = self.calls.get(call_id)
            if other is not None and c.user_id not in (other.caller, other.callee):
                raise Refusal(ErrorCode.FORBIDDEN, f"call '{call_id}' is not yours")
            raise Refusal(ErrorCode.NOT_FOUND, f"you are not in call '{call_id}'")
        if call is None:
            raise Refusal(ErrorCode.NOT_FOUND, "you are not in a call")
        up = (CallState.ANSWERED, CallState.CONNECTED, CallState.RESUMING)
        if need_answered and call.state not in up:
            raise Refusal(ErrorCode.WRONG_STATE, f"the call is {call.state.value}")
        return call

    @staticmethod
    def _leave_reason(call: Call, user_id: str) -> EndReason:
        if call.state in (CallState.CALLING, CallState.RINGING):
            return EndReason.CANCELLED if user_id == call.caller else EndReason.DECLINED
        return EndReason.HANGUP

    def _ringing(self, call: Call) -> dict[str, Any]:
        return p.event(
            Event.RINGING,
            call_id=call.call_id,
            caller=call.caller,
            call_type=call.call_type.value,
            record=call.record,
            sdp=call.sdp_offer,
        )

    def _tell(self, call: Call, user: str, message: dict[str, Any], out: list[Send]) -> None:
        conn = self.users.get((call.service_id, user))
        if conn is not None:
            out.append(Send(conn, message))
        elif message.get("event") in (Event.LEAVE, Event.CANCEL):
            away = self.away.get((call.service_id, user))
            if away is not None:  # told on resume instead
                away.missed = {k: message[k] for k in ("call_id", "reason", "by")}

    def _end(self, call: Call, reason: EndReason, by: str | None, out: list[Send]) -> None:
        """Close the call; every party but `by` (who gets a response) hears why."""
        ringing = call.state in (CallState.CALLING, CallState.RINGING)
        for user in (call.caller, call.callee):
            if user == by:
                continue
            name = Event.CANCEL if ringing and user == call.callee else Event.LEAVE
            msg = p.event(name, call_id=call.call_id, reason=reason.value, by=by)
            self._tell(call, user, msg, out)
        self.calls.pop(call.call_id, None)
        for user in (call.caller, call.callee):
            if self.user_call.get((call.service_id, user)) == call.call_id:
                del self.user_call[(call.service_id, user)]
