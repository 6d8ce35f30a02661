"""Where the remote video goes: a window, the terminal, or nowhere (`--video-out`).

`choose()` is pure: the setting and what this machine has in, the choice and the one
line that says why out. `auto` picks a window when a display exists, else the
terminal when stdin and stdout are a terminal that can show colour (and stdout is not
carrying JSON), else none. Asking for what cannot be had is a usage error, except a
window without a display, which falls back to none as it always has.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnicli.errors import UsageError

WINDOW, TERMINAL, NONE = "window", "terminal", "none"


@dataclass(frozen=True)
class Machine:
    """What the choice depends on."""

    display: bool  # an X display and a GUI-capable cv2
    colour_terminal: bool  # stdin and stdout are a terminal that shows colour
    json: bool = False  # stdout carries JSON lines


def choose(setting: str, machine: Machine) -> tuple[str, str | None]:
    """(window | terminal | none, a line to say or None)."""
    if setting == WINDOW:
        if machine.display:
            return WINDOW, None
        return NONE, "no display: running headless, remote video is not shown"
    if setting == TERMINAL:
        if machine.json:
            raise UsageError("--video-out terminal draws on stdout: not with --json")
        if not machine.colour_terminal:
            raise UsageError(
                "--video-out terminal needs a colour terminal on stdin and stdout "
                "(TERM set and not dumb)"
            )
        return TERMINAL, None
    if setting == NONE:
        return NONE, None
    if machine.display:
        return WINDOW, None
    if machine.colour_terminal and not machine.json:
        return TERMINAL, "no display: showing the video in this terminal (--video-out none: not)"
    return NONE, "no display and no colour terminal: remote video is not shown"


def this_machine(json: bool = False) -> Machine:
    """Probe the display and the terminal (imports cv2: not for `omni --help`)."""
    from omnicli.ui.termsink import TerminalVideo
    from omnicli.ui.window import VideoWindow

    return Machine(VideoWindow.available(), TerminalVideo.available(), json)
