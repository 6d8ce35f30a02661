"""How media crosses a boundary: from a device thread into asyncio, or out to a listener.

`DropQueue` takes items from any thread (a PortAudio callback, a camera reader) and
hands them to one asyncio consumer. It is bounded and drops the *oldest* item when
full, so a consumer that falls behind gets fresh media and latency cannot grow.

`TapTrack` forwards another track's frames unchanged and gives each one to a
callback on the way (the local preview, the recorder).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger(__name__)

T = TypeVar("T")


class DropQueue(Generic[T]):
    """A bounded thread-to-asyncio queue that drops its oldest item when full."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Add an item (any thread); the oldest one goes if the queue is full."""
        with self._lock:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            loop, ready = self._loop, self._ready
        if loop is not None and ready is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(ready.set)

    async def get(self, timeout: float | None = None) -> T:
        """The oldest item, waiting for one; TimeoutError after `timeout` seconds."""
        if self._ready is None:
            self._loop, self._ready = asyncio.get_running_loop(), asyncio.Event()
        ready = self._ready
        async with asyncio.timeout(timeout):
            while True:
                ready.clear()
                with self._lock:
                    if self._items:
                        return self._items.popleft()
                await ready.wait()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class TapTrack(MediaStreamTrack):
    """Forwards `source`'s frames; `listener(frame)` sees each one first (if set)."""

    def __init__(
        self, source: MediaStreamTrack, listener: Callable[[Any], None] | None = None
    ) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.listener = listener

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.source.recv()
        if self.listener is not None:
            try:
                self.listener(frame)
            except Exception:  # a failing listener must not stop the media
                log.exception("%s tap listener failed", self.kind)
        return frame

    def stop(self) -> None:
        super().stop()
        self.source.stop()
