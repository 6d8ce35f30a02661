"""The client's typed reading of server events and results (omnicli.wire.messages)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from omnicli.wire import messages as m
from omnicli.wire.protocol import CallType, EndReason, ProtocolError, Role, Track

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _documented_events() -> list[dict[str, object]]:
    text = DOCS.read_text()
    section = text[text.index("## 4. Events") : text.index("## 5. Error codes")]
    return [json.loads(line) for line in re.findall(r"^\{\"event\".*\}$", section, re.M)]


def test_every_event_example_in_the_protocol_doc_parses():
    """Each §4 example of docs/protocol.md becomes its typed event."""
    examples = _documented_events()
    assert len(examples) == 10
    parsed = [m.parse_event(e) for e in examples]
    kinds = {type(p) for p in parsed}
    assert kinds == {
        m.RingbackEvent,
        m.RingingEvent,
        m.AnsweredEvent,
        m.ConnectedEvent,
        m.EndedEvent,
        m.MuteEvent,
        m.RecordingEvent,
        m.KickoutEvent,
    }


def test_fields_become_enums_and_leave_and_cancel_differ_by_a_flag():
    """call types, end reasons and tracks are enums; LEAVE/CANCEL and MUTE/UNMUTE share a class."""
    ringing = m.parse_event(
        {"event": "RINGING", "call_id": "c", "caller": "a", "call_type": "audiocall", "sdp": "x"}
    )
    assert ringing == m.RingingEvent("c", "a", CallType.AUDIO, False, "x")
    cancel = m.parse_event({"event": "CANCEL", "call_id": "c", "reason": "no_answer", "by": None})
    assert cancel == m.EndedEvent("c", EndReason.NO_ANSWER, None, cancel=True)
    unmute = m.parse_event({"event": "UNMUTE", "call_id": "c", "user_id": "b", "track": "video"})
    assert unmute == m.MuteEvent("c", "b", Track.VIDEO, muted=False)


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "NOPE", "call_id": "c"},
        {"call_id": "c"},
        {"event": "LEAVE", "call_id": "c", "reason": "tired", "by": None},
        {"event": "MUTE", "call_id": "c", "user_id": "b", "track": "smell"},
        {"event": "RINGBACK", "call_id": 5, "callee": "b", "call_type": "videocall"},
        {"event": "ANSWERED", "call_id": "c", "callee": "b"},
        {"event": "RECORDING", "call_id": "c", "user_id": "b", "on": "yes"},
    ],
)
def test_a_frame_off_the_protocol_is_one_protocol_error(frame):
    """Unknown names and values, missing and mistyped fields: ProtocolError, nothing else."""
    with pytest.raises(ProtocolError):
        m.parse_event(frame)


def test_results_parse_into_typed_objects():
    """create_session, session_list, offer_call, leave and resume results."""
    session = m.SessionResult.parse(
        {"session": "s", "user_id": "a", "ice_servers": [{"urls": "turn:x"}], "resume_grace": 6}
    )
    assert session == m.SessionResult("s", "a", ({"urls": "turn:x"},), None, 6.0)
    rows = m.SessionListResult.parse(
        {
            "sessions": [
                {"user_id": "a", "state": "busy", "call_type": "videocall"},
                {"user_id": "b", "state": "idle", "call_type": None},
            ],
            "total": 2,
            "truncated": False,
        }
    )
    assert rows.sessions[0] == m.SessionRow("a", m.Presence.BUSY, CallType.VIDEO)
    assert rows.sessions[1].call_type is None
    assert m.OfferResult.parse({"call_id": "c", "callee_online": True}).callee_online
    assert m.LeaveResult.parse({}) == m.LeaveResult(None, None)
    assert m.LeaveResult.parse({"call_id": "c", "reason": "declined"}).reason is EndReason.DECLINED
    resumed = m.ResumeResult.parse(
        {
            "session": "s",
            "user_id": "a",
            "call": {
                "call_id": "c",
                "state": "answered",
                "peer": "b",
                "role": "caller",
                "call_type": "videocall",
                "record": False,
            },
            "ended": {"call_id": "d", "reason": "hangup", "by": "b"},
        }
    )
    assert resumed.call is not None and resumed.call.role is Role.CALLER
    assert resumed.call.state is m.ServerCallState.ANSWERED
    assert resumed.ended == m.EndedCall("d", EndReason.HANGUP, "b")
    with pytest.raises(ProtocolError):
        m.SessionResult.parse({"session": "s"})


def test_responses_split_into_result_or_refusal():
    """An ok response carries its result; an error one its code, reason and message."""
    assert m.parse_response({"id": 3, "ok": True, "result": {"x": 1}}).result == {"x": 1}
    refused = m.parse_response(
        {"id": 3, "ok": False, "error": {"code": 486, "reason": "busy", "message": "b is busy"}}
    )
    assert refused.error == m.Refused(486, "busy", "b is busy") and refused.result is None
