"""Per-minute partial rollups of one raw message's events. Pure.

The worker turns each raw message into at most one ``rollups_minute`` storage message (next to its
raw rows, with the same ``pulse-src`` origin), holding one partial row per series and minute.
ClickHouse's AggregatingMergeTree sums partials with the same key, so partials from any number of
workers, retries, and late events all end up in the right minute's totals; the sink drops a
replayed raw message's partials by its source offset, as it does for raw rows, and duplicates by
``event_id`` never reach here (the worker drops them first). Event-time windows, no window state
to close: a late event is simply a partial for an older minute.

Series = (project, minute, environment, release, page, browser). Columns:

* counters (sum): events by type, page views, clicks, API calls and failures, resources, failed
  and slow (> 1 s) resources, long tasks (> 50 ms), checkout calls and failures, and per web vital
  the good / needs-improvement / poor counts (thresholds below, "good <= g, poor > p");
* sums (sum): total blocking time of long tasks (ms over 50 per task), API duration;
* sketches (sumMap of DDSketch buckets, ``pipeline/rollups/sketch.py``): API latency and each vital.

Error rate, API failure rate, checkout success rate are ratios of these sums over any range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from pipeline.ingest.normalize import page_of
from pipeline.ingest.useragent import browser_and_os
from pipeline.rollups.sketch import key_of

# name -> (good <= this, poor > this), the product spec's thresholds (assessed at p75)
VITAL_THRESHOLDS: dict[str, tuple[float, float]] = {
    "LCP": (2500, 4000), "INP": (200, 500), "CLS": (0.1, 0.25), "FCP": (1800, 3000), "TTFB": (800, 1800),
    "FID": (100, 300),
}
VITALS = tuple(VITAL_THRESHOLDS)
SLOW_RESOURCE_MS = 1000.0
LONG_TASK_MS = 50.0

KEY_COLUMNS = ("project", "minute", "environment", "release", "page", "browser")
COUNTERS = (
    "events", "errors", "vitals", "actions", "api_events", "pageviews", "clicks", "api_calls", "api_failures",
    "resources", "resource_failures", "slow_resources", "long_tasks", "checkout_calls", "checkout_failures",
    *(f"{v.lower()}_{r}" for v in VITALS for r in ("good", "ni", "poor")),
)
SUMS = ("long_task_blocking_ms", "api_duration_ms")
SKETCHES = ("api_latency", *(v.lower() for v in VITALS))


def rating(name: str, value: float) -> str | None:
    """good / ni / poor for a web vital; None for other measurements."""
    limits = VITAL_THRESHOLDS.get(name)
    if limits is None:
        return None
    good, poor = limits
    return "good" if value <= good else "poor" if value > poor else "ni"


@dataclass(frozen=True, slots=True)
class RollupRules:
    window_s: int = 60
    checkout_patterns: tuple[str, ...] = ("/checkout",)
    lateness_ms: int = 60_000


def is_late(event_time: datetime, arrived_ms: int, rules: RollupRules) -> bool:
    """Arrived after its window closed plus the allowed lateness. It still counts in its own minute
    (a partial for an older minute merges the same); this only says it is late, for the metric."""
    window_ms = rules.window_s * 1000
    ts_ms = int(event_time.timestamp() * 1000)
    return arrived_ms > ts_ms - ts_ms % window_ms + window_ms + rules.lateness_ms


@dataclass
class _Partial:
    counters: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    sketches: dict[str, dict[int, int]] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value

    def observe(self, name: str, value: float) -> None:
        sketch = self.sketches.get(name)
        if sketch is None:
            sketch = self.sketches[name] = {}
        k = key_of(value)
        sketch[k] = sketch.get(k, 0) + 1


def _minute(ts: datetime, window_s: int) -> int:
    seconds = int(ts.timestamp()) if ts.tzinfo else int(ts.replace(tzinfo=timezone.utc).timestamp())
    return seconds - seconds % window_s


def _is_checkout(url: str, patterns: Sequence[str]) -> bool:
    try:
        path = urlsplit(url).path
    except ValueError:
        path = url
    return any(p in path for p in patterns)


def rollup_rows(rows: Iterable[tuple[str, dict[str, Any]]], rules: RollupRules = RollupRules()
                ) -> list[dict[str, Any]]:
    """Partial rollup rows (ClickHouse column -> value) of one message's (table, row) pairs."""
    partials: dict[tuple[Any, ...], _Partial] = {}
    window = rules.window_s
    for table, row in rows:
        if table == "metrics":  # custom metrics have their own rollup (metrics.py)
            continue
        key = (row["project"], _minute(row["timestamp"], window), row["environment"], row["release"],
               page_of(row.get("route"), row.get("url")),
               browser_and_os(row["user_agent"])[0])
        p = partials.get(key)
        if p is None:
            p = partials[key] = _Partial()
        p.count("events")
        if table == "errors":
            if not row.get("noise"):  # known noise (extensions, ResizeObserver...) stays out of error rates
                p.count("errors")
        elif table == "vitals":
            p.count("vitals")
            name, value = row["name"], row["value"]
            r = rating(name, value)
            if r is not None:
                p.count(f"{name.lower()}_{r}")
                p.observe(name.lower(), value)
            elif name == "LONG_TASK" and value > LONG_TASK_MS:
                p.count("long_tasks")
                p.add("long_task_blocking_ms", value - LONG_TASK_MS)
        elif table == "actions":
            p.count("actions")
            kind = row["kind"]
            if kind == "pageview":
                p.count("pageviews")
            elif kind == "click":
                p.count("clicks")
        elif table == "api_calls":
            p.count("api_events")
            duration, ok = row["duration_ms"], row["ok"]
            if row["kind"] == "resource":
                p.count("resources")
                if not ok:
                    p.count("resource_failures")
                if duration > SLOW_RESOURCE_MS:
                    p.count("slow_resources")
            else:
                p.count("api_calls")
                p.add("api_duration_ms", duration)
                p.observe("api_latency", duration)
                if not ok:
                    p.count("api_failures")
                if _is_checkout(row["request_url"], rules.checkout_patterns):
                    p.count("checkout_calls")
                    if not ok:
                        p.count("checkout_failures")
    out = []
    for (project, minute, environment, release, page, browser), p in partials.items():
        r: dict[str, Any] = {"project": project, "minute": minute, "environment": environment, "release": release,
                             "page": page, "browser": browser}
        r.update(p.counters)
        r.update(p.sums)
        for name, sketch in p.sketches.items():
            r[name] = sketch
        out.append(r)
    return out
