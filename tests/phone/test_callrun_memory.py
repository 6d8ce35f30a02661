"""A call hands the allocator's free memory back once a minute (media/allocator.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from phones import eventually

from omnicli.media import allocator
from omnicli.phone import events as ev
from omnicli.phone.callrun import CallRun
from omnicli.phone.callstate import Call
from omnicli.phone.figures import CallFigures
from omnicli.wire.protocol import CallType, Role


def _run(emitted: list[ev.CallEvent]) -> CallRun:
    async def request(op: str, **fields: Any) -> dict[str, Any]:
        return {}

    call = Call("bob", Role.CALLER, CallType.VIDEO, record=False, call_id="c1")
    media: Any = SimpleNamespace(muted=set())
    run = CallRun(call, media, request, emitted.append)

    async def figures() -> CallFigures:
        return CallFigures()

    run.figures = figures  # type: ignore[method-assign]
    return run


async def test_stats_sampling_trims_the_allocator_every_trim_every_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[float] = []
    monkeypatch.setattr(allocator, "TRIM_EVERY", 0.2)
    monkeypatch.setattr(allocator, "trim", lambda: trims.append(1.0) is None)
    emitted: list[ev.CallEvent] = []
    task = asyncio.create_task(_run(emitted).sample_stats(interval=0.02))
    try:
        await eventually(lambda: len(trims) >= 2)
    finally:
        task.cancel()
    stats = sum(isinstance(e, ev.Stats) for e in emitted)
    assert stats >= 2 * len(trims)  # trims are rarer than STATS: one per TRIM_EVERY


def test_a_call_limits_the_allocator_arenas(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    monkeypatch.setattr(allocator, "limit_arenas", lambda arenas=2: asked.append(arenas) or True)
    _run([])
    assert asked == [2]
