"""The REPL's terminal side: where lines come from, and where unexpected errors go.

`PromptReader` is the prompt_toolkit session: history kept in a file between runs, Tab
completion from `omnicli.ui.commands`, the one-keystroke answer/reject keys while a call
rings, Ctrl-C handling, and the bottom toolbar. `PlainReader` reads lines from a stdin
that is not a terminal (scripts). Both are awaited as `await reader.read()`, which
raises EOFError at the end. A Ctrl-C on a typed line clears it; on an empty line the
prompt stays up and the host's `ctrl_c()` decides (the same method a SIGINT calls).
Completion first awaits the host's `prepare_completion(text)` (user ids, devices).
prompt_toolkit is imported here only, when a prompt is opened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from omnicli.ui.commands import CompletionContext, complete


class PromptHost(Protocol):
    """What the prompt needs from the REPL."""

    presses: int

    def prompt_text(self) -> str: ...
    def toolbar_text(self) -> str: ...
    def ringing_here(self) -> bool: ...
    def ctrl_c(self) -> None: ...
    async def prepare_completion(self, text: str) -> None: ...
    def completion_context(self, text: str) -> CompletionContext: ...


def state_dir(environ: dict[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/omnicli, by default ~/.local/state/omnicli."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "omnicli"


class PromptReader:
    """Lines typed at a prompt_toolkit prompt."""

    def __init__(self, host: PromptHost, on_warning: Any) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        history: Any = InMemoryHistory()
        try:
            state_dir().mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(state_dir() / "history"))
        except OSError as exc:
            on_warning(f"history is not kept: {exc}")
        self._host = host
        self._aside = ""  # the line typed when a call rang, until it is answered or ends
        self._restored = ""  # that line, for the next prompt to start with
        self._session: Any = PromptSession(
            history=history,
            completer=_completer(host),
            complete_while_typing=False,
            key_bindings=_key_bindings(host),
            bottom_toolbar=host.toolbar_text,
            refresh_interval=0.5,
        )

    async def read(self) -> str:
        default, self._restored = self._restored, ""
        return str(
            await self._session.prompt_async(
                self._host.prompt_text,
                default=default,
                set_exception_handler=False,
                handle_sigint=False,
            )
        )

    def redraw(self) -> None:
        self._session.app.invalidate()

    def stop(self) -> None:
        """End the line being read with EOFError (quit from outside the prompt)."""
        if self._session.app.is_running:
            self._session.app.exit(exception=EOFError())

    def bell(self) -> None:
        self._session.app.output.bell()
        self._session.app.output.flush()

    def clear_screen(self) -> None:
        self._session.app.renderer.clear()

    def set_aside(self) -> str:
        """Take the typed line off the prompt (a call rings: y and n must answer it)."""
        buffer = self._session.default_buffer
        text = str(buffer.text)
        if text:
            self._aside = text
            buffer.reset()
        return text

    def restore(self) -> None:
        """Put the line set aside back, if the prompt is still empty."""
        text, self._aside = self._aside, ""
        if not text:
            return
        buffer = self._session.default_buffer
        if not self._session.app.is_running:  # between two lines: the next prompt shows it
            self._restored = text
        elif not buffer.text:
            buffer.text = text
            buffer.cursor_position = len(text)
            self.redraw()


class PlainReader:
    """Lines from a stdin that is not a terminal, read by a daemon thread."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()

        def pump() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\n"))
            loop.call_soon_threadsafe(self._lines.put_nowait, None)

        threading.Thread(target=pump, name="omni-repl-stdin", daemon=True).start()

    async def read(self) -> str:
        line = await self._lines.get()
        if line is None:
            raise EOFError
        return line

    def redraw(self) -> None:
        pass

    def stop(self) -> None:
        self._lines.put_nowait(None)

    def bell(self) -> None:
        pass

    def clear_screen(self) -> None:
        pass

    def set_aside(self) -> str:
        return ""

    def restore(self) -> None:
        pass


def _completer(host: PromptHost) -> Any:
    from prompt_toolkit.completion import Completer, Completion

    class CommandCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Any:
            text = document.text_before_cursor
            word, options = complete(text, host.completion_context(text))
            for option in options:
                # a word that is whole and the only choice ends with a space, ready for
                # the next (a source prefix such as camera: does not)
                whole = len(options) == 1 and not option.endswith(":")
                yield Completion(
                    option + " " if whole else option, start_position=-len(word), display=option
                )

        async def get_completions_async(self, document: Any, complete_event: Any) -> Any:
            await host.prepare_completion(document.text_before_cursor)
            for completion in self.get_completions(document, complete_event):
                yield completion

    return CommandCompleter()


def _key_bindings(host: PromptHost) -> Any:
    from prompt_toolkit.application import get_app
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()
    ringing = Condition(lambda: host.ringing_here() and not get_app().current_buffer.text)

    def submit(event: Any, line: str) -> None:
        event.current_buffer.text = line
        event.app.exit(result=line)

    @keys.add("y", filter=ringing)
    @keys.add("enter", filter=ringing)
    def _answer(event: Any) -> None:
        submit(event, "answer")

    @keys.add("n", filter=ringing)
    def _reject(event: Any) -> None:
        submit(event, "reject")

    @keys.add("c-c")
    def _interrupt(event: Any) -> None:
        if event.current_buffer.text:
            event.current_buffer.reset()  # Ctrl-C on a typed line only clears it
            host.presses = 0
        else:
            host.ctrl_c()

    return keys


def crash_path() -> Path:
    return state_dir() / "repl.log"


def crash_logger() -> logging.Logger:
    """A logger for unexpected errors that writes to a file, never to the terminal."""
    crash = logging.getLogger("omnicli.ui.repl.crash")
    crash.propagate = False
    if not crash.handlers:
        try:
            crash_path().parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(crash_path())
        except OSError:
            handler = logging.NullHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        crash.addHandler(handler)
    return crash


def log_to(stream: Any) -> None:
    """Send log lines that went to the terminal through `stream` (the prompt's proxy)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setStream(stream)
