"""SLO error budgets and multiwindow multi-burn-rate alerts (pipeline/alerts/slo.py): which window
pair trips, the budget arithmetic, bounded memory, and events like the rule evaluator's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.alerts import WindowAggregate, parse_rules
from pipeline.alerts.slo import DAY_MS, HOUR_MS, MINUTE_MS, SloEvaluator, SloSeries, Tier, tripped

M = MINUTE_MS
T0 = 1_700_000_000_000 // DAY_MS * DAY_MS  # midnight UTC: minute, hour and day buckets all aligned
BUDGET = 1 - 0.999


def slo(**kw: Any) -> Any:
    return parse_rules({"slos": [{"name": "api", "kind": "availability", "objective": 0.999, **kw}]}).slos[0]


def observe(series: SloSeries, start: int, minutes: int, good: int, total: int) -> int:
    for i in range(minutes):
        assert series.observe(start + i * M, good, total)
    return start + minutes * M


def pairs(at: int, series: SloSeries, s: Any = None) -> list[tuple[str, str]]:
    return [(severity, windows) for severity, windows, _, _ in tripped(s or slo(), series, at)]


# ---------------------------------------------------------------------------------------- window pairs


def test_fast_burn_trips_only_the_1h_5m_pair() -> None:
    series = SloSeries.for_slo(slo())
    t = observe(series, T0, 3 * 24 * 60, 1000, 1000)  # three clean days
    t = observe(series, t, 60, 980, 1000)  # then an hour at 2 % errors: burn 20
    assert series.burn_rate(HOUR_MS, t, 0.999) == pytest.approx(0.02 / BUDGET)
    assert series.burn_rate(5 * M, t, 0.999) == pytest.approx(20)
    assert series.burn_rate(30 * M, t, 0.999) == pytest.approx(20)  # > 6, but its pair's 6h is not
    assert series.burn_rate(6 * HOUR_MS, t, 0.999) == pytest.approx(20 / 6)
    assert series.burn_rate(3 * DAY_MS, t, 0.999) == pytest.approx(20 * 60 / 4320)
    assert pairs(t, series) == [("page", "1h/5m")]


def test_slow_burn_trips_only_the_6h_30m_pair() -> None:
    series = SloSeries.for_slo(slo())
    t = observe(series, T0, 3 * 24 * 60, 1000, 1000)
    t = observe(series, t, 6 * 60, 992, 1000)  # six hours at burn 8: under 14.4, over 6
    assert series.burn_rate(HOUR_MS, t, 0.999) == pytest.approx(8)
    assert series.burn_rate(6 * HOUR_MS, t, 0.999) == pytest.approx(8)
    assert series.burn_rate(3 * DAY_MS, t, 0.999) == pytest.approx(8 * 6 / 72)  # no ticket either
    assert pairs(t, series) == [("page", "6h/30m")]


def test_a_steady_leak_opens_a_ticket_only() -> None:
    series = SloSeries.for_slo(slo())
    t = observe(series, T0, 3 * 24 * 60, 1997, 2000)  # three days at burn 1.5
    assert series.burn_rate(3 * DAY_MS, t, 0.999) == pytest.approx(1.5)
    assert pairs(t, series) == [("ticket", "3d/6h")]


def test_the_short_window_ends_an_alert_soon_after_the_burning_stops() -> None:
    series = SloSeries.for_slo(slo())
    t = observe(series, T0, 6 * 60, 1000, 1000)
    t = observe(series, t, 60, 980, 1000)

    def pages(at: int) -> list[tuple[str, str]]:  # (with only 7 hours of history the 3d ticket trips too)
        return [p for p in pairs(at, series) if p[0] == "page"]

    assert pages(t) == [("page", "1h/5m")]
    t = observe(series, t, 1, 1000, 1000)  # 5m burn 16: still paging
    assert pages(t) == [("page", "1h/5m")]
    t = observe(series, t, 1, 1000, 1000)  # 5m burn 12, though the hour still burns at 19.3
    assert series.burn_rate(HOUR_MS, t, 0.999) == pytest.approx(58 * 20 / 60)
    assert pages(t) == []


def test_both_pages_and_a_ticket_can_hold_at_once() -> None:
    series = SloSeries.for_slo(slo())
    t = observe(series, T0, 3 * 24 * 60, 900, 1000)  # burn 100 for three days
    assert pairs(t, series) == [("page", "1h/5m"), ("page", "6h/30m"), ("ticket", "3d/6h")]


def test_no_traffic_burns_nothing() -> None:
    series = SloSeries.for_slo(slo())
    assert series.burn_rate(HOUR_MS, T0, 0.999) == 0 and series.budget_remaining(30 * DAY_MS, T0, 0.999) == 1
    assert pairs(T0, series) == []


# ---------------------------------------------------------------------------------------- budget


def test_budget_remaining_arithmetic() -> None:
    series = SloSeries.for_slo(slo())
    t = observe(series, T0, 500, 999, 1000)
    t = observe(series, t, 500, 1000, 1000)
    # 500 bad of 1 000 000: half the 0.1 % budget spent
    assert series.counts(30 * DAY_MS, t) == (999_500, 1_000_000)
    assert series.budget_remaining(30 * DAY_MS, t, 0.999) == pytest.approx(0.5)
    t = observe(series, t, 250, 990, 1000)  # 2500 more bad of 250 000 more: 3000 of 1 250 000
    assert series.budget_remaining(30 * DAY_MS, t, 0.999) == pytest.approx(1 - (3000 / 1_250_000) / BUDGET)
    assert series.budget_remaining(30 * DAY_MS, t, 0.999) < 0  # overspent: 2.4x the budget


def test_old_minutes_leave_the_budget_with_the_period() -> None:
    s = slo(period="7d", burn_windows=[{"severity": "ticket", "long": "1d", "short": "1h", "burn_rate": 1}])
    series = SloSeries.for_slo(s)
    observe(series, T0, 1, 0, 100)  # one terrible minute
    t = T0 + 8 * DAY_MS
    observe(series, t - M, 1, 100, 100)
    assert series.counts(s.period_ms, t) == (100, 100)
    assert series.budget_remaining(s.period_ms, t, 0.999) == 1


def test_the_oldest_day_of_the_period_counts_pro_rata() -> None:
    """The documented trade-off: beyond 3 days only day buckets remain, so the day straddling the
    period's start counts in proportion to its overlap (here half), wherever its minutes were."""
    series = SloSeries.for_slo(slo())
    observe(series, T0 + HOUR_MS, 1, 0, 100)  # 100 bad requests at 01:00 on day 0
    at = T0 + 30 * DAY_MS + 12 * HOUR_MS  # the period starts at 12:00 on day 0
    assert series.observe(at - M, 0, 0)
    assert series.counts(30 * DAY_MS, at) == (0, 50)
    assert series.budget_remaining(30 * DAY_MS, at, 0.999) == pytest.approx(1 - 1 / BUDGET)


def test_windows_up_to_six_hours_are_exact_at_any_minute() -> None:
    series = SloSeries.for_slo(slo())
    t = T0 + 17 * M  # not on an hour
    for i in range(400):
        series.observe(t + i * M, 1000 - i % 7, 1000)
    end = t + 400 * M
    for minutes in (5, 30, 60, 360):
        bad = sum(i % 7 for i in range(400 - minutes, 400))
        assert series.counts(minutes * M, end) == (minutes * 1000 - bad, minutes * 1000)


def test_tier_sums_prorate_only_the_oldest_bucket() -> None:
    tier = Tier(HOUR_MS, 3 * HOUR_MS, [[T0, 10, 100], [T0 + HOUR_MS, 20, 100], [T0 + 2 * HOUR_MS, 30, 40]])
    assert tier.sums(T0 + 15 * M, T0 + 2 * HOUR_MS + 10 * M) == (0.75 * 10 + 20 + 30, 0.75 * 100 + 100 + 40)
    assert tier.sums(T0 + HOUR_MS, T0 + 2 * HOUR_MS) == (20, 100)


def test_memory_is_bounded() -> None:
    series = SloSeries.for_slo(slo())
    observe(series, T0, 32 * 24 * 60 + 30, 999, 1000)  # 32 days and half an hour, every minute
    minutes, hours, days = (len(t.rows) for t in series.tiers)
    assert (minutes, hours, days) == (360, 73, 31)  # 6 h of minutes; 3 d of hours, 30 d of days (+ partial)
    assert len(json.dumps(series.to_json())) < 20_000


def test_replayed_minutes_are_ignored() -> None:
    series = SloSeries.for_slo(slo())
    t = observe(series, T0, 10, 990, 1000)
    assert not series.observe(T0 + 5 * M, 0, 1000)
    assert series.counts(HOUR_MS, t) == (9900, 10_000)
    with pytest.raises(ValueError, match="not on a minute"):
        series.observe(t + 1, 1, 1)
    with pytest.raises(ValueError, match="good <= total"):
        series.observe(t, 2, 1)


# ---------------------------------------------------------------------------------------- SLO counts


def test_good_and_total_per_kind() -> None:
    assert slo().counts({"api_calls": 100, "api_failures": 3, "errors": 50}) == (97, 100)
    lcp = parse_rules({"slos": [{"name": "lcp", "kind": "vital", "vital": "LCP", "objective": 0.95}]}).slos[0]
    assert lcp.counts({"lcp_good": 90, "lcp_ni": 6, "lcp_poor": 4, "inp_poor": 100}) == (90, 100)
    assert lcp.counts({}) == (0, 0)


# ---------------------------------------------------------------------------------------- evaluator


def minute(t: int, calls: int, failures: int, **labels: str) -> WindowAggregate:
    return WindowAggregate("shop", t, M, labels, {"api_calls": calls, "api_failures": failures})


def incident() -> list[tuple[int, list[WindowAggregate]]]:
    """A big clean minute two days earlier, six clean hours, 50 minutes at burn 20, then recovery."""
    out = [(T0, [minute(T0, 10_000_000, 0)])]
    t = T0 + 2 * DAY_MS
    for i in range(360 + 50 + 5):
        failures = 20 if 360 <= i < 410 else 0
        out.append((t + i * M, [minute(t + i * M, 1000, failures, environment="prod")]))
    return out


def run(ev: SloEvaluator, minutes: list[tuple[int, list[WindowAggregate]]]) -> list[Any]:
    events = []
    for t, aggs in minutes:
        events += ev.evaluate(t, aggs)
    return events


def test_evaluator_pages_and_resolves_with_budget_and_windows() -> None:
    rules = parse_rules({"slos": [{"name": "api", "kind": "availability", "objective": 0.999,
                                   "labels": {"team": "api"}, "runbook_url": "https://runbooks/{slo}"}]})
    ev = SloEvaluator(rules)
    events = run(ev, incident())
    start = T0 + 2 * DAY_MS + 360 * M  # the first bad minute
    fire, resolve = events
    # 1h burn = 20 x (bad minutes) / 60: over 14.4 with the 44th bad minute
    assert (fire.status, fire.severity, fire.at) == ("firing", "page", start + 44 * M)
    assert fire.value == pytest.approx(20 * 44 / 60) and fire.threshold == 14.4
    assert fire.labels == {"project": "shop", "team": "api", "severity": "page"}
    assert fire.annotations["windows"] == "1h/5m"
    assert fire.annotations["burn_rates"]["6h"] == pytest.approx(20 * 44 / 360)
    bad, total = 44 * 20, 10_000_000 + 404 * 1000
    assert fire.annotations["budget_remaining"] == pytest.approx(1 - bad / total / BUDGET)
    assert fire.runbook_url == "https://runbooks/api"
    assert "burning the error budget 14.7x over 1h/5m" in fire.summary
    # 50 bad minutes, then the 5-minute window falls under 14.4 with the second good minute
    assert (resolve.status, resolve.severity, resolve.fingerprint) == ("resolved", "page", fire.fingerprint)
    assert (resolve.starts_at, resolve.ends_at) == (fire.at, start + 52 * M)
    assert resolve.event_id != fire.event_id
    [status] = ev.status()
    assert (status.slo, status.project, status.firing) == ("api", "shop", ())
    assert status.total == 10_000_000 + 415_000 and status.total - status.good == 1000
    assert status.budget_remaining == pytest.approx(1 - 1000 / status.total / BUDGET)
    assert set(status.burn_rates) == {"5m", "30m", "1h", "6h", "3d"}


def test_evaluator_groups_series_by_labels() -> None:
    s = {"name": "api", "kind": "availability", "objective": 0.99, "group_by": ["environment"]}
    ev = SloEvaluator(parse_rules({"slos": [s]}))
    events = ev.evaluate(T0, [minute(T0, 100, 50, environment="prod", page="/a"),
                              minute(T0, 100, 0, environment="staging", page="/a")])
    assert [(e.labels.get("environment"), e.severity) for e in events] == [("prod", "page"), ("prod", "ticket")]
    assert sorted(st.labels["environment"] for st in ev.series("api").values()) == ["prod", "staging"]


def test_evaluator_state_round_trip_mid_sequence() -> None:
    rules = parse_rules({"slos": [{"name": "api", "kind": "availability", "objective": 0.999}]})
    minutes = incident()
    straight = run(SloEvaluator(rules), minutes)
    for cut in (200, 405, 412):
        first = SloEvaluator(rules)
        events = run(first, minutes[:cut])
        restored = SloEvaluator(rules, state=json.loads(json.dumps(first.to_json())))
        events += run(restored, minutes[cut:])
        assert events == straight
        assert restored.status() == [s for s in SloEvaluator(rules, state=restored.to_json()).status()]


def test_evaluator_ignores_replayed_minutes_and_checks_input() -> None:
    ev = SloEvaluator(parse_rules({"slos": [{"name": "api", "kind": "availability", "objective": 0.99}]}))
    assert [e.status for e in ev.evaluate(T0, [minute(T0, 100, 50)])] == ["firing", "firing"]
    assert ev.evaluate(T0, [minute(T0, 100, 50)]) == []
    [status] = ev.status()
    assert status.total == 100
    with pytest.raises(ValueError, match="is not the minute"):
        ev.evaluate(T0 + M, [minute(T0, 1, 0)])
    with pytest.raises(ValueError, match="state version"):
        SloEvaluator(parse_rules({"slos": []}), state={"version": 0})
