"""Shared helpers for the benchmarks in scripts/: figures, JSON output, processes.

Each benchmark prints a small table and writes `out/bench/<name>.json` with the
figures, the machine and its load, so runs can be compared later.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "bench"
PYTHON = sys.executable
OMNI = [PYTHON, "-m", "omnicli.ui.cli"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (0.5 median, 0.95, 0.99) by linear interpolation; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float], digits: int = 1) -> dict[str, Any]:
    """count, median, p95, p99, min, max of `values` (rounded)."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, digits)

    return {
        "count": len(values),
        "median": r(quantile(values, 0.5)),
        "p95": r(quantile(values, 0.95)),
        "p99": r(quantile(values, 0.99)),
        "min": r(min(values) if values else None),
        "max": r(max(values) if values else None),
    }


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 2)


def machine() -> dict[str, Any]:
    """Cores, memory, load and versions: what a figure was measured on."""
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write(name: str, figures: dict[str, Any]) -> Path:
    """Write `out/bench/<name>.json` with the figures and the machine; return the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    data = {"benchmark": name, "machine": machine(), **figures}
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print rows as an aligned plain-text table."""
    cells = [[_fmt(v) for v in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by process `pid` (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        match = re.search(r"VmRSS:\s+(\d+)", f.read())
    return int(match.group(1)) if match else 0


def env(root: Path = ROOT) -> dict[str, str]:
    """The environment for omni child processes: no config file, no display, unbuffered;
    `root`: the checkout whose omnicli they run."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_")}
    e.pop("DISPLAY", None)
    e["OMNI_CONFIG"] = os.devnull
    e["PYTHONUNBUFFERED"] = "1"
    e["PYTHONPATH"] = str(root)
    return e


class Server:
    """`omni server --port 0` as a child process; `url` once it listens."""

    def __init__(
        self,
        *extra: str,
        prefix: list[str] | None = None,
        log: Any = subprocess.DEVNULL,
        root: Path = ROOT,
    ) -> None:
        argv = [*(prefix or []), *OMNI, "server", "--port", "0", *extra]
        self.proc = subprocess.Popen(
            argv,
            env=env(root),
            cwd=root,  # `python -m` puts the working directory first on sys.path
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,  # the server's log (a file to count its lines)
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"omni server did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wall(fn: Any) -> float:
    """Seconds `fn()` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
