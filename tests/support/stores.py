"""The switchboard's stores, by name, for tests that must hold for every store.

A test takes the `store` fixture (tests/server/conftest.py), which runs it once per
entry here. A store that needs a helper process (Redis) starts it in its factory (one
redis-server per test session, emptied for each store) and skips with the reason when it
cannot.

`redis` is the Redis store as the lease thread, the timers and unit tests use it (redis-py,
blocking); `redis-piped` is the same store as a serving node's requests use it: every
operation inside `suspend.run`, its commands on the pipelined connection (`RedisPipe`),
here on a private event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from redisd import RedisServer

from omnicli.server import suspend
from omnicli.server.records import CallRecord, CallState
from omnicli.server.redispipe import RedisPipe
from omnicli.server.redisstore import RedisStore
from omnicli.server.store import MemoryStore, Store
from omnicli.wire.protocol import CallType

_redis: RedisServer | None = None


def shared_redis() -> RedisServer:
    """One private redis-server for the whole test session (started on first use)."""
    global _redis
    if _redis is None:
        _redis = RedisServer().start()
        atexit.register(_redis.close)
    return _redis


def redis_store() -> RedisStore:
    store = RedisStore.from_url(shared_redis().url)
    store.r.flushdb()
    return store


class PipedStore:
    """A `RedisStore` whose operations each run as a node runs them (see the docstring)."""

    loop: asyncio.AbstractEventLoop | None = None
    pipe: RedisPipe | None = None

    def __init__(self) -> None:
        if PipedStore.loop is None:
            PipedStore.loop = asyncio.new_event_loop()
            PipedStore.pipe = RedisPipe(shared_redis().url)
            atexit.register(PipedStore.loop.close)
        self.inner = redis_store()
        self.inner.pipe = PipedStore.pipe

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if not callable(value) or name in ("presences", "calls"):  # iterators: blocking
            return value

        @functools.wraps(value)
        def piped(*args: Any, **kwargs: Any) -> Any:
            assert PipedStore.loop is not None
            call = functools.partial(value, *args, **kwargs)
            return PipedStore.loop.run_until_complete(suspend.run(call))

        return piped


def piped_store() -> Store:
    return PipedStore()  # type: ignore[return-value]  # a proxy of RedisStore


def alice_calls_bob(**changes: Any) -> CallRecord:
    """A call record for store-level tests: alice's video call to bob, ringing, unless
    `changes` say otherwise."""
    call = CallRecord(
        call_id="c-1",
        service_id="dev",
        caller="alice",
        callee="bob",
        call_type=CallType.VIDEO,
        record=False,
        sdp_offer="v=0",
        state=CallState.RINGING,
        deadline=60.0,
    )
    return dataclasses.replace(call, **changes)


STORES: dict[str, Callable[[], Store]] = {
    "memory": MemoryStore,
    "redis": redis_store,
    "redis-piped": piped_store,
}
