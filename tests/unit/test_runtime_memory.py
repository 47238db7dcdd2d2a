"""``release_free_memory``: free C-allocator pages below live blocks go back to the OS (issue 14:
most of the worker's RSS per open session was garbage of past batches that glibc kept)."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from pipeline.runtime import release_free_memory
from pipeline.settings import Settings


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists() or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="needs Linux with glibc")
def test_free_pages_below_live_blocks_go_back_to_the_os() -> None:
    blocks = [bytes(4096) for _ in range(25_000)]  # ~100 MB above pymalloc's limit: glibc's heap
    kept = blocks[::64]  # a live block every 256 KB pins the heap: free() alone cannot shrink it
    del blocks
    held = rss()
    assert release_free_memory()
    assert rss() < held - 50 * 2**20
    assert len(kept) == 391


def test_the_interval_is_the_operators() -> None:
    assert Settings().worker.trim_interval_s == 5.0
    assert Settings(worker={"trim_interval_s": 0}).worker.trim_interval_s == 0
