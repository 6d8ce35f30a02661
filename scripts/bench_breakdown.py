"""Where one video frame's milliseconds go, stage by stage, in one omnicli call.

Two `PeerLink`s in one process (one direction of video is timed; the other sends
too, so the load is a call's), test pattern at the given size and rate. Each frame is
timed with `time.monotonic()` at:

  render    the test pattern starts drawing it (its frame code's time is taken here)
  track     `SwitchableTrack.recv` hands it to aiortc's sender
  encoded   the VP8 encoder (a worker thread) returns its packets
  first rx  its first RTP packet reaches the receive hook (decrypted, depayloaded)
  released  the receive hook hands it to the decoder (`VideoRecovery`)
  shown     the decoded frame reaches the probe (the frame code is read there)

and the table gives the median (and p95) of each step. Both ends share one process
and its GIL, so the sum is a little above the two-process figure of bench_media.py.

    .venv/bin/python scripts/bench_breakdown.py [--size 640x480] [--fps 30] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

STAGES = ["render", "track", "encoded", "first rx", "released", "shown"]


async def run(width: int, height: int, fps: float, seconds: float) -> dict[str, Any]:
    import cv2  # noqa: F401  (before av and aiortc)

    # isort: split
    from aiortc.codecs import vpx

    from omnicli.media import recovery, tracks
    from omnicli.media.peer import PeerLink
    from omnicli.media.probes import VideoProbe
    from omnicli.media.sources import TestPatternTrack, ToneTrack

    # sender stages are keyed by the frame counter, receiver stages by the RTP timestamp
    # (raw, then as aiortc maps it), joined through the counter read from each frame shown
    at: dict[str, dict[int, float]] = defaultdict(dict)
    frames: dict[int, tuple[Any, int]] = {}  # id(frame) -> (frame, counter) until encoded
    raw_to_mapped: dict[int, int] = {}
    mapped_to_counter: dict[int, int] = {}
    source = TestPatternTrack(width, height, fps)
    state: dict[str, Any] = {"on": False, "receiver": None, "probe": None}

    render, source_recv = source.render, source.recv

    def timed_render(counter: int, ts_ms: int) -> Any:
        at["render"][counter] = time.monotonic()
        return render(counter, ts_ms)

    async def timed_source_recv() -> Any:
        frame = await source_recv()
        frames[id(frame)] = (frame, source.counter - 1)
        return frame

    source.render = timed_render  # type: ignore[method-assign]
    source.recv = timed_source_recv  # type: ignore[method-assign]

    track_recv = tracks.SwitchableTrack.recv

    async def timed_track_recv(self: Any) -> Any:
        frame = await track_recv(self)
        if id(frame) in frames:
            at["track"][frames[id(frame)][1]] = time.monotonic()
        return frame

    encode = vpx.Vp8Encoder.encode

    def timed_encode(self: Any, frame: Any, force_keyframe: bool = False) -> Any:
        out = encode(self, frame, force_keyframe)
        known = frames.pop(id(frame), None)
        if known is not None:
            at["encoded"][known[1]] = time.monotonic()
        return out

    add = recovery.VideoRecovery.add

    def timed_add(self: Any, packet: Any) -> Any:
        receiver = state["receiver"]
        hook = getattr(receiver, "omnicli_recovery", None)
        if self is hook and packet.timestamp not in at["first rx"]:
            at["first rx"][packet.timestamp] = time.monotonic()
        return add(self, packet)

    make_feed = recovery._decoder_feed

    def timed_feed(receiver: Any) -> Any:
        feed = make_feed(receiver)

        def wrapped(payload_type: int, frame: Any) -> None:
            raw, now = frame.timestamp, time.monotonic()
            feed(payload_type, frame)
            if receiver is state["receiver"]:
                raw_to_mapped[raw] = frame.timestamp
                at["released"][raw] = now

        return wrapped

    shown = VideoProbe._handle

    def timed_shown(self: Any, frame: Any) -> None:
        now, pts = time.monotonic(), frame.pts
        shown(self, frame)
        if self is state["probe"] and self.last_counter is not None:
            at["shown"][self.last_counter] = now
            mapped_to_counter[pts] = self.last_counter

    tracks.SwitchableTrack.recv = timed_track_recv  # type: ignore[method-assign]
    vpx.Vp8Encoder.encode = timed_encode  # type: ignore[method-assign]
    recovery.VideoRecovery.add = timed_add  # type: ignore[method-assign]
    recovery._decoder_feed = timed_feed
    VideoProbe._handle = timed_shown  # type: ignore[method-assign]

    a = PeerLink([], video=source, audio=ToneTrack(440))
    b = PeerLink([], video=TestPatternTrack(width, height, fps), audio=ToneTrack(660))
    state["probe"] = b.video_in
    try:
        offer = await a.create_offer("videocall")
        answer = await b.accept_offer(offer)
        await a.accept_answer(answer)
        await asyncio.gather(a.wait_connected(10), b.wait_connected(10))
        state["receiver"] = next(t.receiver for t in b.pc.getTransceivers() if t.kind == "video")
        await asyncio.sleep(2)  # warm-up
        first = source.counter
        await asyncio.sleep(seconds)
        last = source.counter - int(fps)  # frames still in flight at the end are left out
    finally:
        await a.close()
        await b.close()
    counter_to_raw = {
        mapped_to_counter[m]: raw for raw, m in raw_to_mapped.items() if m in mapped_to_counter
    }
    rows: dict[str, list[float]] = defaultdict(list)
    for counter in range(first, last):
        raw = counter_to_raw.get(counter)
        times = [
            at["render"].get(counter),
            at["track"].get(counter),
            at["encoded"].get(counter),
            None if raw is None else at["first rx"].get(raw),
            None if raw is None else at["released"].get(raw),
            at["shown"].get(counter),
        ]
        if any(t is None for t in times):
            continue
        for i in range(1, len(STAGES)):
            rows[f"{STAGES[i - 1]} -> {STAGES[i]}"].append(1000 * (times[i] - times[i - 1]))
        rows["render -> shown"].append(1000 * (times[-1] - times[0]))
    return {step: bl.summary(values) for step, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    steps = asyncio.run(run(width, height, args.fps, args.seconds))
    print(f"one frame, {args.size} at {args.fps:g} fps, ms (load {bl.machine()['loadavg']})")
    bl.table(["step", "median", "p95"], [[k, v["median"], v["p95"]] for k, v in steps.items()])
    bl.write("breakdown", {"size": args.size, "fps": args.fps, "steps": steps})


if __name__ == "__main__":
    main()
