"""`VideoWindow`: an OpenCV window showing the remote video, in a thread of its own.

Every cv2 GUI call happens in the window's thread. Frames come in through a one-slot
queue that keeps only the newest frame, so a slow window never delays the call.
`on_key` is called from the window thread: marshal it into asyncio with
``loop.call_soon_threadsafe``. Closing the window with the mouse reports the key
``"close"``.

One `VideoWindow` may live as long as a session: `hide()` takes it off the screen at
the end of a call and `open()` puts it back, empty, for the next, always from the same
thread. The GUI toolkit must stay in the thread that started it, and nothing here ever
waits for that thread on the caller's side, except `start()` and `close()`.

Only create a window when `VideoWindow.available()` says so: without a display,
`cv2.imshow` aborts the whole process (see "Known traps" in docs/architecture.md). This module
imports cv2 first, before anything can import av.
"""

from __future__ import annotations

import cv2

# isort: split
import atexit
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

PLACEHOLDER_SIZE = (480, 640)  # rows, columns
PREVIEW_FRACTION = 4  # the preview is 1/4 of the window's width
WAIT_MS = 15
READY_TIMEOUT = 5.0


def _has_gui_backend() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip() == "GUI":
            return value.strip().upper() not in ("", "NONE")
    return False


def compose(
    remote: np.ndarray | None, preview: np.ndarray | None, status: str, paused: str | None = None
) -> np.ndarray:
    """The image to show: remote video (or a dark placeholder), local preview, status line.

    `paused` (e.g. "alice paused the video") dims the last remote image and says so in a
    banner across the middle, so a stopped picture never looks like a frozen one.
    """
    img = np.full((*PLACEHOLDER_SIZE, 3), 32, dtype=np.uint8) if remote is None else remote.copy()
    height, width = img.shape[:2]
    if paused:
        img = (img // 3).astype(np.uint8)
        scale = max(0.5, width / 800)
        thickness = max(1, round(scale * 2))
        (tw, th), base = cv2.getTextSize(paused, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = height // 2
        cv2.rectangle(img, (0, y - th - 12), (width, y + base + 12), (0, 0, 96), -1)
        cv2.putText(
            img,
            paused,
            (max(4, (width - tw) // 2), y),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    if preview is not None and width >= 64:
        pw = width // PREVIEW_FRACTION
        ph = max(1, pw * preview.shape[0] // max(1, preview.shape[1]))
        if ph < height - 8:
            small = cv2.resize(preview, (pw, ph), interpolation=cv2.INTER_AREA)
            y, x = height - ph - 8, width - pw - 8
            cv2.rectangle(img, (x - 2, y - 2), (x + pw + 1, y + ph + 1), (255, 255, 255), 2)
            img[y : y + ph, x : x + pw] = small
    if status:
        scale = max(0.4, width / 1280)
        thickness = max(1, round(scale * 2))
        (tw, th), base = cv2.getTextSize(status, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(img, (0, height - th - base - 12), (tw + 12, height), (0, 0, 0), -1)
        cv2.putText(
            img,
            status,
            (6, height - base - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return img


class VideoWindow:
    """A window for the remote video with an optional local preview and a status line."""

    @staticmethod
    def available() -> bool:
        """True only if there is an X display and this cv2 build has a GUI backend."""
        return bool(os.environ.get("DISPLAY")) and _has_gui_backend()

    def __init__(
        self, title: str, on_key: Callable[[str], None] | None = None, shown: bool = True
    ) -> None:
        self.title = title
        self.on_key = on_key
        self._frames: queue.Queue[np.ndarray] = queue.Queue(maxsize=1)
        self._preview: np.ndarray | None = None
        self._status = ""
        self._paused: str | None = None
        self._caption: str | None = None  # the title bar text, if not `title`
        self._dirty = threading.Event()
        self._quit = threading.Event()
        self._ready = threading.Event()
        self._shown = threading.Event()  # on the screen (else: closed until the next open)
        self._clear = threading.Event()  # forget the last remote picture
        if shown:
            self._shown.set()
        self._thread: threading.Thread | None = None
        self.frames_shown = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        if not self.available():
            raise RuntimeError("no display for a video window (DISPLAY unset or no GUI)")
        self._thread = threading.Thread(target=self._run, name="video-window", daemon=True)
        self._thread.start()
        # Let the GUI toolkit finish starting before anything else loads libraries: av and
        # aiortc loaded while Qt connects to X leave the window unpainted now and then.
        self._ready.wait(READY_TIMEOUT)
        # a GUI thread still running when the interpreter exits aborts the process
        atexit.register(self.close)

    def open(self) -> None:
        """Put the window on the screen, showing no picture yet. Any thread; never waits."""
        self._clear.set()
        self._shown.set()
        self._dirty.set()

    def hide(self) -> None:
        """Take the window off the screen until `open()`. Any thread; never waits."""
        self._shown.clear()
        self._clear.set()
        self._preview = None
        self._paused = None

    def show(self, remote_bgr: np.ndarray) -> None:
        """Queue a remote frame; any frame not yet shown is dropped. Any thread."""
        if not self._shown.is_set():
            return
        while True:
            try:
                self._frames.put_nowait(remote_bgr)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._frames.get_nowait()

    def set_preview(self, local_bgr: np.ndarray | None) -> None:
        """Picture-in-picture of the local video (None removes it)."""
        self._preview = local_bgr
        self._dirty.set()

    def set_status(self, text: str) -> None:
        """The overlay line, e.g. peer name and call state."""
        self._status = text
        self._dirty.set()

    def set_paused(self, text: str | None) -> None:
        """Show that the remote video is paused (None: it is not)."""
        self._paused = text
        self._dirty.set()

    def set_caption(self, text: str) -> None:
        """The text of the window's title bar (the window keeps its name `title`)."""
        self._caption = text
        self._dirty.set()

    def close(self) -> None:
        """Destroy the window and join its thread; idempotent."""
        self._quit.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
            atexit.unregister(self.close)

    def _run(self) -> None:
        remote: np.ndarray | None = None
        shown_caption: str | None = None
        created = False
        try:
            while not self._quit.is_set():
                if not self._shown.is_set():
                    if created:
                        cv2.destroyWindow(self.title)
                        cv2.waitKey(1)
                        created, shown_caption = False, None
                    self._ready.set()
                    self._quit.wait(WAIT_MS / 1000)
                    continue
                if not created:
                    cv2.namedWindow(
                        self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL
                    )  # no toolbar: just the picture
                    created = True
                    self._dirty.set()
                if self._clear.is_set():
                    self._clear.clear()
                    remote = None
                    with contextlib.suppress(queue.Empty):
                        self._frames.get_nowait()
                try:
                    frame = self._frames.get_nowait()
                except queue.Empty:
                    frame = None
                fresh = frame is not None
                if frame is not None:
                    if remote is None or remote.shape != frame.shape:
                        cv2.resizeWindow(self.title, frame.shape[1], frame.shape[0])
                    remote = frame
                if fresh or self._dirty.is_set():
                    self._dirty.clear()
                    cv2.imshow(
                        self.title, compose(remote, self._preview, self._status, self._paused)
                    )
                    self.frames_shown += fresh
                    caption = self._caption
                    if caption is not None and caption != shown_caption:
                        cv2.setWindowTitle(self.title, caption)
                        shown_caption = caption
                key = cv2.waitKey(WAIT_MS)
                self._ready.set()
                if key not in (-1, 255):
                    self._key(chr(key & 0xFF))
                if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                    self._shown.clear()  # closed with the mouse: gone until the next open()
                    created = False
                    self._key("close")
        except cv2.error:
            logger.exception("video window failed")
        finally:
            self._ready.set()
            if created:
                try:
                    cv2.destroyWindow(self.title)
                    cv2.waitKey(1)
                except cv2.error:
                    pass

    def _key(self, key: str) -> None:
        if self.on_key is None:
            return
        try:
            self.on_key(key)
        except Exception:
            logger.exception("on_key callback failed")
