"""The `omni` command line: a thin Typer shell over the call-core.

The commands live by kind in `servercmds`, `sessioncmds` and `callcmds`, all on the one
Typer `app` of `cliapp`; importing them here, in this order, puts them on it in the
order `omni --help` lists them. `cliapp.run()` turns a flow's errors into one line and
an exit code; `main()` does the same for errors raised while the options are read.
"""

from __future__ import annotations

import typer

from omnicli.errors import ExitCode, OmniError
from omnicli.ui.cliapp import app

# Each module puts its commands on `app`: this order is the order of omni --help.
# isort: off
from omnicli.ui import servercmds  # noqa: F401
from omnicli.ui import sessioncmds  # noqa: F401
from omnicli.ui import callcmds  # noqa: F401

# isort: on

__all__ = ["app", "main"]


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
