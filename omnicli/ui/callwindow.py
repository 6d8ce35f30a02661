"""The call's picture for the one-shot commands and the REPL: an OpenCV window, or the
call drawn in this terminal, with its keys (q hangs up, m and v mute) and a caption
that follows the call's events.

`Window.create()` picks which from `--video-out`; the window and the terminal picture
each run in their own thread (`ui.window`, `ui.termsink`) and are imported only here,
when a call shows video.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from omnicli.errors import OmniError
from omnicli.phone import events as ev
from omnicli.phone.core import Phone
from omnicli.phone.figures import CallFigures
from omnicli.ui.render import Output
from omnicli.wire.protocol import Track


def window_texts(
    peer: str, state: str, muted: AbstractSet[str], recording: bool
) -> tuple[str, str]:
    """The window's title bar and status line: the peer and call state, then one's own
    mutes said as one's own ("your camera off"), so they never read as the peer's."""
    flags = [
        text
        for text, on in (
            ("your mic off", "audio" in muted),
            ("your camera off", "video" in muted),
            ("recording", recording),
        )
        if on
    ]
    caption = " · ".join(x for x in ("omni", peer, state) if x)
    return caption, " · ".join(x for x in (peer, state, *flags) if x)


class Window:
    """The call in an OpenCV window, or drawn in this terminal (`terminal=True`).

    Remote video large, the local video as a picture-in-picture preview, the peer and
    call state in the title bar and a status line (in the terminal: one caption line,
    with the live figures). Keys: `q` (or Esc, in a window) hangs up, `m` turns the
    microphone off and on, `v` the camera. A peer's MUTE of its video dims the picture
    with a "paused" banner until its UNMUTE. `create()` picks which from `--video-out`.
    """

    def __init__(
        self,
        title: str,
        on_quit: Callable[[], None],
        phone: Phone | None = None,
        shown: bool = True,
        terminal: bool = False,
    ) -> None:
        """Start the window's thread: before connecting, as this waits for the GUI to start.

        `shown=False` keeps it off the screen until `open()` (a session between calls).
        `terminal=True` draws the call in this terminal instead (`--video-out terminal`).
        """
        self._window: Any
        if terminal:
            from omnicli.ui.termsink import TerminalVideo  # imports cv2 before av too

            self._window = TerminalVideo(title)
        else:
            from omnicli.ui.window import VideoWindow  # imports cv2 before anything imports av

            self._window = VideoWindow(title, shown=shown)
        self.terminal = terminal
        self._figures: CallFigures | None = None
        self._window.on_key = self._key
        self._on_quit = on_quit
        self._loop = asyncio.get_running_loop()
        self._phone = phone
        self._tasks: set[asyncio.Task[None]] = set()
        self._recording: set[str] = set()
        self._window.start()

    def bind(self, phone: Phone) -> None:
        """The phone whose call this window shows and whose mute the keys toggle."""
        self._phone = phone

    @staticmethod
    def wanted(enabled: bool, out: Output) -> bool:
        """A window (not the terminal) for this call? Says so in one line when not."""
        return Window.kind("window" if enabled else "none", out) == "window"

    @staticmethod
    def kind(video_out: str, out: Output) -> str:
        """window, terminal or none for the `--video-out` setting; says why in one line."""
        from omnicli.ui.videoout import choose, this_machine

        if video_out == "none":
            return "none"
        chosen, note = choose(video_out, this_machine(out.json_mode))
        if note:
            out.status(note)
        return chosen

    @classmethod
    def create(
        cls, video_out: str, title: str, on_quit: Callable[[], None], out: Output
    ) -> Window | None:
        """The window or terminal picture `video_out` asks for (None: no video shown).

        While the picture is in the terminal, the lines `out` would print wait until it
        closes (they would land in the picture); the caption carries the call's state.
        """
        chosen = cls.kind(video_out, out)
        if chosen == "none":
            return None
        window = cls(title, on_quit, terminal=chosen == "terminal")
        if window.terminal:
            out.hold()
            window._out = out
        return window

    _out: Output | None = None

    def _key(self, key: str) -> None:  # the window's thread
        if key == "q" or (key == "\x1b" and not self.terminal):  # Esc starts terminal keys
            self._loop.call_soon_threadsafe(self._on_quit)
        elif key in ("m", "v"):
            track = Track.AUDIO if key == "m" else Track.VIDEO
            self._loop.call_soon_threadsafe(self._toggle, track)

    def _toggle(self, track: Track) -> None:
        task = asyncio.ensure_future(self._flip(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flip(self, track: Track) -> None:
        phone = self._phone
        if phone is None:
            return
        try:
            if track in phone.muted:
                await phone.set_unmute(track)
            else:
                await phone.set_mute(track)
        except OmniError as exc:
            self.status(str(exc))
            return
        self.refresh()

    def open(self) -> None:
        """On the screen again, empty, for the next call; never blocks the event loop."""
        self._recording.clear()
        self._window.set_paused(None)
        self._window.open()

    def hide(self) -> None:
        """Off the screen until `open()`; never blocks the event loop."""
        self._window.hide()

    def show(self, frame: Any) -> None:
        self._window.show(frame)

    def preview(self, frame: Any) -> None:
        """The local video (None: the camera is off)."""
        self._window.set_preview(frame)

    def status(self, text: str) -> None:
        self._window.set_status(text)

    def refresh(self) -> None:
        """Title bar and status line from the phone's call state."""
        phone = self._phone
        if phone is None:
            return
        call = phone.call
        peer = call.peer if call else (phone.ringing_from or [""])[0]
        state = phone.call_state
        caption, status = window_texts(peer, state, phone.muted, bool(self._recording))
        self._window.set_caption(caption)
        figures = figures_text(self._figures) if self.terminal and phone.call else ""
        self.status(" · ".join(x for x in (status, figures) if x))

    def on_event(self, event: ev.CallEvent) -> None:
        """Follow the call: paused video, recording, state changes."""
        match event:
            case ev.Mute(user_id=user, track=Track.VIDEO):
                self._window.set_paused(f"{user} paused the video")
            case ev.Unmute(track=Track.VIDEO):
                self._window.set_paused(None)
            case ev.Recording(user_id=user, on=on):
                (self._recording.add if on else self._recording.discard)(user)
            case ev.Leave() | ev.Connected():
                self._window.set_paused(None)
                self._recording.clear()
            case ev.Stats(figures=figures):
                self._figures = figures
        if not isinstance(event, ev.Stats) or self.terminal:
            self.refresh()

    def close(self) -> None:
        self._window.close()
        out, self._out = self._out, None
        if out is not None:
            out.release()

    def restore(self) -> None:
        """Give the terminal back now (a hard exit is coming); any thread."""
        restore = getattr(self._window, "restore", None)
        if restore is not None:
            restore()


def figures_text(figures: CallFigures | None) -> str:
    """The live figures in a few words, for the terminal picture's caption."""
    if not figures:
        return ""
    from omnicli.ui.statusline import directions, number

    incoming, _ = directions(figures)
    return " ".join(
        x
        for x in (
            f"in {number(incoming.fps, '{:.0f}')} fps",
            incoming.resolution or "",
            f"· {number(incoming.kbps)} kbit/s",
            f"· rtt {number(figures.rtt_ms, '{:.0f}', ' ms')}",
            f"· loss {number(incoming.loss_pct, '{:.1f}', ' %')}",
        )
        if x
    )
