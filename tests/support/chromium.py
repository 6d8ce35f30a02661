"""Headless Chromium as a real WebRTC peer, driven over the DevTools protocol.

No npm, no driver binary: Chromium is started with `--remote-debugging-port=0`, the
port is read from its stderr, and `Runtime.evaluate` reads what the page recorded.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Chromium:
    """One headless Chromium showing one page; `evaluate()` runs JS in it."""

    def __init__(self, url: str) -> None:
        binary = chromium_binary()
        assert binary is not None
        self._profile = tempfile.TemporaryDirectory(prefix="omni-chromium-")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile.name}", url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        found = threading.Event()
        self._port: int | None = None

        def pump() -> None:
            assert self.proc.stderr is not None
            try:
                for line in self.proc.stderr:
                    self.stderr.append(line.rstrip())
                    if m := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
                        self._port = int(m.group(1))
                        found.set()
            except (ValueError, OSError):  # closed by `close` while a child kept it open
                pass

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not found.wait(30):
            self.close()
            raise AssertionError(f"chromium did not start: {self.stderr[-5:]}")
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(connect(self._page_socket(), max_size=2**24))
        self._ids = 0

    def _page_socket(self) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._port}/json/list") as resp:
                targets = json.load(resp)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise AssertionError("chromium has no page target")

    def evaluate(self, expression: str) -> Any:
        self._ids += 1
        self._ws.send(
            json.dumps(
                {
                    "id": self._ids,
                    "method": "Runtime.evaluate",
                    "params": {"expression": expression, "returnByValue": True},
                }
            )
        )
        while True:
            reply = json.loads(self._ws.recv(timeout=10))
            if reply.get("id") == self._ids:
                return reply["result"]["result"].get("value")

    def result(self) -> dict[str, Any]:
        return json.loads(self.evaluate("JSON.stringify(window.omniResult || null)") or "null")

    def wait_for(self, check: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the page's result until `check(result)` holds; the result."""
        deadline = time.monotonic() + timeout
        result: dict[str, Any] = {}
        while time.monotonic() < deadline:
            result = self.result() or {}
            if check(result):
                return result
            time.sleep(0.2)
        raise AssertionError(f"page never got there: {result}")

    def close(self) -> None:
        if getattr(self, "_stack", None) is not None:
            self._stack.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(2)  # its end of file (a child process may hold the pipe longer)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self._profile.cleanup()


PAGE = Path(__file__).parent / "browser" / "client.html"
