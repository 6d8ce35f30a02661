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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_media as media
import benchlib as bl

KEY = "bench-network-key"


def measure(loss: float, delay_ms: float, opts: list[str]) -> dict:
    from netlab import NetLab

    with NetLab(loss=loss, delay_ms=delay_ms, prefix="ob") as lab:
        prefixes = (lab.cmd("a", []), lab.cmd("b", []))
        bare = media.combine(media.run_pair("bare", opts, prefixes=prefixes))
        server = bl.Server("--host", lab.addr_a, "--service", f"dev:{KEY}", prefix=lab.cmd("a", []))
        try:
            omni = media.combine(media.run_pair("omni", opts, server.url, prefixes, key=KEY))
        finally:
            server.stop()
    return {"bare": bare, "omni": omni}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default="0,0.05,0.10")
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    from netlab import unavailable

    why = unavailable()
    if why is not None:
        print(f"bad-network benchmark not run: {why}")
        bl.write("network", {"skipped": why})
        return
    width, height = (int(x) for x in args.size.split("x"))
    opts = media.endpoint_opts(width, height, args.seconds, args.warmup)
    out, rows = {}, []
    for loss in (float(x) for x in args.losses.split(",")):
        fig = measure(loss, args.delay_ms, opts)
        out[f"{loss:.2f}"] = fig
        for name, f in (("bare aiortc", fig["bare"]), ("omnicli", fig["omni"])):
            if name == "bare aiortc":
                f.pop("recovery", None)
            real = f["audio_delivered_fraction"] if name == "omnicli" else None
            rows.append(
                [
                    f"{100 * loss:g} %",
                    name,
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
            "loss",
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
    five = out.get("0.05")
    targets = {}
    if five:
        targets = {
            "audio delivered at 5 % loss >= 95 %": (five["omni"]["audio_delivered_fraction"] or 0)
            >= 0.95,
            "longest video freeze at 5 % loss <= 500 ms": five["omni"]["longest_freeze_ms"] <= 500,
        }
    bl.write(
        "network",
        {
            "delay_ms": args.delay_ms,
            "size": args.size,
            "seconds": args.seconds,
            "losses": out,
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
