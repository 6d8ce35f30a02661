"""The one-shot flows the CLI runs on a Phone: a call, an answering loop, the demo.

Each flow consumes the phone's events, hands them to an `Output`, and decides when
to hang up (duration elapsed, Ctrl-C, `q` in the window). No Typer here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from omnicli.errors import ExitCode, OmniError
from omnicli.phone import events as ev
from omnicli.phone.core import Phone
from omnicli.phone.endings import exit_code_for_reason
from omnicli.ui.render import Output
from omnicli.wire.protocol import EndReason, Track

T = TypeVar("T")
HANGUP_GRACE = 10.0  # after asking to hang up, how long to wait for the call's LEAVE


@dataclass
class Stopper:
    """First Ctrl-C (or `q`) asks for a clean hang-up; a second one exits at once."""

    event: asyncio.Event
    presses: int = 0

    @classmethod
    def install(cls) -> Stopper:
        stopper = cls(asyncio.Event())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, stopper.press)
            loop.add_signal_handler(signal.SIGTERM, stopper.press)
        return stopper

    def press(self) -> None:
        self.presses += 1
        if self.presses > 1:
            os._exit(int(ExitCode.INTERRUPTED))
        self.event.set()

    def hang_up(self) -> None:
        """`q` in the window: ask for the clean hang-up; pressing it again never kills."""
        self.event.set()


async def until_stopped(aw: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await `aw` unless `stop` is set first, then cancel it: (stopped, its result)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task.done():
        return False, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, OmniError):
        await task
    return True, None


class Window:
    """The call in an OpenCV window, when a display exists.

    Remote video large, the local video as a picture-in-picture preview, the peer and
    call state in the title bar and a status line. Keys: `q` (or Esc) hangs up, `m`
    turns the microphone off and on, `v` the camera. A peer's MUTE of its video dims
    the picture with a "paused" banner until its UNMUTE.
    """

    def __init__(self, title: str, on_quit: Callable[[], None], phone: Phone | None = None) -> None:
        from omnicli.ui.window import VideoWindow  # imports cv2 before anything imports av

        self._window = VideoWindow(title)
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
        if not enabled:
            return False
        from omnicli.ui.window import VideoWindow

        if not VideoWindow.available():
            out.status("no display: running headless, remote video is not shown")
            return False
        return True

    def _key(self, key: str) -> None:  # the window's thread
        if key in ("q", "\x1b"):
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
        flags = [
            f
            for f, on in (
                ("mic off", Track.AUDIO in phone.muted),
                ("camera off", Track.VIDEO in phone.muted),
                ("recording", bool(self._recording)),
            )
            if on
        ]
        self._window.set_caption(" · ".join(x for x in ("omni", peer, state) if x))
        self.status(" · ".join(x for x in (peer, state, *flags) if x))

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
        if not isinstance(event, ev.Stats):
            self.refresh()

    def close(self) -> None:
        self._window.close()


async def follow_call(
    phone: Phone,
    out: Output,
    *,
    duration: float,
    stop: asyncio.Event,
    window: Window | None = None,
) -> ev.Leave:
    """Render events until the call ends; hang up after `duration` s connected or on stop."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    hung_up = False
    while True:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        getter = asyncio.ensure_future(phone.next_event())
        waiting: set[asyncio.Future[Any]] = {getter}
        stopper = None if hung_up else asyncio.ensure_future(stop.wait())
        if stopper is not None:
            waiting.add(stopper)
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if stopper is not None:
            stopper.cancel()
        if getter not in done:
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            if hung_up:  # asked to leave and no LEAVE came: the call is over here anyway
                call_id = phone.call.call_id if phone.call else ""
                return ev.Leave(call_id, EndReason.HANGUP, None)
            hung_up = True
            out.status("hanging up…")
            await phone.leave()
            deadline = loop.time() + HANGUP_GRACE  # the LEAVE is normally already queued
            continue
        event = getter.result()
        out.event(event)
        if window is not None:
            window.on_event(event)
        if isinstance(event, ev.Connected) and duration > 0 and not hung_up:
            deadline = loop.time() + duration
        if isinstance(event, ev.Leave):
            return event
        if isinstance(event, ev.ServerLost) and phone.call is None:
            return ev.Leave("", EndReason.CONNECTION_LOST, None)


async def answer_forever(
    phone: Phone,
    out: Output,
    *,
    stop: asyncio.Event,
    auto_answer: bool,
    ask: Callable[[ev.Ringing], Any] | None = None,
    max_calls: int = 0,
    window_for: Callable[[str], Window | None] | None = None,
) -> int:
    """Stay online; answer calls (by itself or after asking) until stopped.

    `window_for(caller)` opens a window for each call answered (closed when it ends).
    """
    calls = 0
    while not stop.is_set():
        getter = asyncio.ensure_future(phone.next_event())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter not in done:
            getter.cancel()
            break
        event = getter.result()
        out.event(event)
        if isinstance(event, ev.ServerLost):
            return int(ExitCode.UNREACHABLE)
        if not isinstance(event, ev.Ringing):
            continue
        if not auto_answer and ask is None:
            continue  # nobody to ask: let it ring until the caller or the timer ends it
        if not auto_answer:
            assert ask is not None
            stopped, yes = await until_stopped(ask(event), stop)
            if stopped:  # Ctrl-C while asking: decline and leave
                await phone.leave()
                break
            if not yes:
                await phone.leave()
                continue
        window = window_for(event.caller) if window_for is not None else None
        if window is not None:
            window.bind(phone)
            phone.video_sink, phone.preview_sink = window.show, window.preview
        try:
            try:
                await phone.answer_call(event.call_type, event.caller)
            except Exception as exc:  # the caller may have given up meanwhile
                out.status(f"could not answer {event.caller}: {exc}", "yellow")
                continue
            leave = await follow_call(phone, out, duration=0, stop=stop, window=window)
        finally:
            if window is not None:
                phone.video_sink = phone.preview_sink = None
                window.close()
        calls += 1
        if max_calls and calls >= max_calls:
            return exit_code_for_reason(leave.reason)
    return int(ExitCode.OK)
