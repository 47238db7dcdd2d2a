"""Process-level tuning shared by the long-running processes (collector, worker, sink)."""

from __future__ import annotations

import gc


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
