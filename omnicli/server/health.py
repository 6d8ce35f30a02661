"""Health and metrics as plain HTTP GETs on the server's own port.

- `/healthz`: 200 while the process serves requests; never asks Redis.
- `/readyz`: 200 when the node takes new sessions: its Redis lease is fresh (when it runs
  on Redis) and it is not draining; 503 with the reason otherwise.
- `/metrics`: Prometheus text format (prometheus-client), from a registry of this server's
  own, so that several servers in one process (tests) do not share counters.

The numbers are read when scraped (`NodeCollector`), from what the switchboard, the
driver and the cluster keep anyway; nothing here is on the request path. A scrape reads
the store a fixed number of times per service (the session count, the calls per state
the store keeps as counts), never the records themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from omnicli.server.driver import SignalingServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SETUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
PATHS = ("/healthz", "/readyz", "/metrics")


class NodeCollector(Collector):
    """The node's gauges and counters, read from the server at scrape time."""

    def __init__(self, server: SignalingServer) -> None:
        self.server = server

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        srv = self.server
        board = srv.board
        yield GaugeMetricFamily(
            "omni_sessions_online", "Users connected to this node", len(board.sessions.local)
        )
        held = GaugeMetricFamily(
            "omni_sessions",
            "Sessions (online or away) of the service, all nodes",
            labels=["service"],
        )
        calls = GaugeMetricFamily("omni_calls", "Calls open, all nodes", labels=["state"])
        try:  # a few reads per service, whatever the number of sessions and calls
            states: dict[str, int] = {}
            for service_id in board.services:
                held.add_metric([service_id], board.store.count(service_id))
                for state, n in board.store.call_states(service_id).items():
                    states[state] = states.get(state, 0) + n
            for state, n in sorted(states.items()):
                calls.add_metric([state], n)
        except Exception:  # the store is unreachable: the gauges stay empty
            srv.metrics_store_errors += 1
        yield held
        yield calls
        ended = CounterMetricFamily(
            "omni_calls_ended", "Calls this node ended, by reason", labels=["reason"]
        )
        for reason, n in sorted(board.machine.ended.items()):
            ended.add_metric([reason], n)
        yield ended
        yield CounterMetricFamily(
            "omni_rate_limited_requests", "Requests refused by the rate limit", srv.rate_limited
        )
        cluster = srv.cluster
        routed = cluster.stats.routed if cluster else 0
        undelivered = cluster.stats.undelivered if cluster else 0
        errors = (cluster.stats.redis_errors if cluster else 0) + srv.redis_errors
        yield CounterMetricFamily(
            "omni_messages_routed", "Messages published to another node", routed
        )
        yield CounterMetricFamily(
            "omni_messages_undelivered",
            "Messages for a user that was gone, or whose node did not receive them",
            undelivered,
        )
        yield CounterMetricFamily("omni_redis_errors", "Failed Redis operations", errors)
        if cluster is not None:
            yield GaugeMetricFamily(
                "omni_redis_seconds",
                "Duration of the last lease renewal (one Redis round trip)",
                cluster.stats.redis_seconds,
            )


class Health:
    """The registry of one server, and the answers to the three paths."""

    def __init__(self, server: SignalingServer) -> None:
        self.server = server
        self.registry = CollectorRegistry()
        self.registry.register(NodeCollector(server))
        self.setup = Histogram(
            "omni_call_setup_seconds",
            "From offer to both media up, calls this node connected",
            buckets=SETUP_BUCKETS,
            registry=self.registry,
        )
        self.redis_wait = Histogram(
            "omni_redis_command_seconds",
            "Requests' Redis commands on this node: from queueing to the reply",
            buckets=REDIS_BUCKETS,
            registry=self.registry,
        )

    def not_ready(self) -> str | None:
        """Why the node takes no new sessions now, or None."""
        srv = self.server
        if srv.draining:
            return "draining"
        if srv.cluster is not None and not srv.cluster.fresh():
            return "Redis unreachable (lease not renewed)"
        return None

    def respond(self, ws: ServerConnection, request: Request) -> Response | None:
        """The HTTP answer for one of PATHS; None lets a websocket handshake go on."""
        path = request.path.split("?", 1)[0]
        if path not in PATHS or "upgrade" in request.headers.get("Connection", "").lower():
            return None
        if path == "/healthz":
            return ws.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            why = self.not_ready()
            if why is None:
                return ws.respond(HTTPStatus.OK, "ready\n")
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {why}\n")
        for seconds in self.server.board.machine.setups:
            self.setup.observe(seconds)
        self.server.board.machine.setups.clear()
        pipe = self.server.cluster.store.pipe if self.server.cluster is not None else None
        if pipe is not None:
            waits, pipe.waits = pipe.waits, type(pipe.waits)(maxlen=pipe.waits.maxlen)
            for seconds in waits:
                self.redis_wait.observe(seconds)
        response = ws.respond(HTTPStatus.OK, generate_latest(self.registry).decode())
        headers = Headers(response.headers)
        headers["Content-Type"] = CONTENT_TYPE
        response.headers = headers
        return response
