"""The commands that stay online or look around: `omni session create`, `omni repl`
(and bare `omni`), `omni devices`, `omni sessions`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from omnicli.errors import UsageError
from omnicli.ui.cliapp import Command, UserId, app, make_phone, output, run, session_app
from omnicli.ui.options import CONNECTION, MEDIA, OUTPUT, RECORDING, takes_settings
from omnicli.ui.settings import Settings

AutoAnswer = Annotated[bool, typer.Option("--auto-answer", help="Answer every call.")]
SipInbound = Annotated[
    bool,
    typer.Option(
        "--sip-inbound",
        help="Take calls from SIP phones too (the server registers you at its SIP "
        "registrar; omni server --sip-registrar).",
    ),
]


@session_app.command("create", cls=Command)
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
        from omnicli.ui.callwindow import Window
        from omnicli.ui.flows import Stopper, answer_forever
        from omnicli.ui.render import session_panel

        out = output(settings)
        stopper = Stopper.install()
        phone = make_phone(settings)
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


@app.command(cls=Command, short_help="The interactive prompt on one session (also: bare omni).")
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
        return await Repl(lambda sink: make_phone(settings, video_sink=sink), options).run()

    run(flow)


@app.command(cls=Command, short_help="List microphones, speakers and cameras.")
@takes_settings(("json", "verbose"))
def devices(*, settings: Settings) -> None:
    """List microphones, speakers and cameras with their ids (for --mic, --speaker, --camera)."""

    async def flow() -> int:
        from omnicli.media.devices import probe
        from omnicli.ui.render import devices_table

        report = probe()
        out = output(settings)
        if settings.json:
            out.json(report.as_dict())
        else:
            out.show(devices_table(report.as_dict()))
        for problem in report.problems:
            out.status(problem, "yellow")
        return 0

    run(flow)


@app.command(cls=Command, short_help="List who is online, and who is busy.")
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

        phone = make_phone(settings)
        try:
            page = await phone.session_page(limit)
            peers, total = list(page.peers), page.total
            while every and page.truncated and page.peers:
                page = await phone.session_page(after=page.peers[-1].user_id)
                peers += page.peers
            truncated = page.truncated
        finally:
            await phone.close()
        out = output(settings)
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
