"""The Janus websocket client against a real Janus (in a SipLab namespace)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from janus import Janus, SipLab, unavailable

from omnicli.server.janus import JanusError, JanusEvent, JanusSession


@pytest.fixture
def janus() -> Iterator[Janus]:
    if (why := unavailable()) is not None:
        pytest.skip(why)
    with SipLab() as lab:
        yield lab.start_janus(session_timeout=2)


def test_keepalives_keep_a_session_past_the_gateways_timeout(janus: Janus) -> None:
    """Janus drops a silent session after its timeout (2 s here); keepalives prevent it."""

    async def session_after(keepalive: float) -> bool:
        session = JanusSession(janus.url, keepalive=keepalive)
        await session.open()
        try:
            await asyncio.sleep(6)  # 3x the timeout: Janus checks its sessions every few s
            if session.closed.is_set():
                return False
            await session.attach("janus.plugin.sip", lambda event: None)
            return True
        except JanusError:
            return False
        finally:
            await session.close()

    assert janus.lab.run_inside(session_after(0.5)) is True
    assert janus.lab.run_inside(session_after(60)) is False  # the test can fail


def test_a_gateway_that_is_not_there_is_a_janus_error_at_once(janus: Janus) -> None:
    async def connect() -> float:
        started = time.monotonic()
        with pytest.raises(JanusError, match="cannot reach"):
            await JanusSession(f"ws://{janus.lab.addr}:1").open()
        return time.monotonic() - started

    assert janus.lab.run_inside(connect()) < 1.0


def test_plugin_events_name_their_handle() -> None:
    frame = {
        "janus": "event",
        "session_id": 1,
        "sender": 7,
        "plugindata": {
            "plugin": "janus.plugin.sip",
            "data": {"sip": "event", "result": {"event": "ringing"}},
        },
    }
    event = JanusEvent.parse(frame)
    assert event is not None and (event.handle, event.sip_event) == (7, "ringing")
    up = JanusEvent.parse({"janus": "webrtcup", "session_id": 1, "sender": 7})
    assert up is not None and up.kind == "webrtcup" and up.sip_event is None
    failed = {
        "janus": "event",
        "sender": 7,
        "plugindata": {"data": {"error_code": 449, "error": "x"}},
    }
    assert JanusEvent.parse(failed).error == (449, "x")  # type: ignore[union-attr]
    assert JanusEvent.parse({"janus": "ack", "transaction": "t1"}) is None
