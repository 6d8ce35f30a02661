"""What the server remembers: presence and call records, and where its messages go.

Plain frozen dataclasses of strings, numbers and enums, so that a store can keep them
anywhere (a dict today, Redis hashes later) and hand back copies. Timers are data: a call's
ring or connect timer is its `deadline`, an away session's grace is its `away_until`.
Messages are addressed to users (`ToUser`), not to sockets, so that the driver can deliver
them locally or route them to the node that holds the user. A unit refuses a request by
raising `Refusal` (the error code and message of the response).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omnicli.wire import protocol as p
from omnicli.wire.protocol import ErrorCode

UserKey = tuple[str, str]  # (service id, user id)
NEVER = float("inf")


class CallState(StrEnum):
    CALLING = "calling"  # callee not online yet: the offer is held
    RINGING = "ringing"
    ANSWERED = "answered"  # SDP answer sent; waiting for both media reports
    CONNECTED = "connected"
    RESUMING = "resuming"  # rebuilt (server restart, Redis emptied): waiting for the other party


@dataclass(frozen=True)
class Presence:
    """One session of a user, online on `node` or away until `away_until`."""

    service_id: str
    user_id: str
    session: str
    node: str  # the server run (boot id) that holds its connection
    away_until: float | None = None  # set while the connection is gone: resume grace
    missed: dict[str, Any] | None = None  # how its call ended while it was away

    @property
    def key(self) -> UserKey:
        return (self.service_id, self.user_id)

    @property
    def away(self) -> bool:
        return self.away_until is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for a store that keeps records outside the process."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Presence:
        return cls(**fields)


@dataclass(frozen=True)
class CallRecord:
    """One call. `rev` counts its writes: a store applies a change only to the revision
    it was computed from (compare and set)."""

    call_id: str
    service_id: str
    caller: str
    callee: str
    call_type: p.CallType
    record: bool
    sdp_offer: str
    state: CallState
    deadline: float  # ring or connect timer; NEVER once connected
    media_up: frozenset[str] = frozenset()  # in RESUMING: who has come back
    started: float = 0.0
    sdp_answer: str = ""  # re-sent to a caller that resumes before it heard ANSWERED
    sip: str = ""  # the party that is a SIP address behind the gateway (caller or callee)
    rev: int = 0

    def other(self, user_id: str) -> str:
        return self.callee if user_id == self.caller else self.caller

    def evolve(self, **changes: Any) -> CallRecord:
        """A copy with `changes`. `dataclasses.replace` runs the frozen `__init__` field by
        field (about 5 us here); copying the dict takes about 1.4 us, and every call
        transition makes one or two copies."""
        assert changes.keys() <= _CALL_FIELDS, changes
        new = object.__new__(CallRecord)
        new.__dict__.update(self.__dict__, **changes)
        return new

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for a store that keeps records outside the process."""
        return {
            **self.__dict__,
            "call_type": self.call_type.value,
            "state": self.state.value,
            "deadline": None if self.deadline == NEVER else self.deadline,
            "media_up": sorted(self.media_up),
        }

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> CallRecord:
        deadline = fields["deadline"]
        return cls(
            **{
                **fields,
                "call_type": p.CallType(fields["call_type"]),
                "state": CallState(fields["state"]),
                "deadline": NEVER if deadline is None else float(deadline),
                "media_up": frozenset(fields["media_up"]),
            }
        )

    @property
    def parties(self) -> tuple[str, str]:
        return (self.caller, self.callee)

    @property
    def ringing(self) -> bool:
        return self.state in (CallState.CALLING, CallState.RINGING)


_CALL_FIELDS = frozenset(CallRecord.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class ToUser:
    """A message for whichever connection holds this user's session. `node`, when known,
    is where that session was when the message was made (a hint that spares the router a
    presence read; not part of the address)."""

    service_id: str
    user_id: str
    node: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ToConn:
    """A message for one connection of this node: a response, or a KICKOUT."""

    conn: int


@dataclass(frozen=True, slots=True)
class ToHolder:
    """A message for the connection node `node` still holds for this user, if any: the
    KICKOUT of a half-open connection whose session was resumed on another node."""

    service_id: str
    user_id: str
    node: str


@dataclass(frozen=True, slots=True)
class ToGateway:
    """An order for the SIP gateway driver (`omnicli.server.sip`), not a client message."""


@dataclass(frozen=True, slots=True)
class Send:
    to: ToUser | ToConn | ToHolder | ToGateway
    message: dict[str, Any]
    close: bool = False  # close the connection after the message (KICKOUT)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A `Send` resolved to a local connection by `Switchboard.route`."""

    conn: int
    message: dict[str, Any]
    close: bool = False


class Refusal(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
