"""A private SIP world for tests: one network namespace holding a Janus gateway.

Janus and libnice never gather candidates on a loopback interface, so the gateway,
the SIP phones (`baresip.py`) and the omni processes of a test all run inside one
network namespace of their own, on a veth interface (both ends in the namespace)
carrying ``SipLab.addr`` (10.78.0.1). Nothing outside that namespace is touched;
deleting it removes the interface. Needs root (namespaces) and the Debian packages
`janus` and `baresip-core` (`scripts/env.sh` installs them).

Usage::

    if (why := unavailable()) is not None:
        pytest.skip(why)
    with SipLab() as lab:
        janus = lab.start_janus()                 # ws://10.78.0.1:8188, SIP on :5060
        proc = lab.popen([sys.executable, ...])   # any process, inside the namespace
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ADDR = "10.78.0.1"
DEV = "sipd0"
PEER_DEV = "sipd1"  # the other end of the veth pair: no address, only carrier
JANUS_WS_PORT = 8188
JANUS_SIP_PORT = 5060
JANUS_BIN = "/usr/bin/janus"
JANUS_LIBS = Path("/usr/lib/x86_64-linux-gnu/janus")
_counter = itertools.count()
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def unavailable() -> str | None:
    """Why a SipLab cannot be built here, or None when it can."""
    if sys.platform != "linux":
        return "the SIP lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the SIP lab needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "'ip' is not installed (apt-get install iproute2)"
    if not Path(JANUS_BIN).exists():
        return "Janus is not installed (apt-get install --no-install-recommends janus)"
    if shutil.which("baresip") is None:
        return "baresip is not installed (apt-get install --no-install-recommends baresip-core)"
    return None


def _sh(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


JANUS_CONFIG = """\
general: {{
    configs_folder = "{conf}"
    plugins_folder = "{libs}/plugins"
    transports_folder = "{libs}/transports"
    events_folder = "{libs}/events"
    loggers_folder = "{libs}/loggers"
    debug_level = 4
    session_timeout = {session_timeout}
}}
certificates: {{
}}
media: {{
    rtp_port_range = "20000-20999"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{dev}"
}}
plugins: {{
    disable = "{disabled_plugins}"
}}
transports: {{
    disable = "{disabled_transports}"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
}}
"""

SIP_CONFIG = """\
general: {{
    local_ip = "{addr}"
    local_media_ip = "{addr}"
    sdp_ip = "{addr}"
    keepalive_interval = 0
    behind_nat = false
    register_ttl = 60
    rtp_port_range = "21000-21999"
    sip_timer_t1x64 = 8000
}}
"""

WS_CONFIG = """\
general: {{
    json = "plain"
    ws = true
    ws_port = {port}
    ws_ip = "{addr}"
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
"""


def _others(folder: Path, keep: str) -> str:
    names = sorted(p.name for p in folder.glob("*.so") if p.name != keep)
    return ",".join(names)


class Janus:
    """One Janus process in a SipLab (stop() or the lab's exit ends it)."""

    def __init__(self, lab: SipLab, session_timeout: int = 60) -> None:
        self.lab = lab
        self.url = f"ws://{lab.addr}:{JANUS_WS_PORT}"
        self.sip_port = JANUS_SIP_PORT
        conf = lab.dir / "janus"
        conf.mkdir(exist_ok=True)
        (conf / "janus.jcfg").write_text(
            JANUS_CONFIG.format(
                conf=conf,
                libs=JANUS_LIBS,
                dev=DEV,
                session_timeout=session_timeout,
                disabled_plugins=_others(JANUS_LIBS / "plugins", "libjanus_sip.so"),
                disabled_transports=_others(JANUS_LIBS / "transports", "libjanus_websockets.so"),
            )
        )
        (conf / "janus.plugin.sip.jcfg").write_text(SIP_CONFIG.format(addr=lab.addr))
        (conf / "janus.transport.websockets.jcfg").write_text(
            WS_CONFIG.format(addr=lab.addr, port=JANUS_WS_PORT)
        )
        self.log = lab.dir / "janus.log"
        self.proc = lab.popen(
            [
                JANUS_BIN,
                *("-C", str(conf / "janus.jcfg"), "-F", str(conf)),  # -c would be a cert
                *("-i", lab.addr),  # no default route here: Janus cannot guess its address
                *("-o", "-N", "-L", str(self.log)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited ({self.proc.returncode}): {self.log_tail()}")
            if (
                self.lab.can_connect(JANUS_WS_PORT)
                and "JANUS SIP plugin initialized" in self.log_text()
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"janus not ready in {timeout} s: {self.log_tail()}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        self.lab.stop(self.proc)


class SipLab:
    """A network namespace with one non-loopback address for Janus, phones and omni."""

    def __init__(self) -> None:
        self.addr = ADDR
        self.ns = f"omsip{os.getpid()}x{next(_counter)}"
        self._tmp = tempfile.TemporaryDirectory(prefix="omni-sip-")
        self.dir = Path(self._tmp.name)
        self.procs: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> SipLab:
        try:
            _sh(["ip", "netns", "add", self.ns])
            _sh(self.cmd(["ip", "link", "set", "lo", "up"]))
            _sh(self.cmd(["ip", "link", "add", DEV, "type", "veth", "peer", "name", PEER_DEV]))
            _sh(self.cmd(["ip", "addr", "add", f"{self.addr}/24", "dev", DEV]))
            _sh(self.cmd(["ip", "link", "set", DEV, "up"]))
            _sh(self.cmd(["ip", "link", "set", PEER_DEV, "up"]))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        self._tmp.cleanup()

    def cmd(self, argv: list[str]) -> list[str]:
        """The argv that runs `argv` inside the namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(self.cmd(argv), **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(argv), capture_output=True, text=True, timeout=timeout)

    def connect(self, port: int, timeout: float = 2.0) -> socket.socket:
        """A TCP connection to addr:port made inside the namespace.

        A network namespace belongs to a thread: a short-lived thread enters the
        namespace, opens the socket and exits; the socket stays in the namespace and
        any thread may use it.
        """
        box: list[socket.socket | BaseException] = []

        def open_inside() -> None:
            try:
                with open(f"/var/run/netns/{self.ns}") as ns:
                    if _libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                box.append(socket.create_connection((self.addr, port), timeout=timeout))
            except BaseException as exc:  # handed to the caller
                box.append(exc)

        worker = threading.Thread(target=open_inside, daemon=True)
        worker.start()
        worker.join()
        if isinstance(box[0], BaseException):
            raise box[0]
        box[0].settimeout(None)
        return box[0]

    def run_inside(self, coro: Any) -> Any:
        """Run a coroutine on an event loop in a thread that entered the namespace (so
        every socket it opens, aiortc's included, is in there); its result or error."""
        box: list[Any] = []

        def main() -> None:
            try:
                with open(f"/var/run/netns/{self.ns}") as ns:
                    if _libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                box.append(asyncio.run(coro))
            except BaseException as exc:  # handed to the caller
                box.append(exc)

        worker = threading.Thread(target=main, daemon=True)
        worker.start()
        worker.join()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def can_connect(self, port: int) -> bool:
        """Whether a TCP connect to addr:port succeeds inside the namespace."""
        try:
            self.connect(port, timeout=0.5).close()
            return True
        except OSError:
            return False

    def start_janus(self, session_timeout: int = 60) -> Janus:
        return Janus(self, session_timeout)

    @staticmethod
    def stop(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
