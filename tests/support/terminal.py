"""`omni` in a real pseudo-terminal (pexpect), its screen kept by a terminal emulator (pyte).

Tests read what a person would see: `screen()` is the visible text, `wait_for(regex)`
reads output until the screen matches, `raw` keeps every byte (for the bell).
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pexpect
import pyte
from procs import OMNI

ROWS, COLS = 40, 160
OSC = re.compile(rb"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


class AltScreen(pyte.Screen):
    """A pyte screen with xterm's alternate screen (private mode 1049), which pyte lacks.

    Entering saves the normal screen and the cursor and shows a blank one; leaving brings
    both back, so a test sees whether a program gave the screen back as it found it.
    """

    ALT = 1049

    def __init__(self, columns: int, lines: int) -> None:
        super().__init__(columns, lines)
        self.saved_screen: tuple[Any, Any] | None = None

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and self.ALT in modes:
            if self.saved_screen is None:
                lines = {y: dict(line) for y, line in self.buffer.items()}
                self.saved_screen = (lines, copy.copy(self.cursor))
            self.erase_in_display(2)
            modes = tuple(m for m in modes if m != self.ALT)
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private") and self.ALT in modes:
            if self.saved_screen is not None:
                lines, cursor = self.saved_screen
                self.saved_screen = None
                self.buffer.clear()
                for y, line in lines.items():
                    self.buffer[y].update(line)
                self.cursor.x, self.cursor.y = cursor.x, cursor.y
                self.cursor.attrs = cursor.attrs
            modes = tuple(m for m in modes if m != self.ALT)
        super().reset_mode(*modes, **kwargs)


class _Screen(AltScreen):
    """A screen that answers the cursor position requests prompt_toolkit sends."""

    def __init__(self, columns: int, lines: int, child: pexpect.spawn) -> None:
        super().__init__(columns, lines)
        self._child = child

    def write_process_input(self, data: str) -> None:
        if self._child.isalive():
            self._child.send(data)


class Terminal:
    def __init__(
        self,
        *args: str,
        env: dict[str, str],
        cwd: str | None = None,
        size: tuple[int, int] = (COLS, ROWS),
        program: tuple[str, ...] = tuple(OMNI),
    ) -> None:
        self.args = args
        cols, rows = size
        self.child = pexpect.spawn(
            program[0], [*program[1:], *args], env=env, cwd=cwd, dimensions=(rows, cols), timeout=5
        )
        self._screen = _Screen(cols, rows, self.child)
        self._stream = pyte.ByteStream(self._screen)
        self.raw = bytearray()
        self.closed = False

    def read_some(self, timeout: float) -> None:
        """Take in what the program printed, waiting up to `timeout` s for something."""
        self._read(timeout)

    def _read(self, timeout: float) -> None:
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            self.closed = True
            return
        self.raw += data
        self._stream.feed(data)

    def screen(self) -> str:
        self._read(0.05)
        return "\n".join(line.rstrip() for line in self._screen.display)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Read until the visible screen matches `pattern`; the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.screen())
            if found:
                return found
            if self.closed or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not on the screen of omni {' '.join(self.args)}:\n{self.screen()}"
                )
            self._read(0.2)

    def prompt_line(self) -> str:
        """The line the cursor is on (the prompt and what is typed)."""
        self._read(0.05)
        return self._screen.display[self._screen.cursor.y].rstrip()

    def wait_prompt(self, pattern: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.prompt_line()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"prompt line {self.prompt_line()!r} never matched "
                    f"{pattern!r}:\n{self.screen()}"
                )
            self._read(0.2)
        return self.prompt_line()

    def bells(self) -> int:
        """Terminal bells rung so far (BEL bytes that do not end an OSC sequence)."""
        return OSC.sub(b"", bytes(self.raw)).count(b"\x07")

    @property
    def pyte_screen(self) -> AltScreen:
        """The emulated screen itself: cells with their colours."""
        return self._screen

    def resize(self, cols: int, rows: int) -> None:
        """Resize the terminal (the program gets SIGWINCH) and the emulated screen."""
        self._read(0.05)
        self._screen.resize(rows, cols)
        self.child.setwinsize(rows, cols)

    def type(self, text: str) -> None:
        self.child.send(text)

    def enter(self, line: str) -> None:
        self.child.send(line + "\r")

    def ctrl(self, key: str) -> None:
        self.child.sendcontrol(key)

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"omni {' '.join(self.args)} did not exit:\n{self.screen()}")
            self._read(0.2)
        self.child.wait()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
