"""What `omni server` is started with: `ServerConfig`, and the check that refuses a
configuration that would expose an open service to a network or is missing a half
(a TLS certificate without its key, a TURN URL without its secret, ...)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from omnicli.errors import UsageError
from omnicli.server.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PER_ADDRESS,
    DEFAULT_MAX_UNAUTHENTICATED,
)
from omnicli.server.ratelimit import DEFAULT_BURST, DEFAULT_RATE
from omnicli.server.sip import SipPolicy
from omnicli.server.switchboard import RESUME_GRACE, Service
from omnicli.server.turn import TurnConfig
from omnicli.wire import protocol as p

MAX_FAILED_HELLOS = 5  # refused hellos on one connection before it is closed (1008)


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
    keepalive: float | None = None  # s between pings and to answer one (None: the defaults)


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
