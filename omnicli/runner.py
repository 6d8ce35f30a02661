"""The one-shot flows the CLI runs on a Phone: a call, an answering loop, the demo.

Each flow consumes the phone's events, hands them to an `Output`, and decides when
to hang up (duration elapsed, Ctrl-C, `q` in the window). No Typer here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import events as ev
from .core import Phone
from .errors import ExitCode, exit_code_for_reason
from .render import Output


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


class Window:
    """The remote video in an OpenCV window, when a display exists."""

    def __init__(self, title: str, on_quit: Callable[[], None]) -> None:
        from .window import VideoWindow  # imports cv2 before anything imports av

        self._window = VideoWindow(title)
        self._window.on_key = self._key
        self._on_quit = on_quit
        self._loop = asyncio.get_running_loop()
        self._window.start()

    @staticmethod
    def wanted(enabled: bool, out: Output) -> bool:
        if not enabled:
            return False
        from .window import VideoWindow

        if not VideoWindow.available():
            out.status("no display: running headless, remote video is not shown")
            return False
        return True

    def _key(self, key: str) -> None:
        if key in ("q", "\x1b"):
            self._loop.call_soon_threadsafe(self._on_quit)

    def show(self, frame: Any) -> None:
        self._window.show(frame)

    def status(self, text: str) -> None:
        self._window.set_status(text)

    def close(self) -> None:
        self._window.close()


async def follow_call(
    phone: Phone, out: Output, *, duration: float, stop: asyncio.Event,
    window: Window | None = None,
) -> ev.Leave:
    """Render events until the call ends; hang up after `duration` s connected or on stop."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    hung_up = False
    while True:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        getter = asyncio.ensure_future(phone.next_event())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({getter, stopper}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if getter not in done:
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            if not hung_up:
                hung_up = True
                deadline = None
                out.status("hanging up…")
                await phone.leave()
            continue
        event = getter.result()
        out.event(event)
        if window is not None and not isinstance(event, ev.Stats):
            window.status(f"{phone.call.peer if phone.call else ''} · {phone.call_state}")
        if isinstance(event, ev.Connected) and duration > 0:
            deadline = loop.time() + duration
        if isinstance(event, ev.Leave):
            return event
        if isinstance(event, ev.ServerLost) and phone.call is None:
            return ev.Leave("", "connection_lost", None)


async def answer_forever(
    phone: Phone, out: Output, *, stop: asyncio.Event, auto_answer: bool,
    ask: Callable[[ev.Ringing], Any] | None = None, max_calls: int = 0,
) -> int:
    """Stay online; answer calls (by itself or after asking) until stopped."""
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
        if not (auto_answer or await ask(event)):
            await phone.leave()
            continue
        try:
            await phone.answer_call(event.call_type, event.caller)
        except Exception as exc:  # the caller may have given up meanwhile
            out.status(f"could not answer {event.caller}: {exc}", "yellow")
            continue
        leave = await follow_call(phone, out, duration=0, stop=stop)
        calls += 1
        if max_calls and calls >= max_calls:
            return exit_code_for_reason(leave.reason)
    return int(ExitCode.OK)
