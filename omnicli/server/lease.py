"""This node's lease in Redis, renewed from a thread of its own.

Other nodes count a node dead when its lease is older than `LEASE_TTL` (3 s) and reap it:
its sessions turn away and end when the resume grace runs out. A node that is alive but
busy (accepting thousands of connections, a long scrape) may leave its event loop for
longer than that; renewed on the loop, its lease would then run out and a live node's
sessions would be reaped (measured: 20,000 idle sessions on two nodes lost 18,000 this
way). So a thread writes the lease every `LEASE_RENEW` s while the event loop has beaten
(`beat`, once a renewal period) within `stall_limit` s: a busy loop keeps its lease, a
hung one (or a dead process) loses it. What follows a renewal on the loop (taking back
sessions reaped meanwhile, registering again after a Redis restart) is the cluster's,
from `take`. `reap_dead` is what a live node does to the dead ones (the cluster calls it
at most once a second).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from omnicli.server.redisstore import RedisStore, RedisStoreError

LEASE_RENEW = 1.0  # s between lease renewals
LEASE_TTL = 3.0  # s without renewal before a node counts as dead
STALL_LIMIT = 30.0  # s the event loop may not beat before the lease is let run out

log = logging.getLogger("omnicli.server.cluster")  # the reaper's lines, as before


class LeaseStats(Protocol):
    redis_errors: int
    redis_seconds: float


class LeaseKeeper:
    """Writes `node`'s lease (`write`: on any thread) and, once started, from a thread."""

    def __init__(
        self, store: RedisStore, node: str, wall: Callable[[], float], stats: LeaseStats
    ) -> None:
        self.store = store
        self.node = node
        self.wall = wall
        self.stats = stats
        self.stall_limit = STALL_LIMIT
        self.renewed = -math.inf  # monotonic time of the last renewal that reached Redis
        self._beat = time.monotonic()
        self._lock = threading.Lock()
        self._lost = False  # a renewal found the lease gone (reaped) since the last `take`
        self._error: Exception | None = None  # the last renewal failed with this
        self._tried = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self) -> None:
        """One renewal: the lease's time is now; note whether it had been dropped."""
        start = time.perf_counter()
        try:
            dropped = self.store.renew_lease(self.node, self.wall())
        except RedisStoreError as exc:
            with self._lock:
                self.stats.redis_errors += 1
                self._error, self._tried = exc, True
            return
        with self._lock:
            self._lost |= dropped and self.renewed > -math.inf
            self.renewed = time.monotonic()
            self.stats.redis_seconds = time.perf_counter() - start
            self._error, self._tried = None, True

    def beat(self) -> None:
        """The event loop runs (the thread renews while it beat within `stall_limit` s)."""
        self._beat = time.monotonic()

    def take(self) -> tuple[Exception | None, bool] | None:
        """None before any renewal; else the last renewal's error (None: it reached Redis)
        and whether the lease had been dropped since the last `take`."""
        with self._lock:
            if not self._tried:
                return None
            lost, self._lost = self._lost, False
            return self._error, lost

    def start(self) -> None:
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="omni-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (a blocking join: at most one Redis timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(LEASE_RENEW):
            if time.monotonic() - self._beat <= self.stall_limit:
                self.write()


def reap_dead(store: RedisStore, node: str, now: float, grace: float) -> None:
    """Turn the sessions of the nodes (other than `node`) whose lease ran out into away
    ones, away until their last renewal + `grace`; drop a lease once none is left."""
    for dead, renewed in store.leases().items():
        if dead == node or now - renewed <= LEASE_TTL:
            continue
        online = 0
        for service_id in store.services(fresh=True):  # all, or some stay held
            for presence in store.held_by(service_id, dead):
                if presence.node != dead or presence.away:
                    continue
                online += 1
                away = replace(presence, away_until=renewed + grace)
                if store.swap_presence(presence, away):
                    log.info("%s: node %s is gone; away until it resumes", presence.user_id, dead)
                    online -= 1
        if online == 0:
            log.info(
                "node %s: lease ran out %.1f s ago; its sessions are away", dead, now - renewed
            )
            store.drop_lease(dead)
