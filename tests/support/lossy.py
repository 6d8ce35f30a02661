"""A lossy, delaying network inside one process, for media tests.

`impair(pc, loss, delay)` wraps the ICE transport under `pc`'s DTLS transport: it
drops a random fraction of the SRTP/SRTCP datagrams it receives *before* SRTP
decryption (as a real network would, so a retransmission is not a replay) and
delivers the rest `delay` seconds late. DTLS and STUN pass untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any


class Impairment:
    def __init__(self, pc: Any, loss: float, delay: float = 0.0, seed: int = 1) -> None:
        self.loss, self.delay = loss, delay
        self.dropped = self.passed = 0
        self._rng = random.Random(seed)
        ice = pc.getTransceivers()[0].receiver.transport.transport
        self._recv = ice._recv
        self._queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._pump())
        ice._recv = self._delayed

    async def _pump(self) -> None:
        try:
            while True:
                data = await self._recv()
                if data and 127 < data[0] < 192:  # SRTP or SRTCP
                    if self._rng.random() < self.loss:
                        self.dropped += 1
                        continue
                    self.passed += 1
                await self._queue.put((time.monotonic() + self.delay, data))
        except (ConnectionError, asyncio.CancelledError):
            await self._queue.put((0.0, None))

    async def _delayed(self) -> bytes:
        due, data = await self._queue.get()
        if data is None:
            await self._queue.put((0.0, None))
            raise ConnectionError("connection lost while receiving data")
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        return data

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def impair(pc: Any, loss: float, delay: float = 0.0, seed: int = 1) -> Impairment:
    return Impairment(pc, loss, delay, seed)
