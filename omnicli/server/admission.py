"""Who may connect to this node, and how much a source address may cost it.

`Admission` is the driver's gatekeeper: `BoundedConnection` asks it at each TCP accept
and tells it at each close (the caps of `limits.ConnectionGate`, counted from the
accept); before the websocket upgrade it answers /healthz, /readyz and /metrics and
turns away, with HTTP 429, an address that failed authentication too often
(`limits.AuthThrottle`); a hello or a session_list from an address over its budget is
refused with 429 before the switchboard sees it. The pure parts are `limits`'; this
holds them for one server and logs what they decide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from omnicli.server.clients import Client
from omnicli.server.config import ServerConfig
from omnicli.server.connection import BoundedConnection
from omnicli.server.health import Health
from omnicli.server.limits import (
    AddressBudget,
    AuthThrottle,
    Caps,
    ConnectionGate,
    fd_soft_limit,
    list_cost,
    raise_fd_limit,
)
from omnicli.server.logsafe import clean
from omnicli.wire import protocol as p

log = logging.getLogger("omnicli.server.driver")


class Admission:
    """The connection caps, the failed-hello throttle and the session_list budget."""

    def __init__(self, config: ServerConfig, health: Health, clock: Callable[[], float]) -> None:
        self.config = config
        self.health = health
        self.clock = clock
        self.fd_limit = 0
        self.gate = ConnectionGate(Caps())
        self.throttle = AuthThrottle()
        self.list_budget = AddressBudget()

    def listen(self) -> Caps:
        """Before listening: raise the descriptor limit and set the caps within it."""
        self.fd_limit = raise_fd_limit()
        config = self.config
        caps = Caps(config.max_connections, config.max_per_address, config.max_unauthenticated)
        self.gate = ConnectionGate(caps.within(fd_soft_limit()))
        return self.gate.caps

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

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
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

    def over_budget(self, op: str, address: str, now: float) -> str:
        """Why a hello or session_list from `address` is refused now ("" if it is not)."""
        if op == "hello" and (wait := self.throttle.blocked_for(address, now)):
            return f"too many failed hellos from your address; retry in {wait:.0f} s"
        if op == "session_list" and (wait := self.list_budget.take(address, now)):
            return f"too many session lists from your address; retry in {wait:.2f} s"
        return ""

    def listed(self, client: Client, result: dict[str, Any]) -> None:
        """A session_list answered: charge its rows to the address and the connection."""
        cost = list_cost(len(result["sessions"]))
        self.list_budget.charge(client.address, cost)
        if client.bucket is not None:
            client.bucket.charge(cost)

    def hello_done(self, client: Client, response: dict[str, Any], now: float) -> None:
        """Past hello, or one more failed hello (too many close the connection)."""
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
            client.close(p.CLOSE_POLICY, "too many failed hellos", after=True)
