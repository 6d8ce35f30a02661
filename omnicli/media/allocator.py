"""Keep a long call's memory flat: the C allocator's side of it.

A call's native memory (libvpx and libopus state, PyAV frames, aiortc's decoder and
encoder threads) is allocated by glibc's malloc. glibc gives each thread that allocates
while another holds the lock an arena of its own (up to 8 per core), and keeps the memory
freed in each arena for reuse instead of handing it back. Over a long call the freed but
kept memory grows in steps: measured with `scripts/bench_longcall.py`, 5 MiB free in the
heap at one minute and 51 MiB after seven, while the memory in use and Python's own
(tracemalloc) stayed within a few MiB. That is RSS a user sees grow.

- `limit_arenas()`: at most `ARENAS` arenas for threads created from now on (mallopt
  `M_ARENA_MAX`, what the `MALLOC_ARENA_MAX` environment variable does at start-up).
- `trim()`: hand the free memory of every arena back to the kernel (`malloc_trim(0)`).
  A call trims once every `TRIM_EVERY` seconds, in a worker thread.
- `heap()`: glibc's own figures (`mallinfo2`): in use, free but kept, mmapped.

Everything is a no-op returning False or None where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass
from typing import Any

ARENAS = 2
TRIM_EVERY = 10.0  # s; a trim takes under 1 ms when there is little to give back
M_ARENA_MAX = -8  # from glibc's malloc.h


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _has(fn: str) -> bool:
    libc = _libc()
    return libc is not None and hasattr(libc, fn)


@functools.cache
def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas from now on; True if the C library took it.
    Once per process (later calls return the first answer)."""
    if not _has("mallopt"):
        return False
    return bool(_libc().mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free heap memory back to the kernel; True if some was given back."""
    if not _has("malloc_trim"):
        return False
    return bool(_libc().malloc_trim(0))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@dataclass(frozen=True)
class Heap:
    """glibc's malloc heap over all arenas, in bytes."""

    in_use: int
    free: int  # freed, kept by the allocator
    mmapped: int  # large blocks mapped on their own


def heap() -> Heap | None:
    """glibc's figures (mallinfo2, glibc >= 2.33); None elsewhere."""
    if not _has("mallinfo2"):
        return None
    fn = _libc().mallinfo2
    fn.restype = _Mallinfo2
    info = fn()
    return Heap(in_use=info.uordblks, free=info.fordblks, mmapped=info.hblkhd)


__all__ = ["ARENAS", "TRIM_EVERY", "Heap", "heap", "limit_arenas", "trim"]
