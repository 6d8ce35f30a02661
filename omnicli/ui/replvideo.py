"""Where a call's video goes in the REPL: a window when there is a display, the terminal
picture of `view` while it shows, or nowhere.

The REPL outlives its calls and sessions, so the window is opened once, hidden between
calls, and each new `Phone` is handed these sinks. Frames are converted for a sink only
while one wants them, so a call in the REPL costs nothing extra when nobody looks at it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omnicli.ui.render import Output
from omnicli.ui.settings import Settings

Sink = Callable[[Any], None]


class ReplVideo:
    """The REPL's window (if any) and `view`'s terminal picture (while it shows)."""

    def __init__(self, settings: Settings, hang_up: Callable[[], None]) -> None:
        self.settings = settings
        self.hang_up = hang_up  # q in the window
        self.window: Any = None
        self.view: Any = None  # the full-terminal picture of `view`, while it shows

    def where(self) -> str:
        """Where this REPL shows video: the setting, or none for --no-window."""
        return self.settings.video_out if self.settings.window else "none"

    def open_window(self, out: Output) -> None:
        """Open the window if video may go there and there is a display; say if not."""
        if self.where() not in ("auto", "window"):
            return
        from omnicli.ui.callwindow import Window
        from omnicli.ui.videoout import this_machine

        if this_machine(self.settings.json).display:
            self.window = Window("omni", self.hang_up)
        elif self.can_view():
            out.status("no display: during a call, view shows its video in this terminal")
        else:
            out.status("no display: running headless, remote video is not shown")

    def can_view(self) -> bool:
        """Remote video is wanted: a window is open, or `view` can draw in the terminal."""
        if self.window is not None:
            return True
        if self.where() == "none" or self.settings.json:
            return False
        try:
            return sys.stdout.isatty() and sys.stdin.isatty()
        except (AttributeError, ValueError):
            return False

    def sinks(self, to_view: bool = False) -> tuple[Sink | None, Sink | None]:
        """The call's remote and preview sinks: none unless the window or `view` wants them."""
        if to_view or self.window is not None:
            return self.show, self.preview
        return None, None

    def show(self, frame: Any) -> None:  # the call's thread: remote frames
        if self.window is not None:
            self.window.show(frame)
        view = self.view
        if view is not None:
            view.show(frame)

    def preview(self, frame: Any) -> None:
        if self.window is not None:
            self.window.preview(frame)
        view = self.view
        if view is not None:
            view.set_preview(frame)

    def restore_terminal(self) -> None:
        """Give the terminal back from `view` at once (a hard exit)."""
        if self.view is not None:
            self.view.restore()

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
