"""Start-up benchmark: wall time of `omni --help` and `omni devices`.

Baseline in the same run: the bare interpreter (`python -c pass`). Each command runs
`--runs` times; the median counts.

    .venv/bin/python scripts/bench_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

OMNI_BIN = Path(bl.PYTHON).with_name("omni")


def timed(cmd: list[str], runs: int) -> tuple[dict, int]:
    times, code = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            cmd, env=bl.env(), capture_output=True, timeout=60, stdin=subprocess.DEVNULL
        )
        times.append(1000 * (time.perf_counter() - start))
        code = done.returncode
    return bl.summary(times), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    omni = [str(OMNI_BIN)] if OMNI_BIN.exists() else bl.OMNI
    has_devices = (
        subprocess.run(
            [*omni, "devices", "--help"], env=bl.env(), capture_output=True, timeout=60
        ).returncode
        == 0
    )
    cases = {
        "python -c pass (baseline)": [bl.PYTHON, "-c", "pass"],
        "omni --help": [*omni, "--help"],
    }
    if has_devices:
        cases["omni devices"] = [*omni, "devices"]
    results = {}
    rows = []
    base = None
    for name, cmd in cases.items():
        stats, code = timed(cmd, args.runs)
        base = base or stats["median"]
        results[name] = {
            "ms": stats,
            "exit_code": code,
            "ratio_to_python": bl.ratio(stats["median"], base),
        }
        rows.append(
            [
                name,
                stats["median"],
                stats["min"],
                stats["max"],
                code,
                results[name]["ratio_to_python"],
            ]
        )
    print(f"start-up, {args.runs} runs each (ms)")
    bl.table(["command", "median", "min", "max", "exit", "x python"], rows)
    if not has_devices:
        print("omni devices: no such command in this tree (not measured)")
    help_ms = results["omni --help"]["ms"]["median"]
    bl.write(
        "startup",
        {
            "runs": args.runs,
            "results": results,
            "devices_command": has_devices,
            "targets": {"omni --help median <= 300 ms": help_ms <= 300},
        },
    )


if __name__ == "__main__":
    main()
