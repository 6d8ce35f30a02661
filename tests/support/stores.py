"""The switchboard's stores, by name, for tests that must hold for every store.

A test takes the `store` fixture (tests/server/conftest.py), which runs it once per
entry here. A store that needs a helper process (Redis) starts it in its factory (one
redis-server per test session, emptied for each store) and skips with the reason when it
cannot.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable

from redisd import RedisServer

from omnicli.server.redisstore import RedisStore
from omnicli.server.store import MemoryStore, Store

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


STORES: dict[str, Callable[[], Store]] = {
    "memory": MemoryStore,
    "redis": redis_store,
}
