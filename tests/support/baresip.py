"""baresip, a real SIP phone, driven by tests inside a SipLab (`janus.py`).

It sends a sine tone (`ausine`), records what it hears (`sndfile`: one WAV per
direction and call in `BareSip.dir`) and is controlled through its `ctrl_tcp` module
(netstring-framed JSON: commands in, responses and call events out), e.g.::

    phone = BareSip(lab, "carol", tone_hz=880, answer="auto")
    phone.dial(f"sip:x@{lab.addr}:5060")     # or wait for an incoming call
    phone.wait_event("CALL_ESTABLISHED")
    phone.hangup()
    hz = dominant_hz(phone.received_wav())

`answer`: "auto" answers every call, "manual" lets it ring (then `accept()` or
`hangup()`, which rejects a ringing call with 486).
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any

from janus import SipLab

MODULES = "/usr/lib/baresip/modules"

CONFIG = """\
poll_method epoll
sip_listen {addr}:{sip_port}
call_local_timeout 120
call_max_calls 1
audio_player alsa,null
audio_source ausine,{tone_hz}
audio_alert alsa,null
ausrc_srate 48000
auplay_srate 48000
ausrc_channels 2  # ausine makes stereo only
auplay_channels 1
audio_buffer 20-160
jitter_buffer_delay 1-5
rtcp_mux yes
module_path {modules}
module opus.so
module g711.so
module alsa.so
module ausine.so
module sndfile.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen {addr}:{ctrl_port}
snd_path {snd_path}
"""


class BareSip:
    """One baresip process listening for SIP on `lab.addr:sip_port`."""

    def __init__(
        self,
        lab: SipLab,
        user: str = "carol",
        *,
        sip_port: int = 5070,
        ctrl_port: int = 4444,
        tone_hz: int = 880,
        answer: str = "auto",
    ) -> None:
        self.lab, self.user, self.sip_port = lab, user, sip_port
        self.uri = f"sip:{user}@{lab.addr}:{sip_port}"
        self.dir = lab.dir / f"baresip-{user}"
        (self.dir / "snd").mkdir(parents=True, exist_ok=True)
        (self.dir / "config").write_text(
            CONFIG.format(
                addr=lab.addr,
                sip_port=sip_port,
                ctrl_port=ctrl_port,
                tone_hz=tone_hz,
                modules=MODULES,
                snd_path=self.dir / "snd",
            )
        )
        (self.dir / "accounts").write_text(
            f"<sip:{user}@{lab.addr}:{sip_port}>;regint=0;answermode={answer}\n"
        )
        self.log = self.dir / "baresip.log"
        with open(self.log, "w") as out:
            self.proc = lab.popen(
                ["baresip", "-f", str(self.dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._sock = self._connect(ctrl_port)
        threading.Thread(target=self._read, daemon=True).start()

    def _connect(self, port: int, timeout: float = 10.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baresip exited: {self.log_tail()}")
            try:
                return self.lab.connect(port, timeout=0.5)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"baresip control not up: {self.log_tail()}") from None
                time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # -- control ----------------------------------------------------------------------

    def _read(self) -> None:
        buf = b""
        with contextlib.suppress(OSError):
            while chunk := self._sock.recv(65536):
                buf += chunk
                while b":" in buf:
                    head, rest = buf.split(b":", 1)
                    size = int(head)
                    if len(rest) < size + 1:
                        break
                    message = json.loads(rest[:size])
                    buf = rest[size + 1 :]
                    if message.get("event"):
                        self.events.put(message)
                    else:
                        self.responses.put(message)

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        body = json.dumps({"command": name, "params": params, "token": name}).encode()
        self._sock.sendall(b"%d:%s," % (len(body), body))
        return self.responses.get(timeout=timeout)

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def accept(self) -> dict[str, Any]:
        return self.command("accept")

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def wait_event(self, kind: str, timeout: float = 15.0) -> dict[str, Any]:
        """The next event of this type (e.g. CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(left, 0.001))
            except queue.Empty:
                seen = [e.get("type") for e in self.seen]
                raise AssertionError(f"baresip: no {kind} in {timeout} s; saw {seen}") from None
            self.seen.append(event)
            if event.get("type") == kind:
                return event

    # -- what it heard --------------------------------------------------------------------

    def received_wav(self) -> Path:
        """The newest recording of what this phone decoded (the far end's audio)."""
        files = sorted((self.dir / "snd").glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise AssertionError(f"baresip recorded nothing: {self.log_tail()}")
        return files[-1]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        self.lab.stop(self.proc)


def dominant_hz(path: Path, skip_s: float = 0.5) -> tuple[float, float]:
    """The strongest frequency in a mono 16-bit WAV and its length in seconds."""
    import numpy as np

    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    if channels > 1:
        samples = samples[::channels]
    seconds = len(samples) / rate
    samples = samples[int(skip_s * rate) :].astype(np.float64)
    if len(samples) < rate // 10 or not samples.any():
        return 0.0, seconds
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples)), seconds
