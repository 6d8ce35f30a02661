"""A desktop for tests: a private PulseAudio with null sinks, and Xvfb displays.

Both are started by the test that needs them and stopped afterwards; nothing is
shared with the user's own sound server or display. A test is skipped (with the
packages to install) only when the programs are not installed at all.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

RATE = 48_000
PULSE_TOOLS = ("pulseaudio", "pactl", "paplay", "parec")


def need(*programs: str, install: str) -> None:
    """Skip the test, saying what to install, if a program is not on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install {install})")


def wait_until(check, timeout: float, what: str, interval: float = 0.05):
    """Poll `check()` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Pulse:
    """A PulseAudio daemon of our own, with a null sink per name (mic or speaker)."""

    def __init__(self, sinks: tuple[str, ...]) -> None:
        need(*PULSE_TOOLS, install="pulseaudio pulseaudio-utils libasound2-plugins")
        self.dir = Path(tempfile.mkdtemp(prefix="omni-pulse-"))
        self.dir.chmod(0o700)
        socket = self.dir / "native"
        self.env = {
            "XDG_RUNTIME_DIR": str(self.dir),
            "XDG_CONFIG_HOME": str(self.dir / "config"),
            "PULSE_SERVER": f"unix:{socket}",
        }
        self._players: list[subprocess.Popen[bytes]] = []
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--system=false",
                "--exit-idle-time=-1",
                "-n",
                f"--load=module-native-protocol-unix socket={socket}",
                "--log-target=stderr",
                "--disallow-exit=no",
            ],
            env=self.full_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_until(
                lambda: self.pactl("info", check=False).returncode == 0, 15, "PulseAudio to start"
            )
            for name in sinks:
                self.pactl("load-module", "module-null-sink", f"sink_name={name}", "rate=48000")
        except BaseException:
            self.stop()
            raise

    def full_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.env, **extra}

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pactl", *args],
            env=self.full_env(),
            capture_output=True,
            text=True,
            timeout=10,
            check=check,
        )

    def play_tone(self, sink: str, hz: float, seconds: float, amplitude: float = 0.4) -> None:
        """Play a sine into `sink` (in the background, stopped with the daemon)."""
        path = self.dir / f"tone-{hz:g}.wav"
        n = np.arange(int(seconds * RATE))
        pcm = (np.sin(2 * np.pi * hz * n / RATE) * amplitude * 32767).astype("<i2")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(pcm.tobytes())
        self._players.append(
            subprocess.Popen(
                ["paplay", f"--device={sink}", str(path)],
                env=self.full_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def record(self, sink: str, seconds: float, timeout: float = 15.0) -> np.ndarray:
        """The next `seconds` of what `sink` plays, as mono floats at 48 kHz.

        Reads until that much audio has come (at most `timeout` s more): under load
        `parec` can take longer than the span itself to connect, so sleeping for the
        span and stopping it gave short or empty recordings.
        """
        want = int(seconds * RATE) * 2
        proc = subprocess.Popen(
            [
                "parec",
                f"--device={sink}.monitor",
                "--format=s16le",
                f"--rate={RATE}",
                "--channels=1",
                "--raw",
                "--latency-msec=20",
            ],
            env=self.full_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        data = bytearray()
        deadline = time.monotonic() + seconds + timeout
        try:
            while len(data) < want and (left := deadline - time.monotonic()) > 0:
                if not select.select([proc.stdout], [], [], left)[0]:
                    break
                chunk = os.read(proc.stdout.fileno(), want - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
        return (
            np.frombuffer(bytes(data[: len(data) // 2 * 2]), dtype="<i2").astype(np.float64) / 32768
        )

    def stop(self) -> None:
        for player in self._players:
            if player.poll() is None:
                player.kill()
            player.wait()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def pulse(*sinks: str) -> Iterator[Pulse]:
    daemon = Pulse(sinks)
    try:
        yield daemon
    finally:
        daemon.stop()


class Display:
    """An Xvfb server on a display number it picks itself (-displayfd)."""

    def __init__(self, size: str = "1024x768") -> None:
        need("Xvfb", install="xvfb")
        read, write = os.pipe()
        # -noreset: without it Xvfb resets whenever its last client (a screenshot, an
        # xdotool call) disconnects, and a window created during a reset is lost
        self.proc = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write),
                "-screen",
                "0",
                f"{size}x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        try:
            with os.fdopen(read) as pipe:
                number = pipe.readline().strip()
            if not number:
                raise AssertionError("Xvfb did not start")
            self.name = f":{number}"
        except BaseException:
            self.stop()
            raise

    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.name}

    def run(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            env={**os.environ, "DISPLAY": self.name},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def find_window(self, name: str) -> str | None:
        """The id of a visible window whose title contains `name`."""
        found = self.run("xdotool", "search", "--onlyvisible", "--name", name)
        ids = found.stdout.split()
        return ids[0] if ids else None

    def screenshot(self) -> np.ndarray:
        """The whole screen as a BGR image."""
        import cv2

        shot = subprocess.run(
            ["import", "-window", "root", "png:-"],
            capture_output=True,
            env={**os.environ, "DISPLAY": self.name},
            timeout=20,
            check=True,
        )
        return cv2.imdecode(np.frombuffer(shot.stdout, np.uint8), cv2.IMREAD_COLOR)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def display() -> Iterator[Display]:
    need("xdotool", install="xdotool")
    need("import", install="imagemagick")
    screen = Display()
    try:
        yield screen
    finally:
        screen.stop()
