"""Bad-network benchmark: the media call between two network namespaces.

`scripts/netlab.py` joins two namespaces with a veth pair and adds random loss
(nftables, on each side's ingress) and a fixed delay (NFQUEUE, on each side's egress)
in both directions. For each loss rate (0 %, 5 %, 10 %, all with 50 ms delay each way)
the same two-process call as bench_media.py runs once with bare aiortc and once with
omnicli (the `omni server` runs in namespace a, with a service key since it listens
on a non-loopback address). Figures, over the window after the warm-up:

- audio delivered: seconds of decoded audio that came out of the receiver's track,
  over the seconds sent; for omnicli also without the concealed packets
  ("real": what was actually received, possibly after retransmission);
- longest video freeze: the longest time between two decoded frames;
- video latency median and p99, lost frames.

    .venv/bin/python scripts/bench_network.py [--losses 0,0.05,0.10] [--delay-ms 50]

Needs root, iproute2, nftables, iptables and NetfilterQueue (see netlab.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_media as media
import benchlib as bl

KEY = "bench-network-key"

# name -> (NetLab keyword arguments besides the delay, what the row says)
SCENARIOS: dict[str, tuple[dict[str, Any], str]] = {
    "clean": ({}, "no loss"),
    "loss5": ({"loss": 0.05}, "5 % random loss"),
    "loss10": ({"loss": 0.10}, "10 % random loss"),
    "bursty": ({"bursty": 0.05, "burst_len": (3, 10)}, "5 % loss in bursts of 3-10"),
    "cap1000": ({"rate_kbit": 1000}, "1 Mbit/s cap"),
    "cap300": ({"rate_kbit": 300}, "300 kbit/s cap"),
    "move": ({}, "address change"),
    "capstep": ({}, "300 kbit/s cap on, then off"),
}
# What happens to the link mid-call, in s after both endpoints are started (the window
# starts about 5 s after that: connecting plus the warm-up).
MOVE_AT = 9.0
CAP_ON_AT, CAP_OFF_AT = 9.0, 19.0
NEW_ADDR = "10.77.0.3"


def actions(name: str, lab: Any) -> list[tuple[float, str, Callable[[], None]]]:
    if name == "move":
        return [(MOVE_AT, "move", lambda: lab.move("b", NEW_ADDR))]
    if name == "capstep":
        return [
            (CAP_ON_AT, "cap on", lambda: lab.set_rate(300)),
            (CAP_OFF_AT, "cap off", lambda: lab.set_rate(None)),
        ]
    return []


def run_with(
    plan: list[tuple[float, str, Callable[[], None]]], run: Callable[[], Any]
) -> tuple[Any, dict[str, float]]:
    """`run()` while the plan's actions fire on timers; its result and when each fired."""
    fired: dict[str, float] = {}
    timers = []
    for at, what, act in plan:

        def fire(what: str = what, act: Callable[[], None] = act) -> None:
            act()
            fired[what] = time.monotonic()

        timers.append(threading.Timer(at, fire))
    for timer in timers:
        timer.start()
    try:
        return run(), fired
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()


def measure(
    name: str, lab_args: dict[str, Any], delay_ms: float, opts: list[str]
) -> dict[str, Any]:
    from netlab import ADDR_B, NetLab

    with NetLab(delay_ms=delay_ms, prefix="ob", **lab_args) as lab:
        prefixes = (lab.cmd("a", []), lab.cmd("b", []))
        lab.harness_report()  # from here on: the calls' share of the lab's lateness
        bare_results, bare_fired = run_with(
            actions(name, lab), lambda: media.run_pair("bare", opts, prefixes=prefixes)
        )
        bare_harness = lab.harness_report()
        if lab.addr_b != ADDR_B:
            lab.move("b", ADDR_B)
        lab.set_rate(lab_args.get("rate_kbit"))
        server = bl.Server("--host", lab.addr_a, "--service", f"dev:{KEY}", prefix=lab.cmd("a", []))
        drops = CapDrops(lab) if media.TRACE else None
        try:
            omni_results, omni_fired = run_with(
                actions(name, lab),
                lambda: media.run_pair("omni", opts, server.url, prefixes, key=KEY),
            )
        finally:
            server.stop()
            if drops is not None:
                drops.stop()
        omni_harness = lab.harness_report()
    bare, omni = media.combine(bare_results), media.combine(omni_results)
    bare["harness"], omni["harness"] = bare_harness, omni_harness
    bare["load"] = omni["load"] = os.getloadavg()[0]
    bare["events"] = rel(bare_fired, bare_results)
    omni["events"] = rel(omni_fired, omni_results)
    omni["links"] = [r.get("links", 1) for r in omni_results]
    if name == "capstep":
        omni["reaction"] = reaction(omni_fired, omni_results)
    if drops is not None:
        omni["trace"] = timeline(omni_results, drops.samples)
    bursty = lab.bursty_counts
    return {"bare": bare, "omni": omni, **({"bursty_counts": bursty} if bursty else {})}


class CapDrops:
    """The rate cap's drops each side (`netlab.cap_drops()`), sampled every TRACE_EVERY s
    in a thread while the omnicli call runs (`--trace`)."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last: dict[str, int] = {}
        while not self._stop.wait(TRACE_EVERY):
            now = self.lab.cap_drops()
            if now != last:
                self.samples.append((round(time.monotonic(), 3), now))
            last = now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


TRACE_EVERY = 0.25


def timeline(results: list[dict[str, Any]], drops: list[tuple[float, dict[str, int]]]) -> list[str]:
    """Both endpoints' traces and the cap's drops as one timeline, in s from the window's
    start: `caller`/`callee` say whose sender (or receiver, for `gap` and `stall`)."""
    start = min(r["window_at"] for r in results)
    rows: list[tuple[float, str]] = []
    for who, r in zip(("caller", "callee"), results, strict=False):
        for at, what, detail in r.get("trace", []):
            rows.append((at - start, f"{who} {what} {'' if detail is None else detail}"))
    before: dict[str, int] = {}
    for at, now in drops:  # side x's ingress: what the other side sent
        new = {side: n - before.get(side, 0) for side, n in now.items() if n != before.get(side)}
        rows.append(
            (at - start, "cap drops " + ", ".join(f"into {k} +{v}" for k, v in new.items()))
        )
        before = now
    return [f"{at:7.2f} {text}" for at, text in sorted(rows)]


def rel(fired: dict[str, float], results: list[dict[str, Any]]) -> dict[str, float]:
    """When each action fired, in s from the start of the measuring window."""
    start = min(r["window_at"] for r in results)
    return {what: round(at - start, 2) for what, at in fired.items()}


def reaction(fired: dict[str, float], results: list[dict[str, Any]]) -> dict[str, Any]:
    """How fast each endpoint's video target followed the cap: the first cut below the cap
    after it came, and the first return to the target it had before it, after it went."""
    out: dict[str, Any] = {"cut_s": [], "recovered_s": [], "before_kbps": []}
    on, off = fired.get("cap on"), fired.get("cap off")
    for r in results:
        changes = r.get("send_rate", {}).get("changes_at", [])
        if on is None or off is None or not changes:
            continue
        before = [kbps for at, kbps in changes if at < on]
        level = before[-1] if before else None
        out["before_kbps"].append(level)
        cut = next((at - on for at, kbps in changes if on <= at and kbps < 300), None)
        out["cut_s"].append(None if cut is None else round(cut, 2))
        back = next(
            (at - off for at, kbps in changes if at >= off and level and kbps >= 0.9 * level),
            None,
        )
        out["recovered_s"].append(None if back is None else round(back, 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        default="clean,loss5,bursty,cap1000,cap300,move,capstep",
        help=f"comma-separated, from {','.join(SCENARIOS)}",
    )
    parser.add_argument("--losses", help="random loss fractions instead, e.g. 0,0.05,0.10")
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--trace",
        action="store_true",
        help="omnicli's send control and the cap's drops over time, to out/bench/",
    )
    args = parser.parse_args()
    from netlab import unavailable

    why = unavailable()
    if why is not None:
        print(f"bad-network benchmark not run: {why}")
        bl.write("network", {"skipped": why})
        return
    if args.losses:
        chosen = {
            f"loss{round(100 * float(x))}": ({"loss": float(x)}, f"{100 * float(x):g} % loss")
            for x in args.losses.split(",")
        }
    else:
        unknown = [n for n in args.scenarios.split(",") if n not in SCENARIOS]
        if unknown:
            parser.error(f"unknown scenario {unknown[0]!r}; choose from {','.join(SCENARIOS)}")
        chosen = {n: SCENARIOS[n] for n in args.scenarios.split(",")}
    width, height = (int(x) for x in args.size.split("x"))
    out, rows = {}, []
    for name, (lab_args, label) in chosen.items():
        seconds = max(args.seconds, 32.0) if name == "capstep" else args.seconds
        opts = media.endpoint_opts(width, height, seconds, args.warmup)
        fig = measure(name, lab_args, args.delay_ms, opts)
        out[name] = fig
        print(f"{label}: done", file=sys.stderr, flush=True)
        if "trace" in fig["omni"]:
            path = bl.OUT / f"network-trace-{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(fig["omni"].pop("trace")) + "\n")
            print(f"{label}: timeline in {path}", file=sys.stderr)
        for system, f in (("bare aiortc", fig["bare"]), ("omnicli", fig["omni"])):
            if system == "bare aiortc":
                f.pop("recovery", None)
            real = f["audio_delivered_fraction"] if system == "omnicli" else None
            rows.append(
                [
                    label,
                    system,
                    f["audio_output_fraction"],
                    real,
                    f["longest_freeze_ms"],
                    f["latency_ms"]["median"],
                    f["latency_ms"]["p99"],
                    f["fps_in"],
                    f["lost_frames"],
                ]
            )
    print(
        f"bad network: {args.size}, {args.delay_ms:g} ms delay each way, {args.seconds:g} s window"
    )
    bl.table(
        [
            "network",
            "system",
            "audio out",
            "audio real",
            "longest freeze ms",
            "lat med",
            "lat p99",
            "fps",
            "lost",
        ],
        rows,
    )
    for name, fig in out.items():
        for system in ("bare", "omni"):
            for line in fig[system].get("harness", []):
                print(f"{name} {system}: lab delay helper {line}")
        if fig["omni"].get("events"):
            print(f"{name}: actions at (s into the window) {fig['omni']['events']}", end="")
            print(f"; omnicli links per endpoint {fig['omni']['links']}")
        if "reaction" in fig["omni"]:
            r = fig["omni"]["reaction"]
            print(
                f"{name}: video target before the cap {r['before_kbps']} kbit/s, cut below "
                f"300 kbit/s {r['cut_s']} s after the cap came, back to 90 % of before "
                f"{r['recovered_s']} s after it went"
            )
    bl.write(
        "network",
        {
            "delay_ms": args.delay_ms,
            "size": args.size,
            "seconds": args.seconds,
            "scenarios": out,
            "targets": targets(out),
        },
    )


def targets(out: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets, for the scenarios that ran."""
    t: dict[str, bool] = {}
    omni = {name: fig["omni"] for name, fig in out.items()}
    if "loss5" in omni:
        t["5 % loss: audio delivered >= 95 %"] = (
            omni["loss5"]["audio_delivered_fraction"] or 0
        ) >= 0.95
        t["5 % loss: longest freeze <= 500 ms"] = omni["loss5"]["longest_freeze_ms"] <= 500
    if "bursty" in omni:
        t["bursty: audio delivered >= 90 %"] = (omni["bursty"]["audio_output_fraction"] or 0) >= 0.9
        t["bursty: longest freeze <= 1000 ms"] = omni["bursty"]["longest_freeze_ms"] <= 1000
    if "move" in omni:
        t["address change: media back within 3 s (longest freeze)"] = (
            omni["move"]["longest_freeze_ms"] <= 3000
        )
    for cap in ("cap300", "cap1000"):
        if cap in omni:
            t[f"{cap}: audio >= 95 %"] = (omni[cap]["audio_output_fraction"] or 0) >= 0.95
            if "clean" in omni:  # the target is about the audio
                base = omni["clean"].get("audio_latency_ms", {}).get("median") or 0
                capped = omni[cap].get("audio_latency_ms", {}).get("median") or 1e9
                t[f"{cap}: audio latency within 100 ms of clean"] = capped <= base + 100
    return t


if __name__ == "__main__":
    main()
