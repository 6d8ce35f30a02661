"""The media reconnection events as people and scripts see them: one line each, the JSON form,
and the status line while media is being re-established."""

from __future__ import annotations

from omnicli.phone import events as ev
from omnicli.phone.callstate import CallState
from omnicli.ui.render import describe
from omnicli.ui.statusline import Status, status_lines


def test_lines_and_json() -> None:
    lost = ev.MediaReconnecting("c-1", "address 10.77.0.2 went away", 15.0)
    back = ev.MediaReconnected("c-1", 1840.0, 2)
    assert describe(lost) == (
        "media lost (address 10.77.0.2 went away); reconnecting media for up to 15 s"
    )
    assert describe(back) == "media back after a 1.8 s gap (2 attempts)"
    assert {k: v for k, v in back.as_dict().items() if k != "at"} == {
        "event": "MEDIA_RECONNECTED", "call_id": "c-1", "gap_ms": 1840.0, "attempts": 2,
    }  # fmt: skip
    assert lost.as_dict()["event"] == "MEDIA_RECONNECTING"


def test_status_line_says_reconnecting_media() -> None:
    status = Status("alice", CallState.CONNECTED, peer="bob", media_reconnecting=True)
    line = status_lines(status)[0]
    assert line.startswith("alice · connected with bob · reconnecting media · you: audio on")
