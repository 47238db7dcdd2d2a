"""Per-minute partials of custom metrics (``POST /api/metrics``). Pure.

Like ``minute.py`` for browser events: each raw message's first-time metric points become partial
rows of ``metrics_minute``, one per (project, minute, environment, release, name, tags), which
ClickHouse merges (AggregatingMergeTree) and rolls up into hours and days. Count, sum, min and max
merge exactly; percentiles come from the DDSketch buckets (``sketch.py``) within 0.5 %.

Percentiles need values >= 0 (the sketch maps magnitudes); negative values are counted in
``negatives`` so the query API can refuse a percentile over them instead of answering wrongly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pipeline.rollups.sketch import key_of


def tags_key(tags: dict[str, str]) -> str:
    """One series per tag set, whatever the order its keys were sent in."""
    return "\x1f".join(f"{k}={tags[k]}" for k in sorted(tags))


def metric_rollup_rows(rows: Iterable[dict[str, Any]], window_s: int = 60) -> list[dict[str, Any]]:
    """Partial ``metrics_minute`` rows of one message's metric rows (as ``event_to_row`` builds them)."""
    partials: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        ts: datetime = row["timestamp"]
        seconds = int(ts.timestamp())
        key = (row["project"], seconds - seconds % window_s, row["environment"], row["release"], row["name"],
               tags_key(row["tags"]))
        value = row["value"]
        p = partials.get(key)
        if p is None:
            p = partials[key] = {"project": key[0], "minute": key[1], "environment": key[2], "release": key[3],
                                 "name": key[4], "tags_key": key[5], "tags": row["tags"], "count": 0, "sum": 0.0,
                                 "min": value, "max": value, "negatives": 0, "sketch": {}}
        p["count"] += 1
        p["sum"] += value
        p["min"] = min(p["min"], value)
        p["max"] = max(p["max"], value)
        if value < 0:
            p["negatives"] += 1
        else:
            k = key_of(value)
            p["sketch"][k] = p["sketch"].get(k, 0) + 1
    return list(partials.values())
