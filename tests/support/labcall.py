"""omni processes in the network lab's two namespaces (scripts/netlab.py): a server on
side a, clients on either side, each one's JSON lines read on a thread as they come."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from typing import Any

OMNI = [sys.executable, "-m", "omnicli.ui.cli"]
KEY = "netlab-key"


class Lines:
    """Collects a process's stdout lines on a thread (JSON objects where they parse)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.queue: queue.Queue[str] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))

    def next(self, timeout: float) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output in {timeout} s; seen {self.events[-5:]}") from None

    def until(self, name: str, timeout: float) -> dict[str, Any]:
        while True:
            line = self.next(timeout)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("event") == name:
                return event


def lab_server(lab: Any, env: dict[str, str]) -> str:
    """`omni server` on side a of the lab, service dev:KEY; its URL (it ends with the lab)."""
    server = lab.popen(
        "a",
        [*OMNI, "server", "--host", lab.addr_a, "--port", "0", "--service", f"dev:{KEY}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    return Lines(server).next(20).rsplit(" ", 1)[1]


def lab_omni(lab: Any, side: str, args: list[str], env: dict[str, str]) -> Lines:
    """`omni ARGS` on `side` ("a" or "b") of the lab, its stdout read line by line."""
    proc = lab.popen(
        side,
        [*OMNI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return Lines(proc)


def received(stats: dict[str, Any]) -> tuple[int, float]:
    """Video frames and audio seconds received so far, from one STATS sample."""
    return stats["video_in"]["frames_received"], stats["audio_in"]["seconds_received"]
