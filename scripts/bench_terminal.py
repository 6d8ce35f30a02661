"""Terminal video benchmark: what drawing a call in the terminal costs, and how fast it is.

Content: 640x480 frames at 30 fps, each sent through a real VP8 encoder and decoder
(PyAV's libvpx, about 600 kbit/s, so the codec's noise is there as in a call): a
"talking head" (a still room, a head that sways, a mouth and eyes that move) and the
test pattern's colour bars with their sweeping bar and frame code.

1. The renderer alone (`TerminalPicture`, half blocks at 160x45 cells): CPU per frame
   and bytes per frame with change-only drawing, against redrawing every cell in the
   same run (the baseline), in 24-bit and in 256 colours.
2. The real sink (`TerminalVideo`) on a pseudo-terminal whose other side reads every
   byte, frames handed over at 30 fps for `--seconds`: frames drawn per second, CPU of
   the drawing thread (% of one core), delay from handing a decoded frame over to its
   bytes being written (median, p95) against one frame interval. Then the same with
   the terminal reading only `--slow-kbps` (a slow SSH link): the drawn rate drops,
   handing frames over never waits.

    .venv/bin/python scripts/bench_terminal.py [--frames 150] [--seconds 6] [--size 160x45]
"""

from __future__ import annotations

import cv2  # before av (see docs/architecture.md, "Known traps")

# isort: split
import argparse
import fcntl
import math
import os
import struct
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchlib as bl

from omnicli.media.sources import TestPatternTrack
from omnicli.ui.termgfx import ColourMode
from omnicli.ui.termsink import TerminalVideo
from omnicli.ui.termvideo import TerminalPicture

W, H, FPS = 640, 480, 30


def talking_head(n: int) -> np.ndarray:
    """Frame n of a head-and-shoulders scene in a still room (BGR)."""
    y, x = np.mgrid[0:H, 0:W]
    room = np.empty((H, W, 3), np.uint8)
    room[..., 0] = 90 + (x // 8) % 3 * 4 + y // 12
    room[..., 1] = 110 + y // 10
    room[..., 2] = 130 + x // 20
    cv2.rectangle(room, (40, 60), (200, 300), (40, 70, 110), -1)  # a bookshelf
    for i in range(6):
        cv2.rectangle(room, (50 + 25 * i, 70), (68 + 25 * i, 140), (30 + 30 * i, 60, 160), -1)
        cv2.rectangle(room, (50 + 25 * i, 160), (68 + 25 * i, 230), (160, 40 + 25 * i, 60), -1)
    t = n / FPS
    cx = W // 2 + int(10 * math.sin(2 * math.pi * 0.4 * t))
    cy = 210 + int(4 * math.sin(2 * math.pi * 0.3 * t))
    cv2.ellipse(room, (cx, H), (170, 90), 0, 180, 360, (60, 50, 40), -1)  # shoulders
    cv2.ellipse(room, (cx, cy), (85, 110), 0, 0, 360, (140, 170, 215), -1)  # face
    cv2.ellipse(room, (cx, cy - 70), (90, 50), 0, 180, 360, (30, 40, 60), -1)  # hair
    blink = 1 if (n % 90) < 4 else 8
    for dx in (-32, 32):
        cv2.ellipse(room, (cx + dx, cy - 15), (12, blink), 0, 0, 360, (40, 30, 30), -1)
    mouth = 4 + int(12 * abs(math.sin(2 * math.pi * 2.5 * t)))
    cv2.ellipse(room, (cx, cy + 50), (28, mouth), 0, 0, 360, (60, 60, 150), -1)
    return room


def through_vp8(frames: list[np.ndarray], kbps: int = 600) -> list[np.ndarray]:
    """The frames as a receiver decodes them after a real VP8 encoder."""
    import av

    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.bit_rate = kbps * 1000
    enc.framerate = FPS
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    dec = av.CodecContext.create("vp8", "r")
    out: list[np.ndarray] = []
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        for packet in enc.encode(frame):
            for decoded in dec.decode(packet):
                out.append(decoded.to_ndarray(format="bgr24"))
    return out


def renderer(frames: list[np.ndarray], size: tuple[int, int], mode: ColourMode) -> dict:
    """Change-only against full redraws of the same frames: CPU ms and bytes per frame."""
    picture = TerminalPicture(colours=mode)
    picture.render(size, frames[0], None, "bob · connected")
    cpu, sizes = [], []
    for img in frames[1:]:
        t0 = time.thread_time()
        data = picture.render(size, img, None, "bob · connected")
        cpu.append(1000 * (time.thread_time() - t0))
        sizes.append(len(data))
    full_cpu, full_sizes = [], []
    for img in frames[1:]:
        picture.painter.invalidate()
        t0 = time.thread_time()
        data = picture.render(size, img, None, "bob · connected")
        full_cpu.append(1000 * (time.thread_time() - t0))
        full_sizes.append(len(data))
    return {
        "cpu_ms_median": bl.quantile(cpu, 0.5),
        "cpu_ms_p95": bl.quantile(cpu, 0.95),
        "bytes_median": bl.quantile([float(s) for s in sizes], 0.5),
        "bytes_mean": sum(sizes) / len(sizes),
        "full_cpu_ms_median": bl.quantile(full_cpu, 0.5),
        "full_bytes_mean": sum(full_sizes) / len(full_sizes),
    }


class Pty:
    """A pseudo-terminal of `size` whose far side reads everything, at most `kbps` if set."""

    def __init__(self, size: tuple[int, int], kbps: float | None = None) -> None:
        self.master, self.slave = os.openpty()
        cols, rows = size
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.kbps = kbps
        self.read_bytes = 0
        self._stop = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop:
            try:
                data = os.read(self.master, 4096 if self.kbps else 1 << 20)
            except OSError:
                return
            self.read_bytes += len(data)
            if b"\x1b[c" in data:  # answer DA1 as a terminal with no image protocol
                os.write(self.master, b"\x1b[?62;22c")
            if self.kbps:
                time.sleep(len(data) * 8 / (self.kbps * 1000))

    def close(self) -> None:
        self._stop = True
        os.close(self.slave)
        os.close(self.master)


def sink(frames: list[np.ndarray], size: tuple[int, int], seconds: float, kbps=None) -> dict:
    """Frames handed to a real TerminalVideo at 30 fps: drawn fps, CPU, delay, hand-over."""
    pty = Pty(size, kbps)
    env = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
    video = TerminalVideo("bench", fd_in=pty.slave, fd_out=pty.slave, environ=env)
    video.start()
    video.set_status("bob · connected")
    handover = []
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        video.show(frames[n % len(frames)])
        handover.append(1000 * (time.perf_counter() - t0))
        n += 1
        time.sleep(max(0.0, start + n / FPS - time.perf_counter()))
    wall = time.perf_counter() - start
    drawn = video.frames_shown
    written = video.bytes_written
    video.close()
    pty.close()
    delays = [1000 * d for d in video.delays]
    return {
        "frames_in": n,
        "drawn_fps": drawn / wall,
        "cpu_pct": 100 * video.draw_cpu_s / wall,
        "delay_ms_median": bl.quantile(delays, 0.5),
        "delay_ms_p95": bl.quantile(delays, 0.95),
        "bytes_per_drawn_frame": written / max(1, drawn),
        "handover_ms_max": max(handover),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--size", default="160x45")
    parser.add_argument("--slow-kbps", type=float, default=500.0)
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    size = (cols, rows)
    print(f"load before: {os.getloadavg()[0]:.2f}; preparing {args.frames} frames through VP8")
    pattern = TestPatternTrack(W, H, FPS)
    contents = {
        "talking head": through_vp8([talking_head(i) for i in range(args.frames)]),
        "colour bars": through_vp8([pattern.render(i, 0) for i in range(args.frames)]),
    }
    results: dict = {"size": args.size, "renderer": {}, "sink": {}}
    rows_out = []
    for name, frames in contents.items():
        for mode in ColourMode:
            r = renderer(frames, size, mode)
            results["renderer"][f"{name} {mode.value}"] = r
            rows_out.append(
                [
                    name,
                    mode.value,
                    r["cpu_ms_median"],
                    r["cpu_ms_p95"],
                    round(r["bytes_mean"]),
                    round(r["full_bytes_mean"]),
                    bl.ratio(r["full_bytes_mean"], r["bytes_mean"]),
                    r["full_cpu_ms_median"],
                ]
            )
    print(f"\nrenderer, {args.size} cells, half blocks, per frame:")
    bl.table(
        [
            "content",
            "colours",
            "cpu ms",
            "p95",
            "bytes change-only",
            "bytes full redraw",
            "fewer",
            "full cpu ms",
        ],
        rows_out,
    )
    sink_rows = []
    for name, frames in contents.items():
        for label, kbps in (("fast", None), (f"{args.slow_kbps:.0f} kbit/s", args.slow_kbps)):
            s = sink(frames, size, args.seconds, kbps)
            results["sink"][f"{name} {label}"] = s
            sink_rows.append(
                [
                    name,
                    label,
                    s["frames_in"],
                    s["drawn_fps"],
                    s["cpu_pct"],
                    s["delay_ms_median"],
                    s["delay_ms_p95"],
                    round(s["bytes_per_drawn_frame"]),
                    s["handover_ms_max"],
                ]
            )
    print(f"\nTerminalVideo on a pty, {args.size}, frames at {FPS} fps for {args.seconds} s:")
    bl.table(
        [
            "content",
            "terminal",
            "frames in",
            "drawn fps",
            "cpu %",
            "delay ms",
            "p95",
            "bytes/frame",
            "show() max ms",
        ],
        sink_rows,
    )
    head = results["sink"]["talking head fast"]
    bars = results["sink"]["colour bars fast"]
    ratio = results["renderer"]["talking head truecolor"]
    checks = [
        ("drawn fps >= 25 (talking head, bars)", min(head["drawn_fps"], bars["drawn_fps"]) >= 25),
        ("drawing CPU <= 25 % of a core", max(head["cpu_pct"], bars["cpu_pct"]) <= 25),
        (
            "change-only >= 5x fewer bytes (talking head, 24-bit)",
            ratio["full_bytes_mean"] >= 5 * ratio["bytes_mean"],
        ),
        (
            f"delay median <= {1000 / FPS:.0f} ms",
            max(head["delay_ms_median"], bars["delay_ms_median"]) <= 1000 / FPS,
        ),
    ]
    print()
    for what, ok in checks:
        print(f"{'met   ' if ok else 'MISSED'} {what}")
    results["targets"] = {what: ok for what, ok in checks}
    print(f"load after: {os.getloadavg()[0]:.2f}")
    bl.write("terminal", results)


if __name__ == "__main__":
    main()
