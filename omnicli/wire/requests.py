"""The requests a client sends, typed: one frozen dataclass per op and `parse_request()`.

The server reads each request frame once, at its edge: `protocol.decode()` gives the
JSON object, `parse_request()` the typed `Request` (its id, its op, its body), or the
one `ProtocolError` naming the field at fault. Every string has a length limit
(`protocol.MAX_*`), so nothing a client sends is held unbounded. Pure: stdlib only.
`docs/protocol.md` §2 is the prose version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnicli.wire.fields import flag, member, opt_member, opt_text, text
from omnicli.wire.protocol import (
    DTMF_RE,
    MAX_CALL_ID,
    MAX_DTMF,
    MAX_PEER_ID,
    MAX_SDP,
    MAX_TOKEN,
    MAX_USER_ID,
    SESSION_LIST_LIMIT,
    VERSION,
    CallType,
    ErrorCode,
    ProtocolError,
    RestartKind,
    Role,
    Track,
    check_sip_uri,
    check_user_id,
    is_sip_uri,
    request_id,
)


@dataclass(frozen=True)
class Hello:
    version: int
    service_id: str
    service_key: str | None
    token: str | None
    client: str | None


@dataclass(frozen=True)
class CreateSession:
    user_id: str | None
    sip_inbound: bool = False  # also take calls from SIP phones (server with a registrar)


@dataclass(frozen=True)
class SessionList:
    limit: int = SESSION_LIST_LIMIT  # at most this many rows (1..SESSION_LIST_LIMIT)
    after: str | None = None  # only user ids after this one (paging: the last one seen)


@dataclass(frozen=True)
class OfferCall:
    call_type: CallType
    callee: str
    record: bool
    sdp: str


@dataclass(frozen=True)
class AnswerCall:
    sdp: str
    call_type: CallType | None
    caller: str | None
    call_id: str | None = None  # when given, must be the call ringing for you


# `call_id` on the in-call ops: when given, it must name the sender's current call
# (403 if it is someone else's, 404 if there is no such call); when absent the op acts
# on the sender's current call, the only call it can act on.


@dataclass(frozen=True)
class Leave:
    call_id: str | None = None


@dataclass(frozen=True)
class SetMute:
    track: Track
    muted: bool
    call_id: str | None = None


@dataclass(frozen=True)
class Dtmf:
    """Send touch tones to the SIP phone of the sender's answered sipcall."""

    digits: str
    call_id: str | None = None


@dataclass(frozen=True)
class MediaState:
    state: str  # "connected" | "failed"
    call_id: str | None = None


@dataclass(frozen=True)
class MediaRestart:
    """Re-establish a call's media on a new peer connection (the old path died)."""

    kind: RestartKind
    sdp: str | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class SetRecording:
    on: bool
    call_id: str | None = None


@dataclass(frozen=True)
class Resume:
    """Take back a session after a dropped connection (instead of create_session).

    The call fields describe the call the client believes it is in; a server that
    lost its state (a restart) rebuilds a connected call when both parties describe
    it the same way.
    """

    resume_token: str
    call_id: str | None = None
    peer: str | None = None
    role: Role | None = None
    call_type: CallType | None = None
    record: bool = False


@dataclass(frozen=True)
class Ping:
    pass


Body = (
    Hello
    | CreateSession
    | SessionList
    | OfferCall
    | AnswerCall
    | Leave
    | SetMute
    | MediaState
    | MediaRestart
    | SetRecording
    | Dtmf
    | Ping
    | Resume
)


@dataclass(frozen=True)
class Request:
    id: int
    op: str
    body: Body


def _parse_hello(f: dict[str, Any]) -> Hello:
    version = f.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError("field 'version' must be an integer")
    if version != VERSION:
        raise ProtocolError(
            f"protocol version {version} is not supported (this server speaks {VERSION})",
            ErrorCode.VERSION_UNSUPPORTED,
        )
    return Hello(
        version=version,
        service_id=text(f, "service_id", limit=MAX_PEER_ID),
        service_key=opt_text(f, "service_key", limit=1024),
        token=opt_text(f, "token", limit=MAX_TOKEN),
        client=opt_text(f, "client", limit=128),
    )


def _parse_create_session(f: dict[str, Any]) -> CreateSession:
    # check_user_id owns the length rule, so an over-long id is INVALID_USER_ID too
    user_id = opt_text(f, "user_id", limit=1024)
    if user_id is not None and (why := check_user_id(user_id)):
        raise ProtocolError(why, ErrorCode.INVALID_USER_ID)
    return CreateSession(user_id=user_id, sip_inbound=flag(f, "sip_inbound"))


def _parse_session_list(f: dict[str, Any]) -> SessionList:
    limit = f.get("limit")
    if limit is None:
        limit = SESSION_LIST_LIMIT
    if (
        not isinstance(limit, int)
        or isinstance(limit, bool)
        or not 1 <= limit <= SESSION_LIST_LIMIT
    ):
        raise ProtocolError(f"field 'limit' must be an integer from 1 to {SESSION_LIST_LIMIT}")
    return SessionList(limit=limit, after=opt_text(f, "after", limit=MAX_USER_ID))


def _parse_offer(f: dict[str, Any]) -> OfferCall:
    return OfferCall(
        call_type=member(f, "call_type", CallType),
        callee=text(f, "callee", limit=MAX_PEER_ID),
        record=flag(f, "record"),
        sdp=text(f, "sdp", limit=MAX_SDP),
    )


def _call_id(f: dict[str, Any]) -> str | None:
    return opt_text(f, "call_id", limit=MAX_CALL_ID)


def _parse_answer(f: dict[str, Any]) -> AnswerCall:
    return AnswerCall(
        sdp=text(f, "sdp", limit=MAX_SDP),
        call_type=opt_member(f, "call_type", CallType),
        caller=opt_text(f, "caller", limit=MAX_PEER_ID),
        call_id=_call_id(f),
    )


def _parse_media_state(f: dict[str, Any]) -> MediaState:
    state = text(f, "state", limit=16)
    if state not in ("connected", "failed"):
        raise ProtocolError("field 'state' must be 'connected' or 'failed'")
    return MediaState(state=state, call_id=_call_id(f))


def _parse_media_restart(f: dict[str, Any]) -> MediaRestart:
    kind = member(f, "kind", RestartKind)
    sdp = opt_text(f, "sdp", limit=MAX_SDP, required=kind is not RestartKind.REQUEST)
    if kind is not RestartKind.REQUEST and not (sdp or "").strip():
        raise ProtocolError("field 'sdp' is empty")
    return MediaRestart(
        kind=kind, sdp=sdp if kind is not RestartKind.REQUEST else None, call_id=_call_id(f)
    )


def _parse_mute(f: dict[str, Any], muted: bool) -> SetMute:
    return SetMute(track=member(f, "track", Track), muted=muted, call_id=_call_id(f))


def _parse_dtmf(f: dict[str, Any]) -> Dtmf:
    digits = text(f, "digits", limit=MAX_DTMF)
    if not DTMF_RE.fullmatch(digits):
        raise ProtocolError(f"field 'digits' must be 1 to {MAX_DTMF} of 0-9 * # A-D")
    return Dtmf(digits=digits.upper(), call_id=_call_id(f))


def _parse_resume(f: dict[str, Any]) -> Resume:
    call_id = _call_id(f)
    required = call_id is not None  # describing a call takes all of its fields
    peer = opt_text(f, "peer", limit=MAX_PEER_ID, required=required)
    if peer is not None and (
        why := check_sip_uri(peer) if is_sip_uri(peer) else check_user_id(peer)
    ):
        raise ProtocolError(f"peer: {why}", ErrorCode.INVALID_USER_ID)
    return Resume(
        resume_token=text(f, "resume_token", limit=MAX_TOKEN),
        call_id=call_id,
        peer=peer,
        role=opt_member(f, "role", Role, required=required),
        call_type=opt_member(f, "call_type", CallType, required=required),
        record=flag(f, "record"),
    )


_PARSERS = {
    "hello": _parse_hello,
    "create_session": _parse_create_session,
    "session_list": _parse_session_list,
    "offer_call": _parse_offer,
    "answer_call": _parse_answer,
    "leave": lambda f: Leave(call_id=_call_id(f)),
    "mute": lambda f: _parse_mute(f, True),
    "unmute": lambda f: _parse_mute(f, False),
    "media_state": _parse_media_state,
    "media_restart": _parse_media_restart,
    "recording": lambda f: SetRecording(on=flag(f, "on", required=True), call_id=_call_id(f)),
    "dtmf": lambda f: _parse_dtmf(f),
    "ping": lambda f: Ping(),
    "resume": _parse_resume,
}
OPS = tuple(_PARSERS)


def parse_request(obj: dict[str, Any]) -> Request:
    """A typed Request from a decoded frame, or ProtocolError."""
    rid = request_id(obj)
    if rid is None:
        raise ProtocolError("field 'id' must be a non-negative integer")
    op = obj.get("op")
    if not isinstance(op, str):
        raise ProtocolError("field 'op' must be a string")
    parser = _PARSERS.get(op)
    if parser is None:
        raise ProtocolError(f"unknown op '{op[:40]}'", ErrorCode.UNKNOWN_OP)
    return Request(id=rid, op=op, body=parser(obj))  # type: ignore[arg-type]  # each parser returns its op's body type
