"""Media benchmark: omnicli against a minimal pair of bare aiortc peer connections.

Two processes per pair, both directions at once: synthetic 30 fps video carrying a
frame counter and its creation time in its pixels (`omnicli.media.framecode`) plus a 48 kHz
tone. Per resolution (320x240, 640x480, 1280x720), each endpoint measures over the
same window after a warm-up: one-way video latency from frame creation to decoded
frame (median, p99 over both directions), received frames per second, lost frames
(gaps in the frame counter), audio seconds received, and its own CPU (user + system
time of its whole process, all threads, over the window, in % of one core).

- bare: two processes with an RTCPeerConnection each, a colour-bar track stamped with
  the frame code, a sine tone, SDP passed through this script's pipes. No omnicli
  code except `framecode` (a pixel code, not omnicli's call path).
- omnicli: two processes each driving `omnicli.phone.core.Phone` (test pattern + tone)
  through one `omni server`, exactly the path `omni call` takes.
- chromium: headless Chromium (the browser client, a canvas carrying the same frame
  code) calls one omnicli process, in VP8 and in H.264: Chromium -> omni and
  omni -> Chromium each on a row of their own; and two Chromiums call each other
  (both directions pooled), the browser's own cost (see benchchrome.py).

    .venv/bin/python scripts/bench_media.py [--sizes 320x240,640x480,1280x720] [--seconds 8]
        [--systems bare,omni,chromium] [--codecs VP8,H264]

The same file is also the endpoint (`--endpoint ROLE`), started by the orchestrator;
the bad-network benchmark (bench_network.py) reuses the endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

VIDEO_CLOCK = 90_000
NO_RECOVERY = "--no-recovery" in sys.argv  # also passed on to omnicli endpoints
TRACE = "--trace" in sys.argv  # the send control's timeline (benchtrace.py), the same
CLICK_EVERY = 1.0  # s: the audio carries a click at every whole second of the wall clock
CLICK_LEN = 0.01  # s
CLICK_LEVEL = 0.5  # of full scale: what the detector calls a click (the tone stays at 0.1)


class ClickDetector:
    """One-way audio latency from the clicks in received audio: a click that arrives at
    wall time t was sent at the whole second before it (both ends share the clock)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.last: float | None = None

    def feed(self, pcm: Any, channels: int, now: float, rate: int = 48_000) -> None:
        import numpy as np

        mono = np.asarray(pcm).reshape(-1)[::channels]
        loud = np.flatnonzero(np.abs(mono) >= CLICK_LEVEL * 32767)
        if not len(loud):
            return
        if self.last is not None and now - self.last < CLICK_EVERY / 2:
            return  # the same click, continued in the next frame
        self.last = now
        # The frame left the sender when its first sample was due, `loud[0]` samples
        # before the click's whole second: measure from then (else a click late in a
        # frame reads up to 20 ms short, or wraps to ~1 s).
        sent_ago = now % CLICK_EVERY + loud[0] / rate
        self.latencies.append(round(1000 * float(sent_ago % CLICK_EVERY), 1))

    def frame(self, frame: Any) -> None:
        self.feed(frame.to_ndarray(), len(frame.layout.channels), time.time(), frame.sample_rate)


def click_tone(max_lag: float | None = None) -> Any:
    """A 440 Hz tone at 0.1 of full scale, paced by the wall clock, with a 10 ms 1 kHz click
    at 0.9 of full scale at every whole second of the wall clock. `max_lag`: a source that
    fell further behind the wall clock (a starved process) skips ahead, whole 20 ms frames,
    as a microphone's bounded queue drops its oldest audio; None: it catches up instead."""
    import fractions
    import math

    import av
    import numpy as np
    from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

    class ClickTone(AudioStreamTrack):
        sent = 0
        t0: float | None = None

        async def recv(self) -> av.AudioFrame:
            if self.readyState != "live":
                raise MediaStreamError
            if self.t0 is None:
                self.t0 = time.time()
            wait = self.t0 + self.sent / 48_000 - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif max_lag is not None and -wait > max_lag:
                self.sent += int(-wait * 48_000) // 960 * 960
            n = np.arange(self.sent, self.sent + 960)
            wall = self.t0 + n / 48_000
            wave = 0.1 * np.sin(2 * math.pi * 440 * n / 48_000)
            click = (wall % CLICK_EVERY) < CLICK_LEN
            wave[click] = 0.9 * np.sign(np.sin(2 * math.pi * 1000 * n[click] / 48_000) + 1e-9)
            pcm = (wave * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48_000, self.sent
            frame.time_base = fractions.Fraction(1, 48_000)
            self.sent += 960
            return frame

    return ClickTone()


# -- endpoint side (a child process) ---------------------------------------------------


class Window:
    """What one endpoint received during the measuring window."""

    def __init__(self) -> None:
        self.open = False
        self.started = 0.0
        self.cpu0 = 0.0
        self.latencies: list[int] = []
        self.timed: list[tuple[float, int]] = []  # (s into the window, latency ms)
        self.frames = 0
        self.lost = 0
        self.last_counter: int | None = None
        self.audio_samples = 0
        self.audio_rate = 48_000
        self.last_frame_at: float | None = None
        self.longest_gap = 0.0
        self.clicks = ClickDetector()

    def start(self) -> None:
        self.open, self.started, self.cpu0 = True, time.monotonic(), time.process_time()
        self.clicks.latencies.clear()

    def video(self, counter_ts: tuple[int, int] | None) -> None:
        now = time.monotonic()
        if self.open:
            if self.last_frame_at is not None:
                self.longest_gap = max(self.longest_gap, now - self.last_frame_at)
            self.frames += 1
        self.last_frame_at = now
        if counter_ts is None:
            return
        counter, ts_ms = counter_ts
        if self.open:
            self.latencies.append(time.time_ns() // 1_000_000 - ts_ms)
            self.timed.append((round(now - self.started, 2), self.latencies[-1]))
            if self.last_counter is not None and counter > self.last_counter:
                self.lost += counter - self.last_counter - 1
        self.last_counter = counter

    def audio(self, samples: int, rate: int) -> None:
        if self.open:
            self.audio_samples += samples
            self.audio_rate = rate

    def result(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        if self.last_frame_at is not None:  # a freeze still going on counts too
            self.longest_gap = max(self.longest_gap, time.monotonic() - self.last_frame_at)
        return {
            "seconds": round(elapsed, 3),
            "latencies_ms": self.latencies,
            "timed_latencies": self.timed,
            "frames": self.frames,
            "fps": round(self.frames / elapsed, 2),
            "lost_frames": self.lost,
            "longest_freeze_ms": round(1000 * self.longest_gap),
            "audio_seconds": round(self.audio_samples / self.audio_rate, 3),
            "cpu_pct": round(100 * (time.process_time() - self.cpu0) / elapsed, 1),
            "window_at": round(self.started, 3),
            "audio_latencies_ms": list(
                self.clicks.latencies
            ),  # monotonic, the same clock in every process
            **(extra or {}),
        }


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def _stdin_line() -> dict[str, Any]:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return json.loads(line)


def _luma(frame: Any) -> Any:
    import numpy as np

    if frame.format.name in ("yuv420p", "yuvj420p", "nv12"):
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        return rows[: frame.height, : frame.width]
    return frame.to_ndarray(format="gray")


async def bare_endpoint(args: argparse.Namespace) -> None:
    """A bare aiortc peer: colour bars with a frame code, a tone, the same measurements."""
    import cv2  # noqa: F401  (before av and aiortc)

    # isort: split
    import fractions

    import av
    import numpy as np
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, VideoStreamTrack

    from omnicli.media import framecode

    width, height = args.width, args.height
    bars = np.zeros((height, width, 3), dtype=np.uint8)
    for i, colour in enumerate(
        [
            (192, 192, 192),
            (0, 192, 192),
            (192, 192, 0),
            (0, 192, 0),
            (192, 0, 192),
            (0, 0, 192),
            (192, 0, 0),
            (16, 16, 16),
        ]
    ):
        bars[:, i * width // 8 : (i + 1) * width // 8] = colour

    class Pattern(VideoStreamTrack):
        counter = 0
        t0: float | None = None

        async def recv(self) -> av.VideoFrame:
            if self.readyState != "live":
                raise MediaStreamError
            if self.t0 is None:  # paced like aiortc's VideoStreamTrack, at --fps
                self.t0 = time.time()
            wait = self.t0 + self.counter / float(args.fps) - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            pts = round(self.counter * VIDEO_CLOCK / float(args.fps))
            time_base = fractions.Fraction(1, VIDEO_CLOCK)
            img = bars.copy()
            x = int(self.counter * width / 60) % (width + 40) - 40
            img[:, max(0, x) : max(0, x + 40)] = 255
            framecode.stamp(img, self.counter, time.time_ns() // 1_000_000)
            self.counter += 1
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts, frame.time_base = pts, time_base
            return frame

    window = Window()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tone = click_tone()  # a tone with a click every second (audio latency)
    pc.addTrack(tone)
    pc.addTrack(Pattern())

    async def consume(track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    window.video(framecode.read(_luma(frame)))
                else:
                    window.audio(frame.samples, frame.sample_rate)
                    window.clicks.frame(frame)
        except MediaStreamError:
            pass

    tasks = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    if args.endpoint == "bare-offer":
        await pc.setLocalDescription(await pc.createOffer())
        _emit({"sdp": pc.localDescription.sdp})
        answer = await _stdin_line()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    else:
        offer = await _stdin_line()
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        _emit({"sdp": pc.localDescription.sdp})
    while pc.connectionState != "connected":
        await asyncio.sleep(0.01)
    await asyncio.sleep(args.warmup)
    window.start()
    await asyncio.sleep(args.seconds)
    result = window.result()
    result["audio_sent_seconds"] = result["seconds"]  # the tone is paced by the wall clock
    _emit({"result": result})
    await pc.close()


async def omni_endpoint(args: argparse.Namespace) -> None:
    """One omnicli Phone (the `omni call` path) measuring what it receives."""
    import logging

    if os.environ.get("BENCH_LOG"):  # the phone's own account of the call, on stderr
        logging.basicConfig(level=logging.INFO, format="%(relativeCreated)d %(name)s %(message)s")
        for noisy in ("aioice", "aiortc", "websockets", "libav"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    from omnicli.media import framecode
    from omnicli.phone import events as ev
    from omnicli.phone.core import MediaOptions, Phone, PhoneConfig

    if args.no_recovery:  # measure omnicli without its loss recovery (omnicli/media/recovery.py)
        from omnicli.media import recovery

        recovery.install = lambda receiver: False
    media = MediaOptions(
        video_source="test",
        audio_source="tone",
        width=args.width,
        height=args.height,
        fps=round(float(args.fps)),
        connect_timeout=30,
    )
    phone = Phone(PhoneConfig(server_url=args.server, service_key=args.key, media=media))
    window = Window()
    me, peer = ("alice", "bob") if args.endpoint == "omni-caller" else ("bob", "alice")
    await phone.create_session(f"{me}-{args.tag}")
    if args.endpoint == "omni-caller":
        await phone.offer_call("videocall", f"{peer}-{args.tag}")
    else:
        _emit({"ready": True})
        await phone.answer_call("videocall", f"{peer}-{args.tag}", wait=60)
    while True:
        event = await phone.next_event(timeout=60)
        if isinstance(event, ev.Connected):
            break
    assert phone.media is not None
    # the same audio as the bare endpoints send: the tone with a click every second
    phone.media.link.audio_out.set_source(click_tone())
    trace = None
    if args.trace:  # the send control's timeline (bench_network.py --trace)
        from benchtrace import Trace

        trace = Trace(phone.media.link)
        sampling = asyncio.ensure_future(trace.run())
    await asyncio.sleep(args.warmup)
    # The probes' raw figures, over every link the call has during the window (a media
    # restart swaps the call's PeerLink for a new one; see omnicli/phone/mediarestart.py).
    links: list[Any] = []
    base: dict[int, tuple[int, int, float]] = {}
    gaps: list[float] = []
    previous: list[float | None] = [None]

    def follow(link: Any) -> None:
        video = link.video_in
        base[id(link)] = (
            video.frames_coded,
            video.counters_missing,
            link.audio_in.seconds_received,
        )
        if not links:
            previous[0] = video.last_frame_at
        video.latencies_ms.clear()
        links.append(link)
        video.on_frame = None
        original = video._handle

        def handle(frame: Any) -> None:  # frame arrivals, for the longest freeze
            now = time.monotonic()
            if previous[0] is not None:
                gaps.append(now - previous[0])
            previous[0] = now
            coded = video.frames_coded
            original(frame)
            if window.open and video.frames_coded > coded and video.latencies_ms:
                window.timed.append(
                    (round(time.monotonic() - window.started, 2), video.latencies_ms[-1])
                )

        video._handle = handle
        link.audio_in.on_audio = window.clicks.frame  # audio latency

    async def sent_bytes(link: Any) -> dict[str, int]:  # RTP bytes sent so far, per kind
        report = await link.pc.getStats()
        return {e.kind: e.bytesSent for e in report.values() if e.type == "outbound-rtp"}

    follow(phone.media.link)
    sent0 = await sent_bytes(phone.media.link)
    window.start()
    end = time.monotonic() + args.seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(0.05, left))
        media = phone.media
        if media is not None and media.link is not links[-1]:
            follow(media.link)
    if previous[0] is not None:
        gaps.append(time.monotonic() - previous[0])
    result = window.result()
    concealed, latencies, frames, missing, audio_s = 0, [], 0, 0, 0.0
    recovery: dict[str, Any] = {}
    for link in links:
        f0, m0, a0 = base[id(link)]
        frames += link.video_in.frames_coded - f0
        missing += link.video_in.counters_missing - m0
        audio_s += link.audio_in.seconds_received - a0
        latencies += list(link.video_in.latencies_ms)
        for r in link.pc.getReceivers():
            hook = getattr(r, "omnicli_recovery", None) if r.track else None
            if hook is None:
                continue
            if r.track.kind == "audio":
                concealed += hook.stats["concealed"]
            recovery[r.track.kind] = (
                hook.stats if hasattr(hook, "stats") else {"stalls": hook.stalls}
            )
    if len(links) == 1:  # what went out in the window (RTP, retransmissions included)
        sent1 = await sent_bytes(links[0])
        result["sent_kbps"] = {
            kind: round(8 * (sent1[kind] - sent0.get(kind, 0)) / result["seconds"] / 1000, 1)
            for kind in sent1
        }
    result.update(
        latencies_ms=latencies,
        frames=frames,
        fps=round(frames / result["seconds"], 2),
        lost_frames=missing,
        longest_freeze_ms=round(1000 * max(gaps, default=0.0)),
        audio_seconds=round(audio_s, 3),
        audio_concealed_seconds=round(0.02 * concealed, 3),
        audio_sent_seconds=result["seconds"],  # the tone is paced by the wall clock
        recovery=recovery,
        links=len(links),
    )
    control = getattr(links[-1], "send_rate", None)
    if control is not None:  # how the video send target moved (see sendrate.py)
        result["send_rate"] = {
            "target_kbps": round(control.target_bps / 1000),
            "changes": [(round(t - window.started, 2), b // 1000) for t, b in control.changes],
            "changes_at": [(round(t, 3), b // 1000) for t, b in control.changes],  # monotonic
            "counts": dict(getattr(control, "counts", {})),
        }
    if trace is not None:
        sampling.cancel()
        result["trace"] = trace.timeline()
    _ = framecode  # the probe reads the frame code
    _emit({"result": result})
    if args.endpoint == "omni-caller":
        await phone.leave()
    else:
        try:
            while not isinstance(await phone.next_event(timeout=10), ev.Leave):
                pass
        except TimeoutError:
            pass
    await phone.close()


# -- orchestrator side -----------------------------------------------------------------


class Endpoint:
    def __init__(self, role: str, opts: list[str], prefix: list[str] | None = None) -> None:
        cmd = [*(prefix or []), bl.PYTHON, str(Path(__file__).resolve()), "--endpoint", role, *opts]
        log = os.environ.get("BENCH_LOG")  # a directory: each endpoint's stderr goes there
        err: Any = subprocess.PIPE
        if log:
            Path(log).mkdir(parents=True, exist_ok=True)
            err = open(Path(log) / f"{role}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            env=bl.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"endpoint ended early: {err[-2000:]}")
            if line.startswith("{"):
                return json.loads(line)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_pair(
    kind: str,
    opts: list[str],
    server: str | None = None,
    prefixes: tuple[list[str], list[str]] | None = None,
    key: str | None = None,
) -> list[dict[str, Any]]:
    """Run two endpoints of `kind` ("bare" or "omni"); their two results."""
    pa, pb = prefixes or ([], [])
    if kind == "bare":
        a, b = Endpoint("bare-offer", opts, pa), Endpoint("bare-answer", opts, pb)
        b.send(a.read())
        a.send(b.read())
    else:
        extra = omni_opts(opts, server, f"t{time.monotonic_ns() % 10**9}", key)
        b = Endpoint("omni-callee", extra, pb)
        b.read()  # ready
        a = Endpoint("omni-caller", extra, pa)
    results = [a.read()["result"], b.read()["result"]]
    a.finish()
    b.finish()
    return results


def omni_opts(opts: list[str], server: str | None, tag: str, key: str | None) -> list[str]:
    """An omni endpoint's options: `bob-TAG` answers `alice-TAG` (and the reverse)."""
    return [
        *opts,
        "--server",
        server or "",
        "--tag",
        tag,
        *(["--key", key] if key else []),
        *(["--no-recovery"] if NO_RECOVERY else []),
        *(["--trace"] if TRACE else []),
    ]


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Both endpoints' figures as one row: latency pooled, others per endpoint (mean)."""
    lat = [v for r in results for v in r["latencies_ms"]]
    audio_lat = [v for r in results for v in r.get("audio_latencies_ms", [])]
    mean = lambda key: round(sum(r[key] for r in results) / len(results), 2)  # noqa: E731
    sent = sum(r.get("audio_sent_seconds", 0) for r in results)
    got = sum(r["audio_seconds"] for r in results)
    concealed = sum(r.get("audio_concealed_seconds", 0) for r in results)
    timed = [pair for r in results for pair in r.get("timed_latencies", [])]
    if timed:  # every frame of the window (the probe's own list keeps the last 600)
        lat = [ms for _, ms in timed]
    minutes = int(max((t for t, _ in timed), default=0) // 60) + 1
    per_minute = [
        bl.quantile([ms for t, ms in timed if m * 60 <= t < (m + 1) * 60], 0.5)
        for m in range(minutes)
    ]
    return {
        "latency_ms": bl.summary(lat),
        "audio_latency_ms": bl.summary(audio_lat),
        "per_minute_median_ms": per_minute,
        "fps_in": mean("fps"),
        "lost_frames": sum(r["lost_frames"] for r in results),
        "cpu_pct_per_endpoint": mean("cpu_pct"),
        "cpu_pct": [r["cpu_pct"] for r in results],
        "longest_freeze_ms": max(r["longest_freeze_ms"] for r in results),
        "audio_output_fraction": round(got / sent, 3) if sent else None,
        "audio_delivered_fraction": round((got - concealed) / sent, 3) if sent else None,
        "recovery": [r.get("recovery") for r in results],
        **(
            {"send_rate": [r["send_rate"] for r in results]}
            if all("send_rate" in r for r in results)
            else {}
        ),
    }


def compare(omni: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    return {
        "latency_median": bl.ratio(omni["latency_ms"]["median"], bare["latency_ms"]["median"]),
        "latency_p99": bl.ratio(omni["latency_ms"]["p99"], bare["latency_ms"]["p99"]),
        "fps_in": bl.ratio(omni["fps_in"], bare["fps_in"]),
        "cpu_per_endpoint": bl.ratio(omni["cpu_pct_per_endpoint"], bare["cpu_pct_per_endpoint"]),
    }


def endpoint_opts(
    width: int, height: int, seconds: float, warmup: float, fps: float = 30.0
) -> list[str]:
    return [
        "--width",
        str(width),
        "--height",
        str(height),
        "--fps",
        f"{fps:g}",
        "--seconds",
        str(seconds),
        "--warmup",
        str(warmup),
    ]


# issue #11: (figure key, omnicli median at most ms, ratio to bare at most)
TARGETS = {
    "640x480@30": (15.0, 0.4),
    "640x480@15": (20.0, 0.35),
    "640x480@10": (20.0, None),
}


def chromium_rows(key: str, fig: dict[str, Any]) -> list[list[Any]]:
    """The two table rows of one Chromium call (benchchrome.run)."""
    codec, off = fig["codec"], fig["clock"]["offset_ms"]
    to_omni, to_page = fig["to_omni"], fig["to_chromium"]
    return [
        [key, f"chromium->omni {codec}", to_omni["latency_ms"]["median"],
         to_omni["latency_ms"]["p99"], None, None, to_omni["fps_in"], to_omni["lost_frames"],
         to_omni["cpu_pct"], off],
        [key, f"omni->chromium {codec}", to_page["latency_ms"]["median"],
         to_page["latency_ms"]["p99"], to_page["at_read_ms"]["median"],
         to_page["jitter_buffer_ms_per_frame"], to_page["fps_in"], to_page["not_shown"],
         to_page["cpu_pct"], off],
    ]  # fmt: skip


def chromium_pair_row(key: str, fig: dict[str, Any]) -> list[Any]:
    """The table row of one Chromium <-> Chromium call (benchchrome.run_browsers)."""
    return [key, f"chromium<->chromium {fig['codec']}", fig["latency_ms"]["median"],
            fig["latency_ms"]["p99"], fig["at_read_ms"]["median"],
            fig["jitter_buffer_ms_per_frame"], fig["fps_in"], fig["not_shown"],
            fig["cpu_pct_per_browser"], None]  # fmt: skip


def orchestrate(args: argparse.Namespace) -> None:
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    rates = [float(f) for f in args.fps.split(",")]
    systems = args.systems.split(",")
    chrome = None
    if "chromium" in systems:
        import benchchrome as chrome

        if not chrome.available():
            print("chromium is not installed: no Chromium rows (scripts/env.sh installs it)")
            chrome = None
    runs = [s for s in ("bare", "omni") if s in systems]
    for codec in args.codecs.split(",") if chrome is not None else []:
        runs += [f"chromium-{codec}", f"browsers-{codec}"]
    rows: list[list[Any]] = []
    browser_rows: list[list[Any]] = []
    out: dict[str, Any] = {}
    with bl.Server() as server:
        for index, ((width, height), fps) in enumerate(
            (size, fps) for size in sizes for fps in rates
        ):
            key = f"{width}x{height}@{fps:g}"
            opts = endpoint_opts(width, height, args.seconds, args.warmup, fps)
            # alternate which system goes first, so a load change hits all alike
            figs: dict[str, Any] = {}
            browsers: dict[str, Any] = {}
            for run in runs if index % 2 == 0 else runs[::-1]:
                if run in ("bare", "omni"):
                    figs[run] = combine(run_pair(run, opts, server.url))
                    continue
                assert chrome is not None
                kind, codec = run.split("-", 1)
                if kind == "browsers":  # Chromium <-> Chromium: the browser's own cost
                    pair = chrome.run_browsers(
                        server.url, codec, (width, height), fps, args.seconds, args.warmup
                    )
                    browsers[f"chromium-pair-{codec}"] = pair
                    browser_rows.append(chromium_pair_row(key, pair))
                    continue
                callee = lambda tag, o=opts: Endpoint(  # noqa: E731
                    "omni-callee", omni_opts(o, server.url, tag, None)
                )
                browsers[codec] = chrome.run(
                    callee, server.url, codec, (width, height), fps, args.seconds, args.warmup
                )
                browser_rows += chromium_rows(key, browsers[codec])
            if browsers:
                out.setdefault(key, {})["chromium"] = browsers
            if not figs:
                continue
            if len(figs) == 1:  # one system alone (the drift run): no ratio
                fig = next(iter(figs.values()))
                out.setdefault(key, {}).update(figs, load=os.getloadavg()[0])
                rows.append([key, next(iter(figs)), fig["latency_ms"]["median"],
                             fig["latency_ms"]["p99"], fig["fps_in"], fig["lost_frames"],
                             fig["cpu_pct_per_endpoint"]])  # fmt: skip
                if len(fig["per_minute_median_ms"]) > 1:
                    print(f"{key} per-minute medians (ms): {fig['per_minute_median_ms']}")
                continue
            bare, omni = figs["bare"], figs["omni"]
            ratios = compare(omni, bare)
            out.setdefault(key, {}).update(
                bare=bare, omni=omni, ratio=ratios, load=os.getloadavg()[0]
            )
            for name, fig in (("bare aiortc", bare), ("omnicli", omni)):
                rows.append(
                    [
                        key,
                        name,
                        fig["latency_ms"]["median"],
                        fig["latency_ms"]["p99"],
                        fig["fps_in"],
                        fig["lost_frames"],
                        fig["cpu_pct_per_endpoint"],
                    ]
                )
            rows.append(
                [
                    key,
                    "ratio",
                    ratios["latency_median"],
                    ratios["latency_p99"],
                    ratios["fps_in"],
                    None,
                    ratios["cpu_per_endpoint"],
                ]
            )
    print(f"media, both directions, {args.seconds:g} s window after {args.warmup:g} s warm-up")
    bl.table(
        ["size@fps", "system", "lat med ms", "lat p99 ms", "fps in", "lost", "cpu %/endpoint"],
        rows,
    )
    if browser_rows:
        print()
        print("Chromium <-> omnicli, one call per codec, both directions at once; latency")
        print("corrected by the page-clock offset; in Chromium: decoded frame handed to")
        print("the compositor ('read': the page's script has its pixels); cpu: the receiving")
        print("side (Chromium: all its processes); lost: counter gaps (Chromium: not shown);")
        print("jbuf: Chromium's jitter-buffer delay per frame (getStats), ms")
        bl.table(
            ["size@fps", "direction", "lat med ms", "lat p99 ms", "read med", "jbuf",
             "fps in", "lost", "cpu %", "clock off ms"],
            browser_rows,
        )  # fmt: skip
    targets = {}
    for key, (most_ms, most_ratio) in TARGETS.items():
        fig = out.get(key)
        if fig is None or "ratio" not in fig:
            continue
        median = fig["omni"]["latency_ms"]["median"] or 999
        ratio = fig["ratio"]["latency_median"] or 9
        label = f"{key} latency median <= {most_ms:g} ms" + (
            f" and <= {most_ratio:g}x bare" if most_ratio else ""
        )
        targets[label] = median <= most_ms and (most_ratio is None or ratio <= most_ratio)
    vga = out.get("640x480@30")
    if vga and "ratio" in vga:
        targets["640x480@30 CPU per endpoint <= 1.0x bare"] = (
            vga["ratio"]["cpu_per_endpoint"] or 9
        ) <= 1.0
    for name, met in targets.items():
        print(f"{'met   ' if met else 'MISSED'} {name}")
    for fig in out.values():  # raw latencies are in the endpoints' output only
        for side in ("bare", "omni"):
            fig.get(side, {}).pop("recovery", None)
    bl.write(
        "media", {"seconds": args.seconds, "warmup": args.warmup, "sizes": out, "targets": targets}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument("--fps", default="10,15,30", help="frame rates, comma-separated")
    parser.add_argument(
        "--systems", default="bare,omni,chromium", help="bare,omni,chromium (or some of them)"
    )
    parser.add_argument("--codecs", default="VP8,H264", help="the Chromium calls' video codecs")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=640, help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, default=480, help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-recovery", action="store_true", help="omnicli endpoints without their loss recovery"
    )
    parser.add_argument(
        "--trace", action="store_true", help="omnicli endpoints report their send timeline"
    )
    args = parser.parse_args()
    if args.endpoint is None:
        orchestrate(args)
    elif args.endpoint.startswith("bare"):
        asyncio.run(bare_endpoint(args))
    else:
        asyncio.run(omni_endpoint(args))


if __name__ == "__main__":
    main()
