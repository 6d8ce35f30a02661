"""After a resume: put the phone's view of its call in line with the server's. Pure.

`declaration()` is what the phone tells the server about its call in `resume`;
`plan()` reads the server's answer (`ResumeResult`) against the phone's call and says
what to do: end the local call (and why), leave a call only the server has, report
our media again, or go on. `CallMachine.resumed()` carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnicli.wire.messages import ResumeResult, ServerCallState
from omnicli.wire.protocol import CallType, EndReason, Role


@dataclass(frozen=True)
class LocalCall:
    """What the phone knows about its call when the server comes back."""

    call_id: str | None
    state: str  # a CallState: calling, connecting, connected
    peer: str
    role: Role
    call_type: CallType
    record: bool
    media_up: bool = False  # our side's media connection is up now


@dataclass(frozen=True)
class Plan:
    """What to do after a resume: end our call (with why), leave the server's, or go on."""

    end_reason: EndReason | None = None  # end the local call with this reason
    end_by: str | None = None
    leave_call_id: str | None = None  # a call the server still has and we do not
    report_media: bool = False  # the server waits for our media_state connected
    continues: str | None = None  # the call id that goes on


def declaration(call: LocalCall | None) -> dict[str, Any]:
    """The call fields of `resume`: only a call whose SDP exchange is done is described."""
    if call is None or call.call_id is None or call.state not in ("connecting", "connected"):
        return {}
    return {
        "call_id": call.call_id,
        "peer": call.peer,
        "role": call.role.value,
        "call_type": call.call_type.value,
        "record": call.record,
    }


def plan(local: LocalCall | None, result: ResumeResult) -> Plan:
    """Reconcile the phone's call with the `resume` result."""
    server, ended = result.call, result.ended
    # a call the server has for us that we do not know: leave it, unless it is ringing
    # here (the server rings us again with its offer right after the resume response)
    stray = None
    if server is not None and (local is None or server.call_id != local.call_id):
        ringing_here = (
            server.state in (ServerCallState.CALLING, ServerCallState.RINGING)
            and server.role is Role.CALLEE
        )
        stray = None if ringing_here else server.call_id
    if local is None:
        return Plan(leave_call_id=stray)
    if server is None or server.call_id != local.call_id:
        reason, by = EndReason.CONNECTION_LOST, None
        if ended is not None and ended.call_id == local.call_id:
            reason, by = ended.reason, ended.by
        return Plan(end_reason=reason, end_by=by, leave_call_id=stray)
    # a media_state sent while we were away was lost: report it again, but only if our
    # media really is up (otherwise the running media watch reports it when it is)
    report = server.state is ServerCallState.ANSWERED and local.media_up
    return Plan(report_media=report, continues=local.call_id)


__all__ = ["LocalCall", "Plan", "declaration", "plan"]
