"""The bounded alert buffer (pipeline/alerts/buffer.py, used by agents/alerts.PartitionAlerts) gives
exactly the alert events of the unbounded design it replaced (every raw partial kept, one per input
message), on random traffic; its series bound drops and counts; old state records still load."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.alerts import MINUTE_MS, PartitionAlerts
from pipeline.alerts.buffer import AlertBuffer, AlertLimits
from pipeline.alerts.enrich import Context, enrich
from pipeline.alerts.evaluate import AlertEvent, RuleEvaluator, WindowAggregate, merge, ux_aggregates
from pipeline.alerts.rules import RuleSet, load_rules, parse_rules
from pipeline.alerts.slo import SloEvaluator
from pipeline.rollups.minute import merge_rollup_rows

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 3_600_000  # an hour boundary

RULES = """
rules:
  - {name: error-rate, kind: ratio, numerator: errors, denominator: pageviews, window: 1m,
     thresholds: {warning: 0.1, critical: 0.3}, hysteresis: 0.2, min_volume: 3, group_by: [environment]}
  - {name: page-errors, kind: ratio, numerator: errors, denominator: pageviews, window: 2m, for: 2m,
     thresholds: {warning: 0.2}, group_by: [page, release], keep_firing_for: 2m}
  - {name: api-latency, kind: percentile, sketch: api_latency, quantile: p95, window: 5m,
     thresholds: {warning: 50, critical: 200}, min_volume: 2, group_by: [environment]}
  - {name: checkout, kind: ratio, numerator: checkout_failures, denominator: checkout_calls, window: 3m,
     thresholds: {critical: 0.2}}
  - {name: error-spike, kind: spike, counter: errors, window: 1m, baseline: 3m, thresholds: {warning: 2},
     min_volume: 2, group_by: [browser]}
  - {name: rage, kind: ux_spike, signal: rage_clicks, window: 1m, baseline: 2m, thresholds: {warning: 1.5}}
  - {name: lcp-poor, kind: vital_rating, vital: lcp, window: 5m, min_volume: 1, thresholds: {warning: 30}}
  - {name: new-issue, kind: issue, transitions: [new], level: warning}
slos:
  - {name: api-availability, kind: availability, objective: 0.9}
  - {name: lcp-good, kind: vital, vital: lcp, objective: 0.8, group_by: [environment]}
"""


def rules_of(tmp_path: Path, text: str = RULES) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_rules(path)


SHARED_RULES = parse_rules(yaml.safe_load(RULES))


class UnboundedPartition:
    """The design the buffer replaced (main before issue 14): every aggregate kept in a list."""

    def __init__(self, rules: RuleSet) -> None:
        self.evaluator = RuleEvaluator(rules)
        self.slos = SloEvaluator(rules) if rules.slos else None
        self.slo_next_ms: int | None = None
        self.context = Context()
        self.buffer: list[WindowAggregate] = []
        self.closed_until_ms = 0

    def add(self, aggregates: list[WindowAggregate]) -> int:
        late = 0
        for agg in aggregates:
            self.context.see_aggregate(agg)
            if agg.window_start_ms + agg.window_ms <= self.closed_until_ms:
                late += 1
            else:
                self.buffer.append(agg)
        return late

    def advance(self, closed_until_ms: int) -> list[AlertEvent]:
        if closed_until_ms <= self.closed_until_ms:
            return []
        self.closed_until_ms = closed_until_ms
        events = self.evaluator.advance(closed_until_ms, self.buffer)
        keep = [self.evaluator.needed_from_ms()]
        if self.slos is not None:
            end = closed_until_ms - closed_until_ms % MINUTE_MS
            start = self.slo_next_ms
            if start is None:
                start = min((a.window_start_ms - a.window_start_ms % MINUTE_MS for a in self.buffer), default=end)
            by_minute: dict[int, list[WindowAggregate]] = {}
            for a in self.buffer:
                by_minute.setdefault(a.window_start_ms - a.window_start_ms % MINUTE_MS, []).append(a)
            for minute in range(start, end, MINUTE_MS):
                events += self.slos.evaluate(minute, merge(by_minute.get(minute, ()), MINUTE_MS))
            self.slo_next_ms = max(start, end)
            keep.append(self.slo_next_ms)
        starts = [k for k in keep if k is not None]
        if starts:
            self.buffer = [a for a in self.buffer if a.window_start_ms >= min(starts)]
        return [enrich(e, self.context) for e in events]


def partial_row(minute: int, environment: str, release: str, page: str, browser: str, counts: list[int],
                latency: dict[int, int], lcp: dict[int, int]) -> dict[str, Any]:
    errors, pageviews, calls, failures, checkout, lcp_good, lcp_poor = counts
    row: dict[str, Any] = {"project": "shop", "minute": (T0 + minute * MINUTE_MS) // 1000, "environment": environment,
                           "release": release, "page": page, "browser": browser, "events": sum(counts),
                           "errors": errors, "pageviews": pageviews, "api_calls": calls,
                           "api_failures": min(failures, calls), "checkout_calls": checkout,
                           "checkout_failures": min(failures, checkout), "lcp_good": lcp_good, "lcp_poor": lcp_poor}
    if latency:
        row["api_latency"] = latency
    if lcp:
        row["lcp"] = lcp
    return row


SKETCH = st.dictionaries(st.integers(300, 1200), st.integers(1, 5), max_size=3)
ROW = st.builds(partial_row, st.integers(0, 14), st.sampled_from(["prod", "staging"]), st.sampled_from(["r1", "r2"]),
                st.sampled_from(["/", "/cart", "/checkout"]), st.sampled_from(["Chrome", "Safari"]),
                st.lists(st.integers(0, 6), min_size=7, max_size=7), SKETCH, SKETCH)
RAGE = st.builds(lambda minute, page: {"signal": "rage_click", "project": "shop", "page": page,
                                       "timestamp": T0 + minute * MINUTE_MS + 1000},
                 st.integers(0, 14), st.sampled_from(["/", "/cart"]))
# a batch: partial rows (one list per input message), rage clicks, and how far the clock then moves
BATCH = st.tuples(st.lists(st.lists(ROW, min_size=1, max_size=4), max_size=6), st.lists(RAGE, max_size=4),
                  st.integers(0, 3))


@settings(max_examples=120, deadline=None)
@given(st.lists(BATCH, min_size=1, max_size=14))
def test_alerts_from_merged_rows_in_the_bounded_buffer_equal_alerts_from_every_raw_partial(
        batches: list[Any]) -> None:
    rules = SHARED_RULES
    bounded, unbounded = PartitionAlerts(rules), UnboundedPartition(rules)
    clock = T0
    for messages, rage, minutes in batches:
        # the worker's new shape: one merged partials message per batch; the old: one per input message
        merged = merge_rollup_rows(r for message in messages for r in message)
        late = bounded.add([WindowAggregate.from_rollup_row(r) for r in merged])
        late_before = sum(unbounded.add([WindowAggregate.from_rollup_row(r) for r in m]) for m in messages)
        assert (late == 0) == (late_before == 0)
        bounded.add(ux_aggregates(rage))
        unbounded.add(ux_aggregates(rage))
        clock += minutes * MINUTE_MS
        assert [e.to_json() for e in bounded.advance(clock)] == [e.to_json() for e in unbounded.advance(clock)]
        # and through its bytes, as after a restart
        bounded = PartitionAlerts(rules, orjson.loads(bounded.to_bytes()))
    tail = clock + 20 * MINUTE_MS  # every window closes
    assert [e.to_json() for e in bounded.advance(tail)] == [e.to_json() for e in unbounded.advance(tail)]


def test_the_random_traffic_does_fire_alerts(tmp_path: Path) -> None:
    """Guard against a vacuous equality above: the same kind of input fires and resolves."""
    rules = rules_of(tmp_path)
    part = PartitionAlerts(rules)
    rows = [partial_row(m, "prod", "r1", "/cart", "Chrome", [5, 6, 4, 3, 2, 1, 5], {900: 3}, {1000: 3})
            for m in range(3)]
    part.add([WindowAggregate.from_rollup_row(r) for r in rows])
    events = part.advance(T0 + 30 * MINUTE_MS)
    assert {e.rule for e in events if e.status == "firing"} >= {"error-rate", "api-latency", "lcp-poor",
                                                                 "api-availability", "checkout"}
    assert {e.rule for e in events if e.status == "resolved"} >= {"error-rate"}


def test_buffer_holds_one_aggregate_per_rule_window_and_series_with_only_the_fields_read(tmp_path: Path) -> None:
    rules = rules_of(tmp_path)
    buffer = AlertBuffer(rules)
    rows = [partial_row(0, "prod", rel, page, "Chrome", [1] * 7, {500: 1}, {700: 1})
            for rel in ("r1", "r2") for page in ("/", "/cart")] * 50
    buffer.add_all(WindowAggregate.from_rollup_row(r) for r in rows)
    by_rule = buffer.by_rule()
    assert [(a.labels, a.counters, a.sketches) for a in by_rule["error-rate"]] == [
        ({"environment": "prod"}, {"errors": 200, "pageviews": 200}, {})]
    assert len(by_rule["page-errors"]) == 4  # page x release
    assert [a.sketches for a in by_rule["api-latency"]] == [{"api_latency": {500: 200}}]
    assert [(a.window_ms, a.counters) for a in by_rule["lcp-poor"]] == [(300_000, {})]
    assert [a.counters for a in buffer.slo_minute(T0)] == [
        {"api_calls": 200, "api_failures": 200, "lcp_good": 200, "lcp_poor": 200}]
    assert len(buffer) == 1 + 4 + 1 + 1 + 2 + 1 + 1 + 1  # rules' series + one SLO slot


def test_new_series_beyond_max_series_are_dropped_and_counted(tmp_path: Path) -> None:
    part = PartitionAlerts(rules_of(tmp_path), limits=AlertLimits(max_series=2))
    rows = [partial_row(0, "prod", "r1", f"/p{i}", "Chrome", [3, 3, 0, 0, 0, 0, 0], {}, {}) for i in range(5)]
    part.add([WindowAggregate.from_rollup_row(r) for r in rows])
    assert len(part.buffer.for_rule("page-errors")) == 2
    part.add([WindowAggregate.from_rollup_row(rows[0])])  # a tracked series still merges
    assert [a.counters["errors"] for a in part.buffer.for_rule("page-errors")] == [6, 3]
    dropped, evicted = part.drain_dropped()
    assert dropped == {"page-errors": 3, "rage": 3} and evicted == 0  # both group by page
    assert part.drain_dropped() == ({}, 0)  # drained


def test_evaluator_series_are_bounded_and_firing_ones_keep_going(tmp_path: Path) -> None:
    rules = rules_of(tmp_path, """
rules:
  - {name: page-errors, kind: ratio, numerator: errors, denominator: pageviews, window: 1m,
     thresholds: {warning: 0.5}, group_by: [page]}
""")
    evaluator = RuleEvaluator(rules, max_series=2)

    def agg(minute: int, page: str, errors: int) -> WindowAggregate:
        return WindowAggregate("shop", T0 + minute * MINUTE_MS, MINUTE_MS, {"page": page},
                               {"errors": errors, "pageviews": 1})

    firing = evaluator.advance(T0 + MINUTE_MS, [agg(0, "/a", 1), agg(0, "/b", 1), agg(0, "/c", 1)])
    assert [(e.labels["page"], e.status) for e in firing] == [("/a", "firing"), ("/b", "firing")]
    assert evaluator.dropped == {"page-errors": 1}
    later = evaluator.advance(T0 + 2 * MINUTE_MS, [agg(1, "/c", 1)])
    # /a and /b resolve and leave, which frees the slots /c then takes
    assert [(e.labels["page"], e.status) for e in later] == [("/a", "resolved"), ("/b", "resolved"), ("/c", "firing")]
    assert evaluator.dropped == {"page-errors": 1}


def test_context_keeps_at_most_max_projects_and_recent_issues() -> None:
    context = Context(max_projects=2, recent_issues=3)
    for i, project in enumerate(["a", "b", "c"]):
        context.see_aggregate(WindowAggregate(project, T0 + i * MINUTE_MS, MINUTE_MS, {"release": "r"}))
    assert sorted(context.releases) == ["b", "c"] and context.evicted == 1  # "a" was seen longest ago
    for g in range(5):
        context.see_transition({"project": "b", "group_id": str(g), "kind": "new", "at_ms": T0 + g})
    assert [t["group_id"] for t in context.transitions["b"]] == ["2", "3", "4"]


def test_an_old_state_record_with_a_raw_partial_list_still_loads(tmp_path: Path) -> None:
    """Upgrade path: records written before the bounded buffer held one raw partial per input
    message (duplicates of a series included)."""
    rules = rules_of(tmp_path)
    unbounded = UnboundedPartition(rules)
    rows = [partial_row(m, "prod", "r1", "/cart", "Chrome", [4, 5, 3, 2, 2, 1, 3], {900: 2}, {800: 1})
            for m in (0, 1, 1, 2, 2, 2, 3)]
    unbounded.add([WindowAggregate.from_rollup_row(r) for r in rows])
    unbounded.advance(T0 + 2 * MINUTE_MS)
    old_record = orjson.dumps({"evaluator": unbounded.evaluator.to_json(), "buffer": [asdict(a) for a in unbounded.buffer],
                               "slos": unbounded.slos.to_json() if unbounded.slos else None,
                               "slo_next_ms": unbounded.slo_next_ms, "context": unbounded.context.to_json(),
                               "offsets": {"pulse.rollup-partials:0": 41}, "closed_until_ms": unbounded.closed_until_ms},
                              option=orjson.OPT_NON_STR_KEYS)
    assert len(orjson.loads(old_record)["buffer"]) == 7  # one per input message: the 5m rules need them all
    part = PartitionAlerts(rules, orjson.loads(old_record))
    assert part.offsets == {"pulse.rollup-partials:0": 41}
    assert len(part.buffer.for_rule("error-rate")) == 2  # minutes 2 and 3, duplicates merged
    tail = T0 + 30 * MINUTE_MS
    expected = [e.to_json() for e in unbounded.advance(tail)]
    assert expected and [e.to_json() for e in part.advance(tail)] == expected
    assert isinstance(orjson.loads(part.to_bytes())["buffer"], dict)  # written back in the new format
