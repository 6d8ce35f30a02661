"""The operator's commands: `omni server` (run the signaling server) and
`omni token create` (a per-user access token signed with the service key)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer

from omnicli.errors import UsageError
from omnicli.ui.cliapp import Command, app, output, run, token_app
from omnicli.ui.options import takes_settings
from omnicli.ui.settings import Settings

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")]


@app.command(cls=Command, short_help="Run the signaling server.")
def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="Port (0: any free).")
    ] = 8765,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            help="ID:KEY of a "
            "service (repeatable; env OMNI_SERVICES=ID:KEY,...). Default: an "
            "open 'dev' service, loopback only.",
            show_default=False,
        ),
    ] = None,
    ring_timeout: Annotated[
        float, typer.Option(min=1, metavar="SECONDS", help="Seconds a call may ring.")
    ] = 60.0,
    connect_timeout: Annotated[
        float,
        typer.Option(
            min=1, metavar="SECONDS", help="Seconds from answer to media up before the call fails."
        ),
    ] = 20.0,
    ice_server: Annotated[
        list[str] | None,
        typer.Option(
            "--ice-server", help="STUN/TURN URL handed to clients (repeatable).", show_default=False
        ),
    ] = None,
    tls_cert: Annotated[str | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[str | None, typer.Option(help="TLS private key (PEM).")] = None,
    require_tokens: Annotated[
        bool,
        typer.Option(
            "--require-tokens",
            help="Accept a client only with a per-user token (omni token create).",
        ),
    ] = False,
    max_sessions: Annotated[
        int, typer.Option(min=1, metavar="N", help="Sessions a service may hold at once.")
    ] = 100_000,
    rate_limit: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="N",
            help="Requests per second per connection, sustained (0: no limit); error 429 beyond.",
        ),
    ] = 20.0,
    turn_url: Annotated[
        list[str] | None,
        typer.Option(
            "--turn-url",
            help="TURN URL handed "
            "out with short-lived credentials (repeatable; needs --turn-secret).",
            show_default=False,
        ),
    ] = None,
    turn_secret: Annotated[
        str | None,
        typer.Option(
            "--turn-secret",
            envvar="OMNI_TURN_SECRET",
            help="coturn's static-auth-secret (env OMNI_TURN_SECRET).",
            show_default=False,
        ),
    ] = None,
    turn_ttl: Annotated[
        float, typer.Option(min=60, metavar="SECONDS", help="Seconds a TURN credential lives.")
    ] = 3600.0,
    resume_secret: Annotated[
        str | None,
        typer.Option(
            "--resume-secret",
            envvar="OMNI_RESUME_SECRET",
            help="Signs resume tokens; give "
            "the same one after a restart so clients resume their calls "
            "(env OMNI_RESUME_SECRET; default: random).",
            show_default=False,
        ),
    ] = None,
    resume_grace: Annotated[
        float,
        typer.Option(
            min=0,
            max=60,
            metavar="SECONDS",
            help="Seconds a dropped client may take to resume its session (0: never).",
        ),
    ] = 6.0,
    sip_gateway: Annotated[
        str | None,
        typer.Option(
            "--sip-gateway",
            envvar="OMNI_SIP_GATEWAY",
            help="Websocket URL of a Janus gateway (SIP plugin) for sipcall: calls to "
            "sip: addresses (env OMNI_SIP_GATEWAY).",
            show_default=False,
        ),
    ] = None,
    sip_domain: Annotated[
        str | None,
        typer.Option(
            "--sip-domain",
            help="Host of the users' SIP addresses, sip:USER@DOMAIN (default: the gateway's).",
            show_default=False,
        ),
    ] = None,
    sip_registrar: Annotated[
        str | None,
        typer.Option(
            "--sip-registrar",
            help="SIP registrar (sip:HOST[:PORT]) at which users of "
            "'session create --sip-inbound' are registered, so SIP phones can call them.",
            show_default=False,
        ),
    ] = None,
    sip_secret: Annotated[
        str | None,
        typer.Option(
            "--sip-secret",
            envvar="OMNI_SIP_SECRET",
            help="Password the users are registered with (env OMNI_SIP_SECRET).",
            show_default=False,
        ),
    ] = None,
    sip_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--sip-allow",
            help="SIP domain users may call (repeatable; .example.org: its subdomains too). "
            "Default: any.",
            show_default=False,
        ),
    ] = None,
    sip_service: Annotated[
        list[str] | None,
        typer.Option(
            "--sip-service",
            help="Service id whose users may call SIP addresses (repeatable). Default: all.",
            show_default=False,
        ),
    ] = None,
    max_connections: Annotated[
        int,
        typer.Option(
            min=1, help="Connections at once, all sources (kept below the descriptor limit)."
        ),
    ] = 10_000,
    max_per_address: Annotated[
        int, typer.Option(min=1, help="Connections at once from one source address.")
    ] = 256,
    max_unauthenticated: Annotated[
        int,
        typer.Option(
            min=1,
            help="Connections not past hello; at the cap the oldest is closed for a new one.",
        ),
    ] = 512,
    drain_grace: Annotated[
        float,
        typer.Option(
            min=0,
            help="On SIGTERM: seconds the calls of this node's users may take to end "
            "(no new sessions meanwhile). SIGINT stops at once.",
        ),
    ] = 30.0,
    keepalive: Annotated[
        float | None,
        typer.Option(
            min=0.5,
            help="Seconds between the server's websocket pings; a client that does not "
            "answer one within as long is dropped (its session may resume). Larger: fewer "
            "pings to a great many idle clients, slower to notice a vanished one. "
            "Default: 4.",
            show_default=False,
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            envvar="OMNI_REDIS_URL",
            help="Share sessions and calls with the other nodes on this Redis, e.g. "
            "redis://127.0.0.1:6379/0 (env OMNI_REDIS_URL; default: this process only).",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run the signaling server."""
    from dataclasses import replace
    from urllib.parse import urlsplit

    from omnicli.server import logsafe
    from omnicli.server.config import ServerConfig
    from omnicli.server.driver import SignalingServer
    from omnicli.server.sip import SipPolicy
    from omnicli.server.switchboard import Service

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,  # the top-level callback set up the client's logging already
    )
    logsafe.guard()  # client text escaped; one kind of message at most 5 times a second
    logging.getLogger("websockets").setLevel(logging.WARNING)
    specs = list(service or []) or [s for s in os.environ.get("OMNI_SERVICES", "").split(",") if s]
    services = tuple(_service(s) for s in specs) or (Service("dev", None),)
    services = tuple(replace(s, max_sessions=max_sessions) for s in services)
    turn = None
    if turn_url or turn_secret:
        from omnicli.server.turn import TurnConfig

        turn = TurnConfig(tuple(turn_url or ()), turn_secret or "", turn_ttl)
    config = ServerConfig(
        host=host,
        port=port,
        services=services,
        ring_timeout=ring_timeout,
        connect_timeout=connect_timeout,
        ice_servers=tuple({"urls": [url]} for url in ice_server or []),
        tls_cert=tls_cert,
        tls_key=tls_key,
        require_tokens=require_tokens,
        turn=turn,
        resume_secret=resume_secret.encode() if resume_secret else None,
        resume_grace=resume_grace,
        rate_limit=rate_limit,
        sip_gateway=sip_gateway,
        sip_policy=SipPolicy(
            domains=tuple(d.lower() for d in sip_allow or ()),
            services=tuple(sip_service or ()),
            registrar=sip_registrar,
            secret=sip_secret or "",
            domain=sip_domain or urlsplit(sip_gateway or "").hostname or "omni.invalid",
        ),
        max_connections=max_connections,
        max_per_address=max_per_address,
        max_unauthenticated=max_unauthenticated,
        redis_url=redis or None,
        keepalive=keepalive,
    )

    async def flow() -> int:
        try:
            srv = SignalingServer(config)
            await srv.start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        print(f"omni server listening on {srv.url}", flush=True)  # scripts read this line
        for service in services:
            if service.key is None:
                typer.echo(
                    f"service '{service.service_id}' is open (no key), so it is served on "
                    "loopback only: anyone on this machine may use it "
                    "(--service ID:KEY to require a key)",
                    err=True,
                )
        serving = asyncio.ensure_future(srv.serve_forever())
        loop = asyncio.get_running_loop()
        draining: list[asyncio.Task[None]] = []

        async def drain() -> None:
            await srv.drain(drain_grace)
            serving.cancel()

        def on_sigterm() -> None:
            if draining:  # a second SIGTERM: stop now
                serving.cancel()
            else:
                draining.append(asyncio.ensure_future(drain()))

        loop.add_signal_handler(signal.SIGINT, serving.cancel)  # close every socket with 1001
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            await serving
        except asyncio.CancelledError:
            pass
        finally:
            await srv.close()
        return 0

    run(flow)


@token_app.command("create", cls=Command)
@takes_settings(("service_id", "service_key", "json"))
def token_create(
    user_id: Annotated[
        str,
        typer.Option(
            "--user-id",
            "-u",
            metavar="ID",
            help="The user id the token lets its holder register as.",
        ),
    ],
    ttl: Annotated[
        str, typer.Option("--ttl", metavar="TTL", help="How long it is valid: 90s, 15m, 1h, 7d.")
    ] = "1h",
    *,
    settings: Settings,
) -> None:
    """Print an access token for USER_ID, signed with the service key (HS256 JWT)."""
    import time

    from omnicli.wire.protocol import check_user_id
    from omnicli.wire.tokens import mint_user_token, parse_ttl

    async def flow() -> int:
        if why := check_user_id(user_id):
            raise UsageError(f"bad user id '{user_id[:80]}': {why}")
        if not settings.service_key:
            raise UsageError(
                "a token is signed with the service key: give --service-key or OMNI_SERVICE_KEY"
            )
        try:
            seconds = parse_ttl(ttl)
        except ValueError as exc:
            raise UsageError(f"--ttl: {exc}") from None
        now = time.time()
        token = mint_user_token(
            settings.service_key,
            service_id=settings.service_id,
            user_id=user_id,
            ttl=seconds,
            now=now,
        )
        if settings.json:
            output(settings).json(
                {
                    "token": token,
                    "user_id": user_id,
                    "service_id": settings.service_id,
                    "expires_at": int(now + seconds),
                }
            )
        else:
            print(token, flush=True)
        return 0

    run(flow)


def _service(spec: str) -> Any:
    from omnicli.server.switchboard import Service

    service_id, colon, key = spec.partition(":")
    if not service_id or not colon:
        raise UsageError(f"--service must look like ID:KEY (ID: for an open service), not '{spec}'")
    return Service(service_id, key or None)
