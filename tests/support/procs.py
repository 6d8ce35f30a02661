"""Real `omni` processes for end-to-end tests: start, read JSON lines, stop."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import eventcheck

OMNI = [sys.executable, "-m", "omnicli.ui.cli"]
# Media options of a headless test call: no window, a small test picture, no speaker.
CALL_MEDIA = (
    "--no-window",
    "--video-source",
    "test",
    "--video-size",
    "160x120",
    "--speaker",
    "none",
)
LIVE: set[Omni] = set()  # started and not yet stopped: stopped at exit if a test failed early


def omni_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_")}
    env.pop("DISPLAY", None)
    env["OMNI_CONFIG"] = str(Path(os.devnull))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Omni:
    """One `omni ...` process whose stdout lines are collected by a thread."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*prefix, *OMNI, *args],  # prefix: a wrapper such as prlimit
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or omni_env(),
        )
        LIVE.add(self)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.stderr_lines: list[str] = []
        pump = threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True)
        pump.start()
        threading.Thread(target=self._drain_err, daemon=True).start()

    @staticmethod
    def _pump(stream: Any, into: queue.Queue[str]) -> None:
        for line in stream:
            into.put(line.rstrip("\n"))

    def _drain_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def line(self, timeout: float = 20.0) -> str:
        try:
            text = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output from omni {' '.join(self.args)} in {timeout} s; "
                f"stderr: {self.stderr_lines[-10:]}"
            ) from None
        self.seen.append(text)
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                eventcheck.check(json.loads(text))
        return text

    def event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """Read JSON lines until one with this event name; return it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} event; saw {self.seen[-10:]}")
            obj = json.loads(self.line(left))
            if obj.get("event") == name:
                return obj

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def stop(self) -> None:
        LIVE.discard(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@atexit.register
def _stop_leftovers() -> None:
    for omni in list(LIVE):
        omni.stop()


def start_server(*extra: str, prefix: tuple[str, ...] = ()) -> tuple[Omni, str]:
    """`omni server --port 0`; returns the process and its ws:// URL."""
    server = Omni("server", "--port", "0", *extra, prefix=prefix)
    line = server.line(timeout=20)
    assert "listening on" in line, line
    return server, line.rsplit(" ", 1)[1]


def run_omni(*args: str, timeout: float = 30.0, env: dict[str, str] | None = None):
    """Run one `omni` command to completion (its JSON events checked against the schema)."""
    done = subprocess.run(
        [*OMNI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or omni_env(),
        stdin=subprocess.DEVNULL,
    )
    eventcheck.check_lines(done.stdout)
    return done


def answering_peer(
    user_id: str, server: str, *args: str, env: dict[str, str] | None = None
) -> Omni:
    """`omni session create --user-id ID --auto-answer --server URL ARGS`, returned once its
    SESSION event (for that user) is out: a callee that answers every call by itself."""
    json_flag = () if "--json" in args else ("--json",)
    peer = Omni(
        "session",
        "create",
        "--user-id",
        user_id,
        "--auto-answer",
        "--server",
        server,
        *json_flag,
        *args,
        env=env,
    )
    try:
        session = peer.event("SESSION")
        assert session["user_id"] == user_id, session
    except BaseException:
        peer.stop()
        raise
    return peer
