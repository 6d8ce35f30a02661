"""Opening the shared Redis for a new server node: its store, the resume-token secret
every node of that Redis shares, and a fresh node id. A Redis that cannot be used is a
`UsageError` (one clear line from `omni server --redis URL`, exit code 2)."""

from __future__ import annotations

import secrets

from omnicli.errors import UsageError
from omnicli.server.redisstore import RedisStore, RedisStoreError


def open_store(url: str, resume_secret: bytes | None) -> tuple[RedisStore, bytes, str]:
    """Connect to Redis for a new node: its store, the resume secret every node of this
    Redis shares (given, or made once and kept in Redis), and a fresh node id."""
    try:
        store = RedisStore.from_url(url)
        store.r.ping()
        if resume_secret is None:
            key = f"{store.prefix}resume_secret"
            store.r.set(key, secrets.token_hex(32), nx=True)
            resume_secret = bytes.fromhex(store.r.get(key))
    except (RedisStoreError, ValueError) as exc:
        raise UsageError(f"cannot use Redis at {url}: {exc}") from None
    return store, resume_secret, secrets.token_hex(6)
