"""The signaling server: a thin websockets driver around `switchboard.Switchboard`.

It owns the sockets, the per-connection send queues, the per-connection rate limit,
the connection caps and the failed-authentication throttle (`limits`), and the timer
task; every decision about sessions and calls is the switchboard's. Media never passes
through here. What any one client can make it hold is bounded (`connection`): bytes
queued, bytes buffered in the transport, time to close.
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
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from omnicli.errors import UsageError
from omnicli.server import connection as bounded
from omnicli.server.connection import BoundedConnection, Outbox, close_or_abort
from omnicli.server.gateway import SipGateway
from omnicli.server.health import Health
from omnicli.server.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PER_ADDRESS,
    DEFAULT_MAX_UNAUTHENTICATED,
    AddressBudget,
    AuthThrottle,
    Caps,
    ConnectionGate,
    fd_soft_limit,
    list_cost,
    raise_fd_limit,
)
from omnicli.server.logsafe import clean
from omnicli.server.ratelimit import DEFAULT_BURST, DEFAULT_RATE, TokenBucket
from omnicli.server.records import Send, ToConn, ToGateway, ToUser
from omnicli.server.redisstore import RedisStoreError
from omnicli.server.sip import GatewayEvent, SipPolicy
from omnicli.server.switchboard import RESUME_GRACE, Service, Switchboard
from omnicli.server.turn import TurnConfig
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq

if TYPE_CHECKING:
    from omnicli.server.cluster import Cluster

log = logging.getLogger("omnicli.server.driver")

PING_INTERVAL = 4.0  # a vanished client is noticed within PING_INTERVAL + PING_TIMEOUT
PING_TIMEOUT = 4.0  # (+ CLOSE_TIMEOUT: after a ping timeout websockets still waits that long)
CLOSE_TIMEOUT = 1.0
HELLO_TIMEOUT = 10.0
MAX_FAILED_HELLOS = 5  # refused hellos on one connection before it is closed (1008)
AUTH_REPORT = 10.0  # s between summaries of failed authentication per address
POLL = 1.0  # s: on Redis, the timers look at deadlines other nodes set at least this often
DRAINING = "this server is shutting down; connect to another node"
UNAVAILABLE = "the server cannot reach Redis; try again shortly (or another node)"


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
    require_tokens: bool = False  # hello must carry a valid per-user token
    turn: TurnConfig | None = None  # hand out short-lived TURN credentials
    resume_secret: bytes | None = None  # signs resume tokens; None: random per run
    resume_grace: float = RESUME_GRACE  # s a dropped session may be resumed (0: never)
    rate_limit: float = DEFAULT_RATE  # requests/s per connection (0: no limit)
    rate_burst: int = DEFAULT_BURST
    max_failed_hellos: int = MAX_FAILED_HELLOS  # then close with 1008 (0: no limit)
    sip_gateway: str | None = None  # ws:// URL of a Janus gateway with its SIP plugin
    sip_policy: SipPolicy = field(default_factory=SipPolicy)  # who may call which domains
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # TCP connections at once (all sources)
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS  # from one source address
    max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED  # not past hello; oldest make room
    redis_url: str | None = None  # share sessions and calls with other nodes on this Redis


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
    if config.require_tokens and open_services:
        raise UsageError(
            f"--require-tokens: service '{open_services[0]}' has no key to sign tokens with; "
            "give every service a key (--service ID:KEY)"
        )
    if config.turn is not None and (not config.turn.urls or not config.turn.secret):
        raise UsageError("--turn-url and --turn-secret go together")
    if config.sip_gateway is not None and not config.sip_gateway.startswith(("ws://", "wss://")):
        raise UsageError("--sip-gateway takes the gateway's websocket URL (ws://HOST:8188)")
    registrar = config.sip_policy.registrar
    if registrar is not None:
        if config.sip_gateway is None:
            raise UsageError("--sip-registrar needs --sip-gateway")
        if p.check_sip_uri(registrar) is not None:
            raise UsageError(
                f"--sip-registrar takes a SIP address (sip:HOST:5060), not {registrar!r}"
            )


class Draining(Exception):
    """A new session asked of a node that is shutting down."""


class _Client:
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

    def push(self, message: dict[str, Any]) -> bool:
        return self.closing or self.outbox.put(p.encode(message))


class SignalingServer:
    """Serves one Switchboard over websockets. Use as an async context manager."""

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.monotonic):
        check_config(config)
        self.config = config
        self.clock = clock
        store, resume_secret, boot = None, config.resume_secret, None
        if config.redis_url:
            from omnicli.server.cluster import open_store

            store, resume_secret, boot = open_store(config.redis_url, resume_secret)
            self.clock = time.time  # deadlines are shared between nodes: wall time
        self.board = Switchboard(
            list(config.services),
            ring_timeout=config.ring_timeout,
            connect_timeout=config.connect_timeout,
            ice_servers=[dict(s) for s in config.ice_servers],
            require_tokens=config.require_tokens,
            turn=config.turn,
            resume_secret=resume_secret,
            resume_grace=config.resume_grace,
            sip_policy=config.sip_policy if config.sip_gateway else None,
            store=store,
            boot=boot,
        )
        self.gateway: SipGateway | None = None
        if config.sip_gateway:
            self.gateway = SipGateway(
                config.sip_gateway,
                self._gateway_event,
                domain=config.sip_policy.domain,
                registrar=config.sip_policy.registrar,
                secret=config.sip_policy.secret,
            )
        self.cluster: Cluster | None = None
        if store is not None:
            from omnicli.server.cluster import Cluster

            assert config.redis_url is not None
            self.cluster = Cluster(self.board, store, config.redis_url, self._deliver_local)
        self._clients: dict[int, _Client] = {}
        self.draining = False  # SIGTERM: no new sessions; calls may finish
        self.rate_limited = 0
        self.redis_errors = 0
        self.metrics_store_errors = 0
        self.health = Health(self)
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing: set[asyncio.Future[None]] = set()
        self.fd_limit = 0
        self.gate = ConnectionGate(Caps())
        self.throttle = AuthThrottle()
        self.list_budget = AddressBudget()
        self._reporter: asyncio.Task[None] | None = None

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
            try:
                tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot load the TLS certificate and key: {exc}") from None
        self.fd_limit = raise_fd_limit()
        caps = Caps(
            self.config.max_connections,
            self.config.max_per_address,
            self.config.max_unauthenticated,
        )
        self.gate = ConnectionGate(caps.within(fd_soft_limit()))
        server = self

        class Connection(BoundedConnection):
            gatekeeper = server

        self._server = await serve(
            self._handler,
            self.config.host,
            self.config.port,
            create_connection=Connection,
            process_request=self._process_request,
            ssl=tls,
            max_size=p.MAX_MESSAGE_BYTES,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            compression=None,
        )
        self._timer = asyncio.create_task(self._timer_loop(), name="omni-server-timers")
        self._reporter = asyncio.create_task(self._report_loop(), name="omni-server-reports")
        if self.cluster is not None:
            await self.cluster.start()
            log.info("node %s on Redis %s", self.cluster.node, self.config.redis_url)
        caps = self.gate.caps
        log.debug("listening on %s", self.url)  # the command says it, once
        log.debug(  # --verbose
            "connections: at most %d, %d per address, %d before hello (descriptor limit %d)",
            caps.total,
            caps.per_address,
            caps.unauthenticated,
            self.fd_limit,
        )

    async def close(self) -> None:
        if self.gateway is not None:
            await self.gateway.close()
        for task in (self._timer, self._reporter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._timer = self._reporter = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self.cluster is not None:  # after the connections: their endings are forwarded
            await self.cluster.close()

    async def drain(self, grace: float) -> None:
        """Stop taking sessions (/readyz says so), and give the calls of this node's users
        up to `grace` s to finish (or move: a client may resume on another node)."""
        self.draining = True
        log.info("draining: no new sessions; waiting up to %.0f s for calls to end", grace)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self._calls_here():
                    await asyncio.sleep(0.25)

    def _calls_here(self) -> int:
        try:
            return sum(
                self.board.store.call_of(*key) is not None for key in self.board.sessions.local
            )
        except RedisStoreError:
            return 0

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # -- connections: admission (BoundedConnection calls these) -----------------------

    def opened(self, conn: BoundedConnection) -> bool:
        """A TCP connection was accepted: count it, or refuse it at once."""
        admission = self.gate.admit(conn, conn.address)
        if not admission.admitted:
            log.warning("connection from %s refused: %s", conn.address, admission.reason)
            return False
        if isinstance(admission.evict, BoundedConnection):
            log.info("closed a waiting connection from %s to make room", admission.evict.address)
            admission.evict.abort()
        return True

    def closed(self, conn: BoundedConnection) -> None:
        self.gate.release(conn)

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Answer /healthz, /readyz and /metrics; turn away an address that failed
        authentication too often (HTTP 429)."""
        if (health := self.health.respond(ws, request)) is not None:
            return health
        address = getattr(ws, "address", "")
        wait = self.throttle.blocked_for(address, self.clock())
        if wait <= 0:
            return None
        response = ws.respond(
            HTTPStatus.TOO_MANY_REQUESTS, "too many failed authentications; try again later\n"
        )
        response.headers = Headers(response.headers)
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response

    # -- per connection ------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        bucket = None
        if self.config.rate_limit > 0:
            bucket = TokenBucket(self.config.rate_limit, self.config.rate_burst)
        client = _Client(next(self._ids), ws, bucket)
        self._clients[client.conn] = client
        self.board.connect(client.conn)
        writer = asyncio.create_task(client.outbox.write_to(ws))
        log.debug("conn %d open from %s", client.conn, client.address)
        lost = False  # dropped without a close handshake: the session may be resumed
        try:
            async with asyncio.timeout(HELLO_TIMEOUT) as hello_deadline:
                async for text in ws:
                    self._receive(client, text)
                    if self.board.conns[client.conn].service_id is not None:
                        hello_deadline.reschedule(None)
                    # one response per request, and a client that does not read them
                    # is read no further until it does (it cannot make us queue more)
                    await client.outbox.drained()
        except TimeoutError:
            log.info("conn %d closed: no hello within %.0f s", client.conn, HELLO_TIMEOUT)
            client.kicked = True
            await close_or_abort(ws, p.CLOSE_POLICY, "hello timeout", CLOSE_TIMEOUT)
        except ConnectionClosed as exc:
            # no close frame from the client, and none from us except a keepalive timeout
            dropped = exc.sent is None or exc.sent.code == 1011
            lost = exc.rcvd is None and dropped and not client.kicked
        finally:
            user = self.board.user_of(client.conn)
            try:
                self._deliver(self.board.disconnect(client.conn, self.clock(), lost=lost))
            except RedisStoreError as exc:  # the lease reaper or a grace timer ends it later
                log.warning("%s: Redis unreachable at disconnect: %s", user, exc)
            self._clients.pop(client.conn, None)
            client.outbox.clear()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            if user:
                log.info("%s %s", user, "lost (may resume)" if lost else "offline")
            self._wake.set()

    def _receive(self, client: _Client, text: str | bytes) -> None:
        rid: int | None = None
        if client.bucket is not None and not client.bucket.take(self.clock()):
            self.rate_limited += 1
            with contextlib.suppress(p.ProtocolError):
                rid = p.request_id(p.decode(text))
            wait = client.bucket.retry_after()
            message = f"too many requests; retry in {wait:.2f} s"
            self._deliver(
                [Send(ToConn(client.conn), p.error(rid, p.ErrorCode.RATE_LIMITED, message))]
            )
            return
        try:
            obj = p.decode(text)
            rid = p.request_id(obj)
            request = rq.parse_request(obj)
        except p.ProtocolError as exc:
            self._deliver([Send(ToConn(client.conn), p.error(rid, exc.code, str(exc)))])
            return
        before = self.board.user_of(client.conn)
        now = self.clock()
        message = ""
        if request.op == "hello" and (wait := self.throttle.blocked_for(client.address, now)):
            message = f"too many failed hellos from your address; retry in {wait:.0f} s"
        elif request.op == "session_list" and (wait := self.list_budget.take(client.address, now)):
            message = f"too many session lists from your address; retry in {wait:.2f} s"
        if message:
            sends = [
                Send(ToConn(client.conn), p.error(request.id, p.ErrorCode.RATE_LIMITED, message))
            ]
        else:
            try:
                if self.draining and request.op in ("create_session", "resume"):
                    raise Draining
                sends = self.board.handle(client.conn, request, now)
            except Draining:
                error = p.error(request.id, p.ErrorCode.UNAVAILABLE, DRAINING)
                sends = [Send(ToConn(client.conn), error)]
            except RedisStoreError as exc:
                self.redis_errors += 1
                log.warning("%s refused: Redis unreachable: %s", request.op, exc)
                error = p.error(request.id, p.ErrorCode.UNAVAILABLE, UNAVAILABLE)
                sends = [Send(ToConn(client.conn), error)]
            except Exception:  # a bug must not take the server down for everyone
                log.exception("internal error handling %s", request.op)
                error = p.error(request.id, p.ErrorCode.INTERNAL, "server error")
                sends = [Send(ToConn(client.conn), error)]
        if self.cluster is not None and request.op == "leave":
            self.cluster.left(client.conn)
        self._deliver(sends)
        if request.op == "session_list" and sends[0].message["ok"]:
            cost = list_cost(len(sends[0].message["result"]["sessions"]))
            self.list_budget.charge(client.address, cost)
            if client.bucket is not None:
                client.bucket.charge(cost)
        if request.op == "hello":
            self._hello_done(client, sends[0].message, now)
        else:
            if request.op in ("create_session", "resume") and sends[0].message["ok"]:
                self.gate.registered(client.ws)  # a session keeps its place at the cap
            self._log(client.conn, request, sends, before)
        self._wake.set()

    def _hello_done(self, client: _Client, response: dict[str, Any], now: float) -> None:
        if response["ok"]:
            self.gate.authenticated(client.ws)
            return
        code = response["error"]["code"]
        if code == p.ErrorCode.UNAUTHORIZED:
            self.throttle.failed(client.address, now)  # logged as a summary, not each one
        elif code != p.ErrorCode.RATE_LIMITED:  # (turned away: counted in the summary too)
            log.info("conn %d hello refused: %s", client.conn, clean(response["error"]["message"]))
        client.failed_hellos += 1
        limit = self.config.max_failed_hellos
        if limit and client.failed_hellos >= limit:
            log.debug("conn %d closed: %d failed hellos", client.conn, client.failed_hellos)
            self._close(client, p.CLOSE_POLICY, "too many failed hellos", after=True)

    def _deliver(self, sends: list[Send]) -> None:
        """Hand sends to the SIP gateway, this node's connections, and other nodes."""
        if self.gateway is not None:
            for order in self.board.gateway_orders(sends):
                self.gateway.submit(order)
        self._deliver_local(sends)
        if self.cluster is not None:
            self.cluster.forward(sends)

    def _deliver_local(self, sends: list[Send]) -> None:
        for send in self.board.route(sends):
            client = self._clients.get(send.conn)
            if client is None:
                continue
            if self.cluster is not None:
                self.cluster.note(send.conn, send.message)
            if not client.push(send.message):
                log.warning("conn %d is not reading its messages: closing it", send.conn)
                client.outbox.clear()  # what it would not read is dropped now
                self._close(client, p.CLOSE_POLICY, "send queue full")
            elif send.close:
                self._close(
                    client, p.CLOSE_KICKED_OUT, "session resumed on another connection", after=True
                )

    def _close(self, client: _Client, code: int, reason: str, *, after: bool = False) -> None:
        """Close a client on purpose (no resume grace); `after`: once its queue is sent.

        The close completes within about 2 x CLOSE_TIMEOUT: the transport is aborted
        when the client does not take its messages or the close handshake in time.
        """
        client.kicked = True
        if client.closing:
            return
        client.closing = True

        async def close() -> None:
            if after:
                client.outbox.finish()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        while len(client.outbox):
                            await asyncio.sleep(0.01)
            await close_or_abort(client.ws, code, reason, CLOSE_TIMEOUT)

        task = asyncio.ensure_future(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _log(self, conn: int, request: rq.Request, sends: list[Send], before: str | None) -> None:
        response = sends[0].message
        user = self.board.user_of(conn) or before or f"conn {conn}"
        if not response["ok"]:
            err = response["error"]
            log.info("%s %s refused: %s %s", user, request.op, err["code"], clean(err["message"]))
        elif request.op == "create_session":
            log.info("%s online (session %s)", user, response["result"]["session"])
        for send in sends[1:]:
            name = send.message.get("event")
            if name in ("RINGING", "CONNECTED", "LEAVE", "CANCEL"):
                to = send.to
                if isinstance(to, ToGateway):
                    continue
                target = to.user_id if isinstance(to, ToUser) else self.board.user_of(to.conn)
                extra = send.message.get("reason") or send.message.get("caller") or ""
                call_id = send.message.get("call_id")
                log.info("%s -> %s %s %s", call_id, target, name, clean(extra))

    def _gateway_event(self, event: GatewayEvent) -> None:
        self._deliver(self.board.gateway_event(event, self.clock()))
        self._wake.set()

    # -- timers --------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        while True:
            try:
                await self._timer_step()
            except RedisStoreError as exc:  # the timers are data: they fire once it is back
                log.debug("timers: Redis unreachable: %s", exc)
                await asyncio.sleep(POLL)

    async def _timer_step(self) -> None:
        deadline = self.board.next_deadline()
        self._wake.clear()
        delay = None if deadline is None else max(0.0, deadline - self.clock())
        if self.cluster is not None:
            # other nodes set deadlines too, and may die: look every POLL s, and not after
            # each request (reading the deadlines costs Redis round trips); timers fire up
            # to POLL s late
            await asyncio.sleep(POLL if delay is None else min(delay, POLL))
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
        now = self.clock()
        if self.cluster is not None:
            self.cluster.reap(now)
        self._deliver(self.board.expire(now))

    async def _report_loop(self) -> None:
        """One line per address that failed authentication, every AUTH_REPORT seconds."""
        while True:
            await asyncio.sleep(AUTH_REPORT)
            for address, failures, refused, left in self.throttle.summary(self.clock()):
                log.warning(
                    "%s: %d failed hellos, %d turned away in the last %g s%s",
                    address,
                    failures,
                    refused,
                    AUTH_REPORT,
                    f" (blocked {left:.0f} s more)" if left else "",
                )
