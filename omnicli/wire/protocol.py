"""The wire protocol: JSON text frames between `omni` clients and `omni server`.

Pure: stdlib only, no I/O. `docs/protocol.md` is the prose version of this module.

Three kinds of frame:

* request, client to server: ``{"op": "offer_call", "id": 7, ...fields}``
* response, server to client, one per request, echoing its id:
  ``{"id": 7, "ok": true, "result": {...}}`` or
  ``{"id": 7, "ok": false, "error": {"code": 486, "reason": "busy", "message": "..."}}``
* event, pushed by the server: ``{"event": "RINGING", ...fields}``

Each op's body and `parse_request()` are in `wire.requests`; the client's typed reading
of responses and events is `wire.messages`. The first request on a connection must be
`hello` carrying `version`. A client whose
connection dropped sends `hello` and then `resume` (instead of `create_session`) to get
its session, and its call, back.
"""

from __future__ import annotations

import json
import re
from enum import IntEnum, StrEnum
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


class RestartKind(StrEnum):
    OFFER = "offer"  # the caller's new SDP offer (a fresh peer connection)
    ANSWER = "answer"  # the callee's SDP answer to it
    REQUEST = "request"  # the callee asks the caller to send a new offer


class Role(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"


class ProtocolError(Exception):
    """A frame that does not follow the protocol; `code` says how."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


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
