"""`RedisPipe`: one pipelined connection to Redis on the event loop, shared by every
request a node serves.

Redis answers the commands of one connection in order, so many requests may have commands
in flight on it at once: `call` queues a command and returns a future; every command
queued in one turn of the loop goes out in one write, and the replies are matched to the
futures in order as they arrive. Under load this turns a round trip per store operation
into a round trip per loop turn, and a system call per command into one per batch.

Commands are packed and replies parsed by hiredis (the Redis project's C parser, which
redis-py also uses when it is installed); the URL is read by redis-py's own `parse_url`,
so it accepts what `--redis` accepts everywhere else (`redis://`, `rediss://`, `unix://`,
a password, a database number). Failures are redis-py's exception classes, so callers
catch `RedisStoreError` as for the blocking client:

- a reply error: `ResponseError` (`NoScriptError` for a script Redis does not have);
- the connection closed or refused: `ConnectionError`, for every command in flight;
- no reply within `timeout` s: `TimeoutError`, and the connection is dropped (with
  commands in flight, a late reply could no longer be matched to its command).

The next command after a failure connects again. Each reply's wait (from queueing its
command to its reply, so the loop's own delay is in it) is kept for `/metrics` (`waits`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

import hiredis
import redis.exceptions as rex
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

Reply = Any  # str, int, None, or a list of them (decoded as UTF-8)
WAITS_KEPT = 20_000  # command latencies kept for /metrics between two scrapes, at most
P = TypeVar("P", bound=asyncio.Protocol)


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: RedisPipe) -> None:
        self.pipe = pipe
        self.reader = hiredis.Reader(encoding="utf-8")
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting, waits = self.pipe.waiting, self.pipe.waits
        now = time.monotonic()
        while (reply := self.reader.gets()) is not False:
            if not waiting:  # a reply to nothing: the stream is out of step, start again
                self.pipe.drop(rex.ConnectionError("Redis sent a reply nobody asked for"))
                return
            future, sent = waiting.popleft()
            waits.append(now - sent)
            if future.done():  # its waiter was cancelled
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_reply_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe.lost(self, exc)


async def _connect(
    loop: asyncio.AbstractEventLoop, options: dict[str, Any], make: Callable[[], P]
) -> P:
    """A connection to the Redis that `options` (from `parse_url`) names."""
    if options.get("connection_class") is UnixDomainSocketConnection:
        _, proto = await loop.create_unix_connection(make, options["path"])
    else:
        tls = (
            ssl.create_default_context()
            if options.get("connection_class") is SSLConnection
            else None
        )
        host, port = options.get("host", "localhost"), int(options.get("port", 6379))
        _, proto = await loop.create_connection(make, host, port, ssl=tls)
    return proto


def _setup(options: dict[str, Any], *, select: bool) -> list[tuple[Any, ...]]:
    """The commands a new connection sends first: AUTH, and SELECT of the database."""
    setup: list[tuple[Any, ...]] = []
    if options.get("password") is not None:
        auth = ("AUTH", options["username"]) if options.get("username") else ("AUTH",)
        setup.append((*auth, options["password"]))
    if select and options.get("db"):
        setup.append(("SELECT", int(options["db"])))
    return setup


def _reply_error(text: str) -> rex.RedisError:
    if text.startswith("NOSCRIPT"):
        return rex.NoScriptError(text)
    return rex.ResponseError(text)


class RedisPipe:
    """One connection to the Redis at `url`, opened on first use."""

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        self.options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self.timeout = timeout
        self.waiting: collections.deque[tuple[asyncio.Future[Reply], float]] = collections.deque()
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._out: list[bytes] = []
        self._flush_at: asyncio.Handle | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.waits: collections.deque[float] = collections.deque(maxlen=WAITS_KEPT)  # s
        self.batches = 0  # writes made (each carries one or more commands)
        self.commands = 0

    @property
    def connected(self) -> bool:
        return self._proto is not None

    # -- commands ----------------------------------------------------------------------

    async def execute(self, *args: Any) -> Reply:
        """One command's reply (connecting first if needed)."""
        if self._proto is None:
            await self._connect()
        return await self.call(*args)

    async def execute_all(self, commands: list[tuple[Any, ...]]) -> list[Reply]:
        """Several commands' replies, in order (they go out in one write)."""
        if self._proto is None:
            await self._connect()
        return list(await asyncio.gather(*(self.call(*command) for command in commands)))

    def call(self, *args: Any) -> asyncio.Future[Reply]:
        """Queue a command on the open connection; the future of its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        if self._proto is None:
            future.set_exception(rex.ConnectionError("not connected to Redis"))
            return future
        self._out.append(hiredis.pack_command(args))
        self.waiting.append((future, time.monotonic()))
        if self._flush_at is None:
            self._flush_at = loop.call_soon(self._flush)
        if self._watch is None:
            self._watch = loop.call_later(self.timeout, self._check)
        return future

    def _flush(self) -> None:
        self._flush_at = None
        if self._proto is None or self._proto.transport is None or not self._out:
            return
        self._proto.transport.write(b"".join(self._out))
        self.batches += 1
        self.commands += len(self._out)
        self._out.clear()

    def _check(self) -> None:
        """Drop the connection if the oldest command has waited past the timeout."""
        self._watch = None
        if not self.waiting:
            return
        loop = asyncio.get_running_loop()
        age = time.monotonic() - self.waiting[0][1]
        if age >= self.timeout:
            self.drop(rex.TimeoutError(f"no reply from Redis within {self.timeout:g} s"))
        else:
            self._watch = loop.call_later(self.timeout - age, self._check)

    # -- the connection ------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._connecting is not None:  # another request is connecting: wait for it
            await asyncio.shield(self._connecting)
            return
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            proto = await asyncio.wait_for(self._open(loop), self.timeout)
            self._proto = proto
            self._connecting.set_result(proto)
        except (OSError, TimeoutError, rex.RedisError) as exc:
            error = exc if isinstance(exc, rex.RedisError) else rex.ConnectionError(str(exc))
            self._connecting.set_exception(error)
            self._connecting.exception()  # retrieved: nobody else may be waiting
            raise error from None
        finally:
            self._connecting = None

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        proto = await _connect(loop, self.options, lambda: _Protocol(self))
        self._proto = proto
        try:
            for command in _setup(self.options, select=True):
                await self.call(*command)
        except BaseException:
            self.drop(rex.ConnectionError("Redis refused the connection's setup"))
            raise
        return proto

    def drop(self, error: rex.RedisError) -> None:
        """Close the connection and fail every command in flight with `error`."""
        proto, self._proto = self._proto, None
        self._out.clear()
        self._fail(error)
        if proto is not None and proto.transport is not None:
            proto.transport.abort()

    def lost(self, proto: _Protocol, exc: Exception | None) -> None:
        if self._proto is proto:
            self._proto = None
            self._out.clear()
            self._fail(rex.ConnectionError(f"Redis closed the connection: {exc or 'EOF'}"))

    def _fail(self, error: rex.RedisError) -> None:
        waiting, self.waiting = self.waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        self.drop(rex.ConnectionError("closed"))
        for handle in (self._flush_at, self._watch):
            if handle is not None:
                handle.cancel()
        self._flush_at = self._watch = None


class _Listener(asyncio.Protocol):
    def __init__(self, subscription: RedisSubscription) -> None:
        self.subscription = subscription
        self.reader = hiredis.Reader(encoding="utf-8")
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3:
                kind, _, body = reply
                if kind == "message":
                    self.subscription.on_message(body)
                elif kind == "subscribe":
                    self.subscription.subscribed.set()
                    if self.subscription.on_subscribed is not None:
                        self.subscription.on_subscribed()
            elif isinstance(reply, hiredis.ReplyError) and self.transport is not None:
                self.transport.abort()  # AUTH refused, say: connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class RedisSubscription:
    """A connection subscribed to `channel`: each message's text goes to `on_message`, on
    the loop, in the order Redis sent them. `run()` returns (raising `ConnectionError`)
    when the connection ends; the caller subscribes again."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[str], None],
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        self.options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self.channel = channel
        self.on_message = on_message
        self.on_subscribed = on_subscribed  # called each time Redis confirms it
        self.subscribed = asyncio.Event()  # set once Redis confirmed the subscription
        self._listener: _Listener | None = None

    async def run(self, timeout: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        try:
            listener = await asyncio.wait_for(
                _connect(loop, self.options, lambda: _Listener(self)), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise rex.ConnectionError(f"cannot subscribe: {exc}") from None
        self._listener = listener
        assert listener.transport is not None
        commands = [*_setup(self.options, select=False), ("SUBSCRIBE", self.channel)]
        listener.transport.write(b"".join(hiredis.pack_command(c) for c in commands))
        try:
            cause = await listener.closed
        finally:
            self.subscribed.clear()
            if listener.transport is not None:
                listener.transport.abort()
            self._listener = None
        raise rex.ConnectionError(f"subscription lost: {cause or 'EOF'}")
