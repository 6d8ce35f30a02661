"""The --json event stream is an interface: docs/events.md, the shipped schema and the
event classes agree, and every event carries what the doc promises."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import eventcheck
import pytest

from omnicli.phone import events as ev
from omnicli.phone.figures import CallFigures
from omnicli.wire.protocol import CallType, EndReason, Track

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
CLASSES = [c for c in vars(ev).values() if isinstance(c, type) and issubclass(c, ev.CallEvent)]
EVENT_CLASSES = [c for c in CLASSES if c is not ev.CallEvent]

SAMPLES: list[ev.CallEvent] = [
    ev.SessionCreated("s-1", "alice"),
    ev.Ringback("c-1", "bob", CallType.VIDEO, False, True),
    ev.Ringing("c-1", "alice", CallType.AUDIO, True),
    ev.Answered("c-1", "bob", "bob"),
    ev.Connected("c-1", "bob", CallType.VIDEO, False, 120.5),
    ev.Leave(
        "c-1",
        EndReason.HANGUP,
        "alice",
        {"duration_s": 3.0, "reason": "hangup", "avg_rtt_ms": 1.0, "received": {}},
    ),
    ev.Cancel("c-1", EndReason.NO_ANSWER, None),
    ev.Mute("bob", Track.VIDEO, "c-1"),
    ev.Unmute("bob", Track.AUDIO, "c-1"),
    ev.Recording("bob", True, "c-1"),
    ev.Stats(CallFigures(rtt_ms=1.0, fps_in=30.0, width_in=640, height_in=480), "c-1"),
    ev.Notice("camera 0 is busy; sending the test pattern"),
    ev.ServerLost("connection lost (1006)"),
    ev.Reconnecting("connection lost (1011)", 6.0),
    ev.Reconnected("alice", 812.4, 2, "c-1"),
    ev.MediaReconnecting("c-1", "no media for 2.5 s", 15.0),
    ev.MediaReconnected("c-1", 1794.2, 1),
]


def _doc_examples() -> list[dict]:
    return [json.loads(line) for line in re.findall(r"^\{\"event\".*\}$", DOC.read_text(), re.M)]


def test_every_event_class_is_in_the_schema_and_the_doc():
    """No event without a schema entry and a section in docs/events.md, and no stale ones."""
    names = {c.name for c in EVENT_CLASSES}
    schema_names = {k for k in eventcheck.schema()["$defs"] if k.isupper()}
    assert names == schema_names
    documented = set(re.findall(r"^### `([A-Z_]+)`", DOC.read_text(), re.M))
    assert documented == names
    assert {type(s) for s in SAMPLES} == set(EVENT_CLASSES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.name)
def test_each_event_follows_the_schema_with_a_wall_clock_time(event):
    """as_dict() (the --json line) follows the schema and carries `at`, seconds since 1970."""
    obj = eventcheck.as_json(event)
    assert eventcheck.problems(obj) == []
    assert obj["at"] > 1.7e9
    fieldnames = {f.name for f in fields(event)}
    assert "call_id" in fieldnames or event.name in {
        "SESSION",
        "NOTICE",
        "SERVER_LOST",
        "RECONNECTING",
        "RECONNECTED",
    }


def test_every_example_in_the_doc_follows_the_schema():
    """docs/events.md's examples are real: one per event, each valid."""
    examples = _doc_examples()
    assert sorted(e["event"] for e in examples) == sorted(c.name for c in EVENT_CLASSES)
    for example in examples:
        assert eventcheck.problems(example) == [], example["event"]


@pytest.mark.parametrize(
    "bad",
    [
        {"event": "LEAVE", "at": 1.0, "call_id": "c", "reason": "tired", "by": None, "summary": {}},
        {"event": "MUTE", "at": 1.0, "user_id": "b", "track": "video"},  # no call_id
        {"event": "RINGING", "call_id": "c", "caller": "a", "call_type": "videocall"},
        {"event": "WHATEVER", "at": 1.0},
        {"event": "STATS", "at": 1.0, "call_id": "c", "figures": {"rtt_ms": "fast"}},
    ],
)
def test_the_schema_refuses_what_the_doc_does_not_promise(bad):
    """The check can fail: unknown reasons, missing fields, unknown events, wrong types."""
    assert eventcheck.problems(bad) != []
