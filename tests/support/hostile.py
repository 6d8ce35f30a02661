"""Hostile clients for the server's abuse tests and `scripts/bench_hostile.py`.

Raw sockets, not a websocket library: an attacker does not answer pings, does not read,
and sends what it likes. Plus what the tests measure on the server process: its
resident memory and its open descriptors, read from /proc.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid`, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame (the mask is zero: the payload goes as it is)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


def text(obj: dict[str, Any]) -> bytes:
    return frame(0x1, json.dumps(obj).encode())


def open_ws(
    url: str, source: str | None = None, rcvbuf: int | None = None, timeout: float = 5.0
) -> socket.socket:
    """A TCP connection from `source` (an address, e.g. 127.0.0.2) that has done the
    websocket handshake; raises ConnectionError when the server refuses it."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # a small window: the server's writes back up at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # byte by byte: leave what follows the headers unread
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
    except BaseException:
        sock.close()
        raise
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return sock


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next server frame (unmasked)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return b0 & 0x0F, exactly(n)


def read_json(sock: socket.socket) -> dict[str, Any]:
    """The next text frame, skipping pings."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x1:
            return dict(json.loads(payload))
        if opcode == 0x8:
            raise ConnectionError(f"closed by the server: {payload[2:].decode(errors='replace')}")


def ping_flood(sock: socket.socket, seconds: float, payload: int = 125) -> int:
    """Send ping frames as fast as the socket takes them, reading nothing; bytes sent.
    Stops early when the server aborts the connection."""
    burst = frame(0x9, b"p" * payload) * 64
    sent = 0
    end = time.monotonic() + seconds
    sock.settimeout(0.05)
    while time.monotonic() < end:
        try:
            sent += sock.send(burst)
        except TimeoutError:
            continue
        except OSError:
            break
    return sent


def gone(sock: socket.socket, timeout: float) -> bool:
    """True once the server has closed or reset `sock` (reading what is left)."""
    end = time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            if not sock.recv(1 << 16):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


class PongKeeper:
    """Answers the server's pings on many raw sockets from one thread (and reads and drops
    everything else), so idle connections look alive to the server's keepalive."""

    def __init__(self) -> None:
        import selectors
        import threading

        self._selector = selectors.DefaultSelector()
        self._buffers: dict[socket.socket, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, socks: list[socket.socket]) -> None:
        import selectors

        with self._lock:
            for sock in socks:
                sock.setblocking(False)
                self._buffers[sock] = b""
                self._selector.register(sock, selectors.EVENT_READ)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ready = self._selector.select(timeout=0) if self._buffers else []
            if not ready:
                time.sleep(0.02)
                continue
            for key, _ in ready:
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                with self._lock:
                    if not data:
                        self._selector.unregister(sock)
                        self._buffers.pop(sock, None)
                        continue
                    self._buffers[sock] = self._pong(sock, self._buffers[sock] + data)

    @staticmethod
    def _pong(sock: socket.socket, buf: bytes) -> bytes:
        """Answer each complete ping in `buf`; what is left of an incomplete frame."""
        while len(buf) >= 2:
            n, head = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, head = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, head = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < head + n:
                break
            if buf[0] & 0x0F == 0x9:
                with contextlib.suppress(OSError):
                    sock.send(frame(0xA, buf[head : head + n]))
            buf = buf[head + n :]
        return buf
