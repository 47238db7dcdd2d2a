from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from pipeline.ingest.validate import validate_items
from pipeline.simulate import generate_scenario

START = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


def test_same_seed_same_traffic() -> None:
    a = generate_scenario(20, seed=3, start=START)
    b = generate_scenario(20, seed=3, start=START)
    assert a.events == b.events and a.truth == b.truth
    assert generate_scenario(20, seed=4, start=START).events != a.events


def test_truth_matches_what_validation_accepts() -> None:
    s = generate_scenario(150, seed=11, start=START, malformed_ratio=0.05)
    out = validate_items(s.events, step="worker", source="sim", now=START)
    assert len(out.events) == s.truth.valid
    assert len(out.dead_letters) == s.truth.malformed > 0
    assert Counter(e.type for e in out.events) == s.truth.valid_by_type
    assert len({e.event_id for e in out.events}) == s.truth.valid  # unique ids


def test_flushes_hold_one_session_and_are_time_ordered() -> None:
    s = generate_scenario(50, seed=5, start=START, spread_s=30)
    sends = [f.send_at for f in s.flushes]
    assert sends == sorted(sends)
    for f in s.flushes:
        assert {e.get("session_id", f.session_id) for e in f.events} <= {f.session_id} | {
            e.get("session_id") for e in f.events if str(e.get("session_id", "")).startswith("sess-bad-")}
