"""Rule evaluation on closed windows (pipeline/alerts/evaluate.py): thresholds and severities at their
boundaries, for / keep_firing_for / hysteresis, min_volume, missing windows, merging and grouping,
spikes, issue rules, deterministic ids and a state that survives a restart."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.alerts import AlertEvent, RuleEvaluator, WindowAggregate, fingerprint, merge, parse_rules, ux_aggregates
from pipeline.alerts.evaluate import project_labels
from pipeline.rollups.minute import rollup_rows
from pipeline.rollups.sketch import key_of, quantile, value_of

M = 60_000
HOUR = 3_600_000
T0 = 1_700_000_000_000 // HOUR * HOUR  # on an hour boundary: every window size is aligned


def ratio_rule(**kw: Any) -> dict[str, Any]:
    return {"name": "err", "kind": "ratio", "numerator": "errors", "denominator": "pageviews", "window": "1m",
            "thresholds": {"warning": 0.05, "critical": 0.10}, **kw}


def evaluator(*rules: dict[str, Any]) -> RuleEvaluator:
    return RuleEvaluator(parse_rules({"rules": list(rules)}))


def agg(t: int, window: int = M, project: str = "shop", **kw: Any) -> WindowAggregate:
    labels = {k: kw.pop(k) for k in ("environment", "release", "page", "browser") if k in kw}
    sketches = kw.pop("sketches", {})
    return WindowAggregate(project, t, window, labels, kw, sketches)


def rate_windows(ev: RuleEvaluator, values: list[tuple[int, int] | None], rule: str = "err",
                 start: int = T0) -> list[tuple[int, str, str]]:
    """Feed one (errors, pageviews) pair per 1-minute window (None = no data); (window index,
    status, severity) of the events."""
    out = []
    for i, v in enumerate(values):
        t = start + i * M
        aggs = [] if v is None else [agg(t, errors=v[0], pageviews=v[1])]
        out += [(i, e.status, e.severity) for e in ev.evaluate(rule, t, aggs)]
    return out


def percents(*rates: float | None) -> list[tuple[int, int] | None]:
    """Error rates as (errors, 1000 page views); None stays a window without data."""
    return [None if r is None else (round(r * 1000), 1000) for r in rates]


# ---------------------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("errors,expected", [
    (0, None), (50, None), (51, "warning"), (100, "warning"), (101, "critical"), (1000, "critical")])
def test_ratio_severity_at_exact_boundaries(errors: int, expected: str | None) -> None:
    ev = evaluator(ratio_rule())
    events = ev.evaluate("err", T0, [agg(T0, errors=errors, pageviews=1000)])
    assert [e.severity for e in events if e.status == "firing"] == ([expected] if expected else [])


@pytest.mark.parametrize("errors,expected", [(49, None), (50, "warning"), (99, "warning"), (100, "critical")])
def test_inclusive_comparison(errors: int, expected: str | None) -> None:
    ev = evaluator(ratio_rule(comparison=">="))
    events = ev.evaluate("err", T0, [agg(T0, errors=errors, pageviews=1000)])
    assert [e.severity for e in events] == ([expected] if expected else [])


def test_below_comparison_with_info_level() -> None:
    # pages views per API call dropping: info below 0.5, warning below 0.2, critical below 0.1
    ev = evaluator({"name": "low", "kind": "ratio", "numerator": "pageviews", "denominator": "api_calls",
                    "comparison": "<", "thresholds": {"info": 0.5, "warning": 0.2, "critical": 0.1}})
    got = []
    for i, pv in enumerate([60, 50, 49, 20, 19, 9]):
        t = T0 + i * M
        got += [(i, e.status, e.severity) for e in ev.evaluate("low", t, [agg(t, pageviews=pv, api_calls=100)])]
    assert got == [(2, "firing", "info"), (4, "firing", "warning"), (4, "resolved", "info"),
                   (5, "firing", "critical"), (5, "resolved", "warning")]


def test_percentile_severity_at_the_bucket_boundaries() -> None:
    latencies = [200.0] * 90 + [3500.0] * 10
    sketch = Counter(key_of(v) for v in latencies)
    p95 = quantile(sketch, 0.95)
    assert p95 == value_of(key_of(3500.0))  # within the sketch's 0.5 % of 3500

    def fire(warning: float, critical: float) -> list[str]:
        ev = evaluator({"name": "lat", "kind": "percentile", "sketch": "api_latency", "quantile": "p95",
                        "window": "1m", "thresholds": {"warning": warning, "critical": critical}})
        return [e.severity for e in ev.evaluate("lat", T0, [agg(T0, api_calls=100,
                                                                sketches={"api_latency": dict(sketch)})])]

    assert fire(p95, p95 + 1) == []  # exactly at the threshold: not above it
    assert fire(p95 - 0.001, p95 + 1) == ["warning"]
    assert fire(p95 - 2, p95) == ["warning"]
    assert fire(p95 - 2, p95 - 0.001) == ["critical"]


def test_percentile_event_carries_value_threshold_and_summary() -> None:
    ev = evaluator({"name": "lat", "kind": "percentile", "sketch": "api_latency", "quantile": 0.95, "window": "1m",
                    "thresholds": {"warning": 3000, "critical": 5000}, "labels": {"team": "api"},
                    "summary": "{project} {percentile} {value:.0f}ms > {threshold:.0f}ms ({team})",
                    "runbook_url": "https://runbooks/{rule}/{severity}"})
    [e] = ev.evaluate("lat", T0, [agg(T0, sketches={"api_latency": {key_of(4000.0): 10}})])
    assert e.status == "firing" and e.severity == "warning" and e.threshold == 3000
    assert e.value == pytest.approx(4000, rel=0.005)
    assert e.summary == f"shop p95 {e.value:.0f}ms > 3000ms (api)"
    assert e.runbook_url == "https://runbooks/lat/warning"
    assert e.labels == {"project": "shop", "team": "api", "severity": "warning"}
    assert (e.starts_at, e.ends_at, e.at) == (T0, None, T0 + M)


def test_vital_rating_fires_when_p75_turns_poor() -> None:
    ev = evaluator({"name": "lcp", "kind": "vital_rating", "vital": "lcp", "window": "1m"})
    good = {key_of(2000.0): 8, key_of(5000.0): 2}  # p75 in the good bucket
    poor = {key_of(2000.0): 6, key_of(5000.0): 4}  # p75 in the poor bucket
    assert ev.evaluate("lcp", T0, [agg(T0, sketches={"lcp": good})]) == []
    [e] = ev.evaluate("lcp", T0 + M, [agg(T0 + M, sketches={"lcp": poor})])
    assert (e.status, e.severity, e.threshold) == ("firing", "warning", 4000)
    assert e.value == pytest.approx(5000, rel=0.005)
    assert e.summary == f"lcp: LCP p75 = {e.value:.4g} over 1m, poor above 4000"


def test_zero_denominator_has_no_value() -> None:
    ev = evaluator(ratio_rule())
    assert ev.evaluate("err", T0, [agg(T0, errors=5, pageviews=0)]) == []


# ---------------------------------------------------------------------------------------- for


def test_for_fires_only_after_consecutive_windows_covering_it() -> None:
    ev = evaluator(ratio_rule(**{"for": "3m"}))
    got = rate_windows(ev, percents(0.06, 0.06, 0.01, 0.06, 0.06, 0.06, 0.06))
    assert got == [(5, "firing", "warning")]  # windows 3, 4, 5: three in a row; the first run was broken
    [state] = ev.series("err").values()
    assert state.starts_at == T0 + 3 * M  # the start of the first window of the run


def test_for_zero_and_for_one_window_are_the_same() -> None:
    for spec in ({}, {"for": "1m"}, {"for": "0s"}):
        assert rate_windows(evaluator(ratio_rule(**spec)), percents(0.06)) == [(0, "firing", "warning")]


def test_a_missing_window_breaks_a_pending_for() -> None:
    ev = evaluator(ratio_rule(**{"for": "2m"}))
    assert rate_windows(ev, percents(0.06, None, 0.06, 0.06)) == [(3, "firing", "warning")]


def test_escalation_must_hold_for_its_own_for() -> None:
    ev = evaluator(ratio_rule(**{"for": "2m"}))
    assert rate_windows(ev, percents(0.06, 0.06, 0.2, 0.2)) == [
        (1, "firing", "warning"), (3, "firing", "critical"), (3, "resolved", "warning")]


# ---------------------------------------------------------------------------------------- flapping


FLAPPING = percents(0.06, 0.045, 0.055, 0.042, 0.058, 0.046, 0.03)


def test_without_hysteresis_a_flapping_rate_pages_every_time() -> None:
    got = rate_windows(evaluator(ratio_rule()), FLAPPING)
    assert [s for _, s, _ in got] == ["firing", "resolved"] * 3


def test_hysteresis_turns_flapping_into_one_firing_and_one_resolved() -> None:
    ev = evaluator(ratio_rule(hysteresis=0.2))  # holds while > 4 %
    assert rate_windows(ev, FLAPPING) == [(0, "firing", "warning"), (6, "resolved", "warning")]


def test_keep_firing_for_turns_flapping_into_one_firing_and_one_resolved() -> None:
    ev = evaluator(ratio_rule(keep_firing_for="1m"))  # one clear window is tolerated, the second resolves
    assert rate_windows(ev, FLAPPING) == [(0, "firing", "warning"), (6, "resolved", "warning")]


def test_keep_firing_for_also_bridges_windows_without_data() -> None:
    ev = evaluator(ratio_rule(keep_firing_for="2m"))
    got = rate_windows(ev, percents(0.06, None, None, 0.06, None, None, None))
    assert got == [(0, "firing", "warning"), (6, "resolved", "warning")]


def test_resolved_event_closes_the_firing_one() -> None:
    ev = evaluator(ratio_rule(hysteresis=0.2))
    events: list[AlertEvent] = []
    for i, v in enumerate(FLAPPING):
        t = T0 + i * M
        events += ev.evaluate("err", t, [agg(t, errors=v[0], pageviews=v[1])])  # type: ignore[index]
    fire, resolve = events
    assert fire.fingerprint == resolve.fingerprint and fire.event_id != resolve.event_id
    assert (resolve.starts_at, resolve.ends_at, resolve.at) == (T0, T0 + 7 * M, T0 + 7 * M)
    assert resolve.value == 0.03 and resolve.threshold == 0.05


# ---------------------------------------------------------------------------------------- severity changes


def test_severity_changes_fire_the_new_one_then_resolve_the_old_one() -> None:
    ev = evaluator(ratio_rule(severity={"critical": "page"}))
    events: list[AlertEvent] = []
    for i, rate in enumerate([0.06, 0.2, 0.2, 0.07, 0.01]):
        t = T0 + i * M
        events += ev.evaluate("err", t, [agg(t, errors=round(rate * 1000), pageviews=1000)])
    assert [(e.status, e.severity, e.at - T0) for e in events] == [
        ("firing", "warning", M),
        ("firing", "page", 2 * M), ("resolved", "warning", 2 * M),  # escalation
        ("firing", "warning", 4 * M), ("resolved", "page", 4 * M),  # back down
        ("resolved", "warning", 5 * M)]
    by_fp: dict[str, list[str]] = {}
    for e in events:
        by_fp.setdefault(e.fingerprint, []).append(e.status)
    # severity is part of the identity: each fingerprint alternates firing / resolved, ending resolved
    assert sorted(by_fp.values()) == [["firing", "resolved"], ["firing", "resolved", "firing", "resolved"]]
    # the warning after the downgrade starts when it took over, not with its first run
    assert events[3].starts_at == T0 + 3 * M and events[4].starts_at == T0 + M
    assert events[1].labels["severity"] == "page" and events[1].threshold == 0.10


def test_downgrade_with_hysteresis_keeps_critical_until_it_really_drops() -> None:
    ev = evaluator(ratio_rule(hysteresis=0.2))  # critical holds while > 8 %, warning while > 4 %
    assert rate_windows(ev, percents(0.2, 0.09, 0.081, 0.07, 0.041, 0.03)) == [
        (0, "firing", "critical"), (3, "firing", "warning"), (3, "resolved", "critical"), (5, "resolved", "warning")]


# ---------------------------------------------------------------------------------------- volume and gaps


def test_min_volume_keeps_small_samples_quiet() -> None:
    ev = evaluator(ratio_rule(min_volume=20))
    assert rate_windows(ev, [(1, 2), (10, 19)]) == []  # 50 % of 2, 53 % of 19: no verdict
    assert rate_windows(ev, [(2, 20)], start=T0 + 2 * M) == [(0, "firing", "warning")]  # 10 % of 20


def test_falling_below_min_volume_is_no_data_and_resolves() -> None:
    ev = evaluator(ratio_rule(min_volume=20))
    assert rate_windows(ev, [(5, 20), (5, 10)]) == [(0, "firing", "critical"), (1, "resolved", "critical")]


def test_a_series_that_stops_reporting_resolves() -> None:
    ev = evaluator(ratio_rule())
    assert rate_windows(ev, [(100, 1000), None]) == [(0, "firing", "warning"), (1, "resolved", "warning")]
    assert ev.series("err") == {}  # nothing left to remember


def test_skipped_windows_count_as_windows_without_data() -> None:
    ev = evaluator(ratio_rule(keep_firing_for="2m"))
    assert [e.status for e in ev.evaluate("err", T0, [agg(T0, errors=60, pageviews=1000)])] == ["firing"]
    # the next call is five windows later: windows 1-2 are kept, window 3 resolves, then window 5 fires again
    later = T0 + 5 * M
    assert [(e.status, e.at - T0) for e in ev.evaluate("err", later, [agg(later, errors=60, pageviews=1000)])] == [
        ("resolved", 4 * M), ("firing", 6 * M)]


def test_replayed_and_misaligned_windows() -> None:
    ev = evaluator(ratio_rule())
    first = ev.evaluate("err", T0, [agg(T0, errors=60, pageviews=1000)])
    assert len(first) == 1
    assert ev.evaluate("err", T0, [agg(T0, errors=60, pageviews=1000)]) == []  # a replay
    with pytest.raises(ValueError, match="not aligned"):
        ev.evaluate("err", T0 + M + 1, [])
    with pytest.raises(ValueError, match="outside the window"):
        ev.evaluate("err", T0 + 2 * M, [agg(T0 + 3 * M, errors=1, pageviews=1)])


# ---------------------------------------------------------------------------------------- merge and group_by


def test_five_minute_aggregates_merge_into_one_window_exactly() -> None:
    rng_values = [[100.0 * (i + 1) + j for j in range(10)] for i in range(10)]  # 10 minutes, 10 calls each
    minutes = [agg(T0 + i * M, environment="prod", page=f"/p{i % 2}", api_calls=10, api_failures=i % 3,
                   sketches={"api_latency": dict(Counter(key_of(v) for v in rng_values[i]))}) for i in range(10)]
    merged = merge(minutes, 5 * M, group_by=())
    assert [(a.window_start_ms, a.window_ms, a.labels) for a in merged] == [(T0, 5 * M, {}), (T0 + 5 * M, 5 * M, {})]
    first = merged[0]
    assert first.counters == {"api_calls": 50, "api_failures": 0 + 1 + 2 + 0 + 1}
    everything = Counter(key_of(v) for i in range(5) for v in rng_values[i])
    assert first.sketches["api_latency"] == dict(everything)
    assert quantile(first.sketches["api_latency"], 0.95) == quantile(everything, 0.95)
    # keeping the labels merges per label set
    per_page = merge(minutes[:5], 5 * M)
    assert [(a.labels["page"], a.counters["api_calls"]) for a in per_page] == [("/p0", 30), ("/p1", 20)]


def test_merge_refuses_windows_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="cannot merge 2m aggregates into 5m windows"):
        merge([agg(T0, window=2 * M, errors=1)], 5 * M)


def test_a_five_minute_rule_evaluates_the_merged_minutes() -> None:
    ev = evaluator(ratio_rule(name="err5", window="5m"))
    minutes = [agg(T0 + i * M, errors=e, pageviews=100) for i, e in enumerate([0, 0, 0, 0, 26])]
    [e] = ev.evaluate("err5", T0, minutes)
    assert e.value == 26 / 500 and e.severity == "warning" and e.at == T0 + 5 * M


def test_group_by_projects_labels_and_evaluates_per_label_set() -> None:
    ev = evaluator(ratio_rule(group_by=["environment"]))
    aggs = [agg(T0, environment="prod", page="/a", browser="Chrome", errors=4, pageviews=50),
            agg(T0, environment="prod", page="/b", browser="Firefox", errors=4, pageviews=50),  # prod: 8 %
            agg(T0, environment="staging", page="/a", browser="Chrome", errors=1, pageviews=100),  # staging: 1 %
            agg(T0, project="blog", environment="prod", errors=50, pageviews=100)]  # another project: 50 %
    events = ev.evaluate("err", T0, aggs)
    assert [(e.labels, e.severity, e.value) for e in events] == [
        ({"project": "blog", "environment": "prod", "severity": "critical"}, "critical", 0.5),
        ({"project": "shop", "environment": "prod", "severity": "warning"}, "warning", 0.08)]
    assert project_labels(aggs[0], ["page", "release"]) == {"page": "/a", "release": ""}


def test_default_group_by_is_per_project() -> None:
    ev = evaluator(ratio_rule())
    events = ev.evaluate("err", T0, [agg(T0, environment="prod", errors=6, pageviews=100),
                                     agg(T0, environment="staging", errors=6, pageviews=100)])
    assert [(e.labels, e.value) for e in events] == [({"project": "shop", "severity": "warning"}, 0.06)]


def test_aggregates_from_real_rollup_rows() -> None:
    ts = datetime.fromtimestamp(T0 / 1000, tz=timezone.utc) + timedelta(seconds=10)
    base = {"project": "shop", "environment": "prod", "release": "r1", "route": "/checkout", "url": "",
            "user_agent": "", "timestamp": ts}
    rows = [("api_calls", {**base, "kind": "api", "duration_ms": 100.0 * i, "ok": i % 4 != 0,
                           "request_url": "https://x/api/checkout"}) for i in range(1, 21)]
    aggs = [WindowAggregate.from_rollup_row(r) for r in rollup_rows(rows)]
    assert aggs[0].window_start_ms == T0 and aggs[0].labels["page"] == "/checkout"
    ev = evaluator({"name": "checkout", "kind": "ratio", "numerator": "checkout_failures",
                    "denominator": "checkout_calls", "thresholds": {"critical": 0.1}, "min_volume": 10})
    [e] = ev.evaluate("checkout", T0, aggs)
    assert (e.value, e.severity) == (5 / 20, "critical")


# ---------------------------------------------------------------------------------------- spikes


def spike_rule(**kw: Any) -> dict[str, Any]:
    return {"name": "spike", "kind": "spike", "counter": "errors", "window": "5m", "baseline": "30m",
            "thresholds": {"warning": 3, "critical": 10}, "min_volume": 10, **kw}


def test_spike_against_the_trailing_baseline() -> None:
    ev = evaluator(spike_rule())
    W = 5 * M
    counts = [10] * 6 + [31, 100, 150, 20]
    got = []
    for i, n in enumerate(counts):
        t = T0 + i * W
        got += [(i, e.status, e.severity, e.value) for e in ev.evaluate("spike", t, [agg(t, window=W, errors=n)])]
    # window 6: 31 against 10 per window = 3.1x; 7: 100 / mean(10 x5, 31) = 7.4x; 8: 150 / 28.5 = 5.3x (both
    # still warning: the baseline follows the incident); 9: 20 / mean(10 x3, 31, 100, 150) = 0.4x
    assert got == [(6, "firing", "warning", pytest.approx(3.1)),
                   (9, "resolved", "warning", pytest.approx(20 / (311 / 6)))]
    [series] = ev.series("spike").values()
    assert series.counts == [[T0 + i * W, n] for i, n in enumerate(counts)][4:]  # one baseline of windows, no more


def test_spike_waits_for_a_full_baseline_and_floors_an_empty_one() -> None:
    ev = evaluator(spike_rule(thresholds={"warning": 3}))
    W = 5 * M
    # 6 windows (30 min) of history are needed: a burst in the warm-up says nothing
    for i in range(6):
        t = T0 + i * W
        assert ev.evaluate("spike", t, [agg(t, window=W, errors=50 if i == 1 else 0)]) == []
    # window 8: 25 errors against windows 2-7, with nothing in them: the average counts as 1 per window
    t = T0 + 8 * W
    [e] = ev.evaluate("spike", t, [agg(t, window=W, errors=25)])
    assert e.value == 25 and e.annotations["baseline_mean"] == 0 and e.annotations["count"] == 25
    assert "25 errors in 5m, 25.0x the average of the trailing 30m" in e.summary


def test_spike_critical_and_resolution() -> None:
    ev = evaluator(spike_rule())
    W = 5 * M
    counts = [2] * 6 + [40, 2]
    got = []
    for i, n in enumerate(counts):
        t = T0 + i * W
        got += [(i, e.status, e.severity) for e in ev.evaluate("spike", t, [agg(t, window=W, errors=n)])]
    assert got == [(6, "firing", "critical"), (7, "resolved", "critical")]  # 40 / 2 = 20x


def test_ux_spike_per_page_from_click_signals() -> None:
    ev = evaluator({"name": "rage", "kind": "ux_spike", "signal": "rage_clicks", "window": "5m", "baseline": "30m",
                    "thresholds": {"warning": 3}, "min_volume": 5, "summary": "{count} rage clicks on {page}"})
    W = 5 * M

    def signals(window: int, page: str, n: int) -> list[dict[str, Any]]:
        start = datetime.fromtimestamp((T0 + window * W) / 1000, tz=timezone.utc)
        return [{"signal": "rage_click", "signal_id": f"r{window}{page}{k}", "project": "shop", "page": page,
                 "timestamp": (start + timedelta(seconds=k)).isoformat(), "clicks": 3} for k in range(n)]

    got = []
    for i in range(9):
        sigs = signals(i, "/cart", 1) + signals(i, "/checkout", 8 if i == 7 else 1)
        sigs.append({"signal": "dead_click", "project": "shop", "page": "/cart", "timestamp": sigs[0]["timestamp"]})
        t = T0 + i * W
        aggs = ux_aggregates(sigs, window_ms=W)
        assert {a.labels["page"]: a.counters for a in aggs}["/cart"] == {"rage_clicks": 1, "dead_clicks": 1}
        got += [(i, e.status, e.labels["page"], e.summary) for e in ev.evaluate("rage", t, aggs)]
    assert got == [(7, "firing", "/checkout", "8 rage clicks on /checkout"),
                   (8, "resolved", "/checkout", "1 rage clicks on /checkout")]


# ---------------------------------------------------------------------------------------- issue rules


def transition(kind: str, tid: str = "t-1", group: str = "g1") -> dict[str, Any]:
    return {"transition_id": tid, "project": "shop", "group_id": group, "kind": kind, "from_status": "resolved",
            "at_ms": T0 + 123, "reason": "seen again after it was resolved", "title": "TypeError: x is undefined",
            "culprit": "app.js in pay", "release": "2.0", "caused_by": "e1", "actor": "", "events": 3}


def test_issue_rules_fire_once_per_matching_transition() -> None:
    ev = RuleEvaluator(parse_rules({"rules": [
        {"name": "new-issue", "kind": "issue", "transitions": ["new"]},
        {"name": "regressed-issue", "kind": "issue", "transitions": ["regressed", "escalating"], "level": "critical",
         "severity": {"critical": "page"}, "labels": {"team": "web"}, "remediation_webhook": "https://ops/rollback",
         "summary": "{transition}: {title} in {release} ({events} events)"}]}))
    [e] = ev.on_transition(transition("regressed"))
    assert (e.rule, e.status, e.severity, e.at, e.starts_at, e.ends_at) == (
        "regressed-issue", "firing", "page", T0 + 123, T0 + 123, None)
    assert e.labels == {"project": "shop", "issue": "g1", "team": "web", "severity": "page"}
    assert e.summary == "regressed: TypeError: x is undefined in 2.0 (3 events)"
    assert e.remediation_webhook == "https://ops/rollback" and e.value == 3
    assert e.annotations["transition_id"] == "t-1"
    assert ev.on_transition(transition("regressed")) == [e]  # a replayed transition: the same event id
    assert ev.on_transition(transition("regressed", tid="t-2"))[0].event_id != e.event_id  # regressed again
    assert ev.on_transition(transition("regressed", group="g2"))[0].fingerprint != e.fingerprint
    assert [x.rule for x in ev.on_transition(transition("new"))] == ["new-issue"]
    assert ev.on_transition(transition("resolved")) == [] and ev.on_transition(transition("ongoing")) == []


def test_issue_transitions_from_the_lifecycle_fit() -> None:
    from pipeline.issues import IssueRules, Occurrence, OccurrenceRecord, apply_occurrences

    record = OccurrenceRecord("shop", "g1", "TypeError: x", "app.js", "pulse.raw.errors", 0, 1,
                              (Occurrence("e1", T0, "1.0"),))
    _, transitions = apply_occurrences(None, record, IssueRules())
    ev = RuleEvaluator(parse_rules({"rules": [{"name": "new-issue", "kind": "issue", "transitions": ["new"]}]}))
    [e] = ev.on_transition(json.loads(json.dumps(transitions[0].to_json())))
    assert e.summary == "new issue in shop: TypeError: x" and e.labels["issue"] == "g1"


# ---------------------------------------------------------------------------------------- identity and state


def test_fingerprint_is_the_rule_and_sorted_labels() -> None:
    assert fingerprint("r", {"a": "1", "b": "2"}) == fingerprint("r", {"b": "2", "a": "1"})
    assert fingerprint("r", {"a": "1"}) != fingerprint("r2", {"a": "1"}) != fingerprint("r", {"a": "2"})
    assert fingerprint("r", {"a": "1b", "": ""}) != fingerprint("r", {"a": "1", "b": ""})


def test_event_ids_are_deterministic() -> None:
    def run() -> list[AlertEvent]:
        ev = evaluator(ratio_rule(hysteresis=0.2))
        events = []
        for i, v in enumerate(FLAPPING + percents(0.2, 0.01)):
            t = T0 + i * M
            events += ev.evaluate("err", t, [agg(t, errors=v[0], pageviews=v[1])])  # type: ignore[index]
        return events

    a, b = run(), run()
    assert a == b and len(a) == 4
    assert len({e.event_id for e in a}) == 4  # firing / resolved, and the same status in another window, differ


ALL_RULES = [ratio_rule(**{"for": "2m", "keep_firing_for": "1m", "hysteresis": 0.1, "group_by": ["environment"]}),
             spike_rule(name="spike1", window="1m", baseline="5m"),
             {"name": "lat", "kind": "percentile", "sketch": "api_latency", "quantile": 0.9, "window": "2m",
              "thresholds": {"warning": 1000, "critical": 2000}}]


def sequence(n: int) -> list[tuple[int, list[WindowAggregate]]]:
    """Minutes of made-up traffic that trips every rule now and then."""
    out = []
    for i in range(n):
        t = T0 + i * M
        rate = [0.01, 0.06, 0.07, 0.2, 0.055, 0.03, 0.0][i % 7]
        lat = [300.0, 1500.0, 2500.0, 800.0][(i // 3) % 4]
        errors = round(rate * 400)
        aggs = [agg(t, environment="prod", errors=errors + (40 if i % 11 == 10 else 0), pageviews=400),
                agg(t, environment="staging", errors=i % 5, pageviews=25,
                    sketches={"api_latency": {key_of(lat): 20, key_of(100.0): 2}})]
        out.append((t, aggs))
    return out


def feed(ev: RuleEvaluator, minutes: list[tuple[int, list[WindowAggregate]]],
         history: list[tuple[int, list[WindowAggregate]]] = ()) -> list[AlertEvent]:  # type: ignore[assignment]
    """Close each minute as a worker would: ``advance`` with the buffered minutes it still needs."""
    buffer = [a for _, aggs in history for a in aggs]
    events = []
    for t, aggs in minutes:
        buffer += aggs
        need = ev.needed_from_ms()
        buffer = [a for a in buffer if need is None or a.window_start_ms >= need]
        events += ev.advance(t + M, buffer)
    return events


def test_state_json_round_trip_mid_sequence_gives_identical_output() -> None:
    minutes = sequence(60)
    rules = parse_rules({"rules": ALL_RULES})
    straight = feed(RuleEvaluator(rules), minutes)
    assert {e.rule for e in straight} == {"err", "spike1", "lat"} and len(straight) > 10
    for cut in (7, 23, 41):
        first = RuleEvaluator(rules)
        events = feed(first, minutes[:cut])
        doc = json.loads(json.dumps(first.to_json()))  # what a changelog would hold
        restored = RuleEvaluator(rules, state=doc)
        assert restored.to_json() == first.to_json()
        events += feed(restored, minutes[cut:], history=minutes[:cut])
        assert events == straight


def test_advance_evaluates_each_rule_when_its_window_closes() -> None:
    ev = evaluator(ratio_rule(name="one"), ratio_rule(name="five", window="5m"))
    fired, buffer = [], []
    for i in range(10):
        t = T0 + i * M
        buffer.append(agg(t, errors=8, pageviews=100))
        fired += [(i, e.rule) for e in ev.advance(t + M, buffer)]
        # the 5-minute rule needs the minutes of its open window: the caller may drop older ones
        assert ev.needed_from_ms() == T0 + 5 * M * ((i + 1) // 5)
    assert fired == [(0, "one"), (4, "five")]
    # a later call with nothing for a while: windows without data resolve
    assert [(e.rule, e.status, e.at - T0) for e in ev.advance(T0 + 20 * M, [])] == [
        ("one", "resolved", 11 * M), ("five", "resolved", 15 * M)]


def test_state_of_rules_removed_from_the_file_is_dropped() -> None:
    ev = evaluator(ratio_rule())
    ev.evaluate("err", T0, [agg(T0, errors=60, pageviews=1000)])
    doc = ev.to_json()
    other = RuleEvaluator(parse_rules({"rules": [ratio_rule(name="other")]}), state=doc)
    assert other.to_json()["rules"] == {"other": {"last_window_ms": None, "first_window_ms": None, "series": {}}}
    with pytest.raises(ValueError, match="state version"):
        RuleEvaluator(parse_rules({"rules": [ratio_rule()]}), state={"version": 99})


def test_alert_event_json_round_trip() -> None:
    [e] = evaluator(ratio_rule()).evaluate("err", T0, [agg(T0, errors=60, pageviews=1000)])
    doc = json.loads(json.dumps(e.to_json()))
    assert AlertEvent.from_json(doc) == e
    assert doc["status"] == "firing" and doc["annotations"]["window"] == "1m"
