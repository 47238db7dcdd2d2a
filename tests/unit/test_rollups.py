"""Minute partials (pure): ratings at the thresholds, counters, sketches that merge exactly."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.rollups.minute import RollupRules, rating, rollup_rows
from pipeline.rollups.sketch import ZERO_KEY, key_of, quantile

T = datetime(2026, 11, 23, 10, 0, 30, tzinfo=timezone.utc)
ENV = {"project": "shop", "environment": "production", "release": "r1", "route": "/cart", "url": "",
       "user_agent": "", "timestamp": T}


def row(**kw: Any) -> dict[str, Any]:
    return {**ENV, **kw}


@pytest.mark.parametrize("name,value,expected", [
    ("LCP", 2500, "good"), ("LCP", 2500.1, "ni"), ("LCP", 4000, "ni"), ("LCP", 4000.1, "poor"),
    ("INP", 200, "good"), ("INP", 501, "poor"), ("CLS", 0.1, "good"), ("CLS", 0.25, "ni"), ("CLS", 0.26, "poor"),
    ("FCP", 1800, "good"), ("TTFB", 1800, "ni"), ("FID", 300.5, "poor"), ("TTI", 5000, None),
])
def test_ratings_follow_the_spec_thresholds(name: str, value: float, expected: str | None) -> None:
    assert rating(name, value) == expected


def test_one_message_becomes_one_partial_per_series_and_minute() -> None:
    rows = [
        ("vitals", row(name="LCP", value=2400.0)), ("vitals", row(name="LCP", value=4100.0)),
        ("vitals", row(name="LONG_TASK", value=120.0)), ("vitals", row(name="LONG_TASK", value=40.0)),
        ("errors", row()), ("actions", row(kind="pageview")), ("actions", row(kind="click")),
        ("api_calls", row(kind="api", duration_ms=300.0, ok=True, request_url="https://x/api/checkout")),
        ("api_calls", row(kind="api", duration_ms=900.0, ok=False, request_url="https://x/api/checkout")),
        ("api_calls", row(kind="resource", duration_ms=1500.0, ok=False, request_url="https://x/a.js")),
        ("errors", row(timestamp=T + timedelta(minutes=1))),  # next minute: a second partial
        ("errors", row(route="/", timestamp=T)),  # another page: a third
    ]
    out = rollup_rows(rows, RollupRules())
    assert len(out) == 3
    cart = next(r for r in out if r["page"] == "/cart" and r["minute"] == int(T.timestamp()) // 60 * 60)
    assert (cart["events"], cart["errors"], cart["vitals"], cart["pageviews"], cart["clicks"]) == (10, 1, 4, 1, 1)
    assert (cart["lcp_good"], cart["lcp_poor"], cart.get("lcp_ni", 0)) == (1, 1, 0)
    assert (cart["long_tasks"], cart["long_task_blocking_ms"]) == (1, 70.0)
    assert (cart["api_calls"], cart["api_failures"], cart["checkout_calls"], cart["checkout_failures"]) == (2, 1, 2, 1)
    assert (cart["resources"], cart["resource_failures"], cart["slow_resources"]) == (1, 1, 1)
    assert sum(cart["lcp"].values()) == 2 and sum(cart["api_latency"].values()) == 2


def test_merged_sketches_give_percentiles_within_one_percent() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(7.6, 0.6) for _ in range(20_000)] + [0.0] * 5
    merged: dict[int, int] = {}
    for chunk in range(0, len(values), 37):  # many small partials, merged by summing buckets
        part: dict[int, int] = {}
        for v in values[chunk:chunk + 37]:
            part[key_of(v)] = part.get(key_of(v), 0) + 1
        for k, c in part.items():
            merged[k] = merged.get(k, 0) + c
    ordered = sorted(values)
    for q in (0.5, 0.75, 0.95, 0.99):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(quantile(merged, q) - exact) / exact <= 0.01  # type: ignore[operator]
    assert key_of(0.0) == ZERO_KEY and quantile({}, 0.5) is None


def test_key_of_is_ddsketchs_mapping_with_the_zero_and_top_buckets() -> None:
    """``key_of`` inlines ``MAPPING.key``'s arithmetic: it must give the same bucket for every value."""
    from pipeline.rollups.sketch import MAPPING, MAX_KEY, _MIN_POSITIVE

    rnd = random.Random(5)
    values = [rnd.lognormvariate(5, 3) for _ in range(20_000)] + [float(i) for i in range(1, 5000)] + [
        0.25, 0.5, 1.0, 2.0, 1e-300, 1e300, _MIN_POSITIVE * 1.0000001, 3, 7]
    for v in values:
        assert key_of(v) == (ZERO_KEY if v <= _MIN_POSITIVE else min(MAPPING.key(v), MAX_KEY)), v
    assert sum(key_of(v) == ZERO_KEY for v in values) == 1  # 1e-300: the others have real buckets
    assert key_of(0.0) == key_of(-1.0) == key_of(float("nan")) == key_of(_MIN_POSITIVE) == ZERO_KEY
    assert key_of(1e300) == MAX_KEY and isinstance(key_of(3), int)
