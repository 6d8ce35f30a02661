"""What a command knows of its call only from the events it saw (pure).

The `Phone` has no accessor for the peer's mutes, whether the call records or the last
quality figures: the REPL's status line and a one-shot call's "no media" warning keep
them from the MUTE/UNMUTE, RECORDING, CONNECTED, STATS and LEAVE events they are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omnicli.phone import events as ev
from omnicli.phone.callstate import CallState
from omnicli.phone.figures import CallFigures
from omnicli.ui.statusline import Status
from omnicli.wire.protocol import Track


@dataclass
class SeenCall:
    """The peer's mutes, the recording and the last figures of the call, as events said."""

    peer_muted: set[Track] = field(default_factory=set)
    recording: bool = False
    figures: CallFigures | None = None

    def see(self, event: ev.CallEvent, me: str | None) -> None:
        """Take in one event; `me` is this session's user id (its own mutes are not the peer's)."""
        match event:
            case ev.Connected(record=record):
                self.forget()
                self.recording = record
            case ev.Leave() | ev.Cancel():
                self.forget()
            case ev.Mute(user_id=user, track=track) if user != me:
                self.peer_muted.add(track)
            case ev.Unmute(user_id=user, track=track) if user != me:
                self.peer_muted.discard(track)
            case ev.Recording(on=on):
                self.recording = on
            case ev.Stats(figures=figures):
                self.figures = figures

    def forget(self) -> None:
        """No call: nothing muted, nothing recorded, no figures."""
        self.peer_muted.clear()
        self.recording, self.figures = False, None

    def status(self, phone: Any) -> Status:
        """The status line's facts: the phone's (None: no session yet) and these."""
        if phone is None:
            return Status(None, CallState.OFFLINE)
        call = phone.call
        return Status(
            user_id=phone.session.user_id if phone.session else None,
            call_state=phone.call_state,
            peer=call.peer if call else None,
            muted=phone.muted,
            peer_muted=frozenset(self.peer_muted),
            recording=self.recording,
            ringing_from=tuple(phone.ringing_from),
            call_type=call.call_type if call else None,
            figures=self.figures if call else None,
            media_reconnecting=phone.media_reconnecting,
        )
