"""Taking a session back on a new connection after the old one dropped.

A connection that drops without a close handshake leaves its session *away* (presence
with `away_until`) for the resume grace; `resume` with the signed resume token takes it
back, with its call. A half-open old connection still holding the session is kicked
out; one on another node (which may have died) is taken over. A token from another server
run (`boot`) means the server restarted and lost its state: the identity is trusted from
the signature, and a connected call is rebuilt only when both parties describe it the same
way (`RESUMING` until the second one does).
"""

from __future__ import annotations

from typing import Any

from omnicli.server.auth import ResumeTokens
from omnicli.server.calls import Calls, answered, describe
from omnicli.server.records import NEVER, CallRecord, CallState, Refusal, Send, ToConn, ToHolder
from omnicli.server.sessions import Conn, Sessions
from omnicli.server.store import Store
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq
from omnicli.wire.protocol import ErrorCode, Event


class Resumer:
    def __init__(
        self, store: Store, sessions: Sessions, calls: Calls, tokens: ResumeTokens, grace: float
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.calls = calls
        self.tokens = tokens
        self.grace = grace

    def resume(
        self, c: Conn, req: rq.Resume, now: float, wall: float, out: list[Send]
    ) -> dict[str, Any]:
        """Attach the token's session to `c`; the call it is in and how one ended."""
        assert c.service_id is not None
        if c.user_id is not None:
            raise Refusal(ErrorCode.WRONG_STATE, f"this connection is already '{c.user_id}'")
        claims = self.tokens.check(req.resume_token, c.service_id, now=wall)
        user_id, session = claims.user_id, claims.session
        if c.allowed_user is not None and user_id != c.allowed_user:
            raise Refusal(ErrorCode.FORBIDDEN, f"your token is for '{c.allowed_user}'")
        key = (c.service_id, user_id)
        missed: dict[str, Any] | None = None
        restarted = False
        presence = self.store.presence(*key)
        holder = self.sessions.conn_of(*key)
        if presence is not None and presence.away and presence.session == session:
            if not self.sessions.end(presence):
                raise Refusal(ErrorCode.USER_ID_TAKEN, f"user id '{user_id}' has another session")
            missed = presence.missed
        elif presence is not None and holder is not None and holder.session == session:
            # the old connection is half-open (its drop not noticed yet): replace it
            self.sessions.detach(holder)
            self.sessions.end(presence)
            kick = p.event(Event.KICKOUT, user_id=user_id, reason="resumed on another connection")
            out.append(Send(ToConn(holder.conn), kick, close=True))
        elif (
            presence is not None
            and presence.session == session
            and presence.node != self.sessions.node
        ):
            # held by another node that died or lost the connection before noticing: the
            # token proves the session; that node (if alive) kicks out its old connection
            if not self.sessions.end(presence):
                raise Refusal(ErrorCode.USER_ID_TAKEN, f"user id '{user_id}' has another session")
            kick = p.event(Event.KICKOUT, user_id=user_id, reason="resumed on another connection")
            out.append(Send(ToHolder(c.service_id, user_id, presence.node), kick, close=True))
        elif presence is not None:
            raise Refusal(ErrorCode.USER_ID_TAKEN, f"user id '{user_id}' has another session")
        else:
            restarted = claims.boot != self.tokens.boot
            self.sessions.check_room(c.service_id)
        self.sessions.attach(c, user_id, session)
        call = self.store.call_of(*key)
        held = call is not None and call.state is CallState.RESUMING
        if (call is None or held) and req.call_id is not None and restarted:
            call = self._redeclare(c, req, now) or call
        if call is not None and call.state is CallState.RESUMING and user_id not in call.media_up:
            call = None  # a description that does not match the other party's: not joined
        if req.call_id is not None and (call is None or call.call_id != req.call_id):
            missed = missed or {"call_id": req.call_id, "reason": "connection_lost", "by": None}
        self.calls.ring_if_pending(c, out, again=True)
        if (
            call is not None
            and call.state is CallState.ANSWERED
            and call.caller == user_id
            and req.call_id != call.call_id
            and call.sdp_answer
        ):
            # a caller that did not describe the call never heard its ANSWERED: tell it again
            out.append(Send(ToConn(c.conn), answered(call)))
        return {
            "call": describe(call, user_id) if call is not None else None,
            "ended": missed,
        }

    def _redeclare(self, c: Conn, req: rq.Resume, now: float) -> CallRecord | None:
        """After a restart: rebuild the connected call the client describes, or None."""
        assert c.service_id is not None and c.user_id is not None
        assert req.call_id and req.peer and req.role and req.call_type
        if req.call_type is p.CallType.SIP:
            return None  # the gateway's leg died with the old server: nothing to rebuild
        if req.role is p.Role.CALLER:
            caller, callee = c.user_id, req.peer
        else:
            caller, callee = req.peer, c.user_id
        call = self.store.call(req.call_id)
        if call is None:
            # only with a peer that has not come back yet: one online without this call
            # (or in another) would be made busy by whoever holds an old resume token
            if req.peer == c.user_id or self.store.call_of(c.service_id, req.peer) is not None:
                return None
            if self.sessions.online(c.service_id, req.peer):
                return None
            call = CallRecord(
                call_id=req.call_id,
                service_id=c.service_id,
                caller=caller,
                callee=callee,
                call_type=req.call_type,
                record=req.record,
                sdp_offer="",
                state=CallState.RESUMING,
                deadline=now + self.grace,
                started=now,
                media_up=frozenset({c.user_id}),  # in RESUMING: who has come back
            )
            return call if self.store.add_call(call) else None
        same = (call.service_id, call.caller, call.callee, call.call_type) == (
            c.service_id,
            caller,
            callee,
            req.call_type,
        )
        if call.state is CallState.RESUMING and same and c.user_id not in call.media_up:
            up = frozenset({caller, callee})
            connected = call.evolve(state=CallState.CONNECTED, deadline=NEVER, media_up=up)
            return self.store.swap_call(call, connected)
        return None
