"""Allocator benchmark: what VP8 encoder rebuilds spread over threads do to RSS.

aiortc rebuilds its VP8 encoder (about 16 MiB at 640x480) whenever the target bitrate
moves by more than 10 %, and runs each encode on whichever worker of asyncio's default
executor is free. With glibc's defaults each worker thread may allocate from an arena of
its own, so a rebuilt encoder can land in another arena than the one just freed, which
keeps the old one's memory. This reproduces that in one process, without a call: --rebuilds
encoder rebuilds (a random target from four), three 640x480 frames each, encodes handed to
a 6-thread pool with some other work in between; RSS every 10 rebuilds and at the end.

- default: glibc as it comes;
- arenas: `omnicli.media.allocator.limit_arenas()` (2 arenas) only;
- omnicli: 2 arenas and `allocator.trim()` at the end (a call trims once a minute).

    .venv/bin/python scripts/bench_allocator.py [--rebuilds 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

MODES = ("default", "arenas", "omnicli")


def child(mode: str, rebuilds: int) -> dict[str, Any]:
    """One mode, in this (fresh) process."""
    import concurrent.futures as cf
    import fractions
    import os
    import random

    import av
    import numpy as np
    from aiortc.codecs.vpx import Vp8Encoder

    from omnicli.media import allocator

    if mode != "default":
        allocator.limit_arenas()
    pid = os.getpid()
    img = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    frame.time_base = fractions.Fraction(1, 90_000)
    pool = cf.ThreadPoolExecutor(6)  # asyncio's default executor on 2 cores: 6 workers
    encoder = Vp8Encoder()
    rng = random.Random(1)
    rss: list[float] = []
    n = 0
    for k in range(rebuilds):
        encoder.target_bitrate = rng.choice([400_000, 600_000, 900_000, 1_300_000])
        for _ in range(3):
            frame.pts = n * 3000
            n += 1
            others = [
                pool.submit(lambda: int(np.zeros((480, 640, 3), np.uint8).sum()))
                for _ in range(rng.randint(0, 5))
            ]
            pool.submit(encoder.encode, frame).result()
            for f in others:
                f.result()
        if k % 10 == 9:
            rss.append(round(bl.rss_kib(pid) / 1024, 1))
    before_trim = round(bl.rss_kib(pid) / 1024, 1)
    if mode == "omnicli":
        allocator.trim()
    heap = allocator.heap()
    return {
        "mode": mode,
        "rss_every_10": rss,
        "rss_end": round(bl.rss_kib(pid) / 1024, 1),
        "rss_before_trim": before_trim,
        "heap_free_mib": None if heap is None else round(heap.free / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuilds", type=int, default=40)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rebuilds)))
        return
    results = []
    for mode in MODES:
        out = subprocess.run(
            [bl.PYTHON, __file__, "--child", mode, "--rebuilds", str(args.rebuilds)],
            env=bl.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.rebuilds} VP8 encoder rebuilds at 640x480 over a 6-thread pool (RSS MiB)")
    bl.table(
        ["mode", "every 10 rebuilds", "end", "heap free kept", "end less first"],
        [
            [
                r["mode"],
                " ".join(str(v) for v in r["rss_every_10"]),
                r["rss_end"],
                r["heap_free_mib"],
                round(r["rss_end"] - r["rss_every_10"][0], 1) if r["rss_every_10"] else None,
            ]
            for r in results
        ],
    )
    bl.write("allocator", {"rebuilds": args.rebuilds, "results": results})


if __name__ == "__main__":
    main()
