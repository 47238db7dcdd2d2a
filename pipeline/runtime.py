"""Process-level start-up shared by the long-running processes (collector, worker, sink)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import signal
from collections.abc import Awaitable, Callable


def tune_gc(gen0_threshold: int = 50_000) -> None:
    """Fewer, cheaper cyclic-GC passes for allocation-heavy stream processing.

    Every event allocates models, dicts and strings; with CPython's default gen-0 threshold (700)
    collections run thousands of times a second, and each older-generation pass walks every live
    object, imported modules included. Freezing what exists after start-up takes those out of
    the scans; a higher threshold makes passes rarer. Measured on the worker's pure path with
    50-event messages: 48.6k -> 62.8k events/s (see bench/README.md). Call once, after imports.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``uvloop``'s loop factory for ``name`` "uvloop" (or "auto" when it is installed), else None
    (asyncio's own loop). uvloop does the socket and timer work in C: the collector's cost per HTTP
    request falls by about a third (bench/README.md)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to hand back this way
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Hand the C allocator's free pages back to the OS; False where that is not glibc.

    Each batch allocates and frees tens of MB of bytes, lists and dict tables above pymalloc's 512 B
    limit; glibc keeps those pages (they lie below long-lived blocks, so the heap top cannot shrink)
    and RSS grows with every batch's garbage, not with live data. ``malloc_trim(0)`` returns every
    free page, wherever it is: on the load bench 309 -> 129 MB of worker growth with 50k open
    sessions. It costs a few ms per call, so the caller rate-limits it."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def run_service(serve: Callable[[asyncio.Event], Awaitable[None]], *, log_level: int = logging.INFO,
                event_loop: str = "asyncio") -> None:
    """Run ``serve(stop)`` until it returns; SIGTERM/SIGINT set ``stop`` so it can finish cleanly.

    The common start of the asyncio processes (``pulse collector``, ``pulse sink``): one log
    format, GC tuning, signal handling. ``event_loop``: "asyncio", "uvloop" or "auto" (uvloop
    when installed).
    """
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tune_gc()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    with asyncio.Runner(loop_factory=event_loop_factory(event_loop)) as runner:
        runner.run(main())
