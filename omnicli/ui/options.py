"""The command-line options that are settings, declared once for every command.

A command asks for the groups it takes with `@takes_settings(CONNECTION, MEDIA, ...)`
and receives one `settings: Settings` argument built by `settings.from_flags` (flags
over environment over config file over defaults). Every option here defaults to None
(or an off switch), so a value not given on the command line never hides the file's.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from omnicli.ui.settings import Settings, env_name, from_flags


def _env(key: str, default: str | None = None) -> str:
    """The tail of a help text: the environment variable and the default."""
    return f" (env {env_name(key)}{'; default ' + default if default else ''})"


def _text(flag: str, help: str, metavar: str = "TEXT") -> Any:
    return Annotated[str | None, typer.Option(flag, help=help, show_default=False, metavar=metavar)]


def _switch(flag: str, help: str) -> Any:
    return Annotated[bool, typer.Option(flag, help=help)]


OPTIONS: dict[str, Any] = {
    "server": _text(
        "--server", "Signaling server URL" + _env("server", "ws://127.0.0.1:8765") + ".", "URL"
    ),
    "service_id": _text("--service-id", "Service id" + _env("service_id", "dev") + ".", "ID"),
    "service_key": _text("--service-key", "Service key" + _env("service_key") + ".", "KEY"),
    "token": _text(
        "--token",
        "Per-user access token from 'omni token create'" + _env("token") + ".",
        "TOKEN",
    ),
    "ca_file": _text(
        "--ca-file",
        "CA certificate (PEM) to trust for a wss:// server" + _env("ca_file") + ".",
        "FILE",
    ),
    "video_source": _text(
        "--video-source",
        "auto (camera, else test), camera[:ID], test (moving pattern), none, or a media file"
        + _env("video_source", "auto")
        + ".",
        "SOURCE",
    ),
    "audio_source": _text(
        "--audio-source",
        "auto (microphone, else tone), mic[:ID], tone, tone:HZ, silence, none, or a media file"
        + _env("audio_source", "auto")
        + ".",
        "SOURCE",
    ),
    "mic": _text(
        "--mic", "Microphone id or name (omni devices); same as --audio-source mic:ID.", "ID"
    ),
    "speaker": _text(
        "--speaker",
        "Speaker id or name (omni devices), auto, or none" + _env("speaker", "auto") + ".",
        "ID",
    ),
    "camera": _text(
        "--camera", "Camera id (omni devices); same as --video-source camera:ID.", "ID"
    ),
    "require_devices": _switch(
        "--require-devices",
        "Fail (exit 7) instead of falling back when a camera, microphone or speaker is missing.",
    ),
    "relay_only": _switch(
        "--relay-only",
        "Send media only through the TURN relay the server hands out (omni server --turn-url).",
    ),
    "media_recovery": Annotated[
        float | None,
        typer.Option(
            "--media-recovery",
            min=0,
            metavar="S",
            help="Seconds to re-establish a call's media after its network path dies (a new "
            "peer connection, same call) before it ends media_failed; 0: off"
            + _env("media_recovery", "15")
            + ".",
            show_default=False,
        ),
    ],
    "video_size": _text(
        "--video-size",
        "Capture size of the camera or test pattern (config keys width, height; default 640x480).",
        "WxH",
    ),
    "fps": Annotated[
        int | None,
        typer.Option(
            "--fps",
            min=1,
            max=60,
            metavar="N",
            help="Frame rate of the camera or test pattern" + _env("fps", "30") + ".",
            show_default=False,
        ),
    ],
    "max_bitrate": _text(
        "--max-bitrate",
        "Ceiling of the video bitrate sent, e.g. 300k or 1.5M; 0 or none: no ceiling"
        + _env("max_bitrate", "none")
        + ".",
        "BPS",
    ),
    "record": _switch("--record", "Record the call here, as a file (a session: every call)."),
    "record_file": _text(
        "--record-file", "Where --record writes (default omni-ME-PEER-TIME.mp4).", "FILE"
    ),
    "no_window": _switch("--no-window", "Never open a video window (config: window = false)."),
    "video_out": _text(
        "--video-out",
        "Where the remote video goes: auto (a window if there is a display, else this "
        "terminal if it shows colour, else none), window, terminal, none"
        + _env("video_out", "auto")
        + ".",
        "WHERE",
    ),
    "json": _switch("--json", "One JSON object per line on stdout."),
    "verbose": Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")],
}

CONNECTION = ("server", "service_id", "service_key", "token", "ca_file")
MEDIA = (
    "video_source",
    "audio_source",
    "mic",
    "speaker",
    "camera",
    "require_devices",
    "relay_only",
    "media_recovery",
    "video_size",
    "fps",
    "max_bitrate",
)
RECORDING = ("record", "record_file")
OUTPUT = ("no_window", "video_out", "json", "verbose")


def _default(annotation: Any) -> Any:
    return False if annotation.__origin__ is bool else None


def takes_settings(*groups: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of `groups` to a command that takes `settings: Settings`."""
    names = [name for group in groups for name in group]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "settings"]
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=OPTIONS[name],
                default=_default(OPTIONS[name]),
            )
            for name in names
        ]

        @functools.wraps(command)
        def with_settings(**kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name) for name in names}
            ctx = kwargs.get("ctx")
            if ctx is not None and ctx.invoked_subcommand is not None:
                # the top-level options, before a command: that command reads its own
                # settings (a broken client config must not stop `omni server`)
                return command(settings=None, **kwargs)
            return command(settings=settings_of(flags), **kwargs)

        parameters = [*own, *added]
        with_settings.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters, return_annotation=None
        )
        with_settings.__annotations__ = {p.name: p.annotation for p in parameters}
        del with_settings.__wrapped__  # Typer reads the signature set above, not the inner one
        return with_settings

    return decorate


def settings_of(flags: dict[str, Any]) -> Settings:
    """The settings for a command run, with logging set up from them."""
    settings = from_flags(flags)
    configure_logging(settings.verbose)
    return settings


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,  # the top-level callback configured it once already
    )
    if not verbose:
        for noisy in ("aioice", "aiortc", "websockets", "libav"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
