"""Call set-up benchmark: loopback calls through a real `omni server`.

Two `omnicli.phone.core.Phone`s in this process (alice calls bob, 320x240 test video and a
tone) make `--calls` video calls one after another through an `omni server` child
process. Per call:

- offer -> RINGING: from alice calling `offer_call` to bob's RINGING event;
- answer -> CONNECTED: from bob calling `answer_call` to the CONNECTED event at
  alice and at bob (CONNECTED means both media stacks are up, see architecture.md);
- offer -> CONNECTED at alice (the `setup_ms` the Connected event carries).

Baseline in the same run: a bare aiortc pair in this process with aiortc's own
synthetic tracks, no signaling server: from bob's `setRemoteDescription(offer)` +
answer to both `connectionState == "connected"`, and from alice's `createOffer`.

    .venv/bin/python scripts/bench_setup.py [--calls 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl


async def until(phone: Any, kind: type, timeout: float = 30) -> float:
    """Wait for the next event of `kind`; the time it was taken off the queue."""
    async with asyncio.timeout(timeout):
        while True:
            if isinstance(await phone.next_event(), kind):
                return time.perf_counter()


async def omni_calls(url: str, calls: int) -> dict[str, list[float]]:
    from omnicli.phone import events as ev
    from omnicli.phone.core import MediaOptions, Phone, PhoneConfig

    media = MediaOptions(width=320, height=240, connect_timeout=30)
    alice = Phone(PhoneConfig(server_url=url, media=media))
    bob = Phone(PhoneConfig(server_url=url, media=media))
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "offer_to_ringing",
            "answer_to_connected_caller",
            "answer_to_connected_callee",
            "offer_to_connected_caller",
            "setup_ms_caller_event",
            "setup_ms_callee_event",
        )
    }
    try:
        await alice.create_session("alice")
        await bob.create_session("bob")
        for _ in range(calls + 1):  # the first call warms up imports and codecs
            t_offer = time.perf_counter()
            await alice.offer_call("videocall", "bob")
            t_ring = await until(bob, ev.Ringing)
            t_answer = time.perf_counter()
            await bob.answer_call("videocall", "alice")
            conn: dict[str, tuple[float, float]] = {}

            async def connected(name: str, phone: Any, conn: dict = conn) -> None:
                async with asyncio.timeout(30):
                    while True:
                        event = await phone.next_event()
                        if isinstance(event, ev.Connected):
                            conn[name] = (time.perf_counter(), event.setup_ms)
                            return

            await asyncio.gather(connected("alice", alice), connected("bob", bob))
            out["offer_to_ringing"].append(1000 * (t_ring - t_offer))
            out["answer_to_connected_caller"].append(1000 * (conn["alice"][0] - t_answer))
            out["answer_to_connected_callee"].append(1000 * (conn["bob"][0] - t_answer))
            out["offer_to_connected_caller"].append(1000 * (conn["alice"][0] - t_offer))
            out["setup_ms_caller_event"].append(conn["alice"][1])
            out["setup_ms_callee_event"].append(conn["bob"][1])
            await alice.leave()
            await until(bob, ev.Leave)
    finally:
        await alice.close()
        await bob.close()
    return {k: v[1:] for k, v in out.items()}


async def bare_calls(calls: int) -> dict[str, list[float]]:
    import cv2  # noqa: F401  (before av and aiortc)
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    out: dict[str, list[float]] = {"answer_to_connected": [], "offer_to_connected": []}
    for _ in range(calls + 1):
        a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for pc in (a, b):
            pc.addTrack(AudioStreamTrack())
            pc.addTrack(VideoStreamTrack())
        try:
            t_offer = time.perf_counter()
            await a.setLocalDescription(await a.createOffer())
            t_answer = time.perf_counter()
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
            async with asyncio.timeout(30):
                while a.connectionState != "connected" or b.connectionState != "connected":
                    await asyncio.sleep(0.002)
            done = time.perf_counter()
            out["answer_to_connected"].append(1000 * (done - t_answer))
            out["offer_to_connected"].append(1000 * (done - t_offer))
        finally:
            await a.close()
            await b.close()
    return {k: v[1:] for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    bare = {k: bl.summary(v) for k, v in asyncio.run(bare_calls(args.calls)).items()}
    with bl.Server("--rate-limit", "0") as server:  # calls back to back: many requests/s
        omni = {
            k: bl.summary(v) for k, v in asyncio.run(omni_calls(server.url, args.calls)).items()
        }
    base = bare["answer_to_connected"]["median"]
    rows = [[name, s["median"], s["p95"], s["max"]] for name, s in omni.items()]
    rows += [[f"bare aiortc {name}", s["median"], s["p95"], s["max"]] for name, s in bare.items()]
    print(f"call set-up, {args.calls} calls on loopback (ms)")
    bl.table(["figure", "median", "p95", "max"], rows)
    worst = max(
        omni["answer_to_connected_caller"]["median"], omni["answer_to_connected_callee"]["median"]
    )
    ratios = {
        "answer_to_connected_both_median": bl.ratio(worst, base),
        "offer_to_connected_caller_median": bl.ratio(
            omni["offer_to_connected_caller"]["median"], bare["offer_to_connected"]["median"]
        ),
    }
    print(f"omnicli / bare aiortc: {ratios}")
    bl.write(
        "setup",
        {
            "calls": args.calls,
            "omni": omni,
            "bare": bare,
            "ratio": ratios,
            "targets": {"answer -> CONNECTED at both sides, median <= 100 ms": worst <= 100},
        },
    )


if __name__ == "__main__":
    main()
