"""Long-call benchmark: do the endpoints leak or drift over a long call, does the server leak
over many short calls?

1. One video call (640x480 test pattern with a frame code, 48 kHz tone) between two omnicli
   endpoint processes through one `omni server`, for --minutes (30 by default). Every
   --every seconds each endpoint reports its RSS, open file descriptors, threads, asyncio
   tasks, and the median one-way video latency of the frames it received since the
   previous sample (frame creation to decoded frame, from the frame code). The baseline
   is the same call's first minute: the table shows each figure at one minute, at the
   end, and the largest value after the first minute.
2. The server over --calls short calls (1,000 by default) by the same two users, with
   signaling-only clients (fake SDP, as in bench_server.py): its RSS before, after the
   first 100 calls, and after all of them.

    .venv/bin/python scripts/bench_longcall.py [--minutes 30] [--every 10] [--calls 1000]

Audio latency is not measured here (the tone carries no time stamp).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_server as srvbench
import benchlib as bl

FIELDS = ("rss_mib", "fds", "threads", "tasks", "latency_ms")


# -- endpoint side (a child process) ---------------------------------------------------


def _sample(pid: int) -> dict[str, Any]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("Threads:"))
    return {
        "rss_mib": round(bl.rss_kib(pid) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": threads,
        "tasks": len(asyncio.all_tasks()),
    }


async def endpoint(args: argparse.Namespace) -> None:
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
    started = time.monotonic()
    end = started + 60 * args.minutes
    pid = os.getpid()
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(args.every, left))
        while not phone.events.empty():  # STATS and the like: nobody reads them here
            phone.events.get_nowait()
        media = phone.media
        if media is None:
            print(json.dumps({"error": "the call ended"}), flush=True)
            return
        latencies = list(media.link.video_in.latencies_ms)
        media.link.video_in.latencies_ms.clear()
        sample = _sample(pid) | {
            "t": round(time.monotonic() - started, 1),
            "latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        }
        print(json.dumps({"sample": sample}), flush=True)
    print(json.dumps({"done": True}), flush=True)
    if args.endpoint == "caller":
        await phone.leave()
    await asyncio.sleep(1)
    await phone.close()


# -- orchestrator side -----------------------------------------------------------------


class Child:
    """One endpoint process; JSON lines from its stdout."""

    def __init__(self, role: str, extra: list[str]) -> None:
        script = str(Path(__file__).resolve())
        self.proc = subprocess.Popen(
            [bl.PYTHON, script, "--endpoint", role, *extra],
            env=bl.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("an endpoint ended early (see its stderr above)")
            if line.startswith("{"):
                return dict(json.loads(line))

    def finish(self) -> None:
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def long_call(server: bl.Server, minutes: float, every: float) -> dict[str, list[dict[str, Any]]]:
    tag = f"t{time.monotonic_ns() % 10**9}"
    extra = ["--server", server.url, "--tag", tag, "--minutes", str(minutes)]
    extra += ["--every", str(every)]
    callee = Child("callee", extra)
    callee.read()  # ready
    procs = {"callee": callee, "caller": Child("caller", extra)}
    samples: dict[str, list[dict[str, Any]]] = {"caller": [], "callee": []}
    for role, child in procs.items():  # the callee's samples wait in its pipe meanwhile
        while True:
            msg = child.read()
            if "sample" in msg:
                samples[role].append(msg["sample"])
                print(f"  {role:6} {msg['sample']}", file=sys.stderr, flush=True)
            elif "error" in msg:
                raise RuntimeError(f"{role}: {msg['error']}")
            else:
                break
    for child in procs.values():
        child.finish()
    return samples


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
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="x", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.endpoint:
        asyncio.run(endpoint(args))
        return
    load0 = os.getloadavg()
    with bl.Server("--rate-limit", "0") as server:
        print(f"long call: {args.minutes:g} min, a sample every {args.every:g} s", file=sys.stderr)
        samples = long_call(server, args.minutes, args.every)
        calls = asyncio.run(short_calls(server.url, server.pid, args.calls))
    figures = {role: drift(s) for role, s in samples.items()}
    rows = []
    for role, fig in figures.items():
        for f in FIELDS:
            d = fig[f]
            rows.append([role, f, d["at_1min"], d["end"], d["max_after_1min"]])
    print(f"long call, {args.minutes:g} min (load {load0[0]:.1f} at the start)")
    bl.table(["endpoint", "figure", "at 1 min", "at the end", "max after 1 min"], rows)
    print(f"server over {args.calls} short calls by the same two users: {calls['rss_mib']} MiB")
    bl.write(
        "longcall",
        {"minutes": args.minutes, "samples": samples, "drift": figures, "short_calls": calls},
    )


if __name__ == "__main__":
    main()
