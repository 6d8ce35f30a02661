"""What the server sends a client, typed: pushed events and request results.

Pure: stdlib only. A client parses each frame once, at its edge (`parse_event()`,
`parse_response()` and the `*Result.parse()` methods), and the rest of the client reads
attributes and enums, never string keys. Anything that does not follow
`docs/protocol.md` (§3 results, §4 events) raises the one `ProtocolError`.

The server still builds its frames with `protocol.event()` and `protocol.ok()`; these
classes are the client's reading of the same shapes. `tests/wire/test_messages.py`
parses the examples of `docs/protocol.md`, and in every test a server event that a
client cannot parse fails the test (`tests/conftest.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from omnicli.wire.fields import as_object, flag, member, need, number, opt_member, opt_text, text
from omnicli.wire.protocol import (
    CallType,
    EndReason,
    Event,
    ProtocolError,
    RestartKind,
    Role,
    Track,
)


class ServerCallState(StrEnum):
    """A call's state as the server reports it in a `resume` result."""

    CALLING = "calling"
    RINGING = "ringing"
    ANSWERED = "answered"
    CONNECTED = "connected"
    RESUMING = "resuming"


class Presence(StrEnum):
    """A user's state in `session_list`."""

    IDLE = "idle"
    BUSY = "busy"


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RingbackEvent:
    call_id: str
    callee: str
    call_type: CallType
    record: bool
    callee_online: bool


@dataclass(frozen=True)
class RingingEvent:
    call_id: str
    caller: str
    call_type: CallType
    record: bool
    sdp: str


@dataclass(frozen=True)
class AnsweredEvent:
    call_id: str
    callee: str
    sdp: str


@dataclass(frozen=True)
class ConnectedEvent:
    call_id: str
    peer: str
    call_type: CallType
    record: bool


@dataclass(frozen=True)
class EndedEvent:
    """`LEAVE` or `CANCEL` (`cancel` says which): the call is over, for `reason`."""

    call_id: str
    reason: EndReason
    by: str | None
    cancel: bool = False


@dataclass(frozen=True)
class MuteEvent:
    """`MUTE` or `UNMUTE` (`muted` says which) from the peer."""

    call_id: str
    user_id: str
    track: Track
    muted: bool


@dataclass(frozen=True)
class RecordingEvent:
    call_id: str
    user_id: str
    on: bool


@dataclass(frozen=True)
class MediaRestartEvent:
    """`MEDIA_RESTART` from the peer: a new offer, its answer, or a request for an offer."""

    call_id: str
    user_id: str
    kind: RestartKind
    sdp: str | None


@dataclass(frozen=True)
class KickoutEvent:
    user_id: str
    reason: str


ServerEvent = (
    RingbackEvent
    | RingingEvent
    | AnsweredEvent
    | ConnectedEvent
    | EndedEvent
    | MuteEvent
    | RecordingEvent
    | MediaRestartEvent
    | KickoutEvent
)


def parse_event(obj: Mapping[str, Any]) -> ServerEvent:
    """A typed event from a decoded event frame, or ProtocolError."""
    name = member(obj, "event", Event)
    if name is Event.KICKOUT:
        return KickoutEvent(text(obj, "user_id"), str(obj.get("reason") or ""))
    call_id = text(obj, "call_id")
    match name:
        case Event.RINGBACK:
            return RingbackEvent(
                call_id,
                text(obj, "callee"),
                member(obj, "call_type", CallType),
                flag(obj, "record"),
                flag(obj, "callee_online"),
            )
        case Event.RINGING:
            return RingingEvent(
                call_id,
                text(obj, "caller"),
                member(obj, "call_type", CallType),
                flag(obj, "record"),
                text(obj, "sdp"),
            )
        case Event.ANSWERED:
            return AnsweredEvent(call_id, text(obj, "callee"), text(obj, "sdp"))
        case Event.CONNECTED:
            return ConnectedEvent(
                call_id,
                text(obj, "peer"),
                member(obj, "call_type", CallType),
                flag(obj, "record"),
            )
        case Event.LEAVE | Event.CANCEL:
            return EndedEvent(
                call_id,
                member(obj, "reason", EndReason),
                opt_text(obj, "by"),
                cancel=name is Event.CANCEL,
            )
        case Event.MUTE | Event.UNMUTE:
            return MuteEvent(
                call_id,
                text(obj, "user_id"),
                member(obj, "track", Track),
                muted=name is Event.MUTE,
            )
        case Event.RECORDING:
            return RecordingEvent(call_id, text(obj, "user_id"), flag(obj, "on"))
        case Event.MEDIA_RESTART:
            kind = member(obj, "kind", RestartKind)
            sdp = None if kind is RestartKind.REQUEST else text(obj, "sdp")
            return MediaRestartEvent(call_id, text(obj, "user_id"), kind, sdp)
    raise ProtocolError(f"event '{name.value}' is not handled")  # pragma: no cover


# -- responses and results ----------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """An error response's body (see `ErrorCode`)."""

    code: int
    reason: str
    message: str


@dataclass(frozen=True)
class Response:
    """One response frame: `result` when ok, else `error`."""

    id: int | None
    result: Mapping[str, Any] | None
    error: Refused | None


def parse_response(obj: Mapping[str, Any]) -> Response:
    rid = obj.get("id")
    if rid is not None and (not isinstance(rid, int) or isinstance(rid, bool)):
        raise ProtocolError("field 'id' must be an integer or null")
    if flag(obj, "ok"):
        return Response(rid, as_object(obj.get("result") or {}, "'result'"), None)
    err = as_object(obj.get("error") or {}, "'error'")
    code = err.get("code", 0)
    refused = Refused(
        code if isinstance(code, int) and not isinstance(code, bool) else 0,
        str(err.get("reason") or "error"),
        str(err.get("message") or "the server refused the request"),
    )
    return Response(rid, None, refused)


@dataclass(frozen=True)
class SessionResult:
    """The result of `create_session` (and the session part of `resume`)."""

    session: str
    user_id: str
    ice_servers: tuple[dict[str, Any], ...] = ()
    resume_token: str | None = None
    resume_grace: float = 0.0
    sip_address: str | None = None  # with create_session(sip_inbound): SIP phones call this

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> SessionResult:
        ice = obj.get("ice_servers") or []
        if not isinstance(ice, list) or not all(isinstance(s, dict) for s in ice):
            raise ProtocolError("field 'ice_servers' must be a list of objects")
        return cls(
            text(obj, "session"),
            text(obj, "user_id"),
            tuple(ice),
            opt_text(obj, "resume_token"),
            number(obj, "resume_grace"),
            opt_text(obj, "sip_address"),
        )


@dataclass(frozen=True)
class SessionRow:
    user_id: str
    state: Presence
    call_type: CallType | None


@dataclass(frozen=True)
class SessionListResult:
    sessions: tuple[SessionRow, ...]
    total: int
    truncated: bool

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> SessionListResult:
        rows = need(obj, "sessions")
        if not isinstance(rows, list):
            raise ProtocolError("field 'sessions' must be a list")
        sessions = tuple(
            SessionRow(
                text(row, "user_id"),
                member(row, "state", Presence),
                opt_member(row, "call_type", CallType),
            )
            for row in (as_object(r, "a session row") for r in rows)
        )
        return cls(sessions, int(number(obj, "total", len(sessions))), flag(obj, "truncated"))


@dataclass(frozen=True)
class OfferResult:
    call_id: str
    callee_online: bool

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> OfferResult:
        return cls(text(obj, "call_id"), flag(obj, "callee_online"))


@dataclass(frozen=True)
class LeaveResult:
    """The result of `leave`: the reason the call ended (None: there was no call)."""

    call_id: str | None
    reason: EndReason | None

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> LeaveResult:
        reason = opt_member(obj, "reason", EndReason)
        return cls(opt_text(obj, "call_id"), reason)


@dataclass(frozen=True)
class ServerCall:
    """The sender's call as the server has it (in a `resume` result)."""

    call_id: str
    state: ServerCallState
    peer: str
    role: Role
    call_type: CallType
    record: bool

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> ServerCall:
        return cls(
            text(obj, "call_id"),
            member(obj, "state", ServerCallState),
            text(obj, "peer"),
            member(obj, "role", Role),
            member(obj, "call_type", CallType),
            flag(obj, "record"),
        )


@dataclass(frozen=True)
class EndedCall:
    """How the client's call ended while it was away (in a `resume` result)."""

    call_id: str
    reason: EndReason
    by: str | None

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> EndedCall:
        return cls(text(obj, "call_id"), member(obj, "reason", EndReason), opt_text(obj, "by"))


@dataclass(frozen=True)
class ResumeResult:
    session: SessionResult
    call: ServerCall | None
    ended: EndedCall | None

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> ResumeResult:
        call, ended = obj.get("call"), obj.get("ended")
        return cls(
            SessionResult.parse(obj),
            None if not call else ServerCall.parse(as_object(call, "field 'call'")),
            None if not ended else EndedCall.parse(as_object(ended, "field 'ended'")),
        )


__all__ = [
    "AnsweredEvent",
    "ConnectedEvent",
    "EndedCall",
    "EndedEvent",
    "KickoutEvent",
    "LeaveResult",
    "MuteEvent",
    "OfferResult",
    "Presence",
    "RecordingEvent",
    "Refused",
    "Response",
    "ResumeResult",
    "RingbackEvent",
    "RingingEvent",
    "ServerCall",
    "ServerCallState",
    "ServerEvent",
    "SessionListResult",
    "SessionResult",
    "SessionRow",
    "parse_event",
    "parse_response",
]
