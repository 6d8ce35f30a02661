"""Long-call benchmark: do the endpoints leak or drift over a long call, does the server leak
over many short calls?

1. One video call (640x480 test pattern with a frame code, 48 kHz tone with a click at every
   whole second of the wall clock) between two omnicli endpoint processes through one
   `omni server`, for --minutes (30 by default). Every --every seconds each endpoint reports
   its RSS (anonymous and file-backed), open file descriptors, threads, asyncio tasks,
   glibc's heap (in use, free but kept), Python's allocated blocks, and the median one-way
   video latency (frame creation to decoded frame, from the frame code) and audio latency
   (click sent to click received, after the jitter buffer and Opus decoder) since the
   previous sample. Every minute: the medians of that minute and the machine's load, each
   against the same endpoint's first minute (the drift table). RSS growth is the
   least-squares slope after the first minute.
2. The server over --calls short calls (1,000 by default) by the same two users, with
   signaling-only clients (fake SDP, as in bench_server.py): its RSS before, after the
   first 100 calls, and after all of them.

Finding a leak (scripts/memprobe.py): --tracemalloc FRAMES traces Python allocations in the
endpoints and prints the sites that grew from minute 1 to the end; --leakcheck counts live
objects per type (av frames...) at every sample; --trim calls malloc_trim(0) after every
sample; --arena-max N starts the endpoints with MALLOC_ARENA_MAX=N.

    .venv/bin/python scripts/bench_longcall.py [--minutes 30] [--every 10] [--calls 1000]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_server as srvbench
import benchlib as bl
import memprobe as mp

# the synthetic microphone drops audio when it falls this far behind the wall clock, as
# omnicli's microphone queue does (media/audio_io.py: QUEUE_BLOCKS, 100 ms)
MIC_QUEUE_S = 0.1
FIELDS = ("rss_mib", "fds", "threads", "tasks", "latency_ms", "audio_ms")


# -- endpoint side (a child process) ---------------------------------------------------


def _sample(pid: int) -> dict[str, Any]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )

    def mib(key: str) -> float:  # "  1234 kB"
        return round(int(status[key].split()[0]) / 1024, 1)

    return {
        "rss_mib": mib("VmRSS"),
        "anon_mib": mib("RssAnon"),  # heap, pymalloc arenas, stacks: what a leak grows
        "file_mib": mib("RssFile"),  # pages of the libraries and files mapped in
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "tasks": len(asyncio.all_tasks()),
        "py_blocks": sys.getallocatedblocks(),  # Python's small-object allocator, blocks in use
    }


class Minute:
    """Latencies received during one minute of the call (video frame code, audio clicks)."""

    def __init__(self) -> None:
        self.video: list[float] = []
        self.audio: list[float] = []

    def result(self, n: int, sample: dict[str, Any]) -> dict[str, Any]:
        def med(v: list[float]) -> float | None:
            return round(statistics.median(v), 1) if v else None

        return {
            "minute": n,
            "video_ms": med(self.video),
            "audio_ms": med(self.audio),
            "video_n": len(self.video),
            "audio_n": len(self.audio),
            "load": round(os.getloadavg()[0], 1),
            "rss_mib": sample["rss_mib"],
        }


ENCODER_BUILDS = [0]


def _count_encoder_builds() -> None:
    """Count aiortc's VP8 encoder (re)builds: one whenever the target bitrate moves by
    more than 10 % (about 16 MiB of libvpx state each at 640x480)."""
    from aiortc.codecs import vpx

    encode = vpx.Vp8Encoder.encode

    def counted(self: Any, frame: Any, force_keyframe: bool = False) -> Any:
        before = self.codec
        out = encode(self, frame, force_keyframe)
        if self.codec is not before:
            ENCODER_BUILDS[0] += 1
        return out

    vpx.Vp8Encoder.encode = counted  # type: ignore[method-assign]


async def endpoint(args: argparse.Namespace) -> None:
    _count_encoder_builds()
    if args.no_allocator:  # the call as before media/allocator.py: glibc's defaults
        from omnicli.media import allocator

        allocator.limit_arenas = lambda arenas=allocator.ARENAS: False  # type: ignore[assignment]
        allocator.trim = lambda: False
    from bench_media import ClickDetector, click_tone

    from omnicli.phone import events as ev
    from omnicli.phone.core import MediaOptions, Phone, PhoneConfig

    opts = MediaOptions(video_source="test", audio_source="tone", width=640, height=480, fps=30)
    phone = Phone(PhoneConfig(server_url=args.server, media=opts))
    me, peer = ("alice", "bob") if args.endpoint == "caller" else ("bob", "alice")
    await phone.create_session(f"{me}-{args.tag}")
    if args.endpoint == "caller":
        await phone.offer_call("videocall", f"{peer}-{args.tag}")
    else:
        print(json.dumps({"ready": True}), flush=True)
        await phone.answer_call("videocall", f"{peer}-{args.tag}", wait=60)
    while not isinstance(await phone.next_event(timeout=60), ev.Connected):
        pass
    clicks = ClickDetector()  # audio one-way latency: a click at every wall-clock second
    hooked: list[Any] = [None]

    def hook(link: Any) -> None:  # again after a media restart (a new PeerLink)
        if link is not hooked[0]:
            link.audio_out.set_source(click_tone(max_lag=MIC_QUEUE_S))
            link.audio_in.on_audio = clicks.frame
            hooked[0] = link

    assert phone.media is not None
    hook(phone.media.link)
    # traced from here: the growth after minute 1 is what matters, and tracing the start
    # (imports, the handshake) only slows it down
    tracer = mp.Tracer(args.tracemalloc) if args.tracemalloc else None
    started = time.monotonic()
    end = started + 60 * args.minutes
    pid = os.getpid()
    minute, minute_no = Minute(), 1
    snap1: Any = None
    census1: dict[str, int] | None = None
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(args.every, left))
        while not phone.events.empty():  # STATS and the like: nobody reads them here
            phone.events.get_nowait()
        media = phone.media
        if media is None:
            if end - time.monotonic() < args.every + 5:
                break  # the other side finished first and left
            print(json.dumps({"error": "the call ended"}), flush=True)
            return
        hook(media.link)
        latencies = list(media.link.video_in.latencies_ms)
        media.link.video_in.latencies_ms.clear()
        audio = list(clicks.latencies)
        clicks.latencies.clear()
        minute.video += latencies
        minute.audio += audio
        t = time.monotonic() - started
        sample = _sample(pid) | {
            "t": round(t, 1),
            "latency_ms": round(statistics.median(latencies), 1) if latencies else None,
            "audio_ms": round(statistics.median(audio), 1) if audio else None,
            "encoder_builds": ENCODER_BUILDS[0],
        }
        sample["heap"] = mp.heap_mib()
        if args.leakcheck:
            counts = mp.census()
            sample["objects"] = sum(counts.values())
            sample |= mp.av_frames(counts)
            if tracer is not None:
                sample["traced_mib"] = tracer.traced_mib()
            if census1 is None and t >= 60:
                census1 = counts
                if tracer is not None:
                    snap1 = tracer.snapshot()
        if args.trim:
            mp.malloc_trim()
            sample["rss_trimmed_mib"] = round(bl.rss_kib(pid) / 1024, 1)
        print(json.dumps({"sample": sample}), flush=True)
        if t >= 60 * minute_no - 1 or left <= args.every:
            print(json.dumps({"minute": minute.result(minute_no, sample)}), flush=True)
            minute, minute_no = Minute(), minute_no + 1
    if census1 is not None:
        report: dict[str, Any] = {"census": mp.census_growth(census1, mp.census())}
        if tracer is not None and snap1 is not None:
            report |= tracer.growth(snap1, tracer.snapshot())
        print(json.dumps({"leaks": report}), flush=True)
    print(json.dumps({"done": True}), flush=True)
    if args.endpoint == "caller":
        await phone.leave()
    await asyncio.sleep(1)
    await phone.close()


# -- orchestrator side -----------------------------------------------------------------


class Child:
    """One endpoint process; its JSON lines, read by a thread of their own (a child never
    waits on a full pipe)."""

    def __init__(self, role: str, extra: list[str], env: dict[str, str]) -> None:
        script = str(Path(__file__).resolve())
        self.role = role
        self.proc = subprocess.Popen(
            [bl.PYTHON, script, "--endpoint", role, *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.messages: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            msg = dict(json.loads(line))
            self.messages.append(msg)
            if "ready" in msg:
                self.ready.set()
            for key in ("sample", "minute", "error"):
                if key in msg:
                    print(f"  {self.role:6} {key} {msg[key]}", file=sys.stderr, flush=True)
        self.ready.set()

    def of(self, key: str) -> list[Any]:
        return [m[key] for m in self.messages if key in m]

    def finish(self, timeout: float) -> None:
        self.thread.join(timeout)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def long_call(server: bl.Server, args: argparse.Namespace) -> dict[str, Child]:
    tag = f"t{time.monotonic_ns() % 10**9}"
    extra = ["--server", server.url, "--tag", tag, "--minutes", str(args.minutes)]
    extra += ["--every", str(args.every), "--tracemalloc", str(args.tracemalloc)]
    extra += ["--leakcheck"] * (args.leakcheck or args.tracemalloc > 0) + ["--trim"] * args.trim
    extra += ["--no-allocator"] * args.no_allocator
    env = bl.env()
    if args.arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.arena_max)
    callee = Child("callee", extra, env)
    callee.ready.wait(60)
    procs = {"caller": Child("caller", extra, env), "callee": callee}
    for child in procs.values():
        child.finish(60 * args.minutes + 300)
    for role, child in procs.items():
        if child.of("error") or not child.of("done"):  # figures so far are still worth a look
            why = child.of("error") or "ended early (see its stderr)"
            print(f"WARNING: {role}: {why}", file=sys.stderr, flush=True)
    return procs


def drift(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure at one minute, at the end, and its largest value after the first minute."""
    first = next((s for s in samples if s["t"] >= 60), samples[0])
    later = [s for s in samples if s["t"] >= first["t"]]
    out: dict[str, Any] = {}
    for f in FIELDS:
        values = [s[f] for s in later if s.get(f) is not None]
        out[f] = {
            "at_1min": first.get(f),
            "end": later[-1].get(f),
            "max_after_1min": max(values) if values else None,
        }
    return out


def slope(samples: list[dict[str, Any]], value: Any = "rss_mib") -> float | None:
    """Least-squares growth of `value` (a field, or a function of a sample) in MiB per
    minute after the first minute."""
    get = value if callable(value) else (lambda s: s.get(value))
    pts = [(s["t"] / 60, get(s)) for s in samples if s["t"] >= 60 and get(s) is not None]
    if len(pts) < 3:
        return None
    return round(statistics.linear_regression(*zip(*pts, strict=True)).slope, 3)


def _heap(field: str) -> Any:
    return lambda s: (s.get("heap") or {}).get(field)


def _used(s: dict[str, Any]) -> float | None:
    """RSS less the heap memory the allocator keeps free (what trimming would give back)."""
    free = (s.get("heap") or {}).get("free")
    return None if free is None else s["rss_mib"] - free


def memory(samples: dict[str, list[dict[str, Any]]], window: float = 5.0) -> dict[str, Any]:
    """Slopes after minute 1, and per `window` minutes: RSS lowest and highest, the heap."""
    out: dict[str, Any] = {}
    rows = []
    for role, ss in samples.items():
        out[role] = {
            "slope_mib_per_min": {
                "rss": slope(ss),
                "rss_less_heap_free": slope(ss, _used),
                "heap_in_use": slope(ss, _heap("in_use")),
                "rss_trimmed": slope(ss, "rss_trimmed_mib"),
            },
            "windows": [],
        }
        later = [s for s in ss if s["t"] >= 60]
        start = 1.0
        while later and start * 60 < later[-1]["t"]:
            part = [s for s in later if start * 60 <= s["t"] < (start + window) * 60]
            if part:
                rss = [s["rss_mib"] for s in part]
                in_use = [v for s in part if (v := _heap("in_use")(s)) is not None]
                free = [v for s in part if (v := _heap("free")(s)) is not None]
                w = {
                    "minutes": f"{start:g}-{min(start + window, later[-1]['t'] / 60):.0f}",
                    "rss_min": min(rss),
                    "rss_max": max(rss),
                    "heap_in_use_median": statistics.median(in_use) if in_use else None,
                    "heap_free_max": max(free) if free else None,
                    "fds_max": max(s["fds"] for s in part),
                    "threads_max": max(s["threads"] for s in part),
                    "tasks_max": max(s["tasks"] for s in part),
                }
                out[role]["windows"].append(w)
                rows.append([role, *w.values()])
            start += window
    heads = ["endpoint", "minutes", "RSS min", "RSS max", "heap in use", "heap free max"]
    bl.table([*heads, "fds", "threads", "tasks"], rows)
    for role, o in out.items():
        print(f"{role}: growth after minute 1, MiB/min: {o['slope_mib_per_min']}")
    return out


def minute_table(per_role: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-minute medians of both endpoints, each against its first minute."""
    per = {role: {m["minute"]: m for m in ms} for role, ms in per_role.items()}
    first = {role: m.get(1, {}) for role, m in per.items()}
    worst: dict[str, float] = {}
    rows = []
    for n in sorted(set().union(*per.values())):
        row: list[Any] = [n, max(per[r].get(n, {}).get("load") or 0 for r in per)]
        for role in per:
            for kind in ("video_ms", "audio_ms"):
                now, base = per[role].get(n, {}).get(kind), first[role].get(kind)
                delta = None if now is None or base is None else round(now - base, 1)
                if delta is not None and n > 1:
                    key = f"{role} {kind}"
                    worst[key] = max(worst.get(key, 0.0), abs(delta))
                row += [now, delta]
        rows.append(row)
    heads = ["min", "load"]
    for role in per:
        heads += [f"{role[:6]} video", "vs min 1", f"{role[:6]} audio", "vs min 1"]
    bl.table(heads, rows)
    return {"per_minute": per, "worst_drift_ms": worst}


def analyse(
    samples: dict[str, list[dict[str, Any]]], minutes: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Print the tables; the figures."""
    figures = {role: drift(s) for role, s in samples.items()}
    rows = []
    for role, fig in figures.items():
        for f in FIELDS:
            d = fig[f]
            rows.append([role, f, d["at_1min"], d["end"], d["max_after_1min"]])
    bl.table(["endpoint", "figure", "at 1 min", "at the end", "max after 1 min"], rows)
    print("\nmemory and resources, per 5 minutes after the first")
    mem = memory(samples)
    print("\nper-minute medians (ms), each against the same endpoint's first minute")
    table = minute_table(minutes)
    print(f"largest drift after minute 1 (ms): {table['worst_drift_ms']}")
    return {"drift": figures, "memory": mem, "minutes_table": table}


def load_report(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Samples and minutes from an earlier run: its JSON, or its stderr log."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        per = data["minutes_table"]["per_minute"]
        return data["samples"], {r: list(m.values()) for r, m in per.items()}
    samples: dict[str, list[Any]] = {"caller": [], "callee": []}
    minutes: dict[str, list[Any]] = {"caller": [], "callee": []}
    for line in path.read_text().splitlines():  # "  caller sample {...}" (Python literals)
        parts = line.strip().split(" ", 2)
        if len(parts) == 3 and parts[0] in samples and parts[1] in ("sample", "minute"):
            into = samples if parts[1] == "sample" else minutes
            into[parts[0]].append(ast.literal_eval(parts[2]))
    return samples, minutes


def print_leaks(procs: dict[str, Child]) -> dict[str, Any]:
    out = {}
    for role, child in procs.items():
        for report in child.of("leaks"):
            out[role] = report
            print(f"\n{role}: live objects that grew (minute 1 -> end)")
            bl.table(["type", "at 1 min", "at the end", "delta"], report["census"])
            if "lines" in report:
                print(f"{role}: Python allocation sites that grew (tracemalloc)")
                rows = [
                    [s["where"], s["size_kib_delta"], s["size_kib"], s["count_delta"]]
                    for s in report["lines"]
                ]
                bl.table(["where", "KiB delta", "KiB now", "count delta"], rows)
            for tb in report.get("tracebacks", []):
                print(f"  {tb['size_kib_delta']} KiB, {tb['count_delta']} blocks:")
                for where in tb["where"]:
                    print(f"    {where}")
    return out


async def short_calls(url: str, pid: int, calls: int) -> dict[str, Any]:
    a = await srvbench.Client.open(url, "alice-short")
    b = await srvbench.Client.open(url, "bob-short")
    rss = {"before": round(bl.rss_kib(pid) / 1024, 1)}
    started = time.monotonic()
    for n in range(1, calls + 1):
        await srvbench.cycle(a, b)
        if n in (100, calls) or n % 1000 == 0:
            rss[f"after_{n}"] = round(bl.rss_kib(pid) / 1024, 1)
    elapsed = time.monotonic() - started
    await a.close()
    await b.close()
    return {"rss_mib": rss, "calls": calls, "seconds": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace Python allocations in the endpoints (FRAMES per trace, 0 = off); "
        "print the sites that grew from minute 1 to the end",
    )
    parser.add_argument(
        "--leakcheck",
        action="store_true",
        help="count live objects (av frames, ...) and the malloc heap at every sample",
    )
    parser.add_argument(
        "--trim", action="store_true", help="malloc_trim(0) after every sample (RSS after it)"
    )
    parser.add_argument(
        "--arena-max", type=int, default=0, help="MALLOC_ARENA_MAX for the endpoints"
    )
    parser.add_argument(
        "--no-allocator",
        action="store_true",
        help="endpoints without omnicli's allocator tuning (no arena limit, no periodic trim)",
    )
    parser.add_argument(
        "--report", metavar="FILE", help="print the tables of an earlier run (its JSON or stderr)"
    )
    parser.add_argument("--name", default="longcall", help="out/bench/NAME.json")
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.endpoint:
        asyncio.run(endpoint(args))
        return
    if args.report:
        analyse(*load_report(Path(args.report)))
        return
    load0 = os.getloadavg()
    with bl.Server("--rate-limit", "0") as server:
        print(f"long call: {args.minutes:g} min, a sample every {args.every:g} s", file=sys.stderr)
        procs = long_call(server, args)
        calls = asyncio.run(short_calls(server.url, server.pid, args.calls)) if args.calls else {}
    samples = {role: child.of("sample") for role, child in procs.items()}
    minutes = {role: child.of("minute") for role, child in procs.items()}
    print(f"long call, {args.minutes:g} min (load {load0[0]:.1f} at the start)")
    figures = analyse(samples, minutes)
    leaks = print_leaks(procs)
    if calls:
        print(f"server over {args.calls} short calls by the same two users: {calls['rss_mib']} MiB")
    bl.write(
        args.name,
        {
            "minutes": args.minutes,
            "options": {
                k: getattr(args, k)
                for k in ("tracemalloc", "leakcheck", "trim", "arena_max", "no_allocator")
            },
            "samples": samples,
            **figures,
            "leaks": leaks,
            "short_calls": calls,
        },
    )


if __name__ == "__main__":
    main()
