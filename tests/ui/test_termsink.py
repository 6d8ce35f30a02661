"""`TerminalVideo` on a real pseudo-terminal: it takes the screen, draws, follows the
size, hears keys, never makes the caller wait, and gives everything back."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
import time

import numpy as np
import pytest
from desktop import wait_until
from terminal import AltScreen

from omnicli.media.sources import TestPatternTrack
from omnicli.ui import termgfx
from omnicli.ui.termsink import TerminalVideo
from omnicli.ui.termvideo import Graphics, layout

ENV = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
BARS_RGB = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0)]  # the first four


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class FakeTerminal:
    """The terminal side of a pty: reads what is drawn into pyte, answers DA1 like a VT102.

    `paused` stops reading, as a terminal behind a slow link does.
    """

    def __init__(
        self, cols: int = 80, rows: int = 24, da1: bytes = b"\x1b[?62;22c", parse: bool = True
    ) -> None:
        self.master, self.slave = os.openpty()
        set_size(self.slave, cols, rows)
        self.screen = AltScreen(cols, rows)
        self.raw = bytearray()
        self.da1 = da1
        self.parse = parse  # False: read and count only (a terminal that keeps up)
        self.paused = threading.Event()
        self.lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import pyte

        stream = pyte.ByteStream(self.screen)
        while not self._stop:
            if self.paused.is_set():
                time.sleep(0.01)
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            with self.lock:
                if self.parse:
                    self.raw += data
                    stream.feed(data)
                else:
                    self.raw[:] = data[-64:]
            if b"\x1b[c" in data:
                os.write(self.master, self.da1)

    def resize(self, cols: int, rows: int) -> None:
        with self.lock:
            self.screen.resize(rows, cols)
        set_size(self.slave, cols, rows)

    def close(self) -> None:
        self._stop = True
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture
def term():
    fake = FakeTerminal()
    yield fake
    fake.close()


def bar_colours(screen: AltScreen, cols: int, rows: int) -> list[str]:
    """The upper colour of the cell in the middle of each of the first four bars."""
    where = layout(cols, rows, 640, 480)
    y = where.top + where.height * 3 // 4
    xs = [where.left + (2 * i + 1) * where.width // 16 for i in range(4)]
    return [upper(screen.buffer[y][x]) for x in xs]


def upper(cell) -> str:
    """The colour a half-block cell shows in its upper half."""
    return cell.bg if cell.data == " " else cell.fg


def shows_bars(term: FakeTerminal, cols: int, rows: int) -> bool:
    with term.lock:
        got = bar_colours(term.screen, cols, rows)
    return got == ["".join(f"{v:02x}" for v in rgb) for rgb in BARS_RGB]


def test_draws_follows_resizes_hears_keys_and_gives_the_terminal_back(term) -> None:
    """The bars appear in order; a resize refits them; m arrives; closing restores all."""
    before = termios.tcgetattr(term.slave)
    keys: list[str] = []
    video = TerminalVideo("t", keys.append, fd_in=term.slave, fd_out=term.slave, environ=ENV)
    pattern = TestPatternTrack(640, 480, 30)
    video.start()
    try:
        assert video.caps is not None and video.caps.graphics is Graphics.HALFBLOCKS
        mode = termios.tcgetattr(term.slave)
        assert not mode[3] & termios.ICANON and not mode[3] & termios.ECHO
        assert mode[3] & termios.ISIG  # Ctrl-C stays a signal
        video.set_status("bob · connected")
        frame = 1
        video.show(pattern.render(frame, 0))
        wait_until(lambda: shows_bars(term, 80, 24), 10, "the bars at 80x24")
        wait_until(lambda: term.screen.display[23].startswith("bob · connected"), 5, "caption")
        term.resize(120, 40)
        video.show(pattern.render(2, 0))
        wait_until(lambda: shows_bars(term, 120, 40), 10, "the bars refitted to 120x40")
        wait_until(lambda: term.screen.display[39].startswith("bob"), 5, "caption at row 40")
        os.write(term.master, b"m")
        wait_until(lambda: "m" in keys, 5, "the key m")
    finally:
        video.close()
    wait_until(lambda: bytes(term.raw).endswith(termgfx.LEAVE), 5, "the leave sequence")
    assert bytes(term.raw).startswith(termgfx.ENTER)
    assert termios.tcgetattr(term.slave) == before
    assert term.screen.saved_screen is None and not term.screen.cursor.hidden
    video.close()  # twice is fine
    assert bytes(term.raw).count(termgfx.LEAVE) == 1


def test_a_terminal_that_stops_reading_never_makes_the_call_wait(term) -> None:
    """With the terminal not reading, show() stays instant and stale frames are dropped."""
    video = TerminalVideo("t", fd_in=term.slave, fd_out=term.slave, environ=ENV)
    pattern = TestPatternTrack(640, 480, 30)
    frames = [pattern.render(i, 0) for i in range(8)]
    video.start()
    try:
        video.show(frames[0])
        wait_until(lambda: video.frames_shown >= 1, 10, "a first frame")
        term.paused.set()
        slowest = 0.0
        for i in range(300):
            t0 = time.perf_counter()
            video.show(frames[i % 8])
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.002)
        assert slowest < 0.05  # a blocked terminal write never reaches the caller
        stuck = video.frames_shown
        assert stuck < 100  # the pty buffer filled: the drawing stalled, the caller did not
        term.paused.clear()
        wait_until(lambda: video.frames_shown > stuck, 10, "drawing to resume")
    finally:
        term.paused.clear()
        video.close()


def test_a_sixel_terminal_gets_sixels() -> None:
    """A terminal whose DA1 lists 4 is sent sixel images, with its colour registers asked."""
    fake = FakeTerminal(da1=b"\x1b[?63;1;2;4;6;9;15;22c")
    video = TerminalVideo("t", fd_in=fake.slave, fd_out=fake.slave, environ=ENV)
    try:
        video.start()
        assert video.caps is not None and video.caps.graphics is Graphics.SIXEL
        video.show(np.zeros((480, 640, 3), np.uint8))
        wait_until(lambda: b"\x1bP0;1;0q" in bytes(fake.raw), 10, "a sixel image")
        assert b"\x1b[?1;1;0S" in bytes(fake.raw)
    finally:
        video.close()
        fake.close()


def test_costly_images_keep_the_drawing_thread_to_a_quarter_of_a_core() -> None:
    """Sixels of a big terminal cost more than a frame interval each: the sink draws fewer
    of them instead of taking a whole core from the call. (On an idle machine the bound is
    the DRAW_DUTY gate; on a busy one the thread gets less than that anyway.)"""
    from omnicli.ui import termsink

    fake = FakeTerminal(cols=200, rows=60, da1=b"\x1b[?63;1;2;4;6;9;15;22c", parse=False)
    video = TerminalVideo("t", fd_in=fake.slave, fd_out=fake.slave, environ=ENV)
    pattern = TestPatternTrack(640, 480, 30)
    frames = [pattern.render(i, 0) for i in range(10)]
    try:
        video.start()
        video.show(frames[0])
        wait_until(lambda: video.frames_shown >= 1, 10, "a first sixel frame")
        cpu0, t0 = video.thread_cpu(), time.perf_counter()
        for i in range(60):  # 2 s at 30 fps
            video.show(frames[i % 10])
            time.sleep(1 / 30)
        share = (video.thread_cpu() - cpu0) / (time.perf_counter() - t0)
        assert video.frames_shown < 60
        assert share <= termsink.DRAW_DUTY + 0.1
    finally:
        video.close()
        fake.close()
