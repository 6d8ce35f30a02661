"""The allocator's side of a long call's memory: free heap memory goes back to the kernel."""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path
from typing import Any

import pytest

from omnicli.media import allocator

glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallinfo2 are glibc's"
)


def _anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@glibc
def test_trim_hands_freed_heap_memory_back_to_the_kernel() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    size, count = 32 * 1024, 1024  # 32 MiB in blocks below the mmap threshold
    blocks = [libc.malloc(size) for _ in range(count)]
    assert all(blocks)
    for b in blocks:
        libc.memset(b, 1, size)  # touched: resident
    pin = libc.malloc(size)  # in use above the freed blocks: glibc cannot just shrink the top
    heap_before = allocator.heap()
    try:
        for b in blocks:
            libc.free(b)
        freed = allocator.heap()
        kept = _anon_mib()
        assert allocator.trim()
        trimmed = _anon_mib()
    finally:
        libc.free(pin)
    assert heap_before is not None and freed is not None
    assert freed.free - heap_before.free >= 30 * 2**20  # freed, but kept by the allocator
    assert kept - trimmed >= 24  # MiB given back by trim()


@glibc
def test_heap_reports_memory_in_use() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = allocator.heap()
    block = libc.malloc(64 * 1024)
    after = allocator.heap()
    libc.free(block)
    assert before is not None and after is not None
    assert after.in_use - before.in_use >= 64 * 1024


@glibc
def test_arenas_are_limited_on_glibc() -> None:
    allocator.limit_arenas.cache_clear()
    try:
        assert allocator.limit_arenas() is True
    finally:
        allocator.limit_arenas.cache_clear()


def test_without_glibc_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    class NotGlibc:  # a C library without mallopt, malloc_trim or mallinfo2
        pass

    fake: Any = NotGlibc()
    monkeypatch.setattr(allocator, "_libc", lambda: fake)
    allocator.limit_arenas.cache_clear()
    try:
        assert allocator.limit_arenas() is False
        assert allocator.trim() is False
        assert allocator.heap() is None
    finally:
        allocator.limit_arenas.cache_clear()
