"""SIP calls, the pure part: who may dial which SIP address, and SIP codes as reasons.

The server reaches SIP phones through a gateway (Janus's SIP plugin, driven by
`omnicli.server.gateway`). The switchboard keeps such a call like any other; its far
end is a SIP address instead of a user, and what the far end does arrives as
`GatewayEvent`s. What the switchboard wants the gateway to do leaves it as a `Send`
to `GATEWAY` whose message is one of `dial()`, `hangup()`, `accept()`, `dtmf()`,
`register()` and `unregister()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from omnicli.server.records import ToGateway
from omnicli.wire import protocol as p
from omnicli.wire.protocol import EndReason

GATEWAY = ToGateway()  # the address of the gateway's orders in `Send`s


@dataclass(frozen=True)
class SipPolicy:
    """Which SIP addresses omni users may call.

    `domains`: allowed hosts (lower case; a leading dot allows every subdomain, e.g.
    ``.example.org``); empty means any host. `services`: the service ids allowed to
    dial out; empty means all of them.
    """

    domains: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    registrar: str | None = None  # sip:HOST[:PORT]: users may take SIP calls (--sip-inbound)
    domain: str = "omni.invalid"  # users' SIP addresses are sip:USER@domain
    secret: str = ""  # the password the gateway registers users with (one for all)

    def refuse_service(self, service_id: str) -> str | None:
        if self.services and service_id not in self.services:
            return f"service '{service_id}' may not use SIP"
        return None

    def refuse(self, service_id: str, uri: str) -> str | None:
        """Why `service_id` may not call `uri` (a valid SIP address), or None."""
        if why := self.refuse_service(service_id):
            return why
        if not self.domains:
            return None
        host = p.sip_host(uri)
        for domain in self.domains:
            if host == domain or (domain.startswith(".") and host.endswith(domain)):
                return None
        return f"SIP domain '{host}' is not allowed on this server"


class GatewayEventKind(StrEnum):
    INCOMING = "incoming"  # a SIP phone calls `user` (`peer`: its address, `sdp`: the offer)
    RINGING = "ringing"  # 180/183: the phone rings
    ANSWERED = "answered"  # 200 OK: the gateway's SDP answer for the omni client
    MEDIA_UP = "media_up"  # the gateway's WebRTC leg to the omni client is up
    ENDED = "ended"  # the SIP side ended or refused the call (`code`, `why`)
    FAILED = "failed"  # the gateway could not place or keep the call (down, refused)


@dataclass(frozen=True)
class GatewayEvent:
    call_id: str
    kind: GatewayEventKind
    sdp: str = ""
    code: int = 0  # SIP status code for ENDED
    why: str = ""
    service_id: str = ""  # INCOMING: whose user is called
    user: str = ""
    peer: str = ""


def dial(call_id: str, caller: str, uri: str, sdp: str) -> dict[str, Any]:
    return {"op": "dial", "call_id": call_id, "caller": caller, "uri": uri, "sdp": sdp}


def hangup(call_id: str, reason: EndReason = EndReason.HANGUP) -> dict[str, Any]:
    """End the SIP leg; one that was never answered is declined with `decline_code()`."""
    return {"op": "hangup", "call_id": call_id, "code": decline_code(reason)}


def dtmf(call_id: str, digits: str) -> dict[str, Any]:
    """Send touch tones to the phone (SIP INFO, one per digit)."""
    return {"op": "dtmf", "call_id": call_id, "digits": digits}


def accept(call_id: str, sdp: str) -> dict[str, Any]:
    """Answer an incoming SIP call with the omni user's SDP answer."""
    return {"op": "accept", "call_id": call_id, "sdp": sdp}


def register(service_id: str, user_id: str) -> dict[str, Any]:
    return {"op": "register", "service_id": service_id, "user_id": user_id}


def unregister(service_id: str, user_id: str) -> dict[str, Any]:
    return {"op": "unregister", "service_id": service_id, "user_id": user_id}


def decline_code(reason: EndReason) -> int:
    """The SIP status an unanswered incoming call is refused with."""
    return {
        EndReason.BUSY: 486,
        EndReason.DECLINED: 603,
        EndReason.NO_ANSWER: 480,
        EndReason.UNAVAILABLE: 480,
        EndReason.CANCELLED: 487,
    }.get(reason, 603)


def end_reason(code: int, answered: bool) -> EndReason:
    """The omni reason for a SIP final status (or a BYE, code 200 or 0, once answered).

    486 and 600: busy; 603: declined; 408: no answer (it rang out); 480 and the
    not-reachable codes (404, 410, 484, 5xx but 500): unavailable; 487: cancelled;
    488 and 606 (no common codec): media_failed; any other failure: unavailable.
    """
    if answered and code in (0, 200):
        return EndReason.HANGUP
    if code in (486, 600):
        return EndReason.BUSY
    if code == 603:
        return EndReason.DECLINED
    if code == 408:
        return EndReason.NO_ANSWER
    if code == 487:
        return EndReason.CANCELLED
    if code in (488, 606):
        return EndReason.MEDIA_FAILED
    if answered:
        return EndReason.HANGUP
    return EndReason.UNAVAILABLE
