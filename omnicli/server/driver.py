"""The signaling server: a thin websockets driver around `switchboard.Switchboard`.

It owns the sockets, the per-connection send queues, the per-connection rate limit,
the connection caps and the failed-authentication throttle (`limits`), and the timer
task; every decision about sessions and calls is the switchboard's. Media never passes
through here. What any one client can make it hold is bounded (`connection`): bytes
queued, bytes buffered in the transport, time to close.

Its parts: `config` (ServerConfig and its check), `clients` (one connection's outbox
and closing it on purpose), `admission` (the caps, the failed-hello throttle and the
session_list budget, applied), `logsafe.log_outcome` (what a request leaves in the log),
`timers` (the timer task and, on Redis, the lease reaper).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from omnicli.errors import UsageError
from omnicli.server import suspend
from omnicli.server.admission import Admission
from omnicli.server.clients import CLOSE_TIMEOUT, Client
from omnicli.server.config import MAX_FAILED_HELLOS, ServerConfig, check_config
from omnicli.server.connection import BoundedConnection, close_or_abort
from omnicli.server.gateway import SipGateway
from omnicli.server.health import Health
from omnicli.server.logsafe import log_outcome
from omnicli.server.ratelimit import TokenBucket
from omnicli.server.records import Send, ToConn
from omnicli.server.redisstore import RedisStoreError
from omnicli.server.sip import GatewayEvent
from omnicli.server.switchboard import Switchboard
from omnicli.server.timers import Timers
from omnicli.wire import protocol as p
from omnicli.wire import requests as rq

if TYPE_CHECKING:
    from omnicli.server.cluster import Cluster

log = logging.getLogger("omnicli.server.driver")

PING_INTERVAL = 4.0  # a vanished client is noticed within PING_INTERVAL + PING_TIMEOUT
PING_TIMEOUT = 4.0  # (+ CLOSE_TIMEOUT: after a ping timeout websockets still waits that long)
HELLO_TIMEOUT = 10.0
AUTH_REPORT = 10.0  # s between summaries of failed authentication per address
DRAINING = "this server is shutting down; connect to another node"
UNAVAILABLE = "the server cannot reach Redis; try again shortly (or another node)"


class Draining(Exception):
    """A new session asked of a node that is shutting down."""


class SignalingServer:
    """Serves one Switchboard over websockets. Use as an async context manager."""

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.monotonic):
        check_config(config)
        self.config = config
        self.clock = clock
        store, resume_secret, boot = None, config.resume_secret, None
        if config.redis_url:
            from omnicli.server.redisopen import open_store

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
        self._clients: dict[int, Client] = {}
        self.draining = False  # SIGTERM: no new sessions; calls may finish
        self.rate_limited = 0
        self.redis_errors = 0
        self.metrics_store_errors = 0
        self.health = Health(self)
        self.admission = Admission(config, self.health, lambda: self.clock())
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self.timers = Timers(self.board, self.cluster, lambda: self.clock(), self._deliver)
        self._timer: asyncio.Task[None] | None = None
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
        caps = self.admission.listen()
        admission = self.admission

        class Connection(BoundedConnection):
            gatekeeper = admission

        self._server = await serve(
            self._handler,
            self.config.host,
            self.config.port,
            create_connection=Connection,
            process_request=self.admission.process_request,
            ssl=tls,
            max_size=p.MAX_MESSAGE_BYTES,
            ping_interval=self.config.keepalive or PING_INTERVAL,
            ping_timeout=self.config.keepalive or PING_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            compression=None,
        )
        self._timer = asyncio.create_task(self.timers.run(), name="omni-server-timers")
        self._reporter = asyncio.create_task(self._report_loop(), name="omni-server-reports")
        if self.cluster is not None:
            await self.cluster.start()
            log.info("node %s on Redis %s", self.cluster.node, self.config.redis_url)
        log.debug("listening on %s", self.url)  # the command says it, once
        log.debug(  # --verbose
            "connections: at most %d, %d per address, %d before hello (descriptor limit %d)",
            caps.total,
            caps.per_address,
            caps.unauthenticated,
            self.admission.fd_limit,
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

    # -- per connection ------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        bucket = None
        if self.config.rate_limit > 0:
            bucket = TokenBucket(self.config.rate_limit, self.config.rate_burst)
        client = Client(next(self._ids), ws, bucket)
        self._clients[client.conn] = client
        self.board.connect(client.conn)
        writer = asyncio.create_task(client.outbox.write_to(ws))
        log.debug("conn %d open from %s", client.conn, client.address)
        lost = False  # dropped without a close handshake: the session may be resumed
        try:
            async with asyncio.timeout(HELLO_TIMEOUT) as hello_deadline:
                async for text in ws:
                    if self.cluster is None:
                        self._receive(client, text)
                    else:  # Redis: the request pauses at each round trip, others go on
                        await suspend.run(self._receive, client, text)
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
            if self.cluster is None:
                self._disconnect(client, lost)
            else:
                await suspend.run(self._disconnect, client, lost)
            self._clients.pop(client.conn, None)
            client.outbox.clear()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            if user:
                log.info("%s %s", user, "lost (may resume)" if lost else "offline")
            self.timers.poke()

    def _disconnect(self, client: Client, lost: bool) -> None:
        user = self.board.user_of(client.conn)
        try:
            self._deliver(self.board.disconnect(client.conn, self.clock(), lost=lost))
        except RedisStoreError as exc:  # the lease reaper or a grace timer ends it later
            log.warning("%s: Redis unreachable at disconnect: %s", user, exc)

    def _receive(self, client: Client, text: str | bytes) -> None:
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
        if message := self.admission.over_budget(request.op, client.address, now):
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
            self.admission.listed(client, sends[0].message["result"])
        if request.op == "hello":
            self.admission.hello_done(client, sends[0].message, now)
        else:
            if request.op in ("create_session", "resume") and sends[0].message["ok"]:
                self.admission.gate.registered(client.ws)  # a session keeps its place at the cap
            user = self.board.user_of(client.conn) or before or f"conn {client.conn}"
            log_outcome(log, user, request.op, sends, self.board.user_of)
        self.timers.poke()

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
            client.deliver(send.message, close=send.close)

    def _gateway_event(self, event: GatewayEvent) -> None:
        self._deliver(self.board.gateway_event(event, self.clock()))
        self.timers.poke()

    async def _report_loop(self) -> None:
        """One line per address that failed authentication, every AUTH_REPORT seconds."""
        while True:
            await asyncio.sleep(AUTH_REPORT)
            summary = self.admission.throttle.summary(self.clock())
            for address, failures, refused, left in summary:
                log.warning(
                    "%s: %d failed hellos, %d turned away in the last %g s%s",
                    address,
                    failures,
                    refused,
                    AUTH_REPORT,
                    f" (blocked {left:.0f} s more)" if left else "",
                )


__all__ = [  # ServerConfig and check_config are config's: here too, beside the server
    "CLOSE_TIMEOUT",
    "MAX_FAILED_HELLOS",
    "ServerConfig",
    "SignalingServer",
    "check_config",
]
