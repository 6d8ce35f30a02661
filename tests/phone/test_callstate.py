"""The phone's pure call state: typed server events and local steps in, actions out.

Plain calls, no event loop, no sockets: each step is given the time it happens at.
"""

from __future__ import annotations

import pytest

from omnicli.errors import UsageError
from omnicli.phone import events as ev
from omnicli.phone.callstate import (
    AcceptAnswer,
    CallMachine,
    CallState,
    Emit,
    EndCall,
    ReportMedia,
    SendLeave,
    SendMutes,
    SessionInfo,
    StartRecording,
    StartStats,
)
from omnicli.wire import messages as m
from omnicli.wire.protocol import CallType, EndReason, Role, Track


def online(user: str = "alice", **kw: bool) -> CallMachine:
    machine = CallMachine(**kw)
    machine.session_started(SessionInfo("s-1", user))
    return machine


def emitted(actions: list) -> list[ev.CallEvent]:
    return [a.event for a in actions if isinstance(a, Emit)]


def ringing(call_id: str = "c-1", caller: str = "bob") -> m.RingingEvent:
    return m.RingingEvent(call_id, caller, CallType.VIDEO, False, "offer-sdp")


def test_a_session_makes_the_phone_idle():
    """offline without a session; SESSION is emitted and the phone is idle."""
    machine = CallMachine()
    assert machine.state is CallState.OFFLINE
    actions = machine.session_started(SessionInfo("s-1", "alice"))
    assert emitted(actions) == [ev.SessionCreated("s-1", "alice")]
    assert machine.state is CallState.IDLE


def test_a_caller_goes_from_calling_to_connected_with_setup_timed_from_the_answer():
    """RINGBACK names the call, ANSWERED starts the answer SDP, CONNECTED starts the stats."""
    machine = online()
    call = machine.place("bob", CallType.VIDEO, False, now=10.0)
    assert machine.state is CallState.CALLING
    rb = machine.receive(m.RingbackEvent("c-1", "bob", CallType.VIDEO, False, True), now=10.1)
    assert emitted(rb) == [ev.Ringback("c-1", "bob", CallType.VIDEO, False, True)]
    assert call.call_id == "c-1"
    answered = machine.receive(m.AnsweredEvent("c-1", "bob", "answer-sdp"), now=12.0)
    assert machine.state is CallState.CONNECTING
    assert answered == [Emit(ev.Answered("c-1", "bob", "bob")), AcceptAnswer(call, "answer-sdp")]
    connected = machine.receive(m.ConnectedEvent("c-1", "bob", CallType.VIDEO, False), now=12.25)
    assert connected == [
        Emit(ev.Connected("c-1", "bob", CallType.VIDEO, False, 250.0)),
        StartStats(call),
    ]
    assert machine.state is CallState.CONNECTED and call.connected_at == 12.25


def test_the_callees_ringing_is_kept_once_and_taken_on_answer():
    """RINGING rings once (a repeat after a resume is silent); answering takes the offer."""
    machine = online("bob")
    first = machine.receive(ringing(caller="alice"), now=1.0)
    assert emitted(first) == [ev.Ringing("c-1", "alice", CallType.VIDEO, False)]
    assert machine.receive(ringing(caller="alice"), now=2.0) == []
    assert machine.state is CallState.RINGING and list(machine.ringing) == ["alice"]
    offer = machine.find_offer("alice")
    assert offer is not None and offer.sdp == "offer-sdp"
    call = machine.take(offer, now=3.0)
    assert machine.ringing == {} and call.role is Role.CALLEE
    assert machine.state is CallState.CONNECTING
    assert machine.answer_sent(call, now=3.5) == [] and call.answered


def test_a_cancel_removes_the_ringing_call_and_says_why():
    """CANCEL for a call ringing here: it rings no more, CANCEL with the reason and who."""
    machine = online("bob")
    machine.receive(ringing(caller="alice"), now=1.0)
    got = machine.receive(m.EndedEvent("c-1", EndReason.CANCELLED, "alice", cancel=True), 2.0)
    assert emitted(got) == [ev.Cancel("c-1", EndReason.CANCELLED, "alice")]
    assert machine.state is CallState.IDLE


def test_a_leave_for_our_call_ends_it_and_one_for_another_is_ignored():
    """LEAVE of the current call asks the driver to end it; a stale call id does nothing."""
    machine = online()
    call = machine.place("bob", CallType.AUDIO, False, now=0.0)
    machine.receive(m.RingbackEvent("c-1", "bob", CallType.AUDIO, False, True), now=0.1)
    assert machine.receive(m.EndedEvent("c-0", EndReason.HANGUP, "bob"), now=1.0) == []
    got = machine.receive(m.EndedEvent("c-1", EndReason.DECLINED, "bob"), now=1.0)
    assert got == [EndCall(call, EndReason.DECLINED, "bob")]
    assert machine.drop(call) and not machine.drop(call)
    assert machine.state is CallState.IDLE


def test_mutes_made_before_the_answer_are_sent_once_answered():
    """The server refuses mute before the answer: the machine holds them back until then."""
    machine = online()
    call = machine.place("bob", CallType.VIDEO, False, now=0.0)
    assert machine.set_muted(Track.VIDEO, True) is False
    machine.receive(m.RingbackEvent("c-1", "bob", CallType.VIDEO, False, True), now=0.1)
    got = machine.receive(m.AnsweredEvent("c-1", "bob", "sdp"), now=1.0)
    assert SendMutes(call, (Track.VIDEO,)) in got
    assert machine.set_muted(Track.VIDEO, False) is True and call.muted == set()


def test_peer_mutes_and_recording_carry_the_call_id():
    """MUTE/UNMUTE/RECORDING of our call become events with its call id; others' are dropped."""
    machine = online()
    machine.place("bob", CallType.VIDEO, False, now=0.0)
    machine.receive(m.RingbackEvent("c-1", "bob", CallType.VIDEO, False, True), now=0.1)
    got = machine.receive(m.MuteEvent("c-1", "bob", Track.AUDIO, muted=True), now=1.0)
    assert emitted(got) == [ev.Mute("bob", Track.AUDIO, "c-1")]
    assert emitted(got)[0].as_dict()["call_id"] == "c-1"
    got = machine.receive(m.RecordingEvent("c-1", "bob", True), now=1.0)
    assert emitted(got) == [ev.Recording("bob", True, "c-1")]
    assert machine.receive(m.MuteEvent("c-9", "eve", Track.AUDIO, muted=False), now=1.0) == []


def test_a_recorded_call_is_recorded_by_its_caller_and_record_all_records_every_call():
    """The caller's record flag, or --record on this phone, start a recording on CONNECTED."""
    machine = online(record_all=True)
    machine.receive(ringing(caller="bob"), now=0.0)
    offer = machine.find_offer(None)
    assert offer is not None
    call = machine.take(offer, now=0.0)
    got = machine.receive(m.ConnectedEvent("c-1", "bob", CallType.VIDEO, False), now=1.0)
    assert StartRecording(call) in got


def test_losing_the_session_drops_ringing_calls_ends_the_call_and_goes_offline():
    """session_lost: CANCEL connection_lost for what rang, the call ends, SERVER_LOST last."""
    machine = online()
    machine.receive(ringing(caller="carol"), now=0.0)
    got = machine.session_lost("server gone")
    assert emitted(got) == [
        ev.Cancel("c-1", EndReason.CONNECTION_LOST, None),
        ev.ServerLost("server gone"),
    ]
    assert machine.state is CallState.OFFLINE and machine.ringing == {}


def _resume_result(call: dict | None = None, ended: dict | None = None) -> m.ResumeResult:
    return m.ResumeResult.parse(
        {"session": "s-2", "user_id": "alice", "call": call, "ended": ended}
    )


def _server_call(state: str) -> dict:
    return {
        "call_id": "c-1",
        "state": state,
        "peer": "bob",
        "role": "caller",
        "call_type": "videocall",
        "record": False,
    }


def _connecting_call(machine: CallMachine):
    call = machine.place("bob", CallType.VIDEO, False, now=0.0)
    machine.receive(m.RingbackEvent("c-1", "bob", CallType.VIDEO, False, True), now=0.1)
    machine.receive(m.AnsweredEvent("c-1", "bob", "sdp"), now=1.0)
    return call


def test_a_resume_acts_on_a_connected_it_missed():
    """A side still connecting whose CONNECTED went out while it was away becomes connected."""
    machine = online()
    call = _connecting_call(machine)
    got = machine.resumed(
        _resume_result(_server_call("connected")),
        media_up=True,
        downtime_ms=10.0,
        attempts=1,
        now=2.0,
    )
    assert emitted(got)[0] == ev.Reconnected("alice", 10.0, 1, "c-1")
    assert ev.Connected("c-1", "bob", CallType.VIDEO, False, 1000.0) in emitted(got)
    assert StartStats(call) in got and machine.state is CallState.CONNECTED
    assert machine.session == SessionInfo("s-2", "alice")


def test_a_resume_reports_media_again_or_ends_a_call_the_server_lost():
    """answered on the server with our media up: media_state again; no call there: it ends."""
    machine = online()
    call = _connecting_call(machine)
    got = machine.resumed(
        _resume_result(_server_call("answered")), media_up=True, downtime_ms=1, attempts=1, now=2
    )
    assert got[-1] == ReportMedia()
    got = machine.resumed(
        _resume_result(None, {"call_id": "c-1", "reason": "hangup", "by": "bob"}),
        media_up=True,
        downtime_ms=1,
        attempts=1,
        now=3,
    )
    assert EndCall(call, EndReason.HANGUP, "bob") in got


def test_a_resume_leaves_a_call_only_the_server_has():
    """The server still has a call this phone does not know: the phone leaves it."""
    machine = online()
    got = machine.resumed(
        _resume_result(_server_call("connected")), media_up=False, downtime_ms=1, attempts=2, now=1
    )
    assert got[-1] == SendLeave("c-1")


def test_local_steps_are_refused_in_the_wrong_state():
    """No call without a session, no second call, no offer while a call rings here."""
    with pytest.raises(UsageError, match="session"):
        CallMachine().need_idle()
    machine = online()
    machine.receive(ringing(caller="bob"), now=0.0)
    with pytest.raises(UsageError, match="ringing"):
        machine.need_free_line()
    with pytest.raises(UsageError, match="not in a call"):
        machine.need_call()
    machine.place("carol", CallType.AUDIO, False, now=0.0)
    with pytest.raises(UsageError, match="already in a call with carol"):
        machine.place("dave", CallType.AUDIO, False, now=0.0)
