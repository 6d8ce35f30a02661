"""The interactive REPL: one long-lived session driven by commands typed at a prompt.

prompt_toolkit reads the lines (history kept between runs, Tab completion, a bottom
toolbar with the status line) inside `patch_stdout()`, so the events a background
task prints appear above the line being typed. Every command calls the same `Phone`
the one-shot commands use. An error of the call-core becomes one line; an unexpected
one becomes one line plus a traceback in the log file; neither ends the REPL.

Keys: Ctrl-C clears a typed line; on an empty line it hangs up a call (or declines a
ringing one), and a second Ctrl-C in a row leaves. Ctrl-D or `quit` leaves: hang up,
close the session. While a call rings here, `y` (or Enter) answers and `n` rejects.
Without a terminal on stdin, lines are read plainly from it (for scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import events as ev
from .commands import Command, CompletionContext, parse
from .errors import OmniError, UsageError
from .prompt import PlainReader, PromptReader, crash_logger, crash_path, log_to
from .render import Output, session_panel
from .statusline import Status, status_lines

log = logging.getLogger("omnicli.repl")
USERS_REFRESH_S = 3.0
DEVICE_KEYS = {"camera": "video_inputs", "mic": "audio_inputs", "speaker": "audio_outputs"}


@dataclass(frozen=True)
class ReplOptions:
    user_id: str | None = None
    auto_answer: bool = False
    window: bool = False
    json: bool = False
    server: str = ""
    service_id: str = ""


class Repl:
    """The prompt, the event pump and the commands, around one `Phone` at a time."""

    def __init__(self, make_phone: Callable[[Callable[[Any], None] | None], Any],
                 options: ReplOptions) -> None:
        self.make_phone = make_phone
        self.options = options
        self.phone: Any = None
        self.out = Output(json_mode=options.json)
        self.figures: dict[str, Any] | None = None
        self.peer_muted: set[str] = set()
        self.recording = False
        self.users: tuple[str, ...] = ()
        self.devices_cache: dict[str, tuple[str, ...]] | None = None
        self._window: Any = None
        self._phone_tasks: list[asyncio.Task[Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._command: asyncio.Task[Any] | None = None
        self._reader: PromptReader | PlainReader | None = None
        self.armed = False  # the previous key was a Ctrl-C: another one leaves
        self._quit = False
        self._crash_log = crash_logger()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> int:
        from prompt_toolkit.patch_stdout import patch_stdout

        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        interactive = sys.stdin.isatty()
        with patch_stdout(raw=True):
            self.out = Output(json_mode=self.options.json)
            log_to(sys.stderr)
            for sig, handler in ((signal.SIGINT, self._on_sigint),
                                 (signal.SIGTERM, self.request_quit)):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, handler)
            self._reader = reader = (PromptReader(self, lambda text: self.say(text, "yellow"))
                                     if interactive else PlainReader())
            self._open_window()
            await self.guarded(self.new_session(self.options.user_id))
            if interactive and not self.options.json:
                self.say("type help for commands; Tab completes; Ctrl-D leaves", "dim")
            try:
                while not self._quit:
                    try:
                        line = await reader.read()
                    except KeyboardInterrupt:
                        await self._interrupt()
                        continue
                    except EOFError:
                        break
                    self.armed = False
                    await self._execute(line)
            finally:
                await self._shutdown()
        return 0

    def prompt_text(self) -> str:
        user = self.phone.session.user_id if self.phone and self.phone.session else "omni"
        return f"{user} [y/n]> " if self.ringing_here() else f"{user}> "

    def toolbar_text(self) -> str:
        return "\n".join(status_lines(self.status()))

    def status(self) -> Status:
        phone = self.phone
        if phone is None:
            return Status(None, "offline")
        call = phone.call
        return Status(
            user_id=phone.session.user_id if phone.session else None,
            call_state=phone.call_state,
            peer=call.peer if call else None,
            muted=phone.muted,
            peer_muted=frozenset(self.peer_muted),
            recording=self.recording,
            ringing_from=tuple(phone.ringing_from),
            figures=self.figures if call else None,
        )

    def ringing_here(self) -> bool:
        return bool(self.phone and self.phone.ringing_from and self.phone.call is None)

    # -- commands ----------------------------------------------------------------------

    async def _execute(self, line: str) -> None:
        task = asyncio.ensure_future(self.guarded(self._run_line(line)))
        self._command = task
        try:
            await task
        except asyncio.CancelledError:
            if (current := asyncio.current_task()) and current.cancelling():
                raise
            self.out.status("interrupted", "yellow")
        finally:
            self._command = None

    async def _run_line(self, line: str) -> None:
        command = parse(line)
        if command is not None:
            await self.run_command(command)

    async def guarded(self, work: Any) -> None:
        """Await `work`; an OmniError is one red line, anything else one line and a log."""
        try:
            await work
        except OmniError as exc:
            self.out.status(str(exc), "red")
        except Exception as exc:
            self._crash_log.exception("unexpected error")
            self.out.status(f"unexpected error: {exc!r} (details in {crash_path()})", "red")

    async def run_command(self, cmd: Command) -> None:
        from . import repl_actions

        await repl_actions.run(self, cmd)

    def say(self, text: str, style: str = "green") -> None:
        self.out.status(text, style)

    def need_phone(self) -> Any:
        if self.phone is None or self.phone.session is None:
            raise UsageError("no session: session create [ID] first")
        return self.phone

    # -- the session and its events ---------------------------------------------------

    async def new_session(self, user_id: str | None) -> None:
        await self._close_phone()
        self.phone = phone = self.make_phone(self._window.show if self._window else None)
        self._phone_tasks = [asyncio.ensure_future(self._pump(phone))]
        info = await phone.create_session(user_id)
        if not self.options.json:
            self.out.show(session_panel(info.user_id, info.session, self.options.server,
                                        self.options.service_id))
        self._phone_tasks.append(asyncio.ensure_future(self._refresh_users(phone)))

    async def _close_phone(self) -> None:
        for task in self._phone_tasks:
            task.cancel()
        for task in self._phone_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._phone_tasks = []
        if self.phone is not None:
            phone, self.phone = self.phone, None
            await phone.close()
            while not phone.events.empty():  # the last call's LEAVE and summary
                self._show_event(phone.events.get_nowait())
        self.figures, self.recording, self.users = None, False, ()

    async def _pump(self, phone: Any) -> None:
        while True:
            event = await phone.next_event()
            try:
                self._show_event(event)
                self._react(phone, event)
            except Exception:
                self._crash_log.exception("while showing %s", event.name)
            if self._reader is not None:
                self._reader.redraw()

    def _show_event(self, event: ev.CallEvent) -> None:
        if isinstance(event, ev.Stats):
            self.figures = event.figures
            if self.options.json:
                self.out.event(event)
            return
        self.out.event(event)

    def _react(self, phone: Any, event: ev.CallEvent) -> None:
        me = phone.session.user_id if phone.session else None
        match event:
            case ev.Ringing(caller=caller):
                self.bell()
                if self.options.auto_answer:
                    self.spawn(self.guarded(phone.answer_call(None, caller)))
                else:
                    self.say(f"press y to answer {caller}, n to reject", "bold yellow")
            case ev.Connected(record=record):
                self.recording, self.figures = record, None
                self.peer_muted.clear()
            case ev.Leave() | ev.Cancel():
                self.figures, self.recording = None, False
                self.peer_muted.clear()
            case ev.Mute(user_id=user, track=track) if user != me:
                self.peer_muted.add(track)
            case ev.Unmute(user_id=user, track=track) if user != me:
                self.peer_muted.discard(track)
            case ev.Recording(on=on):
                self.recording = on

    async def _refresh_users(self, phone: Any) -> None:
        """Keep the online user ids fresh for completion."""
        while True:
            with contextlib.suppress(OmniError):
                peers = await phone.session_list()
                me = phone.session.user_id if phone.session else None
                self.users = tuple(p.user_id for p in peers if p.user_id != me)
            await asyncio.sleep(USERS_REFRESH_S)

    def device_ids(self) -> dict[str, tuple[str, ...]]:
        """Device ids by kind for completion; empty where devices cannot be listed."""
        if self.devices_cache is None:
            try:
                listing = self.phone.get_device_list() if self.phone else {}
            except Exception as exc:  # no devices module yet, no PortAudio, ...
                log.debug("no device list: %s", exc)
                listing = {}
            self.devices_cache = {
                kind: tuple(str(d.get("id")) for d in listing.get(key) or [])
                for kind, key in DEVICE_KEYS.items()
            }
        return self.devices_cache

    def completion_context(self, text: str) -> CompletionContext:
        wants_devices = text.split()[:1] == ["device"]
        return CompletionContext(
            users=self.users,
            ringing=tuple(self.phone.ringing_from) if self.phone else (),
            devices=self.device_ids() if wants_devices else None,
        )

    # -- interrupts, leaving -----------------------------------------------------------

    def _on_sigint(self) -> None:
        """A real SIGINT (no prompt in raw mode): stop the running command, then as Ctrl-C."""
        if self._command is not None and not self._command.done():
            self._command.cancel()
        self.spawn(self._interrupt())

    async def _interrupt(self) -> None:
        phone = self.phone
        if phone is not None and (phone.call_state not in ("idle", "offline")):
            self.armed = True
            self.say("hanging up (Ctrl-C again leaves)", "yellow")
            await self.guarded(phone.leave())
        elif self.armed:
            self.request_quit()
        else:
            self.armed = True
            self.say("Ctrl-C again, Ctrl-D or quit leaves", "yellow")

    def request_quit(self) -> None:
        self._quit = True
        if self._reader is not None:
            self._reader.stop()

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._close_phone()
        if self._window is not None:
            self._window.close()
        self.say("left; bye", "dim")

    def _open_window(self) -> None:
        if not self.options.window:
            return
        from .runner import Window

        if Window.wanted(True, self.out):
            self._window = Window("omni", self._hangup_soon)

    def _hangup_soon(self) -> None:
        if self.phone is not None:
            self.spawn(self.guarded(self.phone.leave()))

    # -- small helpers -----------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def bell(self) -> None:
        if self._reader is not None:
            self._reader.bell()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self._crash_log.error("event loop: %s", context.get("message"), exc_info=exc)
