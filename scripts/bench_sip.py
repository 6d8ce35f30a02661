"""sipcall benchmark: call set-up and mouth-to-ear audio through the SIP gateway.

Everything runs in a private network namespace (`tests/support/janus.py`: Janus never
uses loopback): a Janus gateway, kamailio (registrar), baresip (a real SIP phone) and
an `omni server --sip-gateway ... --sip-registrar ...` child process. The measuring
endpoints are bare aiortc peer connections in this process (its event loop runs in a
thread that entered the namespace) speaking the raw protocol, so both paths use the
same endpoints:

- set-up, `--calls` times: offer -> RINGBACK and the phone's answer -> CONNECTED for a
  sipcall to baresip (which answers on command); baseline in the same run: offer ->
  RINGBACK and answer -> CONNECTED of an omni-to-omni audiocall.
- mouth-to-ear: alice sends a 20 ms 1 kHz burst every 500 ms, bob times each burst's
  onset in what he decodes. Through the gateway: alice's sipcall to sip:bob@registrar,
  which the gateway rings back to omni user bob (--sip-inbound): WebRTC -> Janus -> SIP
  -> Janus -> WebRTC. Baseline: the same two endpoints in a direct audiocall. Both
  include aiortc's receive jitter buffer (about 80 ms, docs/platform notes).

    sudo .venv/bin/python scripts/bench_sip.py [--calls 10] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

import benchlib as bl  # noqa: E402

RATE = 48000
FRAME = 960  # 20 ms
BURST_EVERY = 25  # frames (500 ms)
SERVER = "ws://127.0.0.1:8765"


class Endpoint:
    """One raw-protocol client with one bare RTCPeerConnection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.responses: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.rid = 0
        self.pc: Any = None
        self.sent: list[float] = []  # burst send times (alice)
        self.heard: list[float] = []  # burst onset times (bob)
        self.listeners: list[asyncio.Future[None]] = []

    async def open(self, **session: Any) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(SERVER, max_size=2**20)
        self.reader = asyncio.ensure_future(self._read())
        await self.request("hello", version=1, service_id="dev")
        await self.request("create_session", user_id=self.name, **session)

    async def _read(self) -> None:
        async for text in self.ws:
            msg = json.loads(text)
            if "event" in msg:
                await self.events.put((time.perf_counter(), msg))
            elif msg.get("id") in self.responses:
                self.responses.pop(msg["id"]).set_result(msg)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.rid += 1
        future = asyncio.get_running_loop().create_future()
        self.responses[self.rid] = future
        await self.ws.send(json.dumps({"op": op, "id": self.rid, **fields}))
        answer = await asyncio.wait_for(future, 10)
        if not answer["ok"]:
            raise RuntimeError(f"{self.name} {op}: {answer['error']}")
        return dict(answer["result"])

    async def event(self, name: str, timeout: float = 15) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                at, msg = await self.events.get()
                if msg["event"] == name:
                    return at, msg

    def new_pc(self, clicks: bool) -> Any:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(BurstTrack(self.sent if clicks else None))

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self.listeners.append(asyncio.ensure_future(self._listen(track)))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState == "connected":
                await self.request("media_state", state="connected")

        return self.pc

    async def _listen(self, track: Any) -> None:
        import numpy as np

        loud = False
        try:
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                above = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 6000)
                if above.size and not loud:
                    lag = (pcm.size - above[0]) / frame.sample_rate
                    self.heard.append(now - lag)
                loud = bool(above.size)
        except Exception:  # the track ended
            return

    async def offer(self, callee: str, call_type: str, clicks: bool = False) -> float:
        pc = self.new_pc(clicks)
        await pc.setLocalDescription(await pc.createOffer())
        started = time.perf_counter()
        await self.request(
            "offer_call", call_type=call_type, callee=callee, sdp=pc.localDescription.sdp
        )
        return started

    async def take_answer(self) -> None:
        from aiortc import RTCSessionDescription

        _, msg = await self.event("ANSWERED")
        await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))

    async def answer(self) -> float:
        from aiortc import RTCSessionDescription

        _, msg = await self.event("RINGING")
        pc = self.new_pc(False)
        await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        started = time.perf_counter()
        await self.request("answer_call", sdp=pc.localDescription.sdp)
        return started

    async def hang_up(self, other: Endpoint | None = None) -> None:
        await self.request("leave")
        for side in (self, other):
            if side is not None and side.pc is not None:
                await side.pc.close()
                side.pc = None
        await asyncio.sleep(0.3)
        for side in (self, other):
            if side is not None:
                while not side.events.empty():
                    side.events.get_nowait()

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def BurstTrack(sent: list[float] | None) -> Any:
    import av
    import numpy as np
    from aiortc import MediaStreamTrack

    tone = (np.sin(2 * np.pi * 1000 * np.arange(FRAME) / RATE) * 20000).astype(np.int16)
    quiet = np.zeros(FRAME, dtype=np.int16)

    class Track(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start = 0.0

        async def recv(self) -> Any:
            if not self.start:
                self.start = time.perf_counter()
            due = self.start + self.n * FRAME / RATE
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            burst = sent is not None and self.n % BURST_EVERY == BURST_EVERY - 1
            frame = av.AudioFrame.from_ndarray(
                (tone if burst else quiet).reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = RATE, self.n * FRAME
            frame.time_base = fractions.Fraction(1, RATE)
            if burst and sent is not None:
                sent.append(time.perf_counter())
            self.n += 1
            return frame

    return Track()


def mouth_to_ear(alice: Endpoint, bob: Endpoint) -> list[float]:
    """Each heard onset matched with the latest burst sent before it, in ms."""
    out = []
    for heard in bob.heard:
        before = [s for s in alice.sent if s <= heard]
        if before and heard - before[-1] < 0.4:
            out.append((heard - before[-1]) * 1000)
    return out


async def measure(args: argparse.Namespace, carol: Any, domain: str) -> dict[str, Any]:
    alice, bob = Endpoint("alice"), Endpoint("bob")
    await alice.open()
    await bob.open(sip_inbound=True)
    await asyncio.sleep(1.0)  # bob's REGISTER through the gateway
    fig: dict[str, list[float]] = {
        k: []
        for k in (
            "sip_offer_to_ringback",
            "sip_answer_to_connected",
            "omni_offer_to_ringback",
            "omni_answer_to_connected",
        )
    }
    for _ in range(args.calls):
        started = await alice.offer(carol.uri, "sipcall")
        at, _ = await alice.event("RINGBACK")
        fig["sip_offer_to_ringback"].append((at - started) * 1000)
        carol.wait_event("CALL_INCOMING", timeout=5)
        answered = time.perf_counter()
        carol.accept()
        await alice.take_answer()
        at, _ = await alice.event("CONNECTED")
        fig["sip_answer_to_connected"].append((at - answered) * 1000)
        await alice.hang_up()
        carol.wait_event("CALL_CLOSED", timeout=5)

        started = await alice.offer("bob", "audiocall")
        at, _ = await alice.event("RINGBACK")
        fig["omni_offer_to_ringback"].append((at - started) * 1000)
        answered = await bob.answer()
        await alice.take_answer()
        at, _ = await alice.event("CONNECTED")
        fig["omni_answer_to_connected"].append((at - answered) * 1000)
        await alice.hang_up(bob)

    latency: dict[str, list[float]] = {}
    for path, callee, kind in (
        ("gateway", f"sip:bob@{domain}", "sipcall"),
        ("direct", "bob", "audiocall"),
    ):
        alice.sent.clear()
        bob.heard.clear()
        await alice.offer(callee, kind, clicks=True)
        await bob.answer()
        await alice.take_answer()
        await alice.event("CONNECTED")
        await asyncio.sleep(args.seconds)
        latency[path] = mouth_to_ear(alice, bob)
        await alice.hang_up(bob)
    await alice.close()
    await bob.close()
    return {"setup_ms": fig, "mouth_to_ear_ms": latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    from baresip import BareSip
    from janus import SipLab, unavailable
    from kamailio import Kamailio

    if (why := unavailable()) is not None:
        sys.exit(f"bench_sip: {why}")
    with SipLab() as lab:
        janus = lab.start_janus()
        registrar = Kamailio(lab)
        domain = registrar.uri.removeprefix("sip:")
        carol = BareSip(lab, "carol", answer="manual")
        server = lab.popen(
            [
                *bl.OMNI,
                *("server", "--port", "8765", "--sip-gateway", janus.url),
                *("--sip-registrar", registrar.uri, "--sip-domain", domain),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=bl.env(),
        )
        server.stdout.readline()  # type: ignore[union-attr]
        cpu_before = bl.cpu_seconds(janus.proc.pid)
        t0 = time.monotonic()
        result = lab.run_inside(measure(args, carol, domain))
        janus_cpu = (bl.cpu_seconds(janus.proc.pid) - cpu_before) / (time.monotonic() - t0)
    setup = {k: bl.summary(v) for k, v in result["setup_ms"].items()}
    m2e = {k: bl.summary(v) for k, v in result["mouth_to_ear_ms"].items()}
    rows = [[k, s["count"], s["median"], s["p95"]] for k, s in setup.items()]
    rows += [[f"mouth_to_ear_{k}", s["count"], s["median"], s["p95"]] for k, s in m2e.items()]
    bl.table(["figure (ms)", "n", "median", "p95"], rows)
    ratio = bl.ratio(m2e["gateway"]["median"], m2e["direct"]["median"])
    print(f"mouth-to-ear gateway / direct: {ratio}x; Janus CPU {janus_cpu * 100:.1f} % of a core")
    bl.write(
        "sip",
        {
            "setup_ms": setup,
            "mouth_to_ear_ms": m2e,
            "ratio_mouth_to_ear": ratio,
            "janus_cpu_pct": round(janus_cpu * 100, 1),
        },
    )


if __name__ == "__main__":
    main()
