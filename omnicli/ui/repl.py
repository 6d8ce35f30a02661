"""The interactive REPL: one long-lived session driven by commands typed at a prompt.

prompt_toolkit reads the lines (history kept between runs, Tab completion, a bottom
toolbar with the status line) inside `patch_stdout()`, so the events a background
task prints appear above the line being typed. Every command calls the same `Phone`
the one-shot commands use. An error of the call-core becomes one line; an unexpected
one becomes one line plus a traceback in the log file; neither ends the REPL.

Keys: Ctrl-C clears a typed line; on an empty line it hangs up a call (or declines a
ringing one), and a second Ctrl-C in a row leaves. Every Ctrl-C, whether the prompt's
key binding or a SIGINT (no prompt up while a command runs) sees it, goes to
`Repl.ctrl_c`, which counts the presses in one place; a press while a hang-up or the
final shutdown is still running leaves at once with exit code 130. Ctrl-D or `quit`
leaves: hang up, close the session. While a call rings here, `y` (or Enter) answers and
`n` rejects. Without a terminal on stdin, lines are read plainly from it (for scripts).
Completion's user and device ids are `replcompletion`'s; where the video goes (window,
`view`, nowhere) is `replvideo`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omnicli.errors import OmniError, UsageError
from omnicli.phone import events as ev
from omnicli.phone.callstate import CallState
from omnicli.ui.callseen import SeenCall
from omnicli.ui.commands import Command, CompletionContext, parse
from omnicli.ui.prompt import PlainReader, PromptReader, crash_logger, crash_path, log_to
from omnicli.ui.render import Output, session_panel
from omnicli.ui.replcompletion import CompletionData
from omnicli.ui.replvideo import ReplVideo
from omnicli.ui.settings import Settings
from omnicli.ui.statusline import Status, status_lines

log = logging.getLogger("omnicli.ui.repl")
HARD_EXIT_S = 3.0  # after a hard exit, the process ends by force if still alive then
INTERRUPTED = 130


@dataclass(frozen=True)
class ReplOptions:
    """The settings of the session, and what only the REPL takes."""

    settings: Settings = field(default_factory=lambda: Settings(window=False))
    user_id: str | None = None
    auto_answer: bool = False
    sip_inbound: bool = False  # every session of this prompt takes SIP calls too


class Repl:
    """The prompt, the event pump and the commands, around one `Phone` at a time."""

    def __init__(
        self, make_phone: Callable[[Callable[[Any], None] | None], Any], options: ReplOptions
    ) -> None:
        self.make_phone = make_phone
        self.options = options
        self.phone: Any = None
        self.out = Output(json_mode=options.settings.json)
        self.seen = SeenCall()  # the peer's mutes, the recording, the figures
        self.online = False  # the session is up and not reconnecting
        self.completion = CompletionData(self.need_phone, self._probe_devices)
        self.video = ReplVideo(options.settings, self._hangup_soon)
        self._phone_tasks: list[asyncio.Task[Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._command: asyncio.Task[Any] | None = None
        self._reader: PromptReader | PlainReader | None = None
        self.presses = 0  # Ctrl-C presses in a row, from the key binding and SIGINT alike
        self._hangup: asyncio.Task[Any] | None = None
        self._closing = False  # the final shutdown is running
        self._main: asyncio.Task[Any] | None = None
        self.exit_code: int | None = None  # set by a hard exit
        self.hard_exit_after: float | None = HARD_EXIT_S
        self._quit = False
        self._crash_log = crash_logger()

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> int:
        from prompt_toolkit.patch_stdout import patch_stdout

        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        interactive = sys.stdin.isatty()
        with patch_stdout(raw=True):
            self.out = Output(json_mode=self.options.settings.json)
            log_to(sys.stderr)
            for sig, handler in (
                (signal.SIGINT, self._on_sigint),
                (signal.SIGTERM, self.request_quit),
            ):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, handler)
            self._reader = reader = (
                PromptReader(self, lambda text: self.say(text, "yellow"))
                if interactive
                else PlainReader()
            )
            self.video.open_window(self.out)
            return await self.serve(reader, hint=interactive and not self.options.settings.json)

    async def serve(self, reader: Any, hint: bool = False) -> int:
        """Open the session, run the typed lines until the end, close; the exit code."""
        self._reader = reader
        self._main = main = asyncio.current_task()
        try:
            try:
                # not guarded: without a first session there is nothing to type into, so
                # an unreachable or refusing server ends the REPL as it ends `omni call`
                await self.new_session(self.options.user_id)
                if hint:
                    self.say("type help for commands; Tab completes; Ctrl-D leaves", "dim")
                while not self._quit:
                    try:
                        line = await reader.read()
                    except EOFError:
                        break
                    self.presses = 0
                    await self._execute(line)
            finally:
                if self.exit_code is None:
                    await self._shutdown()
        except asyncio.CancelledError:
            if self.exit_code is None or main is None:
                raise
            main.uncancel()
        return self.exit_code or 0

    def prompt_text(self) -> str:
        user = self.phone.session.user_id if self.phone and self.phone.session else "omni"
        return f"{user} [y/n]> " if self.ringing_here() else f"{user}> "

    def toolbar_text(self) -> str:
        return "\n".join(status_lines(self.status()))

    def status(self) -> Status:
        return self.seen.status(self.phone)

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
        from omnicli.ui import repl_actions

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
        video, preview = self.video.sinks()  # (`view` routes the video only while it shows)
        self.phone = phone = self.make_phone(video)
        phone.preview_sink = preview
        self._phone_tasks = [asyncio.ensure_future(self._pump(phone))]
        sip = {"sip_inbound": True} if self.options.sip_inbound else {}
        info = await phone.create_session(user_id, **sip)
        if not self.options.settings.json:
            self.out.show(
                session_panel(
                    info.user_id,
                    info.session,
                    self.options.settings.server,
                    self.options.settings.service_id,
                )
            )
        self.online = True

    async def _close_phone(self) -> None:
        if (fetch := self.completion.forget_users()) is not None:
            self._phone_tasks.append(fetch)
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
        self.seen.forget()
        self.online = False

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
            if self.options.settings.json:
                self.out.event(event)
            return
        self.out.event(event)

    def _react(self, phone: Any, event: ev.CallEvent) -> None:
        self.seen.see(event, phone.session.user_id if phone.session else None)
        match event:
            case ev.Ringing(caller=caller):
                self.bell()
                if self.options.auto_answer:
                    self.spawn(self.guarded(phone.answer_call(None, caller)))
                else:
                    if self._reader is not None and (aside := self._reader.set_aside()):
                        self.say(f"'{aside}' put aside until the call is answered or ends", "dim")
                    self.say(f"press y to answer {caller}, n to reject", "bold yellow")
            case ev.Connected():
                video = self.video
                if video.where() == "terminal" and video.view is None and video.can_view():
                    from omnicli.ui import repl_actions
                    from omnicli.ui.commands import Command

                    self.spawn(self.guarded(repl_actions.view(self, Command("view"))))
                self._restore_line()
            case ev.Leave() | ev.Cancel():
                self._restore_line()
            case ev.SessionCreated() | ev.Reconnected():
                self.online = True
            case ev.Reconnecting() | ev.ServerLost():
                self.online = False

    def _restore_line(self) -> None:
        """The line put aside when a call rang comes back once nothing rings here."""
        if self._reader is not None and not self.ringing_here():
            self._reader.restore()

    # -- completion --------------------------------------------------------------------

    async def _probe_devices(self) -> None:
        from omnicli.ui.repl_actions import probe_devices

        await probe_devices(self)

    async def prepare_completion(self, text: str) -> None:
        """Fetch what completing `text` needs and is not fresh: user ids, device ids."""
        await self.completion.prepare(text, online=self.online and self.phone is not None)

    def completion_context(self, text: str) -> CompletionContext:
        ringing = tuple(self.phone.ringing_from) if self.phone else ()
        return self.completion.context(text, ringing)

    # -- interrupts, leaving -----------------------------------------------------------

    def _on_sigint(self) -> None:
        """A real SIGINT (no prompt in raw mode, e.g. while a command runs)."""
        self.ctrl_c()

    def ctrl_c(self) -> None:
        """One Ctrl-C on an empty line, from the prompt's key binding or a SIGINT.

        Stops a running command; hangs up a call (once: the hang-up runs as a task); on
        a second press in a row leaves; while a hang-up or the shutdown still runs,
        leaves at once with exit code 130.
        """
        self.presses += 1
        if self._closing or (self._hangup is not None and not self._hangup.done()):
            self.hard_exit()
            return
        if self._command is not None and not self._command.done():
            self._command.cancel()
        phone = self.phone
        if phone is not None and phone.call_state not in (CallState.IDLE, CallState.OFFLINE):
            if self.ringing_here():
                callers = ", ".join(phone.ringing_from)
                self.say(f"declining the call from {callers} (Ctrl-C again leaves)", "yellow")
            else:
                self.say("hanging up (Ctrl-C again leaves)", "yellow")
            self.spawn(self.guarded(self.leave()))
        elif self.presses >= 2:
            self.request_quit()
        else:
            self.say("Ctrl-C again, Ctrl-D or quit leaves", "yellow")

    async def leave(self) -> None:
        """phone.leave(), once: a hang-up asked for while one runs waits for that one."""
        if self._hangup is None or self._hangup.done():
            self._hangup = asyncio.ensure_future(self.need_phone().leave())
        await asyncio.shield(self._hangup)

    def hard_exit(self) -> None:
        """Leave now with 130: stop waiting for the hang-up or the session's close."""
        if self.exit_code is not None:
            return
        self.exit_code = INTERRUPTED
        self.video.restore_terminal()  # give the terminal back before anything else
        self.say("interrupted: leaving without waiting", "red")
        if self.hard_exit_after is not None:  # in case the loop's own teardown hangs
            timer = threading.Timer(self.hard_exit_after, os._exit, (INTERRUPTED,))
            timer.daemon = True
            timer.start()
        if self._main is not None:
            self._main.cancel()

    def request_quit(self) -> None:
        self._quit = True
        if self._reader is not None:
            self._reader.stop()

    async def _shutdown(self) -> None:
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._hangup is not None:  # a hang-up already sent: let it finish first
            await asyncio.gather(self._hangup, return_exceptions=True)
        await self._close_phone()
        self.video.close()
        self.say("left; bye", "dim")

    def route_video(self, to_view: bool) -> None:
        """Send the call's video to `view` too (True) or only to the window, if any."""
        if self.phone is not None:
            self.phone.set_video_sinks(*self.video.sinks(to_view))

    def _hangup_soon(self) -> None:
        if self.phone is not None:
            self.spawn(self.guarded(self.leave()))

    # -- small helpers -----------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def bell(self) -> None:
        if self._reader is not None:
            self._reader.bell()

    def clear_screen(self) -> None:
        if self._reader is not None:
            self._reader.clear_screen()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self._crash_log.error("event loop: %s", context.get("message"), exc_info=exc)
