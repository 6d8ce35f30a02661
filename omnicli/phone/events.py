"""Typed events the call-core emits, named after the SDK's `*_EVENT`s.

Pure data. Every event has a `name` and `as_dict()` (the `--json` form).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class CallEvent:
    name: ClassVar[str] = "EVENT"

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.name, **asdict(self)}


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
    call_type: str
    record: bool
    callee_online: bool


@dataclass(frozen=True)
class Ringing(CallEvent):
    name: ClassVar[str] = "RINGING"
    call_id: str
    caller: str
    call_type: str
    record: bool


@dataclass(frozen=True)
class Answered(CallEvent):
    """The callee answered; media is being connected."""

    name: ClassVar[str] = "ANSWERED"
    call_id: str
    peer: str


@dataclass(frozen=True)
class Connected(CallEvent):
    name: ClassVar[str] = "CONNECTED"
    call_id: str
    peer: str
    call_type: str
    record: bool
    setup_ms: float  # from the answer (ANSWERED at the caller) to CONNECTED, in ms


@dataclass(frozen=True)
class Leave(CallEvent):
    """The call is over, for `reason`; `by` is who ended it (None: the server)."""

    name: ClassVar[str] = "LEAVE"
    call_id: str
    reason: str
    by: str | None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cancel(CallEvent):
    """A call that was ringing here ended before it was answered."""

    name: ClassVar[str] = "CANCEL"
    call_id: str
    reason: str
    by: str | None


@dataclass(frozen=True)
class Mute(CallEvent):
    name: ClassVar[str] = "MUTE"
    user_id: str
    track: str


@dataclass(frozen=True)
class Unmute(CallEvent):
    name: ClassVar[str] = "UNMUTE"
    user_id: str
    track: str


@dataclass(frozen=True)
class Recording(CallEvent):
    name: ClassVar[str] = "RECORDING"
    user_id: str
    on: bool


@dataclass(frozen=True)
class Stats(CallEvent):
    """Live quality figures, about once a second while connected."""

    name: ClassVar[str] = "STATS"
    figures: dict[str, Any]


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
