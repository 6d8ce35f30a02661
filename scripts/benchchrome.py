"""The Chromium peer of bench_media.py: one call between headless Chromium and omnicli.

The browser client (`tests/support/browser/client.html?framecode=1`) sends a canvas
carrying the frame code of `omnicli.media.framecode` (drawn by `framecode.js`, stamped
with the page's clock) at the chosen size and rate, and reads the code of every frame
omnicli sends it (`requestVideoFrameCallback`). One call measures both directions:

- Chromium -> omni: the omni endpoint's probe reads the page's code (its latency:
  omni's `time.time()` at the decoded frame minus the page's stamp);
- omni -> Chromium: the page's latency when the decoded frame is handed to the
  compositor (the rVFC metadata's `presentationTime`), and when the page's script
  has read its pixels (the rVFC callback, up to a vsync later), read over the
  DevTools protocol.

The page's clock (`performance.timeOrigin + performance.now()`) and Python's
`time.time()` are compared over the DevTools protocol (the round trip with the
smallest delay), before the call and again after the window; every latency is
corrected by the first offset.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import benchlib as bl

sys.path.insert(0, str(bl.ROOT / "tests" / "support"))

from chromium import PAGE, Chromium, chromium_binary

TS_MOD = 1 << 48  # the frame code's timestamp wraps; the probe stores it modulo this


def available() -> bool:
    return chromium_binary() is not None


def clock_offset(browser: Chromium, tries: int = 30) -> dict[str, float]:
    """The page's clock minus Python's `time.time()`, in ms, from the round trip with
    the least delay; `uncertainty_ms` is half that round trip."""
    best: tuple[float, float, float] | None = None
    for _ in range(tries):
        t0 = time.time()
        page, date = browser.evaluate("[performance.timeOrigin + performance.now(), Date.now()]")
        t1 = time.time()
        mid = 500 * (t0 + t1)
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, page - mid, date - mid)
    assert best is not None
    return {
        "offset_ms": round(best[1], 2),
        "uncertainty_ms": round(500 * best[0], 2),
        "date_now_offset_ms": round(best[2], 2),  # Date.now(), for comparison
    }


def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds so far of `root` and every process below it, per pid."""
    parents = _parents()
    out: dict[int, float] = {}
    for pid in parents:
        p = pid
        while p not in (0, 1, root):
            p = parents.get(p, 0)
        if p == root:
            with contextlib.suppress(OSError):
                out[pid] = bl.cpu_seconds(pid)
    return out


def _unwrap(ms: float) -> float:
    return ms - TS_MOD if ms >= TS_MOD // 2 else ms


def _per_frame(stats: dict[str, Any], key: str, total: str, count: str) -> float | None:
    a, b = stats.get("stats0", {}).get(key, {}), stats.get("stats1", {}).get(key, {})
    frames = (b.get(count) or 0) - (a.get(count) or 0)
    if frames <= 0 or b.get(total) is None:
        return None
    return round(1000 * (b[total] - (a.get(total) or 0)) / frames, 2)


def _spread(values: list[float]) -> dict[str, Any]:
    """p5, median, p95 of `values` and the p5-p95 width."""
    p5, p95 = bl.quantile(values, 0.05), bl.quantile(values, 0.95)
    return {
        "p5": p5,
        "median": bl.quantile(values, 0.5),
        "p95": p95,
        "width": None if p5 is None or p95 is None else round(p95 - p5, 1),
    }


def page_figures(bench: dict[str, Any], offset: float) -> dict[str, Any]:
    """omni -> Chromium, from the page's window (latencies corrected by `offset`)."""
    seconds = bench["seconds"]
    s0, s1 = bench["stats0"], bench["stats1"]
    decoded = (s1.get("in", {}).get("framesDecoded") or 0) - (
        s0.get("in", {}).get("framesDecoded") or 0
    )
    encoded = (s1.get("out", {}).get("framesEncoded") or 0) - (
        s0.get("out", {}).get("framesEncoded") or 0
    )
    fix = lambda values: [round(v - offset, 1) for v in values]  # noqa: E731
    return {
        # decoded and handed to the compositor (rVFC presentationTime): omni's figure
        # is also "decoded and handed to the application"
        "latency_ms": bl.summary(fix(bench["presented"])),
        # the page's script holds the pixels (its rVFC callback, a vsync later)
        "at_read_ms": bl.summary(fix(bench["read"])),
        # rVFC receiveTime ("last packet received"): not trusted, it goes below zero
        "at_receive_time_ms": bl.summary(fix(bench["received"])),
        "fps_in": round(decoded / seconds, 2),
        # the sender's frame stamps against its RTP timestamps (ms, less the first):
        # their spread is timing jitter the sender puts into its own media clock
        "stamp_vs_rtp_ms": _spread(bench.get("stampOffRtp", [])),
        "fps_shown": round(bench["shown"] / seconds, 2),
        "not_shown": bench["skipped"],  # decoded frames the page never saw painted
        "chromium_sent_fps": round(encoded / seconds, 2),
        "canvas_fps": round((bench["sent1"] - bench["sent0"]) / seconds, 2),
        "canvas_late": bench["late"],
        "decode_ms_per_frame": _per_frame(bench, "in", "totalDecodeTime", "framesDecoded"),
        "jitter_buffer_ms_per_frame": _per_frame(
            bench, "in", "jitterBufferDelay", "jitterBufferEmittedCount"
        ),
        "encode_ms_per_frame": _per_frame(bench, "out", "totalEncodeTime", "framesEncoded"),
        "size_in": [s1.get("in", {}).get("width"), s1.get("in", {}).get("height")],
        "size_sent": [s1.get("out", {}).get("width"), s1.get("out", {}).get("height")],
        "decoder": s1.get("in", {}).get("decoder"),
        "encoder": s1.get("out", {}).get("encoder"),
        "codec": s1.get("out", {}).get("codec"),
        "quality_limitation": s1.get("out", {}).get("qualityLimitationReason"),
    }


def omni_figures(result: dict[str, Any], offset: float) -> dict[str, Any]:
    """Chromium -> omni, from the omni endpoint's window (corrected by `offset`)."""
    timed = result.get("timed_latencies") or []
    raw = [ms for _, ms in timed] if timed else result["latencies_ms"]
    return {
        "latency_ms": bl.summary([round(_unwrap(ms) + offset, 1) for ms in raw]),
        "fps_in": result["fps"],
        "lost_frames": result["lost_frames"],
        "longest_freeze_ms": result["longest_freeze_ms"],
        "cpu_pct": result["cpu_pct"],
    }


def run(
    start_callee: Callable[[str], Any],
    server: str,
    codec: str,
    size: tuple[int, int],
    fps: float,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """One call: Chromium (caller, frame-code canvas) and an omni endpoint started by
    `start_callee(tag)` (it answers `alice-TAG` as `bob-TAG`); both directions' figures."""
    tag = f"t{time.monotonic_ns() % 10**9}"
    callee = start_callee(tag)
    callee.read()  # ready
    query = {
        "server": server,
        "user": f"alice-{tag}",
        "callee": f"bob-{tag}",
        "codec": codec,
        "framecode": "1",
        "width": str(size[0]),
        "height": str(size[1]),
        "fps": f"{fps:g}",
    }
    browser = Chromium(f"{PAGE.as_uri()}?{urlencode(query)}")
    try:
        clock = clock_offset(browser)
        page = browser.wait_for(lambda r: r.get("connected") or r.get("error"), timeout=60)
        if page.get("error"):
            raise RuntimeError(f"browser page: {page['error']}")
        time.sleep(warmup)
        cpu0, t0 = tree_cpu(browser.proc.pid), time.monotonic()
        browser.evaluate(f"omniBench.window({seconds})")
        page = browser.wait_for(lambda r: r.get("bench") or r.get("error"), timeout=seconds + 30)
        cpu1, t1 = tree_cpu(browser.proc.pid), time.monotonic()
        if page.get("error"):
            raise RuntimeError(f"browser page: {page['error']}")
        after = clock_offset(browser)  # the same again: do the two clocks drift apart?
        clock["offset_after_ms"] = after["offset_ms"]
        omni = callee.read()["result"]
        browser.evaluate("hangUp()")
        browser.wait_for(lambda r: r.get("ended"), timeout=10)
    finally:
        browser.close()
        callee.finish()
    used = sum(cpu1[pid] - cpu0.get(pid, 0.0) for pid in cpu1)
    to_chromium = page_figures(page["bench"], clock["offset_ms"])
    to_chromium["cpu_pct"] = round(100 * used / (t1 - t0), 1)  # every Chromium process
    return {
        "codec": codec,
        "clock": clock,
        "to_omni": omni_figures(omni, clock["offset_ms"]),
        "to_chromium": to_chromium,
        "load": os.getloadavg()[0],
    }


def _page_url(server: str, user: str, size: tuple[int, int], fps: float, **more: str) -> str:
    query = {
        "server": server,
        "user": user,
        "framecode": "1",
        "width": str(size[0]),
        "height": str(size[1]),
        "fps": f"{fps:g}",
        **more,
    }
    return f"{PAGE.as_uri()}?{urlencode(query)}"


def run_browsers(
    server: str, codec: str, size: tuple[int, int], fps: float, seconds: float, warmup: float
) -> dict[str, Any]:
    """One call between two headless Chromiums (the same page, frame-code canvases):
    what Chromium costs without omnicli, both directions pooled."""
    tag = f"t{time.monotonic_ns() % 10**9}"
    pages: list[Chromium] = []
    try:
        callee = Chromium(_page_url(server, f"bob-{tag}", size, fps))
        pages.append(callee)
        callee.wait_for(lambda r: r.get("userId") or r.get("error"), timeout=30)
        caller = Chromium(_page_url(server, f"alice-{tag}", size, fps, callee=f"bob-{tag}",
                                    codec=codec))  # fmt: skip
        pages.append(caller)
        clocks = [clock_offset(p) for p in pages]
        for p in pages:
            state = p.wait_for(lambda r: r.get("connected") or r.get("error"), timeout=60)
            if state.get("error"):
                raise RuntimeError(f"browser page: {state['error']}")
        time.sleep(warmup)
        cpu0, t0 = [tree_cpu(p.proc.pid) for p in pages], time.monotonic()
        for p in pages:
            p.evaluate(f"omniBench.window({seconds})")
        results = [
            p.wait_for(lambda r: r.get("bench") or r.get("error"), timeout=seconds + 30)
            for p in pages
        ]
        cpu1, t1 = [tree_cpu(p.proc.pid) for p in pages], time.monotonic()
        caller.evaluate("hangUp()")
    finally:
        for p in pages:
            p.close()
    sides = []
    for me, (result, clock) in enumerate(zip(results, clocks, strict=True)):
        if result.get("error"):
            raise RuntimeError(f"browser page: {result['error']}")
        other = clocks[1 - me]
        # the page read the other page's stamps: correct by the two offsets' difference
        side = page_figures(result["bench"], clock["offset_ms"] - other["offset_ms"])
        used = sum(cpu1[me][pid] - cpu0[me].get(pid, 0.0) for pid in cpu1[me])
        side["cpu_pct"] = round(100 * used / (t1 - t0), 1)
        side["raw"] = result["bench"]
        sides.append(side)
    pooled = {
        key: bl.summary(
            [round(v - off, 1) for side, off in zip(sides, _diffs(clocks), strict=True)
             for v in side["raw"][field]]
        )
        for key, field in (("latency_ms", "presented"), ("at_read_ms", "read"))
    }  # fmt: skip
    for side in sides:
        side.pop("raw")
    mean = lambda key: round(sum(s[key] or 0 for s in sides) / 2, 2)  # noqa: E731
    return {
        "codec": codec,
        "clocks": clocks,
        **pooled,
        "jitter_buffer_ms_per_frame": mean("jitter_buffer_ms_per_frame"),
        "fps_in": mean("fps_in"),
        "not_shown": sum(s["not_shown"] for s in sides),
        "cpu_pct_per_browser": mean("cpu_pct"),
        "sides": sides,
        "load": os.getloadavg()[0],
    }


def _diffs(clocks: list[dict[str, float]]) -> list[float]:
    """Per page: its clock's offset minus the other page's (what its latencies read high)."""
    return [
        clocks[0]["offset_ms"] - clocks[1]["offset_ms"],
        clocks[1]["offset_ms"] - clocks[0]["offset_ms"],
    ]
