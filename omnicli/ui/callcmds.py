"""The commands that make one call and end with it: `omni call`, `omni answer`, and
`omni demo` (a whole call on this machine, embedded server and peer included)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from omnicli.errors import ExitCode, OmniError, UsageError
from omnicli.phone.endings import call_ending_error, exit_code_for_reason
from omnicli.ui.cliapp import Command, UserId, app, make_phone, output, run, video_out
from omnicli.ui.options import CONNECTION, MEDIA, OUTPUT, RECORDING, takes_settings
from omnicli.ui.settings import Settings

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


VideoCall = Annotated[bool, typer.Option("--video", help="A video call (the default).")]
AudioCall = Annotated[bool, typer.Option("--audio", help="An audio-only call.")]


def _call_type(video: bool, audio: bool) -> str | None:
    """videocall, audiocall, or None when neither was asked for; both is a mistake."""
    if video and audio:
        raise UsageError("--video and --audio contradict each other: give one")
    return "videocall" if video else "audiocall" if audio else None


@app.command(cls=Command, short_help="Call a user and stay in the call.")
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


@app.command(cls=Command, short_help="Answer a user's call.")
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
    from omnicli.ui.callwindow import Window
    from omnicli.ui.flows import Stopper, follow_call, until_stopped

    out = output(settings)
    stopper = Stopper.install()
    window = Window.create(video_out(settings), title, stopper.hang_up, out)
    if window is not None:
        stopper.before_exit = window.restore
    phone = make_phone(
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


@app.command(cls=Command, short_help="A whole call on this machine, nothing to set up.")
@takes_settings(("video_size", "fps"), OUTPUT)
def demo(duration: Duration = 10.0, *, settings: Settings) -> None:
    """A whole call on this machine: embedded server, auto-answering peer, synthetic media."""

    async def flow() -> int:
        from dataclasses import replace

        from omnicli.server.config import ServerConfig
        from omnicli.server.driver import SignalingServer
        from omnicli.ui.callwindow import Window
        from omnicli.ui.flows import Stopper, answer_forever, follow_call

        out = output(settings)
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
            bob = make_phone(replace(local, audio_source="tone:660"))
            await bob.create_session("bob")
            bob_stop = asyncio.Event()
            bob_task = asyncio.create_task(
                answer_forever(
                    bob, out.with_label("bob"), stop=bob_stop, auto_answer=True, max_calls=1
                )
            )
            window = Window.create(video_out(settings), "omni demo: bob", stopper.hang_up, out)
            if window is not None:
                stopper.before_exit = window.restore
            alice = make_phone(
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
