"""Typed events the call-core emits, named after the SDK's `*_EVENT`s.

Pure data. Every event has a `name`, a wall-clock time `at` (seconds since the epoch,
set when it is made) and `as_dict()`, the `--json` form that `docs/events.md` documents
and `omnicli/phone/events.schema.json` checks. Every event of a call carries its
`call_id`. Call types, tracks and end reasons are the wire's enums (they serialize as
their strings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from omnicli.phone.figures import CallFigures
from omnicli.wire.protocol import CallType, EndReason, Track


def _now() -> float:
    return round(time.time(), 3)


@dataclass(frozen=True)
class CallEvent:
    name: ClassVar[str] = "EVENT"
    at: float = field(default_factory=_now, compare=False, kw_only=True)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.as_dict() if isinstance(value, CallFigures) else value
        return out


@dataclass(frozen=True)
class SessionCreated(CallEvent):
    name: ClassVar[str] = "SESSION"
    session: str
    user_id: str


@dataclass(frozen=True)
class Ringback(CallEvent):
    """The offer reached the server; the callee is being rung (or will be on registering)."""

    name: ClassVar[str] = "RINGBACK"
    call_id: str
    callee: str
    call_type: CallType
    record: bool
    callee_online: bool


@dataclass(frozen=True)
class Ringing(CallEvent):
    name: ClassVar[str] = "RINGING"
    call_id: str
    caller: str
    call_type: CallType
    record: bool


@dataclass(frozen=True)
class Answered(CallEvent):
    """The callee answered; media is being connected."""

    name: ClassVar[str] = "ANSWERED"
    call_id: str
    peer: str  # the callee (kept for scripts written before `callee`)
    callee: str = ""


@dataclass(frozen=True)
class Connected(CallEvent):
    name: ClassVar[str] = "CONNECTED"
    call_id: str
    peer: str
    call_type: CallType
    record: bool
    setup_ms: float  # from the answer (ANSWERED at the caller) to CONNECTED, in ms


@dataclass(frozen=True)
class Leave(CallEvent):
    """The call is over, for `reason`; `by` is who ended it (None: the server)."""

    name: ClassVar[str] = "LEAVE"
    call_id: str
    reason: EndReason
    by: str | None
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.summary:  # a call that never connected: an empty summary, same shape
            empty = {"duration_s": 0.0, "reason": self.reason, "received": {}}
            object.__setattr__(self, "summary", empty)


@dataclass(frozen=True)
class Cancel(CallEvent):
    """A call that was ringing here ended before it was answered."""

    name: ClassVar[str] = "CANCEL"
    call_id: str
    reason: EndReason
    by: str | None


@dataclass(frozen=True)
class Mute(CallEvent):
    name: ClassVar[str] = "MUTE"
    user_id: str
    track: Track
    call_id: str = ""


@dataclass(frozen=True)
class Unmute(CallEvent):
    name: ClassVar[str] = "UNMUTE"
    user_id: str
    track: Track
    call_id: str = ""


@dataclass(frozen=True)
class Recording(CallEvent):
    name: ClassVar[str] = "RECORDING"
    user_id: str
    on: bool
    call_id: str = ""


@dataclass(frozen=True)
class Stats(CallEvent):
    """Live quality figures, about once a second while connected."""

    name: ClassVar[str] = "STATS"
    figures: CallFigures
    call_id: str = ""


@dataclass(frozen=True)
class Notice(CallEvent):
    """Something the user should know that is not a call event (a fallback, a warning)."""

    name: ClassVar[str] = "NOTICE"
    text: str


@dataclass(frozen=True)
class ServerLost(CallEvent):
    name: ClassVar[str] = "SERVER_LOST"
    reason: str


@dataclass(frozen=True)
class Reconnecting(CallEvent):
    """The signaling connection dropped; the phone is resuming its session (media goes on)."""

    name: ClassVar[str] = "RECONNECTING"
    reason: str
    grace_s: float  # how long the server keeps the session for us


@dataclass(frozen=True)
class MediaReconnecting(CallEvent):
    """The call's media path died; a new peer connection is being negotiated."""

    name: ClassVar[str] = "MEDIA_RECONNECTING"
    call_id: str
    reason: str
    limit_s: float  # the call ends media_failed if media is not back by then


@dataclass(frozen=True)
class MediaReconnected(CallEvent):
    """Media flows again on a new peer connection, same call."""

    name: ClassVar[str] = "MEDIA_RECONNECTED"
    call_id: str
    gap_ms: float  # from the last packet received on the old path to media on the new
    attempts: int


@dataclass(frozen=True)
class Reconnected(CallEvent):
    """The session (and the call, if any) was resumed on a new signaling connection."""

    name: ClassVar[str] = "RECONNECTED"
    user_id: str
    downtime_ms: float
    attempts: int
    call_id: str | None  # the call that went on, if any
