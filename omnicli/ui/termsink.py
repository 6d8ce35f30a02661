"""`TerminalVideo`: the call drawn in the terminal itself, in a thread of its own.

The terminal counterpart of `VideoWindow` (same methods): frames come in through a
one-slot queue that keeps only the newest, so a slow terminal or SSH link lowers the
drawn frame rate and never the call's. The thread takes the screen (alternate screen,
hidden cursor, keys unbuffered and unechoed but Ctrl-C still a signal), asks the
terminal what it can draw (`termcaps`), then draws what changed (`termvideo`) on
every new frame, preview, caption or size; a resized terminal is noticed within one
poll (`POLL_S`). Keys go to `on_key` from the thread (marshal them into asyncio with
``loop.call_soon_threadsafe``). `close()` gives the terminal back exactly as it was
(modes, cursor, colours, the normal screen), as does `restore()` from any thread,
which a hard exit calls before `os._exit`.
"""

from __future__ import annotations

import cv2  # (before av: see "Known traps" in docs/architecture.md)

# isort: split
import atexit
import contextlib
import logging
import os
import queue
import select
import sys
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from omnicli.ui import termcaps, termgfx, termimage
from omnicli.ui.termvideo import Graphics, TerminalPicture

logger = logging.getLogger(__name__)
_ = cv2  # imported for its side effect on the import order

POLL_S = 0.05  # key, size and frame poll when nothing wakes the thread
# The drawing thread keeps to this share of a core: after a draw that cost c seconds of
# CPU it waits c * (1 / DUTY - 1) before the next one (frames meanwhile replace each
# other). Half blocks never reach it at 30 fps; sixel images of a large terminal would.
DRAW_DUTY = 0.25
READY_TIMEOUT = 3.0
RESTORE_TIMEOUT = 2.0  # giving the terminal back waits at most this long for it to read
DELAYS_KEPT = 300


class TerminalVideo:
    """The remote video full-screen in this terminal, the local preview in a corner."""

    @staticmethod
    def available(environ: Mapping[str, str] | None = None) -> bool:
        """True if stdin and stdout are a terminal that can show colour."""
        env = os.environ if environ is None else environ
        return (
            os.isatty(_fd("stdin"))
            and os.isatty(_fd("stdout"))
            and (termcaps.colour_mode(env) is not None)
        )

    def __init__(
        self,
        title: str,
        on_key: Callable[[str], None] | None = None,
        *,
        fd_in: int | None = None,
        fd_out: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.title = title
        self.on_key = on_key
        self.fd_in = _fd("stdin") if fd_in is None else fd_in
        self.fd_out = _fd("stdout") if fd_out is None else fd_out
        self.environ = dict(os.environ if environ is None else environ)
        self._frames: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=1)
        self._preview: np.ndarray | None = None
        self._status = ""
        self._paused: str | None = None
        self._dirty = threading.Event()
        self._quit = threading.Event()
        self._ready = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._saved: list[Any] | None = None
        self._restore_lock = threading.Lock()
        self._taken = False
        self.caps: termcaps.TermCaps | None = None
        self.frames_shown = 0
        self.bytes_written = 0
        self.delays: deque[float] = deque(maxlen=DELAYS_KEPT)  # frame in -> bytes written
        self.draw_cpu_s = 0.0  # CPU time of the drawing thread
        self._drawn_at: deque[float] = deque(maxlen=64)

    # -- any thread -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._take()
        self._thread = threading.Thread(target=self._run, name="terminal-video", daemon=True)
        self._thread.start()
        self._ready.wait(READY_TIMEOUT)
        atexit.register(self.close)

    def show(self, remote_bgr: np.ndarray) -> None:
        """Queue a remote frame; any frame not yet drawn is dropped."""
        item = (remote_bgr, time.perf_counter())
        while True:
            try:
                self._frames.put_nowait(item)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._frames.get_nowait()
        self._wake()

    def set_preview(self, local_bgr: np.ndarray | None) -> None:
        self._preview = local_bgr
        self._poke()

    def set_status(self, text: str) -> None:
        self._status = text
        self._poke()

    def set_paused(self, text: str | None) -> None:
        self._paused = text
        self._poke()

    def open(self) -> None:
        """(A window's: put it on the screen. The terminal picture is up from `start()`.)"""

    def hide(self) -> None:
        """(A window's: take it off the screen between calls. Not for the terminal.)"""

    def set_caption(self, text: str) -> None:
        """The window's title bar has no terminal counterpart: the status line says it all."""

    def thread_cpu(self) -> float:
        """CPU seconds the drawing thread has used so far (all of them once it ended)."""
        thread = self._thread
        if thread is None or thread.ident is None:
            return self.draw_cpu_s
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, AttributeError, ValueError):
            return self.draw_cpu_s

    def drawn_fps(self) -> float:
        times = list(self._drawn_at)
        if len(times) < 2 or time.perf_counter() - times[-1] > 2:
            return 0.0
        return (len(times) - 1) / max(1e-6, times[-1] - times[0])

    def close(self) -> None:
        """Stop drawing and give the terminal back; idempotent."""
        self._quit.set()
        self._wake()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
            atexit.unregister(self.close)
        self.restore()
        if thread is not None or not self._ready.is_set():
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    def restore(self) -> None:
        """Give the terminal back as it was (safe from any thread, more than once)."""
        with self._restore_lock:
            if not self._taken:
                return
            self._taken = False
            leave = termgfx.LEAVE
            if self.caps is not None and self.caps.graphics is Graphics.KITTY:
                leave = termimage.KITTY_DELETE + leave
            with contextlib.suppress(OSError):
                _write_all(self.fd_out, leave, timeout=RESTORE_TIMEOUT)
            if self._saved is not None:
                with contextlib.suppress(termios.error, OSError):
                    termios.tcsetattr(self.fd_in, termios.TCSADRAIN, self._saved)

    def _poke(self) -> None:
        self._dirty.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- the drawing thread -----------------------------------------------------------

    def _take(self) -> None:
        """Alternate screen, no cursor; keys one at a time, unechoed; Ctrl-C stays a signal."""
        with contextlib.suppress(termios.error, OSError):
            self._saved = termios.tcgetattr(self.fd_in)
            mode = termios.tcgetattr(self.fd_in)
            mode[3] &= ~(termios.ICANON | termios.ECHO)
            mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
            termios.tcsetattr(self.fd_in, termios.TCSADRAIN, mode)
        _write_all(self.fd_out, termgfx.ENTER)
        self._taken = True

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            self.caps, keys = termcaps.detect(self.fd_in, self.fd_out, self.environ)
            _write_all(self.fd_out, termgfx.clear())
            self._ready.set()
            self._keys(keys)
            self._loop()
        except Exception:
            logger.exception("terminal video failed")
        finally:
            self.draw_cpu_s += time.thread_time() - cpu0
            self._ready.set()
            self.restore()

    def _picture(self) -> TerminalPicture:
        caps = self.caps
        assert caps is not None
        cell = (10, 20)
        with contextlib.suppress(OSError):
            size = _pixel_size(self.fd_out)
            cols, rows = os.get_terminal_size(self.fd_out)
            if size[0] and size[1]:
                cell = (max(1, size[0] // cols), max(1, size[1] // rows))
        return TerminalPicture(
            caps.graphics,
            caps.colours,
            cell_pixels=cell,
            sixel_levels=termimage.sixel_levels(caps.sixel_registers or 16),
        )

    def _loop(self) -> None:
        picture = self._picture()
        remote: np.ndarray | None = None
        next_draw = 0.0
        while not self._quit.is_set():
            wait = min(POLL_S, max(0.0, next_draw - time.perf_counter()))
            ready, _, _ = select.select([self.fd_in, self._wake_r], [], [], wait or POLL_S)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            if self.fd_in in ready:
                data = os.read(self.fd_in, 1024)
                self._keys(data)
            if self._quit.is_set():
                break
            if time.perf_counter() < next_draw:
                continue
            cpu = time.thread_time()
            stamp = None
            with contextlib.suppress(queue.Empty):
                remote, stamp = self._frames.get_nowait()
            dirty = self._dirty.is_set()
            self._dirty.clear()
            try:
                size = os.get_terminal_size(self.fd_out)
            except OSError:
                break
            data = picture.render(
                (size.columns, size.lines),
                remote,
                self._preview,
                self._caption_text(),
                paused=self._paused is not None,
                new_frame=stamp is not None or dirty,
            )
            if data and _write_all(self.fd_out, data, self._quit):
                self.bytes_written += len(data)
            if data:  # (nothing drawn costs next to nothing: no pause, or the loop spins)
                cost = time.thread_time() - cpu
                next_draw = time.perf_counter() + cost * (1 / DRAW_DUTY - 1)
            if stamp is not None:
                now = time.perf_counter()
                self.frames_shown += 1
                self.delays.append(now - stamp)
                self._drawn_at.append(now)

    def _caption_text(self) -> str:
        parts = [self._paused or "", self._status]
        fps = self.drawn_fps()
        if fps:
            parts.append(f"drawn {fps:.0f} fps")
        parts.append("q hangs up")
        return " · ".join(p for p in parts if p)

    def _keys(self, data: bytes) -> None:
        if self.on_key is None:
            return
        for byte in data:
            try:
                self.on_key(chr(byte))
            except Exception:
                logger.exception("on_key callback failed")


def _fd(name: str) -> int:
    """The process's own stdin or stdout (not a proxy that prompt_toolkit put in place)."""
    stream = getattr(sys, f"__{name}__", None)
    try:
        return int(stream.fileno()) if stream is not None else {"stdin": 0, "stdout": 1}[name]
    except (OSError, ValueError, AttributeError):
        return {"stdin": 0, "stdout": 1}[name]


WRITE_CHUNK = 4096  # a blocked terminal holds a write of at most this much


def _write_all(
    fd: int, data: bytes, stop: threading.Event | None = None, timeout: float | None = None
) -> bool:
    """Write `data` in small pieces, giving up when `stop` is set or after `timeout` s.

    A terminal that stops reading (a stalled SSH link) must not hold the drawing thread,
    or whoever gives the terminal back, forever. Cutting a picture short is harmless:
    what follows starts with ESC, which ends any half-written sequence. True if all of
    it was written.
    """
    view = memoryview(data)
    deadline = None if timeout is None else time.monotonic() + timeout
    while view:
        if stop is not None and stop.is_set():
            return False
        wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
        if wait <= 0:
            return False
        _, writable, _ = select.select([], [fd], [], wait)
        if not writable:
            continue
        try:
            n = os.write(fd, view[:WRITE_CHUNK])
        except BlockingIOError:
            continue
        view = view[n:]
    return True


def _pixel_size(fd: int) -> tuple[int, int]:
    """The terminal's size in pixels (width, height) as its TIOCGWINSZ says; 0 if unknown."""
    import fcntl
    import struct

    raw = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    _rows, _cols, xpixel, ypixel = struct.unpack("HHHH", raw)
    return xpixel, ypixel
