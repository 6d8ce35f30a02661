"""The SIP side of the call state machine: calls whose other party is a SIP address.

Pure, like `calls.Calls`, whose transitions it reuses: a `sipcall` is a `CallRecord`
with `sip` naming the party behind the gateway. Offers to a SIP address become `dial`
orders for the gateway (`Send`s to `sip.GATEWAY`); what the gateway reports
(`GatewayEvent`) moves the call on: ringing is RINGBACK, an answer is ANSWERED with the
gateway's SDP, its WebRTC leg up counts as that party's media up, a SIP final response
ends the call with `sip.end_reason()`. Inbound: users who asked for SIP calls are
registered through the gateway, and an incoming call rings them like any call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omnicli.server import sip
from omnicli.server.calls import Calls, ringing
from omnicli.server.records import CallRecord, CallState, Refusal, Send, UserKey
from omnicli.server.sessions import Conn, Sessions
from omnicli.server.sip import GATEWAY, GatewayEvent, GatewayEventKind, SipPolicy
from omnicli.server.store import Store
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq
from omnicli.wire.protocol import EndReason, ErrorCode, Event

K = GatewayEventKind


class SipCalls:
    def __init__(
        self,
        store: Store,
        sessions: Sessions,
        machine: Calls,
        policy: SipPolicy | None,
        *,
        new_id: Callable[[str], str],
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.machine = machine
        self.policy = policy  # None: no gateway, sipcall is refused
        self._new_id = new_id
        self.inbound: set[UserKey] = set()  # users registered for SIP calls

    # -- requests ----------------------------------------------------------------------

    def offer(self, c: Conn, req: rq.OfferCall, now: float, out: list[Send]) -> dict[str, Any]:
        assert c.service_id is not None and c.user_id is not None
        if self.store.call_of(c.service_id, c.user_id) is not None:
            raise Refusal(ErrorCode.WRONG_STATE, "you are in a call already; leave it first")
        if req.call_type is not p.CallType.SIP or not p.is_sip_uri(req.callee):
            raise Refusal(
                ErrorCode.BAD_REQUEST, "a SIP address is called with call_type sipcall, and only it"
            )
        if why := p.check_sip_uri(req.callee):
            raise Refusal(ErrorCode.INVALID_USER_ID, f"callee: {why}")
        if self.policy is None:
            raise Refusal(ErrorCode.FORBIDDEN, "this server has no SIP gateway")
        if why := self.policy.refuse(c.service_id, req.callee):
            raise Refusal(ErrorCode.FORBIDDEN, why)
        if not req.sdp.strip():
            raise Refusal(ErrorCode.BAD_REQUEST, "field 'sdp' is empty")
        call = CallRecord(
            call_id=self._new_id("c-"),
            service_id=c.service_id,
            caller=c.user_id,
            callee=req.callee,
            call_type=req.call_type,
            record=req.record,
            sdp_offer=req.sdp,
            state=CallState.CALLING,
            deadline=now + self.machine.ring_timeout,
            started=now,
            sip=req.callee,
        )
        if not self.store.add_call(call):  # the store keeps one call per party
            raise Refusal(ErrorCode.BUSY, f"'{req.callee}' is in a call with another user")
        out.append(Send(GATEWAY, sip.dial(call.call_id, call.caller, call.callee, req.sdp)))
        return {"call_id": call.call_id, "callee_online": False}

    def dtmf(self, c: Conn, req: rq.Dtmf, out: list[Send]) -> dict[str, Any]:
        call = self.machine.own_call(c, req.call_id, need_answered=True)
        if not call.sip:
            raise Refusal(ErrorCode.WRONG_STATE, "touch tones go to SIP calls only")
        out.append(Send(GATEWAY, sip.dtmf(call.call_id, req.digits)))
        return {"digits": req.digits}

    def register(self, service_id: str, user_id: str, out: list[Send]) -> None:
        """Have the gateway register this user at the SIP registrar (create_session)."""
        if self.policy is None or self.policy.registrar is None:
            raise Refusal(ErrorCode.FORBIDDEN, "this server takes no SIP calls (no registrar)")
        if why := self.policy.refuse_service(service_id):
            raise Refusal(ErrorCode.FORBIDDEN, why)
        if any(k[1] == user_id and k[0] != service_id for k in self.inbound):
            raise Refusal(
                ErrorCode.USER_ID_TAKEN, f"SIP calls for '{user_id}' go to another service"
            )
        if (service_id, user_id) not in self.inbound:
            self.inbound.add((service_id, user_id))
            out.append(Send(GATEWAY, sip.register(service_id, user_id)))

    def unregister(self, service_id: str, user_id: str, out: list[Send]) -> None:
        if (service_id, user_id) in self.inbound:
            self.inbound.discard((service_id, user_id))
            out.append(Send(GATEWAY, sip.unregister(service_id, user_id)))

    def address(self, service_id: str, user_id: str) -> str | None:
        """The SIP address that rings this user, if it is registered for SIP calls."""
        if (service_id, user_id) in self.inbound and self.policy is not None:
            return f"sip:{user_id}@{self.policy.domain}"
        return None

    # -- the gateway's reports ---------------------------------------------------------------

    def gateway_event(self, event: GatewayEvent, now: float) -> list[Send]:
        """What the SIP side of a call did, as reported by the gateway."""
        out: list[Send] = []
        call = self.store.call(event.call_id)
        if call is None and event.kind is K.INCOMING:
            self._incoming(event, now, out)
            return out
        if call is None or not call.sip:
            if event.kind not in (K.ENDED, K.FAILED):
                out.append(Send(GATEWAY, sip.hangup(event.call_id)))  # a call we let go of
            return out
        answered = call.state in (CallState.ANSWERED, CallState.CONNECTED)
        try:
            if event.kind is K.RINGING:
                self._ringback(call, out)
            elif event.kind is K.ANSWERED and not answered:
                call = self._ringback(call, out)
                call = self.machine.change(
                    call,
                    state=CallState.ANSWERED,
                    deadline=now + self.machine.connect_timeout,
                    sdp_answer=event.sdp,
                )
                msg = p.event(
                    Event.ANSWERED, call_id=call.call_id, callee=call.callee, sdp=event.sdp
                )
                self.sessions.tell(call.service_id, call.caller, msg, out)
            elif event.kind is K.MEDIA_UP and answered:
                self.machine.mark_up(call, call.sip, out, now)
            elif event.kind is K.ENDED:
                self.machine.end(call, sip.end_reason(event.code, answered), call.sip, out)
            elif event.kind is K.FAILED:
                reason = EndReason.CONNECTION_LOST if answered else EndReason.UNAVAILABLE
                self.machine.end(call, reason, call.sip, out)
        except Refusal:  # the call changed meanwhile: the newer state stands
            pass
        return out

    def _ringback(self, call: CallRecord, out: list[Send]) -> CallRecord:
        if call.state is not CallState.CALLING:
            return call
        call = self.machine.change(call, state=CallState.RINGING)
        ringback = p.event(
            Event.RINGBACK,
            call_id=call.call_id,
            callee=call.callee,
            call_type=call.call_type.value,
            record=call.record,
            callee_online=True,
        )
        self.sessions.tell(call.service_id, call.caller, ringback, out)
        return call

    def _incoming(self, event: GatewayEvent, now: float, out: list[Send]) -> None:
        """A SIP phone calls a user registered for SIP calls: ring them (or refuse)."""
        key = (event.service_id, event.user)
        if key not in self.inbound or not self.sessions.online(*key):
            out.append(Send(GATEWAY, sip.hangup(event.call_id, EndReason.UNAVAILABLE)))
            return
        call = CallRecord(
            call_id=event.call_id,
            service_id=event.service_id,
            caller=event.peer,
            callee=event.user,
            call_type=p.CallType.SIP,
            record=False,
            sdp_offer=event.sdp,
            state=CallState.RINGING,
            deadline=now + self.machine.ring_timeout,
            started=now,
            sip=event.peer,
        )
        if self.store.call_of(*key) is not None or not self.store.add_call(call):
            out.append(Send(GATEWAY, sip.hangup(event.call_id, EndReason.BUSY)))
            return
        self.sessions.tell(call.service_id, call.callee, ringing(call), out)
