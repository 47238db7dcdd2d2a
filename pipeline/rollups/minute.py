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
from dataclasses import dataclass
from itertools import islice
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from orjson import OPT_NON_STR_KEYS, dumps

from pipeline.common import browser_and_os, epoch_us, page_of
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
_KEY_SET = frozenset(KEY_COLUMNS)
# name -> (sketch column, good <= this, poor > this, its good / ni / poor counter columns): ``rating``
# and the column names worked out once, not per event (a quarter of all events are vitals)
_VITAL_COLUMNS: dict[str, tuple[str, float, float, str, str, str]] = {
    name: (name.lower(), good, poor, f"{name.lower()}_good", f"{name.lower()}_ni", f"{name.lower()}_poor")
    for name, (good, poor) in VITAL_THRESHOLDS.items()
}
_KEYS = len(KEY_COLUMNS)


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
    return is_late_ms(epoch_us(event_time) // 1000, arrived_ms, rules)


def is_late_ms(ts_ms: int, arrived_ms: int, rules: RollupRules) -> bool:
    """``is_late`` of an event time already in epoch milliseconds (the worker has it per event)."""
    window_ms = rules.window_s * 1000
    return arrived_ms > ts_ms - ts_ms % window_ms + window_ms + rules.lateness_ms


def _is_checkout(url: str, patterns: Sequence[str]) -> bool:
    try:
        path = urlsplit(url).path
    except ValueError:
        path = url
    return any(p in path for p in patterns)


def rollup_rows(rows: Iterable[tuple[str, dict[str, Any]]], rules: RollupRules = RollupRules()
                ) -> list[dict[str, Any]]:
    """Partial rollup rows (ClickHouse column -> value) of one message's (table, row) pairs."""
    return rollup_rows_timed(((table, row, epoch_us(row["timestamp"]) // 1000, page_of(row.get("route"), row.get("url")))
                              for table, row in rows if table != "metrics"), rules)


def rollup_rows_timed(rows: Iterable[tuple[str, dict[str, Any], int, str]], rules: RollupRules = RollupRules()
                      ) -> list[dict[str, Any]]:
    """``rollup_rows`` of (table, row, event time in epoch ms, page) tuples: the worker already has
    each event's time and page (sessions need them too), so they are not computed twice. Metric rows
    must not be among them (they have their own rollup, metrics.py)."""
    return list(rollup_series(rows, rules).values())


SeriesKey = tuple[Any, ...]  # the values of ``KEY_COLUMNS``, in that order


def rollup_series(rows: Iterable[tuple[str, dict[str, Any], int, str]], rules: RollupRules = RollupRules()
                  ) -> dict[SeriesKey, dict[str, Any]]:
    """``rollup_rows_timed``'s partial rows by series key, so that ``fold_rollup_series`` need not
    read each key back out of its row.

    Written for speed (it runs for every event, and once per message): plain dicts updated in
    place; each series' counters are written straight into its output row (key columns first,
    counters in the order first counted, sketches last), so a message of one event costs one row
    dict (and one sketch dict if it observed a value), nothing to copy at the end. A message of one
    event is ``rollup_one``'s row."""
    partials: dict[SeriesKey, dict[str, Any]] = {}
    observed: list[tuple[dict[str, Any], tuple[str, float]]] = []  # (series row, (sketch, value))
    window_ms = rules.window_s * 1000
    patterns = rules.checkout_patterns
    for table, row, ts_ms, page in rows:
        start = (ts_ms - ts_ms % window_ms) // 1000
        project, environment, release = row["project"], row["environment"], row["release"]
        browser = browser_and_os(row["user_agent"])[0]
        key = (project, start, environment, release, page, browser)
        c = partials.get(key)
        if c is None:
            c = partials[key] = {"project": project, "minute": start, "environment": environment,
                                 "release": release, "page": page, "browser": browser, "events": 1}
        else:
            c["events"] += 1
        value = _count(c, table, row, patterns)
        if value is not None:
            observed.append((c, value))
    # the sketches after every counter, each series' in the order first observed
    for c, (name, value) in observed:
        sketch = c.get(name)
        if sketch is None:
            c[name] = {key_of(value): 1}
        else:
            k = key_of(value)
            sketch[k] = sketch.get(k, 0) + 1
    return partials


def rollup_one(table: str, row: dict[str, Any], ts_ms: int, page: str, rules: RollupRules
               ) -> tuple[SeriesKey, dict[str, Any]]:
    """``rollup_series`` of one event, as its only (key, row): the same row, without the dicts and
    the loop a message of several events needs (most raw messages hold one event, issue 14)."""
    window_ms = rules.window_s * 1000
    return rollup_one_at(table, row, (ts_ms - ts_ms % window_ms) // 1000, page, rules.checkout_patterns)


def rollup_one_at(table: str, row: dict[str, Any], start: int, page: str, checkout_patterns: Sequence[str]
                  ) -> tuple[SeriesKey, dict[str, Any]]:
    """``rollup_one`` of an event whose window ``start`` (epoch seconds) the caller has already
    worked out (the worker does, for the lateness): ~4 % of the processor's instructions less."""
    project, environment, release = row["project"], row["environment"], row["release"]
    browser = browser_and_os(row["user_agent"])[0]
    c = {"project": project, "minute": start, "environment": environment, "release": release, "page": page,
         "browser": browser, "events": 1}
    observed = _count(c, table, row, checkout_patterns)
    if observed is not None:  # the sketch after every counter, as in ``rollup_series``
        c[observed[0]] = {key_of(observed[1]): 1}
    return (project, start, environment, release, page, browser), c


# The tables whose events ``_count`` may observe a sketch for (a map with integer keys, which orjson
# writes only with ``OPT_NON_STR_KEYS``): a partial of another table's event dumps without the option.
SKETCH_TABLES = frozenset(("vitals", "api_calls"))


def _count(c: dict[str, Any], table: str, row: dict[str, Any], patterns: Sequence[str]
           ) -> tuple[str, float] | None:
    """Count one event (its storage ``table`` and ``row``) in the partial row ``c`` of its series;
    returns the (sketch, value) it observes, if any, for the caller to add after every counter
    (only for ``SKETCH_TABLES``)."""
    get = c.get
    if table == "errors":
        if not row.get("noise"):  # known noise (extensions, ResizeObserver...) stays out of error rates
            c["errors"] = get("errors", 0) + 1
    elif table == "vitals":
        c["vitals"] = get("vitals", 0) + 1
        name, value = row["name"], row["value"]
        vital = _VITAL_COLUMNS.get(name)
        if vital is not None:  # ``rating``, with the columns precomputed
            sketch, good, poor, good_col, ni_col, poor_col = vital
            col = good_col if value <= good else poor_col if value > poor else ni_col
            c[col] = get(col, 0) + 1
            return sketch, value
        if name == "LONG_TASK" and value > LONG_TASK_MS:
            c["long_tasks"] = get("long_tasks", 0) + 1
            c["long_task_blocking_ms"] = get("long_task_blocking_ms", 0.0) + (value - LONG_TASK_MS)
    elif table == "actions":
        c["actions"] = get("actions", 0) + 1
        kind = row["kind"]
        if kind == "pageview":
            c["pageviews"] = get("pageviews", 0) + 1
        elif kind == "click":
            c["clicks"] = get("clicks", 0) + 1
    elif table == "api_calls":
        c["api_events"] = get("api_events", 0) + 1
        duration, ok = row["duration_ms"], row["ok"]
        if row["kind"] == "resource":
            c["resources"] = get("resources", 0) + 1
            if not ok:
                c["resource_failures"] = get("resource_failures", 0) + 1
            if duration > SLOW_RESOURCE_MS:
                c["slow_resources"] = get("slow_resources", 0) + 1
        else:
            c["api_calls"] = get("api_calls", 0) + 1
            c["api_duration_ms"] = get("api_duration_ms", 0.0) + duration
            if not ok:
                c["api_failures"] = get("api_failures", 0) + 1
            if _is_checkout(row["request_url"], patterns):
                c["checkout_calls"] = get("checkout_calls", 0) + 1
                if not ok:
                    c["checkout_failures"] = get("checkout_failures", 0) + 1
            return "api_latency", duration
    return None


def _add_buckets(target: dict[int, int], buckets: dict[Any, int]) -> None:
    """Add one sketch's ``{key: count}`` into ``target``. Keys become ints: after a JSON round trip
    they are strings, and ``"5"`` and ``5`` must land in one bucket (a map has one key type)."""
    if buckets and type(next(iter(buckets))) is not int:
        buckets = {int(b): n for b, n in buckets.items()}
    get = target.get
    for b, n in buckets.items():
        target[b] = get(b, 0) + n


def series_key(row: dict[str, Any]) -> SeriesKey:
    """A partial row's series: its ``KEY_COLUMNS`` values, in that order (labels may be absent)."""
    get = row.get
    return (row["project"], row["minute"], get("environment"), get("release"), get("page"), get("browser"))


def merge_rollup_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the same series (``KEY_COLUMNS``: project, minute and every label) merged into one,
    first-seen order kept: numbers (counters, sums) add up, sketch bucket maps add per key, exactly
    what ClickHouse's AggregatingMergeTree and ``evaluate.merge`` do, so the merged rows read the
    same everywhere. The inputs are not modified.

    Example::

        merge_rollup_rows([{..."minute": 60, "page": "/a", "errors": 1, "api_latency": {700: 1}},
                           {..."minute": 60, "page": "/a", "errors": 2, "api_latency": {700: 2}}])
        # -> [{..."minute": 60, "page": "/a", "errors": 3, "api_latency": {700: 3}}]
    """
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = series_key(row)
        into = merged.get(key)
        if into is None:
            into = merged[key] = dict(row)
            for col, value in row.items():
                if type(value) is dict:
                    buckets: dict[int, int] = {}
                    _add_buckets(buckets, value)
                    into[col] = buckets
            continue
        _add_row(into, row)
    return list(merged.values())


def _add_row(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Add ``row``'s counters and sketches to ``into``, the merged row of the same series."""
    for col, value in row.items():
        if col in _KEY_SET:
            continue
        kind = type(value)
        if kind is int or kind is float:
            into[col] = into.get(col, 0) + value
        elif kind is dict:
            target = into.get(col)
            if target is None:
                target = into[col] = {}
            _add_buckets(target, value)
        else:
            raise ValueError(f"rollup column {col!r} is neither a number nor a sketch: {value!r}")


def fold_rollup_rows(merged: dict[tuple[Any, ...], dict[str, Any]], rows: Iterable[dict[str, Any]]) -> None:
    """``merge_rollup_rows`` carried across calls (a batch's messages in turn), into ``merged``
    (series key -> row, first-seen order): ``list(merged.values())`` after any number of calls is
    ``merge_rollup_rows`` of all the rows, in the same order and with the same sums (the additions
    happen in the same order). Takes ownership: the first row of a series *becomes* its merged row
    and is changed by the later ones, nothing is copied; hand over rows nobody reads any more, with
    integer sketch keys (``rollup_rows_timed``'s). The worker folds ``rollup_series``' output, which
    has the keys already (``fold_rollup_series``)."""
    for row in rows:
        key = series_key(row)
        into = merged.get(key)
        if into is None:
            merged[key] = row
            continue
        _add_row(into, row)


def fold_rollup_series(merged: dict[SeriesKey, dict[str, Any]], series: dict[SeriesKey, dict[str, Any]]) -> None:
    """``fold_rollup_rows`` of ``rollup_series``'s output, whose keys are the series keys already
    (the same tuple ``fold_rollup_rows`` reads back out of each row). Takes ownership the same way."""
    for key, row in series.items():
        into = merged.get(key)
        if into is None:
            merged[key] = row
        else:
            add_series_row(into, row)


def add_series_row(into: dict[str, Any], row: dict[str, Any]) -> None:
    """``_add_row`` of a row made by ``rollup_series`` or ``rollup_one`` (the key columns first, in
    ``KEY_COLUMNS`` order, integer sketch keys), which ``into`` now owns: its columns after the
    key are read by position, and a sketch ``into`` lacks is taken over, not copied."""
    for col, value in islice(row.items(), _KEYS, None):
        if type(value) is dict:
            target = into.get(col)
            if target is None:
                into[col] = value
            else:
                _add_buckets(target, value)
        else:
            into[col] = into.get(col, 0) + value


def _split_row(row: dict[str, Any], max_bytes: int) -> list[bytes]:
    """One row too big for a message, as several rows of the same series: the first carries the
    numbers, the others slices of the sketches. Their sum is the row (rows merge by adding)."""
    base = {k: v for k, v in row.items() if not isinstance(v, dict)}
    head = dumps(base)
    if len(head) + 2 > max_bytes:
        raise ValueError(f"a rollup row's key and counters alone take {len(head)} bytes, more than the "
                         f"partial message limit of {max_bytes}")
    keys = {k: row[k] for k in KEY_COLUMNS if k in row}
    out = [head]
    for name, buckets in row.items():
        if not isinstance(buckets, dict):
            continue
        # the array's brackets, the keys, ',"name":{' and '}'
        room = max_bytes - 2 - len(dumps(keys)) - len(name) - 6
        chunk: dict[int, int] = {}
        size = 0
        for b, n in buckets.items():
            item = len(str(b)) + len(str(n)) + 4  # "key":count and a comma
            if chunk and size + item > room:
                out.append(dumps({**keys, name: chunk}, option=OPT_NON_STR_KEYS))
                chunk, size = {}, 0
            chunk[b] = n
            size += item
        if chunk:
            out.append(dumps({**keys, name: chunk}, option=OPT_NON_STR_KEYS))
    return out


def alert_partial_messages(rows: Iterable[dict[str, Any]], max_bytes: int, merged: bool = False
                           ) -> list[tuple[bytes, bytes]]:
    """The ``topic_rollup_partials`` messages of a batch's rollup rows: rows merged per series
    (``merge_rollup_rows``), grouped per project (key = project), each value a JSON array of rows of
    at most ``max_bytes`` (``PULSE_ALERTS_PARTIALS_MAX_BYTES``); a project with more rows gets more
    messages, and a single row above the limit is cut into rows of the same series that add up to it.
    ``merged``: the rows are merged per series already (``fold_rollup_series``), not merged again.

    Example::

        for key, value in alert_partial_messages(batch_rollup_rows, settings.alerts.partials_max_bytes):
            producer.send(settings.kafka.topic_rollup_partials, key=key, value=value)
    """
    per_project: dict[str, list[bytes]] = {}
    for row in (rows if merged else merge_rollup_rows(rows)):
        line = dumps(row, option=OPT_NON_STR_KEYS)
        lines = [line] if len(line) + 2 <= max_bytes else _split_row(row, max_bytes)
        per_project.setdefault(str(row["project"]), []).extend(lines)
    out: list[tuple[bytes, bytes]] = []
    for project, lines in per_project.items():
        key = project.encode()
        chunk: list[bytes] = []
        size = 2
        for line in lines:
            if chunk and size + len(line) + 1 > max_bytes:
                out.append((key, b"[" + b",".join(chunk) + b"]"))
                chunk, size = [], 2
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            out.append((key, b"[" + b",".join(chunk) + b"]"))
    return out
