"""The phone's call state, pure: typed server events and local steps in, actions out.

`CallMachine` is the client's counterpart of the server's switchboard. It holds the
session, the current call and the calls ringing here; it never awaits, opens nothing
and reads no clock (every step that needs the time is given `now`). Each step returns
the actions the driver (`omnicli.phone.core.Phone`) must take, in order: events to
emit, requests to send, media work to start. So what a call does when it is declined,
answered or resumed can be read here and tested with plain calls
(`tests/phone/test_callstate.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from omnicli.errors import UsageError
from omnicli.phone import events as ev
from omnicli.phone.reconcile import LocalCall, Plan, plan
from omnicli.wire import messages as m
from omnicli.wire.protocol import CallType, EndReason, Role, Track


class CallState(StrEnum):
    """Where the phone is; a call in progress is one of the last three."""

    OFFLINE = "offline"  # no session
    IDLE = "idle"
    RINGING = "ringing"  # a call rings here
    CALLING = "calling"  # our offer is out, not answered yet
    CONNECTING = "connecting"  # answered; media is being connected
    CONNECTED = "connected"


@dataclass(frozen=True)
class SessionInfo:
    session: str
    user_id: str


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    peer: str
    call_type: CallType
    role: Role


@dataclass(frozen=True)
class Offer:
    """A call ringing here, as RINGING described it."""

    call_id: str
    caller: str
    call_type: CallType
    record: bool
    sdp: str


@dataclass(eq=False)
class Call:
    """The phone's call; only the machine changes it (identity is the call)."""

    peer: str
    role: Role
    call_type: CallType
    record: bool
    call_id: str | None = None
    state: CallState = CallState.CALLING
    started: float = 0.0  # setup is timed from here (the answer)
    connected_at: float | None = None
    answered: bool = False  # the server has it answered: mute/unmute may be sent
    muted: set[Track] = field(default_factory=set)

    def local(self, media_up: bool) -> LocalCall:
        return LocalCall(
            self.call_id, self.state, self.peer, self.role, self.call_type, self.record, media_up
        )


# -- actions: what the driver does for a step -------------------------------------------


@dataclass(frozen=True)
class Emit:
    event: ev.CallEvent


@dataclass(frozen=True)
class AcceptAnswer:
    """Give the callee's SDP answer to the call's peer connection, then watch its media."""

    call: Call
    sdp: str


@dataclass(frozen=True)
class SendMutes:
    """Tell the server of mutes made before the call was answered."""

    call: Call
    tracks: tuple[Track, ...]


@dataclass(frozen=True)
class StartStats:
    call: Call


@dataclass(frozen=True)
class StartRecording:
    call: Call


@dataclass(frozen=True)
class EndCall:
    """Stop the call's media and emit LEAVE with its summary."""

    call: Call
    reason: EndReason
    by: str | None


@dataclass(frozen=True)
class SendLeave:
    call_id: str


@dataclass(frozen=True)
class ReportMedia:
    """Send `media_state connected` again (it was lost while we were away)."""


Action = (
    Emit
    | AcceptAnswer
    | SendMutes
    | StartStats
    | StartRecording
    | EndCall
    | SendLeave
    | ReportMedia
)


class CallMachine:
    """One phone's session, call and ringing calls."""

    def __init__(self, *, record_all: bool = False) -> None:
        self.record_all = record_all  # record every connected call here
        self.session: SessionInfo | None = None
        self.call: Call | None = None
        self.ringing: dict[str, Offer] = {}  # by caller

    @property
    def state(self) -> CallState:
        if self.session is None:
            return CallState.OFFLINE
        if self.call is not None:
            return self.call.state
        return CallState.RINGING if self.ringing else CallState.IDLE

    @property
    def info(self) -> CallInfo | None:
        c = self.call
        if c is None or c.call_id is None:
            return None
        return CallInfo(c.call_id, c.peer, c.call_type, c.role)

    @property
    def me(self) -> str | None:
        return self.session.user_id if self.session else None

    # -- checks before local steps ------------------------------------------------------

    def need_idle(self) -> None:
        if self.session is None:
            raise UsageError("create a session first")
        if self.call is not None:
            raise UsageError(f"already in a call with {self.call.peer}; hang up first")

    def need_call(self) -> Call:
        if self.call is None:
            raise UsageError("not in a call")
        return self.call

    def need_free_line(self) -> None:
        """An offer may go out: idle, and nothing ringing here."""
        self.need_idle()
        if self.ringing:
            who = next(iter(self.ringing))
            raise UsageError(f"a call from {who} is ringing: answer or reject it first")

    def find_offer(self, caller: str | None) -> Offer | None:
        for offer in self.ringing.values():
            if caller is None or offer.caller == caller:
                return offer
        return None

    # -- local steps --------------------------------------------------------------------

    def session_started(self, session: SessionInfo) -> list[Action]:
        self.session = session
        return [Emit(ev.SessionCreated(session.session, session.user_id))]

    def place(self, callee: str, call_type: CallType, record: bool, now: float) -> Call:
        """Our offer goes out: the phone is calling `callee`."""
        self.need_idle()
        self.call = Call(callee, Role.CALLER, call_type, record, started=now)
        return self.call

    def offer_accepted(self, call: Call, result: m.OfferResult) -> None:
        call.call_id = call.call_id or result.call_id

    def take(self, offer: Offer, now: float) -> Call:
        """We answer `offer`: it rings no more and is our call, connecting."""
        self.need_idle()
        self.ringing.pop(offer.caller, None)
        self.call = Call(
            offer.caller,
            Role.CALLEE,
            offer.call_type,
            offer.record,
            call_id=offer.call_id,
            state=CallState.CONNECTING,
            started=now,
        )
        return self.call

    def answer_sent(self, call: Call, now: float) -> list[Action]:
        """The server took our answer: setup is timed from now."""
        call.started = now
        return self._answered(call)

    def drop(self, call: Call) -> bool:
        """`call` is over here; False if it was not the current call (already ended)."""
        if self.call is not call:
            return False
        self.call = None
        return True

    def set_muted(self, track: Track, muted: bool) -> bool:
        """Mute or unmute our `track`; True if the server must be told now."""
        call = self.need_call()
        (call.muted.add if muted else call.muted.discard)(track)
        return call.answered  # before the answer the server refuses it: sent once answered

    def left(self, reason: EndReason) -> list[Action]:
        """We left (`leave` answered with `reason`): end our call or decline what rings."""
        me = self.me
        if self.call is not None:
            return [EndCall(self.call, reason, me)]
        out: list[Action] = []
        for offer in list(self.ringing.values()):
            self.ringing.pop(offer.caller, None)
            out.append(Emit(ev.Leave(offer.call_id, reason, me)))
        return out

    # -- server events ------------------------------------------------------------------

    def receive(self, event: m.ServerEvent, now: float) -> list[Action]:
        """What a pushed server event does to the phone."""
        call = self.call
        ours = call is not None and getattr(event, "call_id", None) in (call.call_id, None)
        match event:
            case m.RingbackEvent() if call is not None and call.role is Role.CALLER:
                call.call_id = call.call_id or event.call_id
                return [
                    Emit(
                        ev.Ringback(
                            event.call_id,
                            event.callee,
                            event.call_type,
                            event.record,
                            event.callee_online,
                        )
                    )
                ]
            case m.RingingEvent():
                offer = Offer(event.call_id, event.caller, event.call_type, event.record, event.sdp)
                known = self.ringing.get(offer.caller)
                self.ringing[offer.caller] = offer
                if known is not None and known.call_id == offer.call_id:
                    return []  # rung again after a resume
                return [
                    Emit(ev.Ringing(offer.call_id, offer.caller, offer.call_type, offer.record))
                ]
            case m.AnsweredEvent() if ours and call is not None:
                call.state = CallState.CONNECTING
                call.started = now  # setup is timed from the answer, not the ring
                return [
                    *self._answered(call),
                    Emit(ev.Answered(event.call_id, call.peer, event.callee)),
                    AcceptAnswer(call, event.sdp),
                ]
            case m.ConnectedEvent() if ours and call is not None:
                return self._connected(call, event.record, now)
            case m.EndedEvent() if ours and call is not None:
                return [EndCall(call, event.reason, event.by)]
            case m.EndedEvent(cancel=True):
                out: list[Action] = []
                for caller, offer in list(self.ringing.items()):
                    if offer.call_id == event.call_id:
                        del self.ringing[caller]
                        out.append(Emit(ev.Cancel(offer.call_id, event.reason, event.by)))
                return out
            case m.MuteEvent() if ours:
                cls = ev.Mute if event.muted else ev.Unmute
                return [Emit(cls(event.user_id, event.track, event.call_id))]
            case m.RecordingEvent() if ours:
                return [Emit(ev.Recording(event.user_id, event.on, event.call_id))]
        return []  # not for the current call, or KICKOUT (the close that follows says it)

    def _answered(self, call: Call) -> list[Action]:
        call.answered = True
        if not call.muted:
            return []
        return [SendMutes(call, tuple(sorted(call.muted)))]

    def _connected(self, call: Call, record: bool, now: float) -> list[Action]:
        call.state = CallState.CONNECTED
        call.connected_at = now
        setup = round((now - call.started) * 1000, 1)
        out: list[Action] = [
            Emit(ev.Connected(call.call_id or "", call.peer, call.call_type, record, setup)),
            StartStats(call),
        ]
        if (call.record and call.role is Role.CALLER) or self.record_all:
            out.append(StartRecording(call))
        return out

    # -- the signaling connection -------------------------------------------------------

    def session_lost(self, reason: str) -> list[Action]:
        """The session is gone: drop ringing calls, go offline, end the call, SERVER_LOST."""
        out: list[Action] = [
            Emit(ev.Cancel(o.call_id, EndReason.CONNECTION_LOST, None))
            for o in self.ringing.values()
        ]
        self.ringing.clear()
        self.session = None
        if self.call is not None:
            out.append(EndCall(self.call, EndReason.CONNECTION_LOST, None))
        out.append(Emit(ev.ServerLost(reason)))
        return out

    def resumed(
        self,
        result: m.ResumeResult,
        *,
        media_up: bool,
        downtime_ms: float,
        attempts: int,
        now: float,
    ) -> list[Action]:
        """The session is back (`resume` answered `result`): reconcile the call."""
        s = result.session
        self.session = SessionInfo(s.session, s.user_id)
        call = self.call
        todo: Plan = plan(None if call is None else call.local(media_up), result)
        out: list[Action] = [Emit(ev.Reconnected(s.user_id, downtime_ms, attempts, todo.continues))]
        server = result.call
        for offer in list(self.ringing.values()):
            if server is None or offer.call_id != server.call_id:
                self.ringing.pop(offer.caller, None)
                out.append(Emit(ev.Cancel(offer.call_id, EndReason.CONNECTION_LOST, None)))
        if todo.end_reason is not None and call is not None:
            out.append(EndCall(call, todo.end_reason, todo.end_by))
        elif (
            todo.continues is not None
            and call is not None
            and server is not None
            and call.state is not CallState.CONNECTED
            and server.state is m.ServerCallState.CONNECTED
        ):  # CONNECTED was sent while we were away: act on it as if it had just arrived
            out.extend(self._connected(call, server.record, now))
        if todo.leave_call_id is not None:
            out.append(SendLeave(todo.leave_call_id))
        if todo.report_media:
            out.append(ReportMedia())
        return out


__all__ = [
    "AcceptAnswer",
    "Action",
    "Call",
    "CallInfo",
    "CallMachine",
    "CallState",
    "Emit",
    "EndCall",
    "Offer",
    "ReportMedia",
    "SendLeave",
    "SendMutes",
    "SessionInfo",
    "StartRecording",
    "StartStats",
]
