"""Plain calls that pause on the event loop: how the switchboard waits for Redis.

The switchboard is written as ordinary synchronous calls (pure, easy to test, the same
over every store). Over Redis each store operation is a network round trip, and a node
that blocked its event loop for each would serve one request at a time, idle while Redis
answers. `run(fn, *args)` runs `fn` in a greenlet; where it reaches `wait(awaitable)` the
greenlet pauses, the loop awaits the awaitable while it serves every other connection (and
their Redis commands go out together, see `redispipe`), and the greenlet resumes with the
result or the exception. This is the pattern SQLAlchemy's asyncio layer uses.

Outside `run` (unit tests, the lease thread, start-up) `pausable()` is False and a store
takes its blocking path. Requests of one connection still run one after another (the
driver awaits each before it reads the next); requests of different connections may now
interleave at a store operation, as requests on two nodes always could: every write is a
compare-and-set in Redis, so an interleaving is a race the store already settles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import greenlet

T = TypeVar("T")


class _Pause:
    """What a paused greenlet hands to `run`: the awaitable to await for it."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class _Runner(greenlet.greenlet):  # type: ignore[misc]  # greenlet is untyped
    """A greenlet started by `run` (only these may pause)."""


def pausable() -> bool:
    """Whether the running code may `wait` (it runs inside `run`)."""
    return isinstance(greenlet.getcurrent(), _Runner)


def wait(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` from synchronous code inside `run`: the loop goes on meanwhile."""
    current = greenlet.getcurrent()
    if not isinstance(current, _Runner):
        raise RuntimeError("suspend.wait outside suspend.run")
    return cast(T, current.parent.switch(_Pause(awaitable)))


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Call `fn(*args)`, letting it `wait` on the loop; its result or its exception."""
    runner = _Runner(fn)
    value = runner.switch(*args)
    while isinstance(value, _Pause):
        try:
            result = await value.awaitable
        except BaseException as exc:  # cancellation too: the code inside unwinds its finally
            value = runner.throw(exc)
        else:
            value = runner.switch(result)
    return cast(T, value)
