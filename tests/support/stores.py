"""The switchboard's stores, by name, for tests that must hold for every store.

A test takes the `store` fixture (tests/server/conftest.py), which runs it once per
entry here. A store that needs a helper process (Redis) starts it in its factory and
skips with the reason when it cannot.
"""

from __future__ import annotations

from collections.abc import Callable

from omnicli.server.store import MemoryStore, Store

STORES: dict[str, Callable[[], Store]] = {
    "memory": MemoryStore,
}
