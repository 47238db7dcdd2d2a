"""The load generator's traffic has the profile's shape, and its truth matches what it emitted."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timezone

import orjson
import pytest

from pipeline.ingest.validate import decode_message
from pipeline.simulate_load import (FLUSH_INTERVAL_MS, KIND_FOR_TYPE, RETRY_DELAY_MS, SEND_DELAY_MS, TABLE_FOR_TYPE,
                                    collector_requests, generate_load)

END_MS = 1_796_000_000_000
NOW = datetime.fromtimestamp(END_MS / 1000, tz=timezone.utc)


def decoded(plan):  # type: ignore[no-untyped-def]
    for m in plan.messages:
        yield m, decode_message(m.value, step="worker", source="t:0:0", now=NOW)


@pytest.fixture(scope="module")
def flush_plan():  # type: ignore[no-untyped-def]
    return generate_load(events=40_000, sessions=1_000, shape="flush", seed=3, end_ms=END_MS)


def test_same_seed_same_bytes() -> None:
    a = generate_load(events=2_000, sessions=50, seed=9, end_ms=END_MS)
    b = generate_load(events=2_000, sessions=50, seed=9, end_ms=END_MS)
    c = generate_load(events=2_000, sessions=50, seed=10, end_ms=END_MS)
    assert [m.value for m in a.messages] == [m.value for m in b.messages]
    assert [m.value for m in a.messages] != [m.value for m in c.messages]


def test_flushes_hold_one_to_five_events_of_one_session_and_topic(flush_plan) -> None:  # type: ignore[no-untyped-def]
    sizes = Counter()
    for m, d in decoded(flush_plan):
        if m.malformed:
            continue
        assert 1 <= len(d.events) <= 5 and not d.dead_letters
        assert {e.session_id for e in d.events} == {m.key.decode()}
        assert {KIND_FOR_TYPE[e.type] for e in d.events} == {m.topic_kind}
        if m.topic_kind == "errors":
            assert len(d.events) == 1  # one Sentry envelope per error
        sizes[len(d.events)] += 1
    assert set(sizes) == {1, 2, 3, 4, 5}
    assert 2.4 <= flush_plan.events_per_message <= 2.8
    assert [m.send_ms for m in flush_plan.messages] == sorted(m.send_ms for m in flush_plan.messages)


def event_times(m) -> list[int]:  # type: ignore[no-untyped-def]
    doc = orjson.loads(m.value)
    return [int(datetime.fromisoformat(e["timestamp"]).timestamp() * 1000) for e in (doc if isinstance(doc, list) else [doc])]


def first_sends_and_retries(plan):  # type: ignore[no-untyped-def]
    seen: set[bytes] = set()
    for m in plan.messages:
        if not m.malformed:
            yield m, m.value in seen
            seen.add(m.value)


@pytest.mark.parametrize("shape", ["flush", "one"])
def test_a_flush_holds_events_of_one_flush_interval_and_only_retries_arrive_later(shape: str) -> None:
    """As posthog-js: the queue's timer starts with its first event, so no flush holds events further apart
    than the interval nor is sent later than interval + network after its first event; retries come
    5-30 s after their last event. (The generator before this held events minutes apart.)"""
    plan = generate_load(events=40_000, sessions=1_000, shape=shape, seed=3, end_ms=END_MS)
    retries = 0
    window = FLUSH_INTERVAL_MS if shape == "flush" else 0
    for m, retry in first_sends_and_retries(plan):
        times = event_times(m)
        assert max(times) - min(times) <= window
        if retry:
            retries += 1
            assert RETRY_DELAY_MS[0] <= m.send_ms - max(times) < RETRY_DELAY_MS[1]
        else:
            assert 0 <= m.send_ms - min(times) < window + SEND_DELAY_MS[1]
    assert retries / len(plan.messages) == pytest.approx(0.015, rel=0.3)


@pytest.mark.parametrize("shape", ["flush", "one"])
def test_in_send_order_no_event_lies_a_minute_behind_the_newest_sent_before_it(shape: str) -> None:
    """What the sessions watermark (60 s allowed lateness) needs of realistic traffic: in the order a
    broker receives it, every event is less than 35 s (a retry's 30 s + the flush interval) behind
    the newest event time received before it, across all sessions, so per partition too."""
    plan = generate_load(events=40_000, sessions=1_000, shape=shape, seed=4, end_ms=END_MS)
    newest = 0
    behind = []
    for m in plan.messages:
        if m.malformed:
            continue
        for t in event_times(m):
            newest = max(newest, t)
            behind.append(newest - t)
    assert max(behind) < RETRY_DELAY_MS[1] + FLUSH_INTERVAL_MS + SEND_DELAY_MS[1]
    assert sorted(behind)[len(behind) // 2] < FLUSH_INTERVAL_MS


def test_mean_events_per_flush_stays_near_the_profile_for_sessions_of_twenty_events() -> None:
    for seed in (1, 2):
        plan = generate_load(events=20_000, sessions=1_000, shape="flush", seed=seed, end_ms=END_MS)
        assert 2.45 <= plan.events_per_message <= 2.75
        sizes = Counter(m.events for m in plan.messages if not m.malformed)
        assert set(sizes) == {1, 2, 3, 4, 5}


def test_event_mix_follows_the_profile(flush_plan) -> None:  # type: ignore[no-untyped-def]
    kinds: Counter[str] = Counter()
    for m, d in decoded(flush_plan):
        for e in d.events:
            if e.type == "action":
                kinds["observation" if e.action.observed else e.action.kind] += 1
            else:
                kinds[e.type] += 1
    total = sum(kinds.values())
    share = {k: v / total for k, v in kinds.items()}
    for kind, expected in (("click", 0.25), ("vital", 0.27), ("observation", 0.20), ("scroll", 0.17),
                           ("pageview", 0.055), ("visibility", 0.028), ("error", 0.022)):
        assert share[kind] == pytest.approx(expected, rel=0.2), kind
    assert share["api"] == pytest.approx(0.05, rel=0.2)
    assert 0 < share["form_start"] + share["form_submit"] < 0.006


def test_truth_counts_unique_valid_events_and_each_malformed_record_is_one_dead_letter(flush_plan) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, str] = {}
    repeated = dead = 0
    for m, d in decoded(flush_plan):
        if m.malformed:
            assert not d.events and len(d.dead_letters) == 1
            dead += 1
            continue
        for e in d.events:
            if str(e.event_id) in seen:
                repeated += 1
            seen[str(e.event_id)] = TABLE_FOR_TYPE[e.type]
    truth = flush_plan.truth
    assert Counter(seen.values()) == truth.rows_by_table
    assert repeated == truth.duplicate_events > 0
    assert dead == truth.malformed == sum(m.malformed for m in flush_plan.messages)
    records = len(flush_plan.messages) - repeated
    assert truth.malformed / records == pytest.approx(0.001, rel=0.3)
    assert set(truth.malformed_by_kind) == {"truncated-json", "non-utf8", "wrong-types", "unknown-type", "oversize"}
    retried = sum(m.events for m in flush_plan.messages if not m.malformed) - truth.valid
    assert retried / truth.valid == pytest.approx(0.015, rel=0.3)


def test_timestamps_lie_within_the_span_before_the_end(flush_plan) -> None:  # type: ignore[no-untyped-def]
    stamps = [e.timestamp.timestamp() * 1000 for _, d in decoded(flush_plan) for e in d.events]
    assert END_MS - 900_000 <= min(stamps) and max(stamps) <= END_MS + 10_000


def test_one_event_per_message_and_batch50_shapes() -> None:
    one = generate_load(events=5_000, sessions=100, shape="one", seed=1, end_ms=END_MS)
    assert all(m.events == 1 and m.value[:1] != b"[" for m in one.messages)
    big = generate_load(events=5_000, sessions=20, shape="batch50", seed=1, end_ms=END_MS)
    assert max(m.events for m in big.messages) == 50
    assert big.events_per_message > 20


def test_collector_requests_are_one_session_each_and_cover_every_valid_event() -> None:
    plan = generate_load(events=5_000, sessions=100, shape="one", seed=2, end_ms=END_MS)
    requests = collector_requests(plan, random.Random(1))
    assert all(1 <= len(r) <= 10 for r in requests)
    ids = Counter()
    for r in requests:
        events = [orjson.loads(v) for v in r]
        assert len({e["session_id"] for e in events}) == 1
        ids.update(e["event_id"] for e in events)
    assert len(ids) == plan.truth.valid
    assert sum(ids.values()) == plan.truth.valid + plan.truth.duplicate_events
    with pytest.raises(ValueError, match="shape 'one'"):
        collector_requests(generate_load(events=100, sessions=5, end_ms=END_MS), random.Random(1))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        generate_load(events=10, sessions=1, shape="huge", end_ms=END_MS)
    with pytest.raises(ValueError, match=">= 1"):
        generate_load(events=0, sessions=1, end_ms=END_MS)
