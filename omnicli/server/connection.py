"""One client connection with bounded buffers: what a client can make the server hold.

websockets answers every ping frame with a pong written straight to the transport,
whether or not the client reads, and its `close()` waits for the transport to drain
before its close timeout even starts: a client that floods pings and never reads
makes the transport's write buffer grow without end, and a close of such a
connection never completes. `BoundedConnection` closes both holes:

- when the transport's write buffer passes websockets' `write_limit` (asyncio calls
  `pause_writing`), the connection stops *reading* too, so no more pongs are made
  until the client drains; the buffer stays within about the limit plus one read;
- a connection whose writes stay paused for `write_stall` seconds is aborted
  (`transport.abort()`): a client that does not read is gone, whatever the close
  handshake is doing;
- `close_or_abort()` is the one way the server closes a connection on purpose: the
  close handshake, and an abort when it does not finish in time.

`Outbox` is the per-connection queue of messages the server has not written yet,
bounded in bytes. The driver reads a client's next request only while the outbox is
under `READ_PAUSE_BYTES`, so a client that sends faster than it reads is slowed down
(and still gets one response per request); only events can push it past
`SEND_QUEUE_BYTES`, which closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import Any, ClassVar, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("omnicli.server.driver")

WRITE_STALL = 8.0  # s a connection's writes may stay paused before it is aborted
SEND_QUEUE_BYTES = 1 << 20  # unsent messages one connection may hold; then 1008
READ_PAUSE_BYTES = 64 << 10  # stop reading a client's requests while this much is unsent
SOCKET_SEND_BUFFER = 256 << 10  # the kernel's send buffer per connection (no autotuning)


class Gatekeeper(Protocol):
    """What the server does when a TCP connection comes and goes."""

    def opened(self, conn: BoundedConnection) -> bool: ...  # False: refused

    def closed(self, conn: BoundedConnection) -> None: ...


class BoundedConnection(ServerConnection):
    """websockets' server connection with a bounded write buffer and a stall deadline."""

    gatekeeper: ClassVar[Gatekeeper | None] = None  # set on a per-server subclass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.address = _address(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # what a client that does not read holds in the kernel, too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        self.admitted = False
        self.stalled = False  # aborted because its writes stayed paused
        self._paused_by: set[str] = set()
        self._stall: asyncio.TimerHandle | None = None
        # websockets pauses reading when its queue of received frames is full; so do we
        # when the write buffer is: reading resumes only when neither holds it
        self.recv_messages.pause = lambda: self._pause_reading("queue")
        self.recv_messages.resume = lambda: self._resume_reading("queue")
        if self.gatekeeper is not None:
            self.admitted = self.gatekeeper.opened(self)
            if not self.admitted:
                self.transport.abort()
        else:
            self.admitted = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_stall()
        super().connection_lost(exc)
        if self.gatekeeper is not None and self.admitted:
            self.gatekeeper.closed(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._pause_reading("write")
        self._cancel_stall()
        self._stall = self.loop.call_later(WRITE_STALL, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall()
        self._resume_reading("write")

    def abort(self) -> None:
        self.transport.abort()

    def _stalled(self) -> None:
        self._stall = None
        self.stalled = True
        log.info(
            "conn from %s aborted: it read nothing for %.0f s (%d bytes unsent)",
            self.address,
            WRITE_STALL,
            self.transport.get_write_buffer_size(),
        )
        self.transport.abort()

    def _cancel_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _pause_reading(self, why: str) -> None:
        if not self._paused_by:
            self.transport.pause_reading()
        self._paused_by.add(why)

    def _resume_reading(self, why: str) -> None:
        self._paused_by.discard(why)
        if not self._paused_by and not self.transport.is_closing():
            self.transport.resume_reading()


def _address(transport: asyncio.BaseTransport) -> str:
    peer: Any = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")


async def close_or_abort(ws: ServerConnection, code: int, reason: str, timeout: float) -> None:
    """Close with the handshake; abort the transport if that takes longer than `timeout`."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(timeout):
            await ws.close(code, reason)
        return
    ws.transport.abort()


class Outbox:
    """The messages waiting to be written to one client, bounded in bytes."""

    def __init__(self, limit: int, low: int) -> None:
        self.limit = limit
        self.low = low
        self.bytes = 0  # queued plus the one being written
        self._items: deque[str | None] = deque()
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, text: str) -> bool:
        """Queue `text`; False (nothing queued) when it would pass the limit."""
        if self.bytes + len(text) > self.limit:
            return False
        self._items.append(text)
        self.bytes += len(text)
        self._ready.set()
        if self.bytes > self.low:
            self._drained.clear()
        return True

    def finish(self) -> None:
        """No more messages: the writer stops after what is queued."""
        self._items.append(None)
        self._ready.set()

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
        self._drained.set()

    async def drained(self) -> None:
        """Wait until no more than `low` bytes are unsent."""
        await self._drained.wait()

    async def write_to(self, ws: ServerConnection) -> None:
        """Write messages in order until `finish()`; the writer task of one connection.

        When it ends (finished, connection closed, cancelled) the rest is dropped, so
        nobody waits on `drained()` for ever.
        """
        try:
            while True:
                await self._ready.wait()
                while self._items:
                    text = self._items.popleft()
                    if text is None:
                        return
                    try:
                        await ws.send(text)
                    finally:
                        self.bytes = max(0, self.bytes - len(text))
                        if self.bytes <= self.low:
                            self._drained.set()
                self._ready.clear()
        finally:
            self.clear()
