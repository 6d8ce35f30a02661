"""The signaling client: one websocket to `omni server`, requests and pushed events.

`request()` sends a frame and awaits the response with the same id (`ask()` also parses
its result into a typed object); events are parsed once here (`wire.messages`) and
handed to `on_event` typed, in arrival order; a frame off the protocol is logged and
dropped. When the socket goes away every pending
request fails with ServerUnreachable and `on_close` is called once; `close_code`
then says how the server closed it (None: no close frame). `connect()` may be called
again after that: the call-core reconnects this way and resumes its session. It is
single-flight: callers that overlap share one socket (and its handshake) instead of
each opening their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from omnicli.errors import ServerRefused, ServerUnreachable, UsageError
from omnicli.wire import messages as m
from omnicli.wire import protocol as p

T = TypeVar("T")

log = logging.getLogger("omnicli.phone.signaling")

REQUEST_TIMEOUT = 15.0


class SignalingClient:
    def __init__(
        self,
        url: str,
        *,
        on_event: Callable[[m.ServerEvent], None],
        on_close: Callable[[str], None] | None = None,
        ca_file: str | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._on_event = on_event
        self._on_close = on_close
        self._ca_file = ca_file
        self._open_timeout = open_timeout
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None
        self.close_code: int | None = None
        self._connect_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._closed_reason is None

    async def connect(self, handshake: Callable[[], Awaitable[None]] | None = None) -> None:
        """Open the websocket (again, after a drop) and run `handshake` on it.

        Single-flight: a call made while another one is opening the socket waits for it
        and shares its socket. UsageError (already connected, bad URL) or ServerUnreachable.
        """
        waited = self._connect_lock.locked()
        async with self._connect_lock:
            if self._reader is not None and not self._reader.done():
                if waited:
                    return  # the connect we waited for opened the socket: share it
                raise UsageError("already connected")
            await self._open()
            if handshake is not None:
                await handshake()

    async def _open(self) -> None:
        tls = None
        if self.url.startswith("wss://"):
            tls = ssl.create_default_context(cafile=self._ca_file)
        elif not self.url.startswith("ws://"):
            raise UsageError(f"server URL must start with ws:// or wss://, not '{self.url}'")
        try:
            self._ws = await connect(
                self.url,
                ssl=tls,
                open_timeout=self._open_timeout,
                max_size=p.MAX_MESSAGE_BYTES * 4,
                compression=None,
                ping_interval=5.0,
                ping_timeout=5.0,
            )
        except InvalidURI as exc:
            raise UsageError(f"bad server URL '{self.url}': {exc}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ServerUnreachable(
                f"cannot reach the server at {self.url}: {self._why(exc)}"
            ) from None
        self._closed_reason = None
        self.close_code = None
        self._reader = asyncio.create_task(self._read_loop(), name="omni-signaling-reader")

    def _why(self, exc: BaseException) -> str:
        """A person's words for a failed websocket handshake."""
        if isinstance(exc, InvalidStatus):
            return f"not an omni server (HTTP {exc.response.status_code})"
        if isinstance(exc, InvalidHandshake):
            return "not an omni server (no websocket handshake)"
        if isinstance(exc, TimeoutError):
            return f"no answer within {self._open_timeout:g} s"
        return getattr(exc, "strerror", None) or type(exc).__name__

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; its result, or ServerRefused / ServerUnreachable."""
        if self._ws is None or self._closed_reason is not None:
            why = self._closed_reason or "closed"
            raise ServerUnreachable(f"not connected to the server ({why})")
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        frame = {"op": op, "id": rid, **{k: v for k, v in fields.items() if v is not None}}
        try:
            await self._ws.send(p.encode(frame))
            async with asyncio.timeout(REQUEST_TIMEOUT):
                response = await future
        except ConnectionClosed:
            raise ServerUnreachable("the server closed the connection") from None
        except TimeoutError:
            raise ServerUnreachable(f"the server did not answer '{op}' in time") from None
        finally:
            self._pending.pop(rid, None)
        try:
            parsed = m.parse_response(response)
        except p.ProtocolError as exc:
            raise ServerUnreachable(f"the server's answer to '{op}' is malformed: {exc}") from None
        if parsed.error is not None:
            err = parsed.error
            raise ServerRefused(err.code, err.reason, err.message)
        return dict(parsed.result or {})

    async def ask(self, parse: Callable[[Mapping[str, Any]], T], op: str, **fields: Any) -> T:
        """`request()`, its result parsed by `parse` (a `wire.messages` `*.parse`)."""
        result = await self.request(op, **fields)
        try:
            return parse(result)
        except p.ProtocolError as exc:
            raise ServerUnreachable(f"the server's answer to '{op}' is malformed: {exc}") from None

    def local_address(self) -> str | None:
        """The local IP address the websocket uses, if connected."""
        if self._ws is None:
            return None
        sockname = self._ws.transport.get_extra_info("sockname")
        return str(sockname[0]) if sockname else None

    def drop(self) -> None:
        """Abort the socket without a close handshake, as a dead network would: `on_close`
        follows with a lost connection (and the phone resumes its session)."""
        if self._ws is not None and self._closed_reason is None:
            self._ws.transport.abort()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def _read_loop(self) -> None:
        assert self._ws is not None
        reason = "closed"
        try:
            async for text in self._ws:
                self._receive(text)
        except ConnectionClosed as exc:
            reason = f"connection lost ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            rcvd = self._ws.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd is not None else None
            if rcvd is not None and reason == "closed":
                why = f"{rcvd.code} {rcvd.reason}".strip()
                reason = f"closed by the server ({why})"
            self._closed_reason = reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ServerUnreachable(f"server {reason}"))
            if self._on_close is not None:
                asyncio.get_running_loop().call_soon(self._on_close, reason)

    def _receive(self, text: str | bytes) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            log.warning("ignoring a frame that is not JSON")
            return
        if not isinstance(msg, dict):
            return
        if "event" in msg:
            try:
                event = m.parse_event(msg)
            except p.ProtocolError as exc:
                log.warning("ignoring an event off the protocol: %s", exc)
                return
            # Scheduled, not called: a request's awaiting coroutine resumes before the
            # events that followed its response, as the server ordered them.
            asyncio.get_running_loop().call_soon(self._on_event, event)
            return
        future = self._pending.get(msg.get("id"))  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(msg)
        elif msg.get("ok") is False:
            log.warning("server error: %s", msg.get("error"))
