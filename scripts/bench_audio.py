"""Audio mouth-to-ear benchmark: a click into the caller's microphone, out of the callee's speaker.

Both ends use real (virtual) sound devices of a private PulseAudio started here: one
stereo null sink `meter` whose left channel is the caller's microphone (`a_mic`, a
remap sink; the caller records its monitor) and whose right channel is the callee's
speaker (`b_spk`). Recording `meter.monitor` gives what went into the microphone and
what came out of the speaker on one clock, so the delay between a click on the left
and the same click on the right is the whole path: PortAudio capture, encoder, RTP
over loopback, jitter buffer, decoder, playout buffer, PortAudio playback.

- omnicli: `omni session create --auto-answer` and `omni call --audio` processes
  through an `omni server`, with `--mic default --speaker default`.
- bare: bare aiortc, two processes with an RTCPeerConnection each and the plainest
  sounddevice glue (an input stream feeding a track, decoded frames appended to what
  an output stream plays), SDP through pipes. Its device blocks are what a plain
  program picks: one Opus frame (20 ms) in, 10 ms out.
- bare5: the same bare aiortc glue with omnicli's 5 ms device blocks: what is left
  of bare aiortc's delay once the devices are driven as omnicli drives them.
- direct: no call at all, the microphone straight into the speaker in one process
  with omnicli's 5 ms blocks: what the devices cost on their own (the floor).

They run one after the other in the same run (alternating when repeated).

    .venv/bin/python scripts/bench_audio.py [--seconds 12] [--rounds 2]
        [--systems direct,bare,bare5,omni]

`--seconds 600 --systems omni` is the drift run: per-minute medians of the delay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import benchlib as bl

RATE = 48_000
PERIOD = 0.5  # one click every half second
CLICK_S = 0.010
CAP = 2880  # bare glue: at most 60 ms waits for the speaker
PLAIN_BLOCKS = (960, 480)  # bare: 20 ms in (one Opus frame), 10 ms out
OMNI_BLOCKS = (240, 240)  # omnicli's (omnicli.media.audio_io.DEVICE_BLOCK): bare5, direct
THRESHOLD = 0.08
PAREC = ["parec", "--device=meter.monitor", "--format=s16le", f"--rate={RATE}", "--channels=2"]
PAREC += ["--raw", "--latency-msec=10"]  # of full scale: the click is 0.5, silence is below 0.001


# -- analysis (pure) --------------------------------------------------------------------


def click_wav(path: Path, seconds: float) -> int:
    """A wav of 10 ms 1 kHz bursts every PERIOD s (after 0.2 s); how many clicks."""
    n = int(seconds * RATE)
    pcm = np.zeros(n, dtype=np.float64)
    burst = int(CLICK_S * RATE)
    shape = np.sin(2 * np.pi * 1000 * np.arange(burst) / RATE) * np.hanning(burst)
    count = 0
    for start in range(int(0.2 * RATE), n - burst, int(PERIOD * RATE)):
        pcm[start : start + burst] = 0.5 * shape
        count += 1
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((pcm * 32767).astype("<i2").tobytes())
    return count


def onsets(channel: np.ndarray, threshold: float = THRESHOLD) -> list[int]:
    """Sample indexes where a click starts (above threshold after 0.2 s below it)."""
    loud = np.flatnonzero(np.abs(channel) > threshold)
    found: list[int] = []
    for index in loud:
        if not found or index - found[-1] > 0.2 * RATE:
            found.append(int(index))
    return found


def delays_ms(stereo: np.ndarray) -> list[tuple[float, float]]:
    """(time s, delay ms) of each click from the left channel to the right."""
    left, right = onsets(stereo[:, 0]), onsets(stereo[:, 1])
    out = []
    for start in left:
        later = [r for r in right if start < r < start + 0.4 * RATE]
        if later:
            out.append((start / RATE, 1000 * (later[0] - start) / RATE))
    return out


def per_minute(pairs: list[tuple[float, float]]) -> list[float | None]:
    minutes = int(max((t for t, _ in pairs), default=0) // 60) + 1
    return [
        bl.quantile([d for t, d in pairs if m * 60 <= t < (m + 1) * 60], 0.5)
        for m in range(minutes)
    ]


# -- bare aiortc endpoint (a child process) ---------------------------------------------


def play_pending(
    out: np.ndarray, frames: int, pending: list[np.ndarray], lock: threading.Lock
) -> None:
    """A speaker callback's body: fill `out` from the blocks waiting in `pending`, then silence."""
    out[:] = 0
    filled = 0
    with lock:
        while pending and filled < frames:
            head = pending[0]
            n = min(frames - filled, len(head))
            out[filled : filled + n, 0] = head[:n]
            pending[0] = head[n:]
            if not len(pending[0]):
                pending.pop(0)
            filled += n


async def bare_endpoint(role: str) -> None:
    """`bare-offer`/`bare-answer` (PLAIN_BLOCKS), `bare5-offer`/`bare5-answer` (OMNI_BLOCKS)."""
    import fractions

    import av
    import sounddevice as sd
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    loop = asyncio.get_running_loop()
    in_block, out_block = OMNI_BLOCKS if role.startswith("bare5") else PLAIN_BLOCKS

    class Mic(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.q: asyncio.Queue[np.ndarray] = asyncio.Queue()
            self.sent = 0
            self.stream = sd.InputStream(
                samplerate=RATE,
                channels=1,
                dtype="int16",
                blocksize=in_block,
                latency="low",
                callback=lambda data, *_: loop.call_soon_threadsafe(
                    self.q.put_nowait, data[:, 0].copy()
                ),
            )
            self.stream.start()

        async def recv(self) -> av.AudioFrame:
            block = await self.q.get()
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, self.sent
            frame.time_base = fractions.Fraction(1, RATE)
            self.sent += len(block)
            return frame

    pending: list[np.ndarray] = []
    got = [0]
    lock = threading.Lock()

    def play(out: np.ndarray, frames: int, *_: Any) -> None:
        play_pending(out, frames, pending, lock)

    speaker = sd.OutputStream(
        samplerate=RATE,
        channels=1,
        dtype="int16",
        blocksize=out_block,
        latency="low",
        callback=play,
    )
    speaker.start()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)

    async def consume(track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                got[0] += frame.samples
                for out in resampler.resample(frame):
                    with lock:
                        pending.append(out.to_ndarray().reshape(-1))
                        # keep the newest 60 ms, as omnicli's speaker did before #11: the
                        # output stream starts ~2 s late and would otherwise add all of it
                        while sum(len(p) for p in pending) - len(pending[0]) >= CAP:
                            pending.pop(0)
        except MediaStreamError:
            pass

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mic = Mic()
    pc.addTrack(mic)
    tasks: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    read = lambda: json.loads(sys.stdin.readline())  # noqa: E731
    if role.endswith("-offer"):
        await pc.setLocalDescription(await pc.createOffer())
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
        answer = await loop.run_in_executor(None, read)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    else:
        offer = await loop.run_in_executor(None, read)
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
    while pc.connectionState != "connected":
        await asyncio.sleep(0.01)
    print(json.dumps({"event": "CONNECTED"}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # until told to stop
    print(f"{role}: sent {mic.sent} samples, {got[0]} received", file=sys.stderr, flush=True)
    await pc.close()
    speaker.stop()


def direct_endpoint() -> None:
    """The device floor: the microphone straight into the speaker, one process, no call."""
    import sounddevice as sd

    pending: list[np.ndarray] = []
    lock = threading.Lock()

    def capture(data: np.ndarray, *_: Any) -> None:
        with lock:
            pending.append(data[:, 0].copy())
            while sum(len(p) for p in pending) - len(pending[0]) >= CAP:
                pending.pop(0)

    def play(out: np.ndarray, frames: int, *_: Any) -> None:
        play_pending(out, frames, pending, lock)

    latency: Any = float(os.environ["LAT"]) if os.environ.get("LAT") else "low"
    common = {"samplerate": RATE, "channels": 1, "dtype": "int16", "latency": latency}
    with (
        sd.InputStream(blocksize=OMNI_BLOCKS[0], callback=capture, **common),
        sd.OutputStream(blocksize=OMNI_BLOCKS[1], callback=play, **common),
    ):
        print(json.dumps({"event": "CONNECTED"}), flush=True)
        sys.stdin.readline()


# -- omnicli, traced (a child process) --------------------------------------------------


def traced_omni(argv: list[str], trace: Path) -> None:
    """Run the `omni` CLI with `argv`, writing to `trace` (JSON lines) when a click passes
    each stage of omnicli's audio path, on the monotonic clock every process shares:
    `mic` (the microphone's PortAudio callback got it), `sent` (its 20 ms frame went to
    aiortc's encoder), `fed` (decoded, handed to the speaker), `out` (the speaker's
    PortAudio callback wrote it). The wrappers only look at the samples."""
    from omnicli.media import audio_io
    from omnicli.ui import cli

    out = open(trace, "a", buffering=1)  # noqa: SIM115  (lives as long as the process)
    last: dict[str, float] = {}
    level = THRESHOLD * 32768

    def note(stage: str, samples: Any, **extra: Any) -> None:
        loud = np.flatnonzero(np.abs(np.asarray(samples).reshape(-1)) > level)
        now = time.monotonic()
        if len(loud) and now - last.get(stage, 0.0) > 0.2:
            last[stage] = now
            out.write(json.dumps({"stage": stage, "t": now, "at": int(loud[0]), **extra}) + "\n")

    mic_callback = audio_io.MicrophoneTrack._callback
    mic_recv = audio_io.MicrophoneTrack.recv
    feed = audio_io.SpeakerSink.feed
    speaker_callback = audio_io.SpeakerSink._callback

    def traced_mic(self: Any, indata: Any, frames: int, when: Any, status: Any) -> None:
        note("mic", indata, pa_ms=1000 * (when.currentTime - when.inputBufferAdcTime))
        mic_callback(self, indata, frames, when, status)

    async def traced_recv(self: Any) -> Any:
        frame = await mic_recv(self)
        note("sent", frame.to_ndarray())
        return frame

    def traced_feed(self: Any, frame: Any) -> None:
        note("fed", frame.to_ndarray(), buffered=self.buffer.buffered)
        feed(self, frame)

    def traced_speaker(self: Any, outdata: Any, frames: int, when: Any, status: Any) -> None:
        speaker_callback(self, outdata, frames, when, status)
        pa_ms = 1000 * (when.outputBufferDacTime - when.currentTime)
        b = self.buffer
        note("out", outdata[:, 0], pa_ms=pa_ms, margin=b.level.margin, buffered=b.buffered)

    audio_io.MicrophoneTrack._callback = traced_mic  # type: ignore[method-assign]
    audio_io.MicrophoneTrack.recv = traced_recv  # type: ignore[method-assign]
    audio_io.SpeakerSink.feed = traced_feed  # type: ignore[method-assign]
    audio_io.SpeakerSink._callback = traced_speaker  # type: ignore[method-assign]
    sys.argv = ["omni", *argv]
    cli.main()


def stages(trace: Path, pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """Milliseconds per stage, per click, from a trace: mic→sent (waiting for the 20 ms
    frame to fill), sent→fed (encode, RTP over loopback, receive, decode), fed→out (the
    playout buffer), and what the devices took (the whole delay minus mic→out)."""
    events: dict[str, list[dict[str, Any]]] = {}
    for line in trace.read_text().splitlines() if trace.exists() else []:
        event = json.loads(line)
        events.setdefault(event["stage"], []).append(event)
    rows: dict[str, list[float]] = {k: [] for k in ("gather", "call", "playout", "devices")}
    rows |= {"pa_in": [], "pa_out": [], "margin": []}
    for mic in events.get("mic", []):

        def after(stage: str, t: float) -> dict[str, Any] | None:
            return next((e for e in events.get(stage, []) if t <= e["t"] < t + 0.4), None)

        sent = after("sent", mic["t"])
        fed = sent and after("fed", sent["t"])
        played = fed and after("out", fed["t"])
        if not (sent and fed and played):
            continue
        rows["gather"].append(1000 * (sent["t"] - mic["t"]))
        rows["call"].append(1000 * (fed["t"] - sent["t"]))
        rows["playout"].append(1000 * (played["t"] - fed["t"]))
        rows["pa_in"].append(mic["pa_ms"])
        rows["pa_out"].append(played["pa_ms"])
        rows["margin"].append(1000 * played["margin"] / RATE)
    total = bl.quantile([d for _, d in pairs], 0.5)
    out = {k: bl.quantile(v, 0.5) for k, v in rows.items()}
    inside = sum(out[k] or 0.0 for k in ("gather", "call", "playout"))
    out["devices"] = round(total - inside, 1) if total is not None and rows["call"] else None
    out["clicks_traced"] = len(rows["call"])
    return out


STAGES_LEGEND = (
    "gather: mic callback to its 20 ms frame handed to aiortc; call: encode, RTP, receive,"
    " decode; playout: the playout buffer; devices: the rest (PortAudio, ALSA, PulseAudio,"
    " both ends: the whole median less the stages' medians, rough with few clicks);"
    " pa_in/pa_out: PortAudio's own latency figures; margin: the playout margin"
)

# -- orchestrator -----------------------------------------------------------------------


class Proc:
    """A child process whose JSON stdout lines can be awaited."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.log = open(bl.OUT / f"audio-{len(argv)}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def wait_for(self, key: str, value: Any = None, timeout: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if key in msg and (value is None or msg[key] == value):
                return msg

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("\n")  # bare endpoints stop on a line
            self.proc.stdin.flush()
            time.sleep(0.5)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def measure(pa: Any, seconds: float, wav: Path) -> list[tuple[float, float]]:
    """Play the clicks into a_mic, record the meter, return (time, delay) pairs."""
    raw = wav.with_suffix(".raw")
    with open(raw, "wb") as sink:  # a file, not a pipe: a full pipe would stall parec
        rec = subprocess.Popen(
            [
                "parec",
                "--device=meter.monitor",
                "--format=s16le",
                f"--rate={RATE}",
                "--channels=2",
                "--raw",
                "--latency-msec=10",
            ],
            env=pa.full_env(),
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        subprocess.run(
            ["paplay", "--device=a_mic", str(wav)], env=pa.full_env(), timeout=seconds + 30
        )
        time.sleep(0.6)
        rec.terminate()
        rec.wait(timeout=10)
    data = raw.read_bytes()
    data = data[: len(data) // 4 * 4]
    stereo = np.frombuffer(data, dtype="<i2").reshape(-1, 2).astype(np.float64) / 32768
    return delays_ms(stereo)


def run_system(
    system: str, pa: Any, server: bl.Server, seconds: float, wav: Path, trace: Path
) -> Any:
    base = {**bl.env(), **pa.env}
    a_env = {**base, "PULSE_SOURCE": "a_mic.monitor", "PULSE_SINK": "a_spk"}
    b_env = {**base, "PULSE_SOURCE": "b_mic.monitor", "PULSE_SINK": "b_spk"}
    devices = ["--mic", "default", "--speaker", "default", "--require-devices"]
    flags = ["--json", "--no-window", "--server", server.url, *devices]
    if system == "omni":
        tag = f"{time.monotonic_ns() % 10**9}"
        omni = [bl.PYTHON, str(Path(__file__).resolve()), "--endpoint", "omni-traced", str(trace)]
        b = Proc([*omni, "session", "create", "--user-id", f"b{tag}", "--auto-answer", *flags],
                 b_env)  # fmt: skip
        b.wait_for("event", "SESSION")
        a = Proc([*omni, "call", f"b{tag}", "--audio", "--user-id", f"a{tag}", *flags],
                 a_env)  # fmt: skip
    elif system == "direct":
        me = [bl.PYTHON, str(Path(__file__).resolve()), "--endpoint", "direct"]
        a = Proc(me, {**base, "PULSE_SOURCE": "a_mic.monitor", "PULSE_SINK": "b_spk"})
        b = Proc([bl.PYTHON, "-c", "import sys; sys.stdin.readline()"], base)
    else:
        me = [bl.PYTHON, str(Path(__file__).resolve()), "--endpoint"]
        a, b = Proc([*me, f"{system}-offer"], a_env), Proc([*me, f"{system}-answer"], b_env)
        b.send(a.wait_for("sdp"))
        a.send(b.wait_for("sdp"))
    try:
        a.wait_for("event", "CONNECTED")
        time.sleep(3.0)  # PortAudio through PulseAudio takes about 2 s to start
        trace.write_text("")  # the clicks measured, not the start (the writers append)
        return measure(pa, seconds, wav)
    finally:
        a.stop()
        b.stop()


def summary(pairs: list[tuple[float, float]], clicks: int) -> dict[str, Any]:
    delays = [d for _, d in pairs]
    return {
        "clicks_sent": clicks,
        "clicks_heard": len(delays),
        "delay_ms": bl.summary(delays),
        "per_minute_median_ms": per_minute(pairs),
    }


def orchestrate(args: argparse.Namespace) -> None:
    from desktop import Pulse

    systems = args.systems.split(",")
    wav = Path(bl.OUT / "clicks.wav")
    bl.OUT.mkdir(parents=True, exist_ok=True)
    clicks = click_wav(wav, args.seconds)
    pa = Pulse(("meter", "a_spk", "b_mic"))
    results: dict[str, list[tuple[float, float]]] = {s: [] for s in systems}
    traced: list[dict[str, Any]] = []
    try:
        for side, channel in (("a_mic", "front-left"), ("b_spk", "front-right")):
            pa.pactl("load-module", "module-remap-sink", f"sink_name={side}", "master=meter",
                     "channels=1", f"master_channel_map={channel}", "channel_map=mono",
                     "remix=no")  # fmt: skip
        with bl.Server() as server:
            for round_ in range(args.rounds):
                for system in systems if round_ % 2 == 0 else systems[::-1]:
                    trace = bl.OUT / f"audio-trace-{system}.jsonl"
                    pairs = run_system(system, pa, server, args.seconds, wav, trace)
                    results[system] += pairs
                    if system == "omni":
                        traced.append(stages(trace, pairs))
    finally:
        pa.stop()
    out = {s: summary(results[s], clicks * args.rounds) for s in systems}
    rows = [
        [s, out[s]["clicks_heard"], *(out[s]["delay_ms"][k] for k in ("median", "p95", "max"))]
        for s in systems
    ]
    bl.table(["system", "clicks", "median ms", "p95 ms", "max ms"], rows)
    if "omni" in out and "bare" in out:
        ratio = bl.ratio(out["omni"]["delay_ms"]["median"], out["bare"]["delay_ms"]["median"])
        out["ratio_median"] = ratio  # type: ignore[assignment]
        print(f"omnicli / bare aiortc median: {ratio}")
    for s in systems:
        minutes = out[s]["per_minute_median_ms"]
        if len(minutes) > 1:
            print(f"{s} per-minute medians (ms): {minutes}")
    if traced:
        keys = [k for k in traced[0] if k != "clicks_traced"]
        bl.table(["omni round", *(f"{k} ms" for k in keys), "clicks"],
                 [[i + 1, *(r[k] for k in keys), r["clicks_traced"]]
                  for i, r in enumerate(traced)])  # fmt: skip
        print(STAGES_LEGEND)
    bl.write("audio", {"seconds": args.seconds, "rounds": args.rounds, "systems": out,
                       "omni_stages_ms": traced})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="clicks per round, in s")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--systems", default="direct,bare,bare5,omni")
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    if sys.argv[1:3] == ["--endpoint", "omni-traced"]:
        traced_omni(sys.argv[4:], Path(sys.argv[3]))
        return
    args = parser.parse_args()
    if args.endpoint == "direct":
        direct_endpoint()
    elif args.endpoint:
        asyncio.run(bare_endpoint(args.endpoint))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
