"""SeenCall keeps what only the events tell: the peer's mutes, the recording, the figures."""

from __future__ import annotations

from omnicli.phone import events as ev
from omnicli.phone.figures import CallFigures
from omnicli.ui.callseen import SeenCall
from omnicli.wire.protocol import CallType, EndReason, Track


def test_peer_mutes_and_recording_follow_the_events_and_end_with_the_call() -> None:
    """The peer's MUTE counts, my own does not; RECORDING flips; LEAVE forgets it all."""
    seen = SeenCall()
    seen.see(ev.Connected("c1", "bob", CallType.VIDEO, record=True, setup_ms=1.0), me="alice")
    assert seen.recording is True and seen.peer_muted == set()
    seen.see(ev.Mute("alice", Track.AUDIO), me="alice")
    seen.see(ev.Mute("bob", Track.VIDEO), me="alice")
    assert seen.peer_muted == {Track.VIDEO}
    seen.see(ev.Unmute("bob", Track.VIDEO), me="alice")
    seen.see(ev.Recording("bob", on=False), me="alice")
    assert seen.peer_muted == set() and seen.recording is False
    figures = CallFigures()
    seen.see(ev.Stats(figures), me="alice")
    assert seen.figures is figures
    seen.see(ev.Mute("bob", Track.AUDIO), me="alice")
    seen.see(ev.Leave("c1", EndReason.HANGUP, "bob"), me="alice")
    assert (seen.peer_muted, seen.recording, seen.figures) == (set(), False, None)


def test_the_status_of_no_phone_is_offline() -> None:
    """Before the first session there is no phone: the status line says offline."""
    status = SeenCall().status(None)
    assert status.user_id is None and status.call_state == "offline"
