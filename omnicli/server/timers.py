"""The server's timer task: ring, connect and resume-grace deadlines, and on Redis the
lease reaper.

In memory it sleeps until the switchboard's next deadline or until the driver wakes it
(a request may have set a sooner one). On Redis other nodes set deadlines too (and may
die), so it reads them again every TIMER_POLL s; a deadline this node writes meanwhile
(the store notes the soonest) moves the wake-up without a read, so this node's own timers
fire on time, and the driver's `poke` after a request wakes the task only for that. A
Redis failure is not fatal: the deadlines are data and fire once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from omnicli.server.records import Send
from omnicli.server.redisstore import RedisStoreError
from omnicli.server.switchboard import Switchboard

if TYPE_CHECKING:
    from omnicli.server.cluster import Cluster

log = logging.getLogger("omnicli.server.timers")

POLL = 1.0  # s: on Redis, the timers wait this long after Redis failed them
TIMER_POLL = 0.25  # s: on Redis, the timers read the deadlines other nodes set this often


class Timers:
    """Fires the switchboard's deadlines and hands what they send to `deliver`."""

    def __init__(
        self,
        board: Switchboard,
        cluster: Cluster | None,
        clock: Callable[[], float],
        deliver: Callable[[list[Send]], None],
    ) -> None:
        self.board = board
        self.cluster = cluster
        self.clock = clock
        self.deliver = deliver
        self.wake = asyncio.Event()  # set: something may have moved the next deadline
        self.planned = -math.inf  # on Redis: when the waiting task means to wake up

    def poke(self) -> None:
        """A request or event may have moved the next deadline: wake the task. On Redis only
        a deadline this node wrote sooner than the planned wake-up moves it (`_shared_wait`),
        so the task is not woken for every request (thousands a second under load)."""
        if self.cluster is None or self.cluster.store.written < self.planned:
            self.wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except RedisStoreError as exc:  # the timers are data: they fire once it is back
                log.debug("timers: Redis unreachable: %s", exc)
                await asyncio.sleep(POLL)

    async def step(self) -> None:
        deadline = self.board.next_deadline()
        self.wake.clear()
        delay = None if deadline is None else max(0.0, deadline - self.clock())
        if self.cluster is not None:
            await self._shared_wait(self.cluster, delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wake.wait()
        now = self.clock()
        if self.cluster is not None:
            self.cluster.reap(now)
        self.deliver(self.board.expire(now))

    async def _shared_wait(self, cluster: Cluster, delay: float | None) -> None:
        """On Redis: until the next deadline, TIMER_POLL s at most, or sooner if this node
        writes a sooner one meanwhile."""
        store = cluster.store
        store.written = math.inf  # noted from now on: after the read in `step`
        planned = self.clock() + (TIMER_POLL if delay is None else min(delay, TIMER_POLL))
        try:
            while (left := planned - self.clock()) > 0:
                self.planned = planned
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self.wake.wait()
                self.wake.clear()
                planned = min(planned, store.written)
        finally:
            self.planned = -math.inf
