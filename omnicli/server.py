"""The signaling server: a thin websockets driver around `state.Switchboard`.

It owns the sockets, the per-connection send queues and the one timer task; every
decision is the switchboard's. Media never passes through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from . import protocol as p
from .errors import UsageError
from .state import Send, Service, Switchboard

log = logging.getLogger("omnicli.server")

SEND_QUEUE = 256  # messages queued for one client before it counts as stalled
PING_INTERVAL = 4.0  # a vanished client is noticed within PING_INTERVAL + PING_TIMEOUT
PING_TIMEOUT = 4.0  # (+ CLOSE_TIMEOUT: after a ping timeout websockets still waits that long)
CLOSE_TIMEOUT = 1.0
HELLO_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    services: tuple[Service, ...] = (Service("dev", None),)
    ring_timeout: float = 60.0
    connect_timeout: float = 20.0
    ice_servers: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    tls_cert: str | None = None
    tls_key: str | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_config(config: ServerConfig) -> None:
    """Refuse configurations that would expose an open service to a network."""
    open_services = [s.service_id for s in config.services if s.key is None]
    if open_services and not is_loopback(config.host):
        raise UsageError(
            f"service '{open_services[0]}' has no key: an open service may only listen on "
            "loopback; give every service a key (--service ID:KEY) or use --host 127.0.0.1"
        )
    if bool(config.tls_cert) != bool(config.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")


class _Client:
    """One websocket connection and its bounded outgoing queue."""

    def __init__(self, conn: int, ws: ServerConnection) -> None:
        self.conn = conn
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(SEND_QUEUE)

    def push(self, message: dict[str, Any]) -> bool:
        try:
            self.queue.put_nowait(p.encode(message))
            return True
        except asyncio.QueueFull:
            return False

    async def write_loop(self) -> None:
        while (text := await self.queue.get()) is not None:
            await self.ws.send(text)


class SignalingServer:
    """Serves one Switchboard over websockets. Use as an async context manager."""

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.monotonic):
        check_config(config)
        self.config = config
        self.clock = clock
        self.board = Switchboard(
            list(config.services),
            ring_timeout=config.ring_timeout,
            connect_timeout=config.connect_timeout,
            ice_servers=[dict(s) for s in config.ice_servers],
        )
        self._clients: dict[int, _Client] = {}
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing: set[asyncio.Future[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.tls_cert else "ws"
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    async def __aenter__(self) -> SignalingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        tls = None
        if self.config.tls_cert:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        self._server = await serve(
            self._handler,
            self.config.host,
            self.config.port,
            ssl=tls,
            max_size=p.MAX_MESSAGE_BYTES,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            compression=None,
        )
        self._timer = asyncio.create_task(self._timer_loop(), name="omni-server-timers")
        log.info("listening on %s", self.url)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # -- per connection ------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        client = _Client(next(self._ids), ws)
        self._clients[client.conn] = client
        self.board.connect(client.conn)
        writer = asyncio.create_task(client.write_loop())
        peer = ws.remote_address
        log.debug("conn %d open from %s", client.conn, peer)
        try:
            async with asyncio.timeout(HELLO_TIMEOUT) as hello_deadline:
                async for text in ws:
                    self._receive(client, text)
                    if self.board.conns[client.conn].service_id is not None:
                        hello_deadline.reschedule(None)
        except TimeoutError:
            log.info("conn %d closed: no hello within %.0f s", client.conn, HELLO_TIMEOUT)
            await ws.close(1008, "hello timeout")
        except ConnectionClosed:
            pass
        finally:
            user = self.board.user_of(client.conn)
            self._deliver(self.board.disconnect(client.conn, self.clock()))
            self._clients.pop(client.conn, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            if user:
                log.info("%s offline", user)
            self._wake.set()

    def _receive(self, client: _Client, text: str | bytes) -> None:
        rid: int | None = None
        try:
            obj = p.decode(text)
            rid = p.request_id(obj)
            request = p.parse_request(obj)
        except p.ProtocolError as exc:
            client.push(p.error(rid, exc.code, str(exc)))
            return
        before = self.board.user_of(client.conn)
        try:
            sends = self.board.handle(client.conn, request, self.clock())
        except Exception:  # a bug must not take the server down for everyone
            log.exception("internal error handling %s", request.op)
            sends = [Send(client.conn, p.error(request.id, p.ErrorCode.INTERNAL, "server error"))]
        self._deliver(sends)
        self._log(client.conn, request, sends, before)
        self._wake.set()

    def _deliver(self, sends: list[Send]) -> None:
        for send in sends:
            client = self._clients.get(send.conn)
            if client is not None and not client.push(send.message):
                log.warning("conn %d is not reading its messages: closing it", send.conn)
                task = asyncio.ensure_future(client.ws.close(1008, "send queue full"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def _log(self, conn: int, request: p.Request, sends: list[Send], before: str | None) -> None:
        response = sends[0].message
        user = self.board.user_of(conn) or before or f"conn {conn}"
        if not response["ok"]:
            err = response["error"]
            log.info("%s %s refused: %s %s", user, request.op, err["code"], err["message"])
        elif request.op == "create_session":
            log.info("%s online (session %s)", user, response["result"]["session"])
        for send in sends[1:]:
            name = send.message.get("event")
            if name in ("RINGING", "CONNECTED", "LEAVE", "CANCEL"):
                target = self.board.user_of(send.conn)
                extra = send.message.get("reason") or send.message.get("caller") or ""
                log.info("%s -> %s %s %s", send.message.get("call_id"), target, name, extra)

    # -- timers --------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.board.next_deadline()
            self._wake.clear()
            delay = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._deliver(self.board.expire(self.clock()))
