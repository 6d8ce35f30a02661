"""The wire protocol: JSON text frames between `omni` clients and `omni server`.

Pure: stdlib only, no I/O. `docs/protocol.md` is the prose version of this module.

Three kinds of frame:

* request, client to server: ``{"op": "offer_call", "id": 7, ...fields}``
* response, server to client, one per request, echoing its id:
  ``{"id": 7, "ok": true, "result": {...}}`` or
  ``{"id": 7, "ok": false, "error": {"code": 486, "reason": "busy", "message": "..."}}``
* event, pushed by the server: ``{"event": "RINGING", ...fields}``

The first request on a connection must be `hello` carrying `version`. A client whose
connection dropped sends `hello` and then `resume` (instead of `create_session`) to get
its session, and its call, back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum
from typing import Any

VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_USER_ID = 64
MAX_PEER_ID = 128
MAX_SDP = 60 * 1024
MAX_CALL_ID = 64
MAX_TOKEN = 4096
SESSION_LIST_LIMIT = 1000  # most rows one session_list answer holds (and its default)
CLOSE_KICKED_OUT = 4000  # close code: the session was resumed on another connection
CLOSE_POLICY = 1008  # close code: the client broke a rule (hello timeout, failed hellos...)
USER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")
MAX_SIP_URI = MAX_PEER_ID
MAX_DTMF = 32
DTMF_RE = re.compile(r"[0-9*#A-Da-d]+")
# sip:[user@]host[:port]. No parameters or headers: nothing a caller writes can reach
# the SIP message beyond the Request-URI. user: unreserved characters and %XX escapes.
SIP_URI_RE = re.compile(
    r"sip:(?:(?:[A-Za-z0-9_.!~*'&=+$,-]|%[0-9A-Fa-f]{2}){1,64}@)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


class ErrorCode(IntEnum):
    """Numbered error codes; the number is stable, the slug is `.reason`."""

    BAD_REQUEST = 400  # malformed frame, missing or mistyped field
    UNAUTHORIZED = 401  # no hello yet, unknown service, wrong key, bad or missing token
    FORBIDDEN = 403  # acting on something that is not yours (another user id, another call)
    NOT_FOUND = 404  # no such call (e.g. no call from that caller is ringing)
    USER_ID_TAKEN = 409  # that user id is online already
    WRONG_STATE = 412  # the request does not fit the call's or session's state
    TOO_LARGE = 413  # frame over MAX_MESSAGE_BYTES
    INVALID_USER_ID = 422  # user id empty, too long or with forbidden characters
    VERSION_UNSUPPORTED = 426  # hello carried a protocol version we do not speak
    SESSION_REQUIRED = 428  # create_session first
    RATE_LIMITED = 429  # too many requests on this connection
    BUSY = 486  # the callee is in another call
    INTERNAL = 500  # a bug in the server; the connection stays usable
    UNAVAILABLE = 502  # the server cannot reach its shared store (Redis); try again later
    UNKNOWN_OP = 501  # op is not one the server knows
    SERVER_FULL = 503  # the service holds as many sessions as allowed

    @property
    def reason(self) -> str:
        return self.name.lower()


class CallType(StrEnum):
    VIDEO = "videocall"
    AUDIO = "audiocall"
    SIP = "sipcall"  # to or from a SIP phone through the server's SIP gateway (audio)


class Track(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class EndReason(StrEnum):
    """Why a call ended; both sides are told the same reason."""

    HANGUP = "hangup"
    DECLINED = "declined"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CANCELLED = "cancelled"
    UNAVAILABLE = "unavailable"
    CONNECTION_LOST = "connection_lost"
    MEDIA_FAILED = "media_failed"


class Event(StrEnum):
    """Events pushed by the server (names follow the SDK's `*_EVENT`s)."""

    RINGBACK = "RINGBACK"
    RINGING = "RINGING"
    ANSWERED = "ANSWERED"
    CONNECTED = "CONNECTED"
    LEAVE = "LEAVE"
    CANCEL = "CANCEL"
    MUTE = "MUTE"
    UNMUTE = "UNMUTE"
    RECORDING = "RECORDING"
    KICKOUT = "KICKOUT"  # this connection lost its session to a resume on another one
    MEDIA_RESTART = "MEDIA_RESTART"  # the peer sent media_restart (relayed as is)


class ProtocolError(Exception):
    """A frame that does not follow the protocol; `code` says how."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


# -- field checks -------------------------------------------------------------


def _str(fields: dict[str, Any], name: str, *, limit: int, required: bool = True) -> str | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise ProtocolError(f"missing field '{name}'")
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"field '{name}' must be a string")
    if len(value) > limit:
        raise ProtocolError(f"field '{name}' is longer than {limit} characters")
    return value


def _bool(fields: dict[str, Any], name: str, default: bool = False, required: bool = False) -> bool:
    if required and name not in fields:
        raise ProtocolError(f"missing field '{name}'")
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"field '{name}' must be true or false")
    return value


def _enum(fields: dict[str, Any], name: str, enum: type[Enum], required: bool = True) -> Any:
    raw = _str(fields, name, limit=32, required=required)
    if raw is None:
        return None
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise ProtocolError(f"field '{name}' must be one of: {allowed}") from None


def check_user_id(user_id: str) -> str | None:
    """Why `user_id` is not acceptable, or None when it is."""
    if not user_id:
        return "user id is empty"
    if len(user_id) > MAX_USER_ID:
        return f"user id is longer than {MAX_USER_ID} characters"
    if not USER_ID_RE.fullmatch(user_id):  # not .match: "$" also matches before a final "\n"
        return (
            "user id may hold letters, digits and _ . @ + - and must start with a letter or digit"
        )
    return None


def is_sip_uri(peer: str) -> bool:
    """Whether a callee or caller names a SIP address rather than a user id."""
    return peer[:4].lower() == "sip:" or peer[:5].lower() == "sips:"


def check_sip_uri(uri: str) -> str | None:
    """Why `uri` is not an acceptable SIP address, or None when it is."""
    if len(uri) > MAX_SIP_URI:
        return f"SIP address is longer than {MAX_SIP_URI} characters"
    if uri[:5].lower() == "sips:":
        return "sips: addresses are not supported; use sip:"
    match = SIP_URI_RE.fullmatch(uri)
    if match is None:
        return "SIP address must look like sip:user@host[:port] (no parameters or headers)"
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        return "SIP address has a port outside 1-65535"
    return None


def sip_host(uri: str) -> str:
    """The host part of a valid SIP address, lower case (for domain allow-lists)."""
    match = SIP_URI_RE.fullmatch(uri)
    assert match is not None, uri
    return match["host"].lower()


# -- requests -------------------------------------------------------------------


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


class RestartKind(StrEnum):
    OFFER = "offer"  # the caller's new SDP offer (a fresh peer connection)
    ANSWER = "answer"  # the callee's SDP answer to it
    REQUEST = "request"  # the callee asks the caller to send a new offer


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


class Role(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"


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
        service_id=_str(f, "service_id", limit=MAX_PEER_ID) or "",
        service_key=_str(f, "service_key", limit=1024, required=False),
        token=_str(f, "token", limit=MAX_TOKEN, required=False),
        client=_str(f, "client", limit=128, required=False),
    )


def _parse_create_session(f: dict[str, Any]) -> CreateSession:
    # check_user_id owns the length rule, so an over-long id is INVALID_USER_ID too
    user_id = _str(f, "user_id", limit=1024, required=False)
    if user_id is not None and (why := check_user_id(user_id)):
        raise ProtocolError(why, ErrorCode.INVALID_USER_ID)
    return CreateSession(user_id=user_id, sip_inbound=_bool(f, "sip_inbound"))


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
    return SessionList(limit=limit, after=_str(f, "after", limit=MAX_USER_ID, required=False))


def _parse_offer(f: dict[str, Any]) -> OfferCall:
    return OfferCall(
        call_type=_enum(f, "call_type", CallType),
        callee=_str(f, "callee", limit=MAX_PEER_ID) or "",
        record=_bool(f, "record"),
        sdp=_str(f, "sdp", limit=MAX_SDP) or "",
    )


def _call_id(f: dict[str, Any]) -> str | None:
    return _str(f, "call_id", limit=MAX_CALL_ID, required=False)


def _parse_answer(f: dict[str, Any]) -> AnswerCall:
    return AnswerCall(
        sdp=_str(f, "sdp", limit=MAX_SDP) or "",
        call_type=_enum(f, "call_type", CallType, required=False),
        caller=_str(f, "caller", limit=MAX_PEER_ID, required=False),
        call_id=_call_id(f),
    )


def _parse_media_state(f: dict[str, Any]) -> MediaState:
    state = _str(f, "state", limit=16) or ""
    if state not in ("connected", "failed"):
        raise ProtocolError("field 'state' must be 'connected' or 'failed'")
    return MediaState(state=state, call_id=_call_id(f))


def _parse_media_restart(f: dict[str, Any]) -> MediaRestart:
    kind = _enum(f, "kind", RestartKind)
    sdp = _str(f, "sdp", limit=MAX_SDP, required=kind is not RestartKind.REQUEST)
    if kind is not RestartKind.REQUEST and not (sdp or "").strip():
        raise ProtocolError("field 'sdp' is empty")
    return MediaRestart(
        kind=kind, sdp=sdp if kind is not RestartKind.REQUEST else None, call_id=_call_id(f)
    )


def _parse_mute(f: dict[str, Any], muted: bool) -> SetMute:
    return SetMute(track=_enum(f, "track", Track), muted=muted, call_id=_call_id(f))


def _parse_dtmf(f: dict[str, Any]) -> Dtmf:
    digits = _str(f, "digits", limit=MAX_DTMF) or ""
    if not DTMF_RE.fullmatch(digits):
        raise ProtocolError(f"field 'digits' must be 1 to {MAX_DTMF} of 0-9 * # A-D")
    return Dtmf(digits=digits.upper(), call_id=_call_id(f))


def _parse_resume(f: dict[str, Any]) -> Resume:
    call_id = _call_id(f)
    required = call_id is not None  # describing a call takes all of its fields
    peer = _str(f, "peer", limit=MAX_PEER_ID, required=required)
    if peer is not None and (
        why := check_sip_uri(peer) if is_sip_uri(peer) else check_user_id(peer)
    ):
        raise ProtocolError(f"peer: {why}", ErrorCode.INVALID_USER_ID)
    return Resume(
        resume_token=_str(f, "resume_token", limit=MAX_TOKEN) or "",
        call_id=call_id,
        peer=peer,
        role=_enum(f, "role", Role, required=required),
        call_type=_enum(f, "call_type", CallType, required=required),
        record=_bool(f, "record"),
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
    "recording": lambda f: SetRecording(on=_bool(f, "on", required=True), call_id=_call_id(f)),
    "dtmf": lambda f: _parse_dtmf(f),
    "ping": lambda f: Ping(),
    "resume": _parse_resume,
}
OPS = tuple(_PARSERS)


def decode(text: str | bytes) -> dict[str, Any]:
    """A JSON object from a text frame, or ProtocolError."""
    if isinstance(text, bytes):
        raise ProtocolError("binary frames are not part of the protocol; send JSON text")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame must be a JSON object")
    return obj


def request_id(obj: dict[str, Any]) -> int | None:
    """The request id of a decoded frame if it has a usable one."""
    rid = obj.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**53:
        return rid
    return None


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


# -- server to client -------------------------------------------------------------


def ok(rid: int, **result: Any) -> dict[str, Any]:
    return {"id": rid, "ok": True, "result": result}


def error(rid: int | None, code: ErrorCode, message: str) -> dict[str, Any]:
    return {
        "id": rid,
        "ok": False,
        "error": {"code": int(code), "reason": code.reason, "message": message},
    }


def event(name: Event, **fields: Any) -> dict[str, Any]:
    return {"event": name.value, **fields}


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
