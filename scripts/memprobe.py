"""Where does a process's memory go: Python heap (tracemalloc), live objects (gc census),
or native (the C libraries and the allocator)? Used by bench_longcall's endpoints.

- `Tracer`: tracemalloc snapshots; `growth(a, b)` gives the allocation sites that grew
  most between two snapshots (filename:lineno, size and count deltas).
- `census()`: live objects per type name that the garbage collector tracks (av frames
  and packets, numpy arrays, tuples...); `census_growth` compares two.
- `malloc_trim()`: glibc's malloc_trim(0), which hands free heap pages back to the kernel.
  RSS that falls a lot after it was free memory kept by the allocator, not a leak.
- `heap_mib()`: glibc's mallinfo2: bytes in use and free in the malloc heap.
"""

from __future__ import annotations

import collections
import gc
import tracemalloc
from typing import Any

from omnicli.media import allocator

TOP = 15


class Tracer:
    """tracemalloc with `frames` frames per allocation (more frames: slower, better traces)."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        tracemalloc.start(frames)

    @staticmethod
    def traced_mib() -> float:
        return round(tracemalloc.get_traced_memory()[0] / 2**20, 2)

    @staticmethod
    def snapshot() -> tracemalloc.Snapshot:
        gc.collect()
        return tracemalloc.take_snapshot().filter_traces(
            [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<unknown>"),
            ]
        )

    def growth(self, old: tracemalloc.Snapshot, new: tracemalloc.Snapshot) -> dict[str, Any]:
        """The sites that grew most, by line and (with frames > 1) by whole traceback."""
        by_line = new.compare_to(old, "lineno")
        out: dict[str, Any] = {
            "lines": [_stat(s) for s in sorted(by_line, key=lambda s: -s.size_diff)[:TOP]],
        }
        if self.frames > 1:
            by_tb = new.compare_to(old, "traceback")
            out["tracebacks"] = [
                _stat(s, tb=True) for s in sorted(by_tb, key=lambda s: -s.size_diff)[:5]
            ]
        return out


def _stat(s: tracemalloc.StatisticDiff, tb: bool = False) -> dict[str, Any]:
    frames = list(s.traceback) if tb else list(s.traceback)[:1]
    where = [f"{_short(f.filename)}:{f.lineno}" for f in frames]
    return {
        "where": where if tb else where[0],
        "size_kib_delta": round(s.size_diff / 1024, 1),
        "size_kib": round(s.size / 1024, 1),
        "count_delta": s.count_diff,
    }


def _short(path: str) -> str:
    for mark in ("site-packages/", "omnicli/", "scripts/", "python3.11/"):
        if mark in path:
            return path[path.index(mark) :]
    return path


def census() -> dict[str, int]:
    """Live gc-tracked objects per type (module.name for extension types like av's)."""
    gc.collect()
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        t = type(obj)
        counts[
            f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__name__
        ] += 1
    return dict(counts)


def census_growth(old: dict[str, int], new: dict[str, int], top: int = TOP) -> list[list[Any]]:
    """[type, count then, count now, delta] for the types that grew most."""
    rows = [[k, old.get(k, 0), n, n - old.get(k, 0)] for k, n in new.items()]
    rows.sort(key=lambda r: -r[3])
    return [r for r in rows[:top] if r[3] > 0]


def av_frames(counts: dict[str, int]) -> dict[str, int]:
    """The av frames and packets alive (from a census)."""
    return {
        k.rsplit(".", 1)[1]: v
        for k, v in counts.items()
        if k.startswith("av.") and k.rsplit(".", 1)[1] in ("VideoFrame", "AudioFrame", "Packet")
    }


def malloc_trim() -> bool:
    """glibc malloc_trim(0); True if it gave memory back."""
    return allocator.trim()


def heap_mib() -> dict[str, float] | None:
    """glibc's view of the malloc heap (all arenas): in use, free but kept, mmapped."""
    h = allocator.heap()
    if h is None:
        return None
    return {
        "in_use": round(h.in_use / 2**20, 1),
        "free": round(h.free / 2**20, 1),
        "mmapped": round(h.mmapped / 2**20, 1),
    }
