"""suspend: synchronous code that pauses on the event loop while other tasks run."""

from __future__ import annotations

import asyncio

import pytest

from omnicli.server import suspend


async def test_a_paused_call_lets_other_tasks_run_and_resumes_with_the_result() -> None:
    order: list[str] = []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def slow() -> int:
        order.append("slow starts")
        value = suspend.wait(gate)  # plain call, no await
        order.append("slow resumes")
        return value * 2

    async def other() -> None:
        order.append("other runs")
        gate.set_result(21)

    result, _ = await asyncio.gather(suspend.run(slow), other())
    assert result == 42
    assert order == ["slow starts", "other runs", "slow resumes"]


async def test_many_paused_calls_interleave_and_each_gets_its_own_reply() -> None:
    def echo(n: int) -> list[int]:
        got = []
        for k in range(3):
            got.append(suspend.wait(asyncio.sleep(0.001 * ((n + k) % 3), result=n * 10 + k)))
        return got

    results = await asyncio.gather(*(suspend.run(echo, n) for n in range(20)))
    assert results == [[n * 10, n * 10 + 1, n * 10 + 2] for n in range(20)]


async def test_an_exception_from_the_awaitable_is_raised_inside_and_can_be_caught() -> None:
    async def boom() -> None:
        raise ConnectionError("redis gone")

    def caller() -> str:
        try:
            suspend.wait(boom())
        except ConnectionError as exc:
            return f"caught {exc}"
        return "not raised"

    assert await suspend.run(caller) == "caught redis gone"


async def test_an_exception_left_uncaught_inside_reaches_the_awaiting_task() -> None:
    def caller() -> None:
        suspend.wait(asyncio.sleep(0))
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        await suspend.run(caller)


async def test_cancelling_the_task_unwinds_the_paused_code() -> None:
    unwound: list[str] = []

    def forever() -> None:
        try:
            suspend.wait(asyncio.sleep(3600))
        finally:
            unwound.append("finally ran")

    task = asyncio.create_task(suspend.run(forever))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert unwound == ["finally ran"]


async def test_outside_run_nothing_may_pause() -> None:
    assert not suspend.pausable()
    assert await suspend.run(suspend.pausable)
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="outside"):
        suspend.wait(coro)
    coro.close()
