"""Minute rollups end to end (real Kafka, worker, sink, chDB) against the simulator's events:
counts exact per minute and type (duplicates and late events included), ratings exact, and
p50/p75/p95/p99 of each vital within 1 % of the exact value, read from the daily merge."""

from __future__ import annotations

import asyncio
import copy
import random
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.contract import EVENT_ADAPTER
from pipeline.rollups.minute import rating
from pipeline.settings import Settings
from pipeline.simulate import Flush, generate_scenario
from tests.integration.pipeline_procs import PipelineProcs
from tests.integration.test_sessions import produce, query

pytestmark = pytest.mark.integration
VITALS = ("LCP", "FCP", "TTFB", "CLS", "INP")


def valid(events: list[dict[str, Any]]) -> list[Any]:
    out = []
    for e in events:
        try:
            out.append(EVENT_ADAPTER.validate_python(e))
        except ValueError:
            pass
    return out


def test_minute_rollups_match_the_events(settings: Settings, tmp_path: Path) -> None:
    rng = random.Random(4)
    sc = generate_scenario(150, seed=11, start=datetime.now(timezone.utc) - timedelta(minutes=10), spread_s=300)
    flushes = list(sc.flushes)
    duplicates = [copy.deepcopy(f) for f in rng.sample(flushes, 25)]  # an SDK resending whole flushes
    late = []
    for f in rng.sample(flushes, 15):  # arrive at the very end, stamped an hour earlier
        events = []
        for e in f.events:
            e = copy.deepcopy(e)
            e["event_id"] = str(uuid.uuid4())
            if "timestamp" in e:
                e["timestamp"] = (datetime.fromisoformat(e["timestamp"]) - timedelta(hours=1)).isoformat()
            events.append(e)
        late.append(Flush(f.session_id, f.send_at, events))
    truth = valid([e for f in flushes + late for e in f.events])
    asyncio.run(produce(settings, flushes + duplicates + late))

    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        procs.start("worker")
        deadline, stored = time.monotonic() + 90, 0
        while time.monotonic() < deadline:
            rows = query(settings, "SELECT sum(events) FROM rollups_minute")
            stored = int(rows[0][0]) if rows and rows[0][0] != "\\N" else 0
            if stored >= len(truth):
                time.sleep(1.5)
                break
            time.sleep(0.5)
        assert int(query(settings, "SELECT sum(events) FROM rollups_minute")[0][0]) == len(truth), \
            procs.log("worker")[-2000:]

        # Per-minute error counts and totals by type: exact.
        minute = lambda e: int(e.timestamp.timestamp()) // 60 * 60  # noqa: E731
        want_errors = Counter(minute(e) for e in truth if e.type == "error")
        got_errors = Counter({int(m): int(n) for m, n in query(
            settings, "SELECT toUnixTimestamp(minute), sum(errors) FROM rollups_minute GROUP BY minute "
                      "HAVING sum(errors) > 0")})
        assert got_errors == want_errors
        by_type = Counter(e.type for e in truth)
        [[errors, vitals, actions, api]] = query(
            settings, "SELECT sum(errors), sum(vitals), sum(actions), sum(api_events) FROM rollups_minute")
        assert (int(errors), int(vitals), int(actions), int(api)) == (
            by_type["error"], by_type["vital"], by_type["action"], by_type["api"])

        # The hourly and daily merges hold the same totals (filled by ClickHouse from the minutes).
        for table in ("rollups_hour", "rollups_day"):
            assert int(query(settings, f"SELECT sum(events) FROM {table}")[0][0]) == len(truth)

        # Ratings exact; percentiles within 1 % of the exact value of the same rank.
        for name in VITALS:
            values = sorted(e.vital.value for e in truth if e.type == "vital" and e.vital.name == name)
            col = name.lower()
            [[good, ni, poor, p50, p75, p95, p99]] = query(
                settings, f"SELECT sum({col}_good), sum({col}_ni), sum({col}_poor), "
                          f"pulseQuantile(0.5, sumMap({col})), pulseQuantile(0.75, sumMap({col})), "
                          f"pulseQuantile(0.95, sumMap({col})), pulseQuantile(0.99, sumMap({col})) FROM rollups_day")
            ratings = Counter(rating(name, v) for v in values)
            assert (int(good), int(ni), int(poor)) == (ratings["good"], ratings["ni"], ratings["poor"]), name
            for q, got in zip((0.5, 0.75, 0.95, 0.99), (p50, p75, p95, p99)):
                exact = values[int(q * (len(values) - 1))]
                assert abs(float(got) - exact) <= 0.01 * exact, (name, q, got, exact)

        # Error grouping: each simulated error family is exactly one issue, never merged with another,
        # and the issues view counts every error of it (duplicates excluded, late ones included).
        per_family = query(settings, "SELECT tags['family'], uniqExact(group_id) FROM errors GROUP BY 1")
        assert per_family and all(int(n) == 1 for _, n in per_family), per_family
        per_group = query(settings, "SELECT group_id, uniqExact(tags['family']) FROM errors GROUP BY 1")
        assert len(per_group) == len(per_family) and all(int(n) == 1 for _, n in per_group)
        want = Counter(e.error.tags["family"] for e in truth if e.type == "error")
        got = {fam: int(n) for fam, n in query(
            settings, "SELECT any(e.tags['family']), any(i.events) FROM issues AS i "
                      "JOIN errors AS e ON e.group_id = i.fingerprint GROUP BY i.fingerprint")}
        assert got == dict(want)
    finally:
        procs.stop_all()
