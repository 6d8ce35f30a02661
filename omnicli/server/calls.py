"""The call state machine: offer, answer, media reports, in-call messages, endings.

Pure: requests and the time in, `Send`s out. Each change of a call is one compare-and-set
on the store (`swap_call`), so it applies only to the call as it was read; a call that
changed meanwhile is refused (`WRONG_STATE`) or, when ending, left to whoever ended it.

    calling ──(callee registers)──> ringing ──answer──> answered ──both media up──> connected
       │                               │                   │                           │
       └── ring timeout: unavailable   ├── timeout: no_answer                          │
       └── caller leaves: cancelled    ├── callee leaves: declined                     │
                                       └── caller leaves: cancelled                    │
                                           answered: connect timeout / media failed ───┤
                                           anyone leaves: hangup; socket gone: connection_lost

A user is busy from the moment a call names it (even before it is online) until the call
ends; after that it is idle again and keeps its session.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from omnicli.server import sip
from omnicli.server.records import NEVER, CallRecord, CallState, Refusal, Send, ToConn
from omnicli.server.sessions import Conn, Sessions
from omnicli.server.store import Offered, Store
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq
from omnicli.wire.protocol import EndReason, ErrorCode, Event

_UP = (CallState.ANSWERED, CallState.CONNECTED, CallState.RESUMING)
CHANGED = "the call changed meanwhile; try again"
MEDIA_RETRIES = 3
SETUPS_KEPT = 10_000  # setup times kept until the metrics read them


class Calls:
    def __init__(
        self,
        store: Store,
        sessions: Sessions,
        *,
        ring_timeout: float,
        connect_timeout: float,
        new_id: Callable[[str], str],
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.ring_timeout = ring_timeout
        self.connect_timeout = connect_timeout
        self._new_id = new_id
        # for metrics: the reasons of the endings this node wrote, offer-to-connected times (s)
        self.ended: Counter[str] = Counter()
        self.setups: deque[float] = deque(maxlen=SETUPS_KEPT)

    # -- requests ------------------------------------------------------------------------

    def offer(self, c: Conn, req: rq.OfferCall, now: float, out: list[Send]) -> dict[str, Any]:
        assert c.service_id is not None and c.user_id is not None
        if why := p.check_user_id(req.callee):
            raise Refusal(ErrorCode.INVALID_USER_ID, f"callee: {why}")
        if req.callee == c.user_id:
            raise Refusal(ErrorCode.WRONG_STATE, "you cannot call yourself")
        if not req.sdp.strip():
            raise Refusal(ErrorCode.BAD_REQUEST, "field 'sdp' is empty")
        placed = self.store.place_call(  # one step: both free, callee online?, added
            CallRecord(
                call_id=self._new_id("c-"),
                service_id=c.service_id,
                caller=c.user_id,
                callee=req.callee,
                call_type=req.call_type,
                record=req.record,
                sdp_offer=req.sdp,
                state=CallState.RINGING,
                deadline=now + self.ring_timeout,
                started=now,
            )
        )
        if placed.outcome is Offered.CALLER_BUSY:
            raise Refusal(ErrorCode.WRONG_STATE, "you are in a call already; leave it first")
        if placed.call is None:  # busy, or someone else's offer got there first
            raise Refusal(ErrorCode.BUSY, f"'{req.callee}' is busy")
        call = placed.call
        online = call.state is CallState.RINGING
        ringback = p.event(
            Event.RINGBACK,
            call_id=call.call_id,
            callee=call.callee,
            call_type=call.call_type.value,
            record=call.record,
            callee_online=online,
        )
        out.append(Send(ToConn(c.conn), ringback))
        if online:
            self.sessions.tell(call.service_id, call.callee, ringing(call), out, placed.callee)
        return {"call_id": call.call_id, "callee_online": online}

    def answer(self, c: Conn, req: rq.AnswerCall, now: float, out: list[Send]) -> dict[str, Any]:
        return self.attempts(c, out, lambda read, sink: self._answer(c, req, now, read, sink))

    def _answer(
        self, c: Conn, req: rq.AnswerCall, now: float, read: Read, out: list[Send]
    ) -> dict[str, Any]:
        assert c.service_id is not None and c.user_id is not None
        if req.call_id is not None:
            self.own_call(c, req.call_id, read=read)
        call = read(c.service_id, c.user_id)
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
        call = self.change(
            call,
            state=CallState.ANSWERED,
            deadline=now + self.connect_timeout,
            sdp_answer=req.sdp,
        )
        if call.sip:  # a SIP phone called: the gateway answers it with this SDP
            out.append(Send(sip.GATEWAY, sip.accept(call.call_id, req.sdp)))
        answered = p.event(Event.ANSWERED, call_id=call.call_id, callee=call.callee, sdp=req.sdp)
        self.sessions.tell(call.service_id, call.caller, answered, out)
        return {"call_id": call.call_id, "caller": call.caller, "call_type": call.call_type.value}

    def media_state(
        self, c: Conn, req: rq.MediaState, out: list[Send], now: float | None = None
    ) -> dict[str, Any]:
        """Both parties report at about the same time, on different nodes maybe: a report
        that loses the compare-and-set to the other one reads the call again."""
        return self.attempts(
            c, out, lambda read, sink: self._media_state(c, req, sink, now, read), always=True
        )

    def _media_state(
        self, c: Conn, req: rq.MediaState, out: list[Send], now: float | None, read: Read
    ) -> dict[str, Any]:
        call = self.own_call(c, req.call_id, need_answered=True, read=read)
        assert c.user_id is not None
        if req.state == "failed":
            if not self.end(call, EndReason.MEDIA_FAILED, None, out) and read.used_recent:
                raise Refusal(ErrorCode.WRONG_STATE, CHANGED)
            return {}
        self.mark_up(call, c.user_id, out, now)
        return {}

    def attempts(
        self,
        c: Conn,
        out: list[Send],
        step: Callable[[Read, list[Send]], dict[str, Any]],
        *,
        always: bool = False,
    ) -> dict[str, Any]:
        """Run a request's change of the sender's call, retried when it was computed from
        a stale record: a store's recent copy (`Store.recent_call`), or (`always`) a read
        that another writer overtook before the compare-and-set."""
        recent = self.store.caches_calls
        if not (always or recent):
            return step(Read(self.store, recent=False), out)
        for _ in range(MEDIA_RETRIES):
            read = Read(self.store, recent=recent)
            sink: list[Send] = []
            try:
                result = step(read, sink)
            except Refusal as refusal:
                if refusal.message != CHANGED:  # (a lost compare-and-set left the current
                    if not read.used_recent:  # record as the recent copy: use it)
                        raise
                    recent = False  # refused from a stale copy: read the call
                continue
            out.extend(sink)
            return result
        return step(Read(self.store, recent=False), out)

    def mark_up(
        self, call: CallRecord, user: str, out: list[Send], now: float | None = None
    ) -> None:
        """`user`'s media is up; CONNECTED to both once both are."""
        up = call.media_up | {user}
        if call.state is CallState.ANSWERED and up >= set(call.parties):
            call = self.change(call, state=CallState.CONNECTED, deadline=NEVER, media_up=up)
            if now is not None:
                self.setups.append(now - call.started)
            for user in call.parties:
                self.sessions.tell(call.service_id, user, connected(call, user), out)
        elif up != call.media_up:
            self.change(call, media_up=up)

    def leave(self, c: Conn, req: rq.Leave, out: list[Send]) -> dict[str, Any]:
        return self.attempts(c, out, lambda read, sink: self._leave(c, req, read, sink))

    def _leave(self, c: Conn, req: rq.Leave, read: Read, out: list[Send]) -> dict[str, Any]:
        assert c.user_id is not None
        call = self.own_call(c, req.call_id, read=read)
        reason = leave_reason(call, c.user_id)
        if not self.end(call, reason, c.user_id, out) and read.used_recent:
            raise Refusal(ErrorCode.WRONG_STATE, CHANGED)  # a stale copy: read it again
        return {"call_id": call.call_id, "reason": reason.value}

    def relay(
        self, c: Conn, call_id: str | None, name: Event, out: list[Send], **fields: Any
    ) -> None:
        """Pass an in-call event (mute, recording) to the other party."""
        assert c.user_id is not None
        call = self.own_call(c, call_id, need_answered=True)
        msg = p.event(name, call_id=call.call_id, user_id=c.user_id, **fields)
        self.sessions.tell(call.service_id, call.other(c.user_id), msg, out)

    def media_restart(self, c: Conn, req: rq.MediaRestart, out: list[Send]) -> dict[str, Any]:
        """Relay a media restart (a new peer connection, same call) to the other party.

        Only the caller offers and only the callee answers or asks, so the two never offer
        at once; the call record does not change."""
        assert c.user_id is not None and c.service_id is not None
        call = self.own_call(c, req.call_id, need_answered=True)
        role = "caller" if c.user_id == call.caller else "callee"
        allowed = "caller" if req.kind is p.RestartKind.OFFER else "callee"
        if role != allowed:
            raise Refusal(
                ErrorCode.FORBIDDEN, f"only the {allowed} sends a media_restart {req.kind.value}"
            )
        peer = call.other(c.user_id)
        fields: dict[str, Any] = {"kind": req.kind.value}
        if req.sdp is not None:
            fields["sdp"] = req.sdp
        delivered = self.sessions.online(call.service_id, peer)  # away: it asks again later
        msg = p.event(Event.MEDIA_RESTART, call_id=call.call_id, user_id=c.user_id, **fields)
        self.sessions.tell(call.service_id, peer, msg, out)
        return {"kind": req.kind.value, "delivered": delivered}

    # -- timers and endings ----------------------------------------------------------------

    def expire(self, call: CallRecord, out: list[Send]) -> None:
        """The call's deadline has passed: end it with the reason its state gives."""
        if call.state is CallState.CALLING:
            self.end(call, EndReason.UNAVAILABLE, None, out)
        elif call.state is CallState.RINGING:
            self.end(call, EndReason.NO_ANSWER, None, out)
        elif call.state is CallState.ANSWERED:
            self.end(call, EndReason.MEDIA_FAILED, None, out)
        elif call.state is CallState.RESUMING:
            missing = call.other(next(iter(call.media_up))) if call.media_up else None
            self.end(call, EndReason.CONNECTION_LOST, missing, out)

    def end(self, call: CallRecord, reason: EndReason, by: str | None, out: list[Send]) -> bool:
        """Close the call; every party but `by` (who gets a response) hears why. False if
        it had ended or changed meanwhile (whoever did that told the parties)."""
        if self.store.swap_call(call, None) is None:
            return False
        if call.sip and by != call.sip:  # the SIP side did not end it: the gateway must
            out.append(Send(sip.GATEWAY, sip.hangup(call.call_id, reason)))
        self.ended[reason.value] += 1
        for user in call.parties:
            if user == by:
                continue
            name = Event.CANCEL if call.ringing and user == call.callee else Event.LEAVE
            msg = p.event(name, call_id=call.call_id, reason=reason.value, by=by)
            self.sessions.tell(call.service_id, user, msg, out)
        return True

    def change(self, call: CallRecord, **changes: Any) -> CallRecord:
        """Write a change of the call as it was read, or refuse if it moved meanwhile."""
        stored = self.store.swap_call(call, call.evolve(**changes))
        if stored is None:
            raise Refusal(ErrorCode.WRONG_STATE, CHANGED)
        return stored

    # -- lookups -----------------------------------------------------------------------------

    def own_call(
        self,
        c: Conn,
        call_id: str | None = None,
        *,
        need_answered: bool = False,
        read: Read | None = None,
    ) -> CallRecord:
        """The sender's current call; `call_id`, when given, must name it."""
        assert c.service_id is not None and c.user_id is not None
        call = (read or self.store.call_of)(c.service_id, c.user_id)
        if call_id is not None and (call is None or call.call_id != call_id):
            other = self.store.call(call_id)
            if other is not None and c.user_id not in other.parties:
                raise Refusal(ErrorCode.FORBIDDEN, f"call '{call_id}' is not yours")
            raise Refusal(ErrorCode.NOT_FOUND, f"you are not in call '{call_id}'")
        if call is None:
            raise Refusal(ErrorCode.NOT_FOUND, "you are not in a call")
        if need_answered and call.state not in _UP:
            raise Refusal(ErrorCode.WRONG_STATE, f"the call is {call.state.value}")
        return call

    def ring_if_pending(self, c: Conn, out: list[Send], *, again: bool = False) -> None:
        """RINGING for a call held for this user; `again`: also one that rang already."""
        assert c.service_id is not None and c.user_id is not None
        pending = self.store.call_of(c.service_id, c.user_id)
        if pending is None or pending.callee != c.user_id:
            return
        if pending.state is CallState.CALLING:
            pending = self.store.swap_call(pending, pending.evolve(state=CallState.RINGING))
        elif not (again and pending.state is CallState.RINGING):
            return
        if pending is not None:
            out.append(Send(ToConn(c.conn), ringing(pending)))


class Read:
    """How a request reads the sender's call: the store's recent copy if `recent` and it
    has one (noted in `used_recent`), else from the store."""

    __slots__ = ("recent", "store", "used_recent")

    def __init__(self, store: Store, *, recent: bool) -> None:
        self.store = store
        self.recent = recent
        self.used_recent = False

    def __call__(self, service_id: str, user_id: str) -> CallRecord | None:
        if self.recent and (call := self.store.recent_call(service_id, user_id)) is not None:
            self.used_recent = True
            return call
        return self.store.call_of(service_id, user_id)


def leave_reason(call: CallRecord, user_id: str) -> EndReason:
    if call.ringing:
        return EndReason.CANCELLED if user_id == call.caller else EndReason.DECLINED
    return EndReason.HANGUP


def ringing(call: CallRecord) -> dict[str, Any]:
    return p.event(
        Event.RINGING,
        call_id=call.call_id,
        caller=call.caller,
        call_type=call.call_type.value,
        record=call.record,
        sdp=call.sdp_offer,
    )


def answered(call: CallRecord) -> dict[str, Any]:
    """ANSWERED for the caller: the callee's SDP."""
    return p.event(Event.ANSWERED, call_id=call.call_id, callee=call.callee, sdp=call.sdp_answer)


def connected(call: CallRecord, user: str) -> dict[str, Any]:
    """CONNECTED for `user`, one of the parties."""
    return p.event(
        Event.CONNECTED,
        call_id=call.call_id,
        peer=call.other(user),
        call_type=call.call_type.value,
        record=call.record,
    )


def describe(call: CallRecord, user_id: str) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "state": call.state.value,
        "peer": call.other(user_id),
        "role": "caller" if user_id == call.caller else "callee",
        "call_type": call.call_type.value,
        "record": call.record,
    }
