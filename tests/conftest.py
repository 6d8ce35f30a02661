"""Suite-wide: every event an in-process Phone emits must follow docs/events.md."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import eventcheck
import pytest

from omnicli.phone.core import Phone


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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if eventcheck.SEEN:
        seen = ", ".join(f"{name} {n}" for name, n in sorted(eventcheck.SEEN.items()))
        terminalreporter.write_line(f"events checked against events.schema.json: {seen}")
