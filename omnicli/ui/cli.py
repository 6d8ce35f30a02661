"""The `omni` command line: a thin Typer shell over the call-core.

Each command builds Settings, then awaits a flow from `omnicli.ui.flows` on a
`Phone`. Errors become one line and an exit code here, in `run()`, and nowhere else.
Heavy modules (aiortc, av, cv2, sounddevice) are imported inside commands only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from omnicli.errors import ExitCode, OmniError, UsageError
from omnicli.phone.endings import call_ending_error, exit_code_for_reason
from omnicli.ui.options import CONNECTION, MEDIA, OUTPUT, RECORDING, takes_settings
from omnicli.ui.settings import Settings


class _Command(TyperCommand):
    """Help that names arguments plainly: `omni call [OPTIONS] CALLEE`, not `{CALLEE}`."""

    def get_help(self, ctx: Any) -> str:
        text = super().get_help(ctx)
        return re.sub(r"\{([A-Z_]+)\}", r"\1", text).replace(" <str>", "")


app = typer.Typer(
    help="omni: a command-line WebRTC video softphone with its own signaling server. "
    "With no command: the interactive prompt (omni repl).",
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
session_app = typer.Typer(help="Create a session and stay online.", no_args_is_help=True)
app.add_typer(session_app, name="session")
token_app = typer.Typer(help="Per-user access tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

# -- options that are not settings ---------------------------------------------------

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")]
UserId = Annotated[
    str | None,
    typer.Option(
        "--user-id",
        "-u",
        help="Your user id (random if omitted).",
        show_default=False,
        metavar="ID",
    ),
]
Duration = Annotated[
    float,
    typer.Option(
        "--duration",
        "-d",
        min=0,
        metavar="SECONDS",
        help="Hang up this many seconds after connecting (0: stay).",
    ),
]
AutoAnswer = Annotated[bool, typer.Option("--auto-answer", help="Answer every call.")]
SipInbound = Annotated[
    bool,
    typer.Option(
        "--sip-inbound",
        help="Take calls from SIP phones too (the server registers you at its SIP "
        "registrar; omni server --sip-registrar).",
    ),
]


def run(flow: Callable[[], Awaitable[int | None]]) -> None:
    """Run one async flow; the only place errors become messages and exit codes."""
    try:
        code: int | None = asyncio.run(flow())  # type: ignore[arg-type]  # every flow is a coroutine function
    except OmniError as exc:
        typer.echo(f"omni: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        typer.echo("omni: interrupted", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:  # stdout closed by the reader (`| head`): a normal end, said nothing
        _silence_stdout()
        raise typer.Exit(int(ExitCode.OK)) from None
    except Exception as exc:  # a bug or an unforeseen failure: one line, never a traceback
        logging.getLogger("omnicli").debug("unexpected error", exc_info=True)  # --verbose
        detail = " ".join(str(exc).split())
        typer.echo(
            f"omni: unexpected error: {type(exc).__name__}{': ' + detail if detail else ''}",
            err=True,
        )
        raise typer.Exit(int(ExitCode.FAILURE)) from None
    raise typer.Exit(int(code or 0))


def _phone(
    settings: Settings,
    video_sink: Callable[[Any], None] | None = None,
    preview_sink: Callable[[Any], None] | None = None,
) -> Any:
    from omnicli.phone.core import Phone

    return Phone(settings.phone_config(), video_sink=video_sink, preview_sink=preview_sink)


def _video_out(settings: Settings) -> str:
    """Where this command shows remote video: the setting, or none for --no-window."""
    return settings.video_out if settings.window else "none"


def _output(settings: Settings, label: str | None = None) -> Any:
    from omnicli.ui.render import Output

    return Output(json_mode=settings.json, label=label)


# -- commands ------------------------------------------------------------------------


@app.command(cls=_Command, short_help="Run the signaling server.")
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
    from omnicli.server.driver import ServerConfig, SignalingServer
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


@token_app.command("create", cls=_Command)
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
            _output(settings).json(
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


@session_app.command("create", cls=_Command)
@takes_settings(CONNECTION, MEDIA, RECORDING, OUTPUT)
def session_create(
    user_id: UserId = None,
    auto_answer: AutoAnswer = False,
    sip_inbound: SipInbound = False,
    *,
    settings: Settings,
) -> None:
    """Register as USER_ID and stay online, showing and answering calls.

    In a terminal (and without --json) this opens the interactive prompt on the session.
    """
    if sys.stdin.isatty() and sys.stdout.isatty() and not settings.json:
        _repl(settings, user_id, auto_answer, sip_inbound)
        return

    async def flow() -> int:
        from omnicli.ui.flows import Stopper, Window, answer_forever
        from omnicli.ui.render import session_panel

        out = _output(settings)
        stopper = Stopper.install()
        phone = _phone(settings)
        window = None
        if Window.wanted(settings.window, out):  # one for the session, shown during calls
            window = Window(
                "omni",
                lambda: asyncio.ensure_future(phone.leave()),  # q hangs up, does not leave
                shown=False,
            )

        try:
            info = await phone.create_session(user_id, sip_inbound=sip_inbound)
            if not settings.json:
                out.show(
                    session_panel(info.user_id, info.session, settings.server, settings.service_id)
                )
                out.status("waiting for calls; Ctrl-C to leave")
            ask = None if auto_answer else _asker(out)
            return await answer_forever(
                phone,
                out,
                stop=stopper.event,
                auto_answer=auto_answer,
                ask=ask,
                window=window,
            )
        finally:
            await phone.close()
            if window is not None:
                await asyncio.to_thread(window.close)

    run(flow)


def _asker(out: Any) -> Callable[[Any], Awaitable[bool]] | None:
    """Ask on the terminal whether to answer; None when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None

    async def ask(ringing: Any) -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()
        out.err.print(f"answer the {ringing.call_type} from {ringing.caller}? [y/N] ", end="")

        def readable() -> None:
            if not answer.done():
                answer.set_result(sys.stdin.readline())

        loop.add_reader(sys.stdin.fileno(), readable)
        try:
            return (await answer).strip().lower() in ("y", "yes")
        finally:
            loop.remove_reader(sys.stdin.fileno())

    return ask


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"omni {version('omnicli')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("omni (version unknown: not installed)")
        raise typer.Exit()


Version = Annotated[
    bool,
    typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
]


@app.callback(invoke_without_command=True)
@takes_settings(CONNECTION, MEDIA, OUTPUT)
def _no_command(
    ctx: typer.Context,
    user_id: UserId = None,
    auto_answer: AutoAnswer = False,
    version: Version = False,
    *,
    settings: Settings | None,
) -> None:
    """With no command: the interactive prompt, taking the options of omni repl."""
    if ctx.invoked_subcommand is None:
        assert settings is not None  # read only when no command follows
        _repl(settings, user_id, auto_answer)
    elif any(v not in (None, False) for v in ctx.params.values()):
        where = ctx.invoked_subcommand
        raise UsageError(f"options before the command are the prompt's: put them after '{where}'")


@app.command(cls=_Command, short_help="The interactive prompt on one session (also: bare omni).")
@takes_settings(CONNECTION, MEDIA, OUTPUT)
def repl(
    user_id: UserId = None,
    auto_answer: AutoAnswer = False,
    sip_inbound: SipInbound = False,
    *,
    settings: Settings,
) -> None:
    """An interactive prompt on one long-lived session (also: omni with no command)."""
    _repl(settings, user_id, auto_answer, sip_inbound)


def _repl(
    settings: Settings, user_id: str | None, auto_answer: bool, sip_inbound: bool = False
) -> None:
    async def flow() -> int:
        from omnicli.ui.repl import Repl, ReplOptions

        options = ReplOptions(
            settings, user_id=user_id, auto_answer=auto_answer, sip_inbound=sip_inbound
        )
        return await Repl(lambda sink: _phone(settings, video_sink=sink), options).run()

    run(flow)


@app.command(cls=_Command, short_help="List microphones, speakers and cameras.")
@takes_settings(("json", "verbose"))
def devices(*, settings: Settings) -> None:
    """List microphones, speakers and cameras with their ids (for --mic, --speaker, --camera)."""

    async def flow() -> int:
        from omnicli.media.devices import probe
        from omnicli.ui.render import devices_table

        report = probe()
        out = _output(settings)
        if settings.json:
            out.json(report.as_dict())
        else:
            out.show(devices_table(report.as_dict()))
        for problem in report.problems:
            out.status(problem, "yellow")
        return 0

    run(flow)


@app.command(cls=_Command, short_help="List who is online, and who is busy.")
@takes_settings(CONNECTION, ("json", "verbose"))
def sessions(
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Show at most this many (the first by user id).")
    ] = 1000,
    every: Annotated[
        bool, typer.Option("--all", help="Show every session, asking page by page.")
    ] = False,
    *,
    settings: Settings,
) -> None:
    """List who is online under the service, and who is busy."""

    async def flow() -> int:
        from omnicli.ui.render import sessions_table

        phone = _phone(settings)
        try:
            page = await phone.session_page(limit)
            peers, total = list(page.peers), page.total
            while every and page.truncated and page.peers:
                page = await phone.session_page(after=page.peers[-1].user_id)
                peers += page.peers
            truncated = page.truncated
        finally:
            await phone.close()
        out = _output(settings)
        if settings.json:
            for peer in peers:
                out.json(
                    {"user_id": peer.user_id, "state": peer.state, "call_type": peer.call_type}
                )
        else:
            out.show(sessions_table(peers))
        if truncated:
            out.status(
                f"showing the first {len(peers)} of {total} sessions (--all for every one)",
                style="yellow",
            )
        return 0

    run(flow)


VideoCall = Annotated[bool, typer.Option("--video", help="A video call (the default).")]
AudioCall = Annotated[bool, typer.Option("--audio", help="An audio-only call.")]


def _call_type(video: bool, audio: bool) -> str | None:
    """videocall, audiocall, or None when neither was asked for; both is a mistake."""
    if video and audio:
        raise UsageError("--video and --audio contradict each other: give one")
    return "videocall" if video else "audiocall" if audio else None


@app.command(cls=_Command, short_help="Call a user and stay in the call.")
@takes_settings(CONNECTION, MEDIA, ("record_file",), OUTPUT)
def call(
    callee: Annotated[
        str,
        typer.Argument(
            help="User id to call, or a SIP address (sip:user@host) through the server's gateway.",
            metavar="CALLEE",
            show_default=False,
        ),
    ],
    video: VideoCall = False,
    audio: AudioCall = False,
    record: Annotated[
        bool,
        typer.Option("--record", help="Record the call (here, as a file; the callee is told)."),
    ] = False,
    duration: Duration = 0.0,
    user_id: UserId = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0,
            metavar="SECONDS",
            help="If CALLEE is not online, wait this long for them to come online and "
            "answer (0: fail at once; default: as long as the server rings).",
            show_default=False,
        ),
    ] = None,
    dtmf: Annotated[
        str | None,
        typer.Option(
            "--dtmf",
            metavar="DIGITS",
            help="Touch tones (0-9 * # A-D) to send once a SIP call is connected.",
            show_default=False,
        ),
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Call CALLEE; Ctrl-C or q in the window hangs up (m: mic on/off, v: camera on/off)."""
    call_type = _call_type(video, audio) or "videocall"
    if dtmf is not None:
        from omnicli.wire.protocol import DTMF_RE, MAX_DTMF

        if not DTMF_RE.fullmatch(dtmf) or len(dtmf) > MAX_DTMF:
            raise UsageError(f"--dtmf takes 1 to {MAX_DTMF} of 0-9 * # A-D, not '{dtmf[:40]}'")

    async def flow() -> int:
        tones: list[asyncio.Future[None]] = []

        async def place(phone: Any, out: Any) -> None:
            await phone.offer_call(call_type, callee, record)
            if dtmf:
                tones.append(asyncio.ensure_future(_dtmf_when_connected(phone, dtmf)))

        try:
            return await _one_call(
                settings, user_id, duration, place, f"omni: {callee}", offline_wait=wait
            )
        finally:
            for task in tones:
                task.cancel()

    run(flow)


async def _dtmf_when_connected(phone: Any, digits: str) -> None:
    """Send `digits` once the call is connected (nothing if it ends first)."""
    while phone.call_state not in ("connected", "idle", "offline"):
        await asyncio.sleep(0.05)
    if phone.call_state == "connected":
        with contextlib.suppress(OmniError):
            await phone.send_dtmf(digits)


@app.command(cls=_Command, short_help="Answer a user's call.")
@takes_settings(CONNECTION, MEDIA, RECORDING, OUTPUT)
def answer(
    caller: Annotated[
        str,
        typer.Argument(help="User id whose call to answer.", metavar="CALLER", show_default=False),
    ],
    user_id: Annotated[str, typer.Option("--user-id", "-u", metavar="ID", help="Your user id.")],
    video: Annotated[
        bool, typer.Option("--video", help="Expect a video call (default: whatever is offered).")
    ] = False,
    audio: Annotated[
        bool, typer.Option("--audio", help="Expect an audio call (default: whatever is offered).")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, metavar="SECONDS", help="Seconds to wait for the call to ring."
        ),
    ] = 60.0,
    duration: Duration = 0.0,
    *,
    settings: Settings,
) -> None:
    """Answer CALLER's call as USER_ID, waiting for it to ring if needed."""
    call_type = _call_type(video, audio)

    async def flow() -> int:
        async def pick_up(phone: Any, out: Any) -> None:
            from omnicli.ui.flows import answer_waiting

            await answer_waiting(phone, out, call_type, caller, wait)

        return await _one_call(settings, user_id, duration, pick_up, f"omni: {caller}")

    run(flow)


async def _one_call(
    settings: Settings,
    user_id: str | None,
    duration: float,
    start: Callable[[Any, Any], Awaitable[None]],
    title: str,
    offline_wait: float | None = None,
) -> int:
    """Register, start a call with `start`, follow it to its end; the exit code."""
    from omnicli.ui.flows import Stopper, Window, follow_call, until_stopped

    out = _output(settings)
    stopper = Stopper.install()
    window = Window.create(_video_out(settings), title, stopper.hang_up, out)
    if window is not None:
        stopper.before_exit = window.restore
    phone = _phone(
        settings,
        video_sink=window.show if window else None,
        preview_sink=window.preview if window else None,
    )
    if window is not None:
        window.bind(phone)
    try:
        await phone.create_session(user_id)
        out.event(await phone.next_event())  # the SESSION event, before any waiting
        stopped, _ = await until_stopped(start(phone, out), stopper.event)
        if stopped:  # Ctrl-C before the call was placed or answered: nothing to hang up
            out.status("interrupted")
            return int(ExitCode.INTERRUPTED)
        me = phone.session.user_id if phone.session else None
        leave = await follow_call(
            phone,
            out,
            duration=duration,
            stop=stopper.event,
            window=window,
            offline_wait=offline_wait,
        )
        failure = call_ending_error(leave.reason, by_me=leave.by is not None and leave.by == me)
        if failure is not None:
            raise failure
        return 0
    finally:
        await phone.close()
        if window is not None:
            window.close()


@app.command(cls=_Command, short_help="A whole call on this machine, nothing to set up.")
@takes_settings(("video_size", "fps"), OUTPUT)
def demo(duration: Duration = 10.0, *, settings: Settings) -> None:
    """A whole call on this machine: embedded server, auto-answering peer, synthetic media."""

    async def flow() -> int:
        from dataclasses import replace

        from omnicli.server.driver import ServerConfig, SignalingServer
        from omnicli.ui.flows import Stopper, Window, answer_forever, follow_call

        out = _output(settings)
        stopper = Stopper.install()
        async with SignalingServer(ServerConfig(port=0)) as srv:
            local = replace(
                settings,
                server=srv.url,
                service_id="dev",
                service_key=None,
                video_source="test",
                speaker="none",
            )
            out.status(f"embedded server on {srv.url}; calling the demo peer 'bob' as 'alice'")
            bob = _phone(replace(local, audio_source="tone:660"))
            await bob.create_session("bob")
            bob_stop = asyncio.Event()
            bob_task = asyncio.create_task(
                answer_forever(
                    bob, out.with_label("bob"), stop=bob_stop, auto_answer=True, max_calls=1
                )
            )
            window = Window.create(_video_out(settings), "omni demo: bob", stopper.hang_up, out)
            if window is not None:
                stopper.before_exit = window.restore
            alice = _phone(
                replace(local, audio_source="tone:440"),
                video_sink=window.show if window else None,
                preview_sink=window.preview if window else None,
            )
            if window is not None:
                window.bind(alice)
            try:
                await alice.create_session("alice")
                await alice.offer_call("videocall", "bob")
                leave = await follow_call(
                    alice,
                    out.with_label("alice"),
                    duration=duration,
                    stop=stopper.event,
                    window=window,
                )
                await asyncio.wait_for(bob_task, 10)
                return exit_code_for_reason(leave.reason)
            finally:
                bob_stop.set()
                bob_task.cancel()  # ended already, unless alice's side failed first
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await bob_task  # its error, if any, is alice's too (e.g. stdout closed)
                await alice.close()
                await bob.close()
                if window is not None:
                    window.close()

    run(flow)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _click_error(name: str) -> type[Exception]:
    """Click's exception class `name`, from whichever Click this Typer carries."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def main() -> None:
    """`omni`: every mistake and failure ends in one `omni:` line and an exit code."""
    usage_error, click_error = _click_error("UsageError"), _click_error("ClickException")
    try:
        code = app(prog_name="omni", standalone_mode=False)
    except usage_error as exc:  # Click's own: bad option, missing argument, unknown command
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "omni"
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        typer.echo(f"omni: {message.rstrip('.')}; see '{where} --help'", err=True)
        raise SystemExit(int(ExitCode.USAGE)) from None
    except click_error as exc:
        typer.echo(f"omni: {' '.join(exc.format_message().split())}", err=True)  # type: ignore[attr-defined]
        raise SystemExit(getattr(exc, "exit_code", 1)) from None
    except typer.Abort:
        typer.echo("omni: interrupted", err=True)
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    except OmniError as exc:  # raised while reading options (settings), before run()
        typer.echo(f"omni: {exc}", err=True)
        raise SystemExit(int(exc.exit_code)) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
