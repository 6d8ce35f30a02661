"""The `omni` command line: a thin Typer shell over the call-core.

Each command builds Settings, then awaits a flow from `omnicli.ui.flows` on a
`Phone`. Errors become one line and an exit code here, in `run()`, and nowhere else.
Heavy modules (aiortc, av, cv2, sounddevice) are imported inside commands only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from omnicli.errors import ExitCode, OmniError, UsageError
from omnicli.phone.endings import call_ending_error, exit_code_for_reason
from omnicli.ui.settings import Settings, load

app = typer.Typer(
    help="omni: a command-line WebRTC video softphone with its own signaling server. "
    "With no command: the interactive prompt (omni repl).",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
session_app = typer.Typer(help="Create a session and stay online.", no_args_is_help=True)
app.add_typer(session_app, name="session")
token_app = typer.Typer(help="Per-user access tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")

# -- options shared by the client commands ----------------------------------------------

Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="Signaling server URL (env OMNI_SERVER; default ws://127.0.0.1:8765).",
        show_default=False,
    ),
]
ServiceId = Annotated[
    str | None,
    typer.Option(
        "--service-id", help="Service id (env OMNI_SERVICE_ID; default dev).", show_default=False
    ),
]
ServiceKey = Annotated[
    str | None,
    typer.Option("--service-key", help="Service key (env OMNI_SERVICE_KEY).", show_default=False),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Per-user access token from 'omni token create' (env OMNI_TOKEN).",
        show_default=False,
    ),
]
CaFile = Annotated[
    str | None,
    typer.Option(
        "--ca-file",
        help="CA certificate (PEM) to trust for a wss:// server (env OMNI_CA_FILE).",
        show_default=False,
    ),
]
VideoSource = Annotated[
    str | None,
    typer.Option(
        "--video-source",
        help="auto (camera, else test), camera[:ID], test (moving pattern), none, or a media file.",
        show_default=False,
    ),
]
AudioSource = Annotated[
    str | None,
    typer.Option(
        "--audio-source",
        help="auto (microphone, "
        "else tone), mic[:ID], tone, tone:HZ, silence, none, or a media file.",
        show_default=False,
    ),
]
VideoSize = Annotated[
    str, typer.Option("--video-size", help="Capture size of the camera or test pattern, WxH.")
]
Fps = Annotated[
    int, typer.Option("--fps", min=1, max=60, help="Frame rate of the camera or test pattern.")
]
Mic = Annotated[
    str | None,
    typer.Option(
        "--mic",
        help="Microphone id or name (omni devices); same as --audio-source mic:ID.",
        show_default=False,
    ),
]
Speaker = Annotated[
    str | None,
    typer.Option(
        "--speaker", help="Speaker id or name (omni devices), auto, or none.", show_default=False
    ),
]
Camera = Annotated[
    str | None,
    typer.Option(
        "--camera",
        help="Camera id (omni devices); same as --video-source camera:ID.",
        show_default=False,
    ),
]
RequireDevices = Annotated[
    bool,
    typer.Option(
        "--require-devices",
        help="Fail (exit 7) instead "
        "of falling back when a camera, microphone or speaker is missing.",
    ),
]
Record = Annotated[bool, typer.Option("--record", help="Record every call answered, here.")]
RecordFile = Annotated[
    str | None,
    typer.Option(
        "--record-file",
        help="Where --record writes (default omni-ME-PEER-TIME.mp4).",
        show_default=False,
    ),
]
RelayOnly = Annotated[
    bool,
    typer.Option(
        "--relay-only",
        help="Send media only through the "
        "TURN relay the server hands out (omni server --turn-url).",
    ),
]
MediaRecovery = Annotated[
    float | None,
    typer.Option(
        "--media-recovery",
        min=0,
        help="Seconds to re-establish a call's media after its network path dies "
        "(a new peer connection, same call) before it ends media_failed; 0: off. "
        "Default 15.",
        show_default=False,
    ),
]
NoWindow = Annotated[bool, typer.Option("--no-window", help="Never open a video window.")]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")]
UserId = Annotated[
    str | None,
    typer.Option("--user-id", "-u", help="Your user id (random if omitted).", show_default=False),
]
Duration = Annotated[
    float,
    typer.Option(
        "--duration", "-d", min=0, help="Hang up this many seconds after connecting (0: stay)."
    ),
]


SETTING_FLAGS = frozenset(
    {
        "server",
        "service_id",
        "service_key",
        "token",
        "ca_file",
        "video_source",
        "audio_source",
        "mic",
        "speaker",
        "camera",
        "require_devices",
        "record",
        "record_file",
        "video_size",
        "fps",
        "no_window",
        "json",
        "verbose",
        "relay_only",
        "media_recovery",
    }
)


def _flags(params: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The command's parameters that are settings (a command's `locals()`)."""
    return {k: v for k, v in params.items() if k in SETTING_FLAGS and k not in skip}


def _settings(**flags: Any) -> Settings:
    for device, source, word in (
        ("mic", "audio_source", "mic"),
        ("camera", "video_source", "camera"),
    ):
        chosen = flags.pop(device, None)
        if chosen is not None:
            if flags.get(source) is not None:
                raise UsageError(
                    f"--{device} and --{source.replace('_', '-')} both choose the "
                    f"{source.split('_')[0]} source: give one"
                )
            flags[source] = f"{word}:{chosen}"
    if not flags.get("require_devices"):
        flags.pop("require_devices", None)
    if not flags.get("record"):
        flags.pop("record", None)
    if not flags.get("relay_only"):
        flags.pop("relay_only", None)
    size = flags.pop("video_size", None)
    if size is not None:
        try:
            width, height = (int(x) for x in size.lower().split("x"))
        except ValueError:
            raise UsageError(f"--video-size must look like 640x480, not '{size}'") from None
        if not (16 <= width <= 3840 and 16 <= height <= 2160):
            raise UsageError("--video-size must be between 16x16 and 3840x2160")
        flags["width"], flags["height"] = width, height
    flags["window"] = None if not flags.pop("no_window", False) else False
    settings = load(flags)
    _logging(settings.verbose)
    return settings


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for noisy in ("aioice", "aiortc", "websockets", "libav"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


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
    from omnicli.phone.core import MediaOptions, Phone, PhoneConfig

    media = MediaOptions(
        video_source=settings.video_source,
        audio_source=settings.audio_source,
        width=settings.width,
        height=settings.height,
        fps=settings.fps,
        speaker=settings.speaker,
        require_devices=settings.require_devices,
        record=settings.record,
        record_file=settings.record_file,
        ice_relay_only=settings.relay_only,
        media_recovery=settings.media_recovery,
    )
    config = PhoneConfig(
        server_url=settings.server,
        service_id=settings.service_id,
        service_key=settings.service_key,
        token=settings.token,
        ca_file=settings.ca_file,
        media=media,
    )
    return Phone(config, video_sink=video_sink, preview_sink=preview_sink)


def _output(settings: Settings, label: str | None = None) -> Any:
    from omnicli.ui.render import Output

    return Output(json_mode=settings.json, label=label)


# -- commands ------------------------------------------------------------------------


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free).")] = 8765,
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
    ring_timeout: Annotated[float, typer.Option(min=1, help="Seconds a call may ring.")] = 60.0,
    connect_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds from answer to media up before the call fails.")
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
        int, typer.Option(min=1, help="Sessions a service may hold at once.")
    ] = 100_000,
    rate_limit: Annotated[
        float,
        typer.Option(
            min=0,
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
        float, typer.Option(min=60, help="Seconds a TURN credential lives.")
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
            help="Seconds a dropped client may take to resume its session (0: never).",
        ),
    ] = 6.0,
    verbose: Verbose = False,
) -> None:
    """Run the signaling server."""
    from dataclasses import replace

    from omnicli.server.driver import ServerConfig, SignalingServer
    from omnicli.server.switchboard import Service

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
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
    )

    async def flow() -> int:
        try:
            srv = SignalingServer(config)
            await srv.start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        print(f"omni server listening on {srv.url}", flush=True)
        serving = asyncio.ensure_future(srv.serve_forever())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # close every socket with 1001
            loop.add_signal_handler(signum, serving.cancel)
        try:
            await serving
        except asyncio.CancelledError:
            pass
        finally:
            await srv.close()
        return 0

    run(flow)


@token_app.command("create")
def token_create(
    user_id: Annotated[
        str,
        typer.Option("--user-id", "-u", help="The user id the token lets its holder register as."),
    ],
    ttl: Annotated[
        str, typer.Option("--ttl", help="How long it is valid: 90s, 15m, 1h, 7d.")
    ] = "1h",
    service_id: ServiceId = None,
    service_key: ServiceKey = None,
    json: Json = False,
) -> None:
    """Print an access token for USER_ID, signed with the service key (HS256 JWT)."""
    import time

    from omnicli.wire.protocol import check_user_id
    from omnicli.wire.tokens import mint_user_token, parse_ttl

    settings = _settings(service_id=service_id, service_key=service_key, json=json)

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


@session_app.command("create")
def session_create(
    user_id: UserId = None,
    auto_answer: Annotated[bool, typer.Option("--auto-answer", help="Answer every call.")] = False,
    server: Server = None,
    service_id: ServiceId = None,
    service_key: ServiceKey = None,
    token: Token = None,
    ca_file: CaFile = None,
    video_source: VideoSource = None,
    audio_source: AudioSource = None,
    mic: Mic = None,
    speaker: Speaker = None,
    camera: Camera = None,
    require_devices: RequireDevices = False,
    relay_only: RelayOnly = False,
    media_recovery: MediaRecovery = None,
    record: Record = False,
    record_file: RecordFile = None,
    video_size: VideoSize = "640x480",
    fps: Fps = 30,
    no_window: NoWindow = False,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Register as USER_ID and stay online, showing and answering calls.

    In a terminal (and without --json) this opens the interactive prompt on the session.
    """
    settings = _settings(**_flags(locals()))
    if sys.stdin.isatty() and sys.stdout.isatty() and not settings.json:
        _repl(settings, user_id, auto_answer)
        return

    async def flow() -> int:
        from omnicli.ui.flows import Stopper, Window, answer_forever
        from omnicli.ui.render import session_panel

        out = _output(settings)
        stopper = Stopper.install()
        phone = _phone(settings)
        window_for = None
        if Window.wanted(settings.window, out):

            def window_for(caller: str) -> Any:  # q in the window hangs up, not leaves
                return Window(f"omni: {caller}", lambda: asyncio.ensure_future(phone.leave()))

        try:
            info = await phone.create_session(user_id)
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
                window_for=window_for,
            )
        finally:
            await phone.close()

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


@app.callback(invoke_without_command=True)
def _no_command(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        _repl(_settings(), None, False)


@app.command()
def repl(
    user_id: UserId = None,
    auto_answer: Annotated[bool, typer.Option("--auto-answer", help="Answer every call.")] = False,
    server: Server = None,
    service_id: ServiceId = None,
    service_key: ServiceKey = None,
    token: Token = None,
    ca_file: CaFile = None,
    video_source: VideoSource = None,
    audio_source: AudioSource = None,
    mic: Mic = None,
    speaker: Speaker = None,
    camera: Camera = None,
    require_devices: RequireDevices = False,
    relay_only: RelayOnly = False,
    media_recovery: MediaRecovery = None,
    video_size: VideoSize = "640x480",
    fps: Fps = 30,
    no_window: NoWindow = False,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """An interactive prompt on one long-lived session (also: omni with no command)."""
    settings = _settings(**_flags(locals()))
    _repl(settings, user_id, auto_answer)


def _repl(settings: Settings, user_id: str | None, auto_answer: bool) -> None:
    async def flow() -> int:
        from omnicli.ui.repl import Repl, ReplOptions

        options = ReplOptions(
            user_id=user_id,
            auto_answer=auto_answer,
            window=settings.window,
            json=settings.json,
            server=settings.server,
            service_id=settings.service_id,
        )
        return await Repl(lambda sink: _phone(settings, video_sink=sink), options).run()

    run(flow)


@app.command()
def devices(json: Json = False, verbose: Verbose = False) -> None:
    """List microphones, speakers and cameras with their ids (for --mic, --speaker, --camera)."""
    settings = _settings(json=json, verbose=verbose)

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


@app.command()
def sessions(
    server: Server = None,
    service_id: ServiceId = None,
    service_key: ServiceKey = None,
    token: Token = None,
    ca_file: CaFile = None,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """List who is online under the service, and who is busy."""
    settings = _settings(**_flags(locals()))

    async def flow() -> int:
        from omnicli.ui.render import sessions_table

        phone = _phone(settings)
        try:
            peers = await phone.session_list()
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
        return 0

    run(flow)


CallTypeOpt = Annotated[bool, typer.Option("--video/--audio", help="Video call or audio only.")]


@app.command()
def call(
    callee: Annotated[str, typer.Argument(help="User id to call.")],
    video: CallTypeOpt = True,
    record: Annotated[
        bool,
        typer.Option("--record", help="Record the call (here, as a file; the callee is told)."),
    ] = False,
    record_file: RecordFile = None,
    duration: Duration = 0.0,
    user_id: UserId = None,
    server: Server = None,
    service_id: ServiceId = None,
    service_key: ServiceKey = None,
    token: Token = None,
    ca_file: CaFile = None,
    video_source: VideoSource = None,
    audio_source: AudioSource = None,
    mic: Mic = None,
    speaker: Speaker = None,
    camera: Camera = None,
    require_devices: RequireDevices = False,
    relay_only: RelayOnly = False,
    media_recovery: MediaRecovery = None,
    video_size: VideoSize = "640x480",
    fps: Fps = 30,
    no_window: NoWindow = False,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Call CALLEE; Ctrl-C or q in the window hangs up (m: mic on/off, v: camera on/off)."""
    settings = _settings(**_flags(locals(), skip=("record",)))

    async def flow() -> int:
        async def place(phone: Any) -> None:
            await phone.offer_call("videocall" if video else "audiocall", callee, record)

        return await _one_call(settings, user_id, duration, place, f"omni: {callee}")

    run(flow)


@app.command()
def answer(
    caller: Annotated[str, typer.Argument(help="User id whose call to answer.")],
    user_id: Annotated[str, typer.Option("--user-id", "-u", help="Your user id.")],
    video: Annotated[
        bool | None,
        typer.Option(
            "--video/--audio",
            help="Expected call type (default: whatever the caller offered).",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for the call to ring.")
    ] = 60.0,
    duration: Duration = 0.0,
    server: Server = None,
    service_id: ServiceId = None,
    service_key: ServiceKey = None,
    token: Token = None,
    ca_file: CaFile = None,
    video_source: VideoSource = None,
    audio_source: AudioSource = None,
    mic: Mic = None,
    speaker: Speaker = None,
    camera: Camera = None,
    require_devices: RequireDevices = False,
    relay_only: RelayOnly = False,
    media_recovery: MediaRecovery = None,
    record: Record = False,
    record_file: RecordFile = None,
    video_size: VideoSize = "640x480",
    fps: Fps = 30,
    no_window: NoWindow = False,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Answer CALLER's call as USER_ID, waiting for it to ring if needed."""
    settings = _settings(**_flags(locals()))
    call_type = None if video is None else ("videocall" if video else "audiocall")

    async def flow() -> int:
        async def pick_up(phone: Any) -> None:
            await phone.answer_call(call_type, caller, wait=wait)

        return await _one_call(settings, user_id, duration, pick_up, f"omni: {caller}")

    run(flow)


async def _one_call(
    settings: Settings,
    user_id: str | None,
    duration: float,
    start: Callable[[Any], Awaitable[None]],
    title: str,
) -> int:
    """Register, start a call with `start`, follow it to its end; the exit code."""
    from omnicli.ui.flows import Stopper, Window, follow_call, until_stopped

    out = _output(settings)
    stopper = Stopper.install()
    window = Window(title, stopper.hang_up) if Window.wanted(settings.window, out) else None
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
        stopped, _ = await until_stopped(start(phone), stopper.event)
        if stopped:  # Ctrl-C before the call was placed or answered: nothing to hang up
            out.status("interrupted")
            return int(ExitCode.INTERRUPTED)
        me = phone.session.user_id if phone.session else None
        leave = await follow_call(phone, out, duration=duration, stop=stopper.event, window=window)
        failure = call_ending_error(leave.reason, by_me=leave.by is not None and leave.by == me)
        if failure is not None:
            raise failure
        return 0
    finally:
        await phone.close()
        if window is not None:
            window.close()


@app.command()
def demo(
    duration: Duration = 10.0,
    video_size: VideoSize = "640x480",
    fps: Fps = 30,
    no_window: NoWindow = False,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """A whole call on this machine: embedded server, auto-answering peer, synthetic media."""
    settings = _settings(
        video_size=video_size, fps=fps, no_window=no_window, json=json, verbose=verbose
    )

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
            window = (
                Window("omni demo: bob", stopper.hang_up)
                if Window.wanted(settings.window, out)
                else None
            )
            alice = _phone(
                replace(local, audio_source="tone:440"), video_sink=window.show if window else None
            )
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
                await alice.close()
                await bob.close()
                if window is not None:
                    window.close()

    run(flow)


def main() -> None:
    try:
        app()
    except OmniError as exc:  # raised while reading options (`_settings`), before run()
        typer.echo(f"omni: {exc}", err=True)
        raise SystemExit(int(exc.exit_code)) from None


if __name__ == "__main__":  # pragma: no cover
    main()
