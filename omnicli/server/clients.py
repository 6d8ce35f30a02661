"""One websocket connection of the server: its outbox, bounded in bytes, and closing
it on purpose.

The driver (`server.driver`) reads requests and hands each client the messages routed
to it; a client that does not read them is closed, and what it would not read is
dropped. A close the server decides completes within about 2 x CLOSE_TIMEOUT: the
transport is aborted when the client does not take its messages or the close handshake
in time (`connection.close_or_abort`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection

from omnicli.server import connection as bounded
from omnicli.server.connection import Outbox, close_or_abort
from omnicli.server.ratelimit import TokenBucket
from omnicli.wire import protocol as p

log = logging.getLogger("omnicli.server.driver")

CLOSE_TIMEOUT = 1.0


class Client:
    """One websocket connection and its outbox (bounded in bytes)."""

    def __init__(self, conn: int, ws: ServerConnection, bucket: TokenBucket | None) -> None:
        self.conn = conn
        self.ws = ws
        self.outbox = Outbox(bounded.SEND_QUEUE_BYTES, bounded.READ_PAUSE_BYTES)
        self.bucket = bucket
        self.kicked = False  # closed by the server on purpose: no resume grace
        self.closing = False
        self.failed_hellos = 0
        self.address = getattr(ws, "address", None) or str(ws.remote_address)
        self._closer: asyncio.Future[None] | None = None

    def push(self, message: dict[str, Any]) -> bool:
        return self.closing or self.outbox.put(p.encode(message))

    def deliver(self, message: dict[str, Any], *, close: bool = False) -> None:
        """Queue `message`; close a client that is not reading its messages, and, with
        `close`, one whose session was resumed on another connection, once it is sent."""
        if not self.push(message):
            log.warning("conn %d is not reading its messages: closing it", self.conn)
            self.outbox.clear()  # what it would not read is dropped now
            self.close(p.CLOSE_POLICY, "send queue full")
        elif close:
            self.close(p.CLOSE_KICKED_OUT, "session resumed on another connection", after=True)

    def close(self, code: int, reason: str, *, after: bool = False) -> None:
        """Close on purpose (no resume grace); `after`: once the queue is sent."""
        self.kicked = True
        if self.closing:
            return
        self.closing = True

        async def close() -> None:
            if after:
                self.outbox.finish()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        while len(self.outbox):
                            await asyncio.sleep(0.01)
            await close_or_abort(self.ws, code, reason, CLOSE_TIMEOUT)

        self._closer = asyncio.ensure_future(close())  # held: a task is only weakly kept
