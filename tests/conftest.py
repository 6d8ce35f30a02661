"""Suite-wide: every event an in-process Phone emits must follow docs/events.md, and
every event frame a signaling client receives must parse (wire.messages)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import eventcheck
import pytest

from omnicli.phone.core import Phone
from omnicli.wire import messages
from omnicli.wire.protocol import ProtocolError


@pytest.fixture(autouse=True)
def events_follow_the_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Wrap Phone._emit: a test whose phones emit an undocumented event shape fails."""
    bad: list[str] = []
    emit = Phone._emit

    def checked(self: Phone, event: Any) -> None:
        found = eventcheck.problems(eventcheck.as_json(event))
        if found:
            bad.append(f"{event.name}: {found[:3]}")
        emit(self, event)

    monkeypatch.setattr(Phone, "_emit", checked)
    yield
    assert not bad, f"events off docs/events.md: {bad[:5]}"


@pytest.fixture(autouse=True)
def server_events_parse(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A client drops an event frame it cannot parse; in the tests, that is a failure
    (except where bad frames are the point: the parser's own tests)."""
    if request.module.__name__.endswith("test_messages"):
        yield
        return
    bad: list[str] = []
    parse = messages.parse_event

    def checked(obj: Any) -> messages.ServerEvent:
        try:
            return parse(obj)
        except ProtocolError as exc:
            bad.append(f"{obj.get('event')}: {exc}")
            raise

    monkeypatch.setattr(messages, "parse_event", checked)
    yield
    assert not bad, f"server events the client cannot parse: {bad[:5]}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if eventcheck.SEEN:
        seen = ", ".join(f"{name} {n}" for name, n in sorted(eventcheck.SEEN.items()))
        terminalreporter.write_line(f"events checked against events.schema.json: {seen}")
