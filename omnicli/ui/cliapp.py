"""The Typer app that every `omni` command hangs on, and `run()`, where errors end.

`omnicli.ui.cli` puts the commands on it (from `servercmds`, `sessioncmds`,
`callcmds`) and holds `main()`. A command builds Settings, then hands `run()` a flow:
errors become one line and an exit code in `run()` and nowhere else. Heavy modules
(aiortc, av, cv2, sounddevice) are imported inside commands only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from omnicli.errors import ExitCode, OmniError
from omnicli.ui.settings import Settings


class Command(TyperCommand):
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

# -- options that are not settings, shared by several commands -----------------------

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


def make_phone(
    settings: Settings,
    video_sink: Callable[[Any], None] | None = None,
    preview_sink: Callable[[Any], None] | None = None,
) -> Any:
    from omnicli.phone.core import Phone

    return Phone(settings.phone_config(), video_sink=video_sink, preview_sink=preview_sink)


def video_out(settings: Settings) -> str:
    """Where this command shows remote video: the setting, or none for --no-window."""
    return settings.video_out if settings.window else "none"


def output(settings: Settings, label: str | None = None) -> Any:
    from omnicli.ui.render import Output

    return Output(json_mode=settings.json, label=label)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
