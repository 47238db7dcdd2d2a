"""The Sessionizer against sessions whose answer is known from construction (pipeline.simulate_sessions)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import pytest

from pipeline.contract import EVENT_ADAPTER
from pipeline.sessions.events import session_event
from pipeline.sessions.sessionizer import DeadClick, Emitted, Sessionizer, SessionRules
from pipeline.simulate_sessions import EDGE_SESSION_IDS, SessionScenario, generate_session_scenario

START = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
LATENESS_MS = 60_000
SEEDS = (11, 2024)


@lru_cache(maxsize=None)
def scenario(seed: int) -> SessionScenario:
    return generate_session_scenario(seed=seed, start=START)


def run(batches: list[list[dict[str, Any]]]) -> Emitted:
    """Feed batches in delivery order, watermark = max seen - lateness after each; then flush."""
    s = Sessionizer(SessionRules())
    out, max_seen = Emitted(), -(2**62)
    for batch in batches:
        events = [session_event(EVENT_ADAPTER.validate_python(e)) for e in batch]
        events = [e for e in events if e is not None]
        if not events:
            continue
        assert s.add(events) == []  # nothing is late: delivery disorder stays within the lateness
        max_seen = max(max_seen, *(e.ts_ms for e in events))
        out.extend(s.advance(max_seen - LATENESS_MS))
    out.extend(s.flush_all())
    assert s.active_sessions == 0
    return out


@lru_cache(maxsize=None)
def emitted(seed: int, batching: str) -> Emitted:
    sc = scenario(seed)
    if batching == "flush":
        return run([f.events for f in sc.flushes])
    events = sc.events  # fixed-size batches that cut across flushes and sessions
    return run([events[i:i + 37] for i in range(0, len(events), 37)])


def session_keys(sessions: Any) -> Counter[tuple[Any, ...]]:
    return Counter((s.session_id, s.start_ms, s.end_ms, s.duration_ms, s.pageviews, s.clicks, s.rage_clicks,
                    s.dead_clicks, s.errors, s.bounce) for s in sessions)


HAS_EVENT_ID = "event_id" in {f.name for f in dataclasses.fields(DeadClick)}


def dead_keys(out: Emitted) -> Counter[tuple[str, ...]]:
    if HAS_EVENT_ID:
        return Counter((d.session_id, d.event_id, d.selector, d.kind) for d in out.dead_clicks)
    return Counter((d.session_id, d.selector, d.kind) for d in out.dead_clicks)


def truth_dead_keys(sc: SessionScenario) -> Counter[tuple[str, ...]]:
    if HAS_EVENT_ID:
        return Counter((d.session_id, d.event_id, d.selector, d.kind) for d in sc.truth.dead_clicks)
    return Counter((d.session_id, d.selector, d.kind) for d in sc.truth.dead_clicks)


# ---------------------------------------------------------------- the scenario itself


@pytest.mark.parametrize("seed", SEEDS)
def test_every_event_is_valid_under_the_contract_and_well_placed(seed: int) -> None:
    sc = scenario(seed)
    validated = [EVENT_ADAPTER.validate_python(e) for e in sc.events]
    assert len({str(e.event_id) for e in validated}) == len(validated)  # unique ids
    assert all(e.event_id.version == 4 for e in validated)
    assert all(START <= e.timestamp <= START + timedelta(hours=3) for e in validated)
    sends = [f.send_at for f in sc.flushes]
    assert sends == sorted(sends)
    by_id = {str(e.event_id): e for e in validated}
    for f in sc.flushes:
        assert {e["session_id"] for e in f.events} == {f.session_id}
        for e in f.events:  # sent after it happened, and never later than the allowed disorder
            ts = by_id[e["event_id"]].timestamp
            assert ts < f.send_at <= ts + timedelta(milliseconds=20_000)
    assert set(EDGE_SESSION_IDS) <= {f.session_id for f in sc.flushes}
    assert len({f.session_id for f in sc.flushes}) == len(EDGE_SESSION_IDS) + 60


def test_delivery_is_really_out_of_order() -> None:
    sc = scenario(SEEDS[0])
    ts = {e["event_id"]: EVENT_ADAPTER.validate_python(e).timestamp for e in sc.events}
    per_session: dict[str, list[datetime]] = {}
    for e in sc.events:
        per_session.setdefault(e["session_id"], []).append(ts[e["event_id"]])
    disordered = [sid for sid, times in per_session.items() if times != sorted(times)]
    assert len(disordered) > len(per_session) // 3
    # some events slipped into a later flush than events that happened after them
    slipped = 0
    seen_max: dict[str, datetime] = {}
    for f in sc.flushes:
        times = [ts[e["event_id"]] for e in f.events]
        if f.session_id in seen_max and min(times) < seen_max[f.session_id]:
            slipped += 1
        seen_max[f.session_id] = max(seen_max.get(f.session_id, min(times)), *times)
    assert slipped > 0


def test_truth_covers_the_interesting_cases() -> None:
    t = scenario(SEEDS[0]).truth
    assert t.session_count > len(EDGE_SESSION_IDS) + 60  # some random sessions split on a long idle gap
    assert 0 < t.bounces < t.session_count
    assert t.total_rage >= 5 and {r.clicks for r in t.rage_clicks} >= {3, 6}
    assert t.total_dead >= 10 and {d.kind for d in t.dead_clicks} == {"unresponsive", "non_interactive"}
    assert sum(s.errors for s in t.sessions) > 0
    assert all(s.duration_ms == s.end_ms - s.start_ms for s in t.sessions)


def test_same_seed_same_scenario_other_seed_other_scenario() -> None:
    a = generate_session_scenario(seed=5, start=START, sessions=15)
    b = generate_session_scenario(seed=5, start=START, sessions=15)
    assert a.flushes == b.flushes and a.events == b.events and a.truth == b.truth
    c = generate_session_scenario(seed=6, start=START, sessions=15)
    assert c.events != a.events and c.truth != a.truth


# ---------------------------------------------------------------- the Sessionizer agrees with the truth


@pytest.mark.parametrize("batching", ["flush", "fixed"])
@pytest.mark.parametrize("seed", SEEDS)
def test_sessionizer_matches_truth(seed: int, batching: str) -> None:
    sc, out = scenario(seed), emitted(seed, batching)
    assert session_keys(out.sessions) == session_keys(sc.truth.sessions)
    assert Counter((r.session_id, r.rage.selector, r.rage.clicks) for r in out.rage_clicks) == Counter(
        (r.session_id, r.selector, r.clicks) for r in sc.truth.rage_clicks)
    assert {(d.session_id, d.selector, d.kind) for d in out.dead_clicks} == {
        (d.session_id, d.selector, d.kind) for d in sc.truth.dead_clicks}
    assert len(out.dead_clicks) == sc.truth.total_dead
    assert dead_keys(out) == truth_dead_keys(sc)


# sid -> (sessions, sorted rage burst sizes, sorted dead kinds, bounce per session or None = not checked,
#         pageviews per session or None)
EDGE_EXPECTED: dict[str, tuple[int, list[int], list[str], list[bool] | None, list[int] | None]] = {
    "sess-edge-rage-999ms": (1, [3], [], None, None),
    "sess-edge-rage-1000ms": (1, [3], [], None, None),
    "sess-edge-rage-1001ms": (1, [], [], None, None),
    "sess-edge-rage-29px": (1, [3], [], None, None),
    "sess-edge-rage-31px": (1, [], [], None, None),
    "sess-edge-rage-burst-6": (1, [6], [], None, None),
    "sess-edge-rage-alternating-selectors": (1, [], [], None, None),
    "sess-edge-idle-29min": (1, [], [], [False], [2]),
    "sess-edge-idle-30min": (1, [], [], [False], [2]),
    "sess-edge-idle-31min": (2, [], [], None, [1, 1]),
    "sess-edge-bounce-9999ms": (1, [], [], [True], [1]),
    "sess-edge-bounce-10000ms": (1, [], [], [False], [1]),
    "sess-edge-bounce-two-pageviews": (1, [], [], [False], [2]),
    "sess-edge-dead-mutation-2500ms": (1, [], [], None, None),
    "sess-edge-dead-mutation-2501ms": (1, [], ["unresponsive"], None, None),
    "sess-edge-dead-mutation-null": (1, [], ["unresponsive"], None, None),
    "sess-edge-dead-navigated": (1, [], [], None, None),
    "sess-edge-dead-observed-1200ms": (1, [], [], None, None),
    "sess-edge-dead-non-interactive": (1, [], ["non_interactive"], None, None),
    "sess-edge-dead-unobserved": (1, [], [], None, None),
}


def test_edge_table_names_every_edge_case() -> None:
    assert set(EDGE_EXPECTED) == set(EDGE_SESSION_IDS)


@pytest.mark.parametrize("sid", EDGE_SESSION_IDS)
def test_edge_case(sid: str) -> None:
    n, rage, dead, bounce, pageviews = EDGE_EXPECTED[sid]
    sc, out = scenario(SEEDS[0]), emitted(SEEDS[0], "flush")
    truth = sc.truth.for_session(sid)
    got_sessions = sorted((s for s in out.sessions if s.session_id == sid), key=lambda s: s.start_ms)
    for name, sessions, rages, deads in (
        ("truth", truth.sessions, [r.clicks for r in truth.rage_clicks], [d.kind for d in truth.dead_clicks]),
        ("sessionizer", got_sessions, [r.rage.clicks for r in out.rage_clicks if r.session_id == sid],
         [d.kind for d in out.dead_clicks if d.session_id == sid]),
    ):
        assert len(sessions) == n, name
        assert sorted(rages) == rage and sum(s.rage_clicks for s in sessions) == len(rage), name
        assert sorted(deads) == dead and sum(s.dead_clicks for s in sessions) == len(dead), name
        if bounce is not None:
            assert [s.bounce for s in sessions] == bounce, name
        if pageviews is not None:
            assert [s.pageviews for s in sessions] == pageviews, name


def test_same_seed_as_the_traffic_simulator_gives_different_event_ids() -> None:
    """The demo runs both generators with one seed; shared ids would be dropped as duplicates."""
    from pipeline.simulate import generate_scenario

    start = datetime(2026, 11, 23, 8, tzinfo=timezone.utc)
    traffic = {e["event_id"] for e in generate_scenario(25, seed=7, start=start).events}
    sessions = {e["event_id"] for e in generate_session_scenario(seed=7, start=start, sessions=10).events}
    assert traffic.isdisjoint(sessions)
