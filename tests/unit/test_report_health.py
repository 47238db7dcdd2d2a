"""The health report's pure logic: vital ratings and scores, component scores, the weighted health
score with renormalised weights, trend directions, recommendations and null handling; plus the
period parameter and the SQL's period arithmetic. docs/report.md's worked example is checked here."""

from __future__ import annotations

import copy
import math
from datetime import datetime, timezone
from typing import Any

import pytest

from pipeline.api.common import ApiError
from pipeline.api.report import report_params
from pipeline.report import queries
from pipeline.report.health import (
    COMPONENT_WEIGHTS,
    band_score,
    figures_template,
    format_period,
    has_data,
    health_report,
    health_score,
    health_status,
    parse_period,
    recommendations,
    sections,
    trend_entry,
    vital_rating,
    vital_score,
    weighted_mean,
)

THRESHOLDS = {"lcp": (2500, 4000), "inp": (200, 500), "cls": (0.1, 0.25), "fcp": (1800, 3000),
              "ttfb": (800, 1800), "fid": (100, 300)}
START = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
END = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


def vitals(**p75: float) -> dict[str, dict[str, Any]]:
    out = figures_template()["rollups"]["vitals"]
    for name, value in p75.items():
        out[name] = {"samples": 100, "p50": value * 0.8, "p75": value, "p95": value * 1.5}
    return out


def worked_example() -> dict[str, Any]:
    """docs/report.md, "Worked example"."""
    f = figures_template()
    f["rollups"].update(rows=1440, errors=20, pageviews=1000, vitals=vitals(lcp=3000, inp=150, cls=0.3))
    f["errors"].update(raw_errors=20, unique_errors=4, affected_users=12)
    f["ux"].update(sessions=200, avg_session_duration=95.0, bounce_rate=0.45, pages_per_session=3.2, rage_clicks=15,
                   dead_clicks=5)
    f["alerts"].update(fired=1, warnings=1)
    return f


def report_of(current: dict[str, Any], previous: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return health_report(current, previous or figures_template(), start=START, end=END, project="shop",
                         generated_at=END, **kw)["monitoring_health_check"]


# ---------------------------------------------------------------------------------------- ratings, scores


@pytest.mark.parametrize("vital", sorted(THRESHOLDS))
def test_vital_ratings_at_the_thresholds(vital: str) -> None:
    good, poor = THRESHOLDS[vital]
    eps = good / 1000
    assert vital_rating(vital, 0) == "good"
    assert vital_rating(vital, good) == "good"  # good <= the first threshold
    assert vital_rating(vital, good + eps) == "needs-improvement"
    assert vital_rating(vital, poor) == "needs-improvement"  # poor > the second threshold
    assert vital_rating(vital, poor + eps) == "poor"
    assert vital_rating(vital, None) is None


@pytest.mark.parametrize("vital", sorted(THRESHOLDS))
def test_vital_score_is_100_at_good_50_at_poor_0_at_twice_poor(vital: str) -> None:
    good, poor = THRESHOLDS[vital]
    assert vital_score(vital, good * 0.5) == 100
    assert vital_score(vital, good) == 100
    assert vital_score(vital, (good + poor) / 2) == pytest.approx(75)
    assert vital_score(vital, poor) == pytest.approx(50)
    assert vital_score(vital, 1.5 * poor) == pytest.approx(25)
    assert vital_score(vital, 2 * poor) == 0
    assert vital_score(vital, 10 * poor) == 0
    assert vital_score(vital, None) is None


def test_vital_score_is_continuous_and_decreasing() -> None:
    values = [i * 10.0 for i in range(1000)]
    scores = [vital_score("lcp", v) for v in values]
    assert all(a >= b for a, b in zip(scores, scores[1:]))
    assert max(abs(a - b) for a, b in zip(scores, scores[1:])) < 0.5  # no jumps at 2500 or 4000


def test_band_score_higher_is_better_mirrors() -> None:
    assert band_score(1.0, 0.99, 0.95, 0.90) == 100
    assert band_score(0.99, 0.99, 0.95, 0.90) == 100
    assert band_score(0.97, 0.99, 0.95, 0.90) == pytest.approx(75)
    assert band_score(0.95, 0.99, 0.95, 0.90) == pytest.approx(50)
    assert band_score(0.925, 0.99, 0.95, 0.90) == pytest.approx(25)
    assert band_score(0.5, 0.99, 0.95, 0.90) == 0
    assert band_score(None, 0.99, 0.95) is None
    assert band_score(math.nan, 0.99, 0.95) is None


def test_weighted_mean_renormalises_over_components_with_data() -> None:
    assert weighted_mean({"a": 80.0, "b": None}, {"a": 0.3, "b": 0.7}) == 80.0
    assert weighted_mean({"a": 100.0, "b": 0.0}, {"a": 0.3, "b": 0.1}) == pytest.approx(75)
    assert weighted_mean({"a": None, "b": None}, {"a": 0.3, "b": 0.7}) is None
    full = {"errors": 100.0, "performance": 0.0, "user_experience": 0.0, "alerts": 0.0, "business": 0.0}
    assert health_score(full) == 30.0  # errors weigh 0.30 of all five
    without_business = {**full, "business": None}
    assert health_score(without_business) == round(100 * 0.30 / 0.85, 1) == 35.3
    only_performance = {k: None for k in full} | {"performance": 62.0}
    assert health_score(only_performance) == 62.0
    assert health_score({k: None for k in full}) is None
    assert sum(COMPONENT_WEIGHTS.values()) == pytest.approx(1.0)


def test_health_status_bands() -> None:
    assert health_status(100) == "healthy" and health_status(80.0) == "healthy"
    assert health_status(79.9) == "degraded" and health_status(50.0) == "degraded"
    assert health_status(49.9) == "unhealthy" and health_status(0) == "unhealthy"
    assert health_status(None) is None


# ---------------------------------------------------------------------------------------- null handling


def test_a_period_without_data_is_all_null_never_zero_or_100() -> None:
    r = report_of(figures_template())
    assert not has_data(figures_template())
    assert set(r["errors"].values()) == {None}
    assert set(r["user_experience"].values()) == {None}
    assert set(r["alerts"].values()) == {None}
    assert set(r["business"].values()) == {None}
    assert r["performance"]["score"] is None
    assert all(set(r["performance"][v].values()) == {None} for v in THRESHOLDS)
    assert r["health_score"] is None and r["health_status"] is None
    assert r["recommendations"] == [] and r["active_incidents"] == []
    assert all(t == {"current": None, "previous": None, "change": None, "direction": None} for t in r["trend"].values())


def test_shape_has_every_key() -> None:
    r = report_of(worked_example())
    assert set(r) >= {"generated_at", "period", "project", "errors", "performance", "user_experience", "alerts",
                      "business", "active_incidents", "recommendations", "health_score", "health_status", "trend"}
    assert set(r["period"]) == {"start", "end", "length"} and r["period"]["length"] == "24h"
    assert r["period"]["start"] == "2026-11-22T12:00:00Z" and r["generated_at"] == "2026-11-23T12:00:00Z"
    assert set(r["errors"]) == {"total_24h", "error_rate", "unique_errors", "auto_resolved", "p95_resolution_time",
                                "affected_users"}
    assert set(r["performance"]) == {"lcp", "inp", "fid", "cls", "ttfb", "fcp", "score"}
    assert all(set(r["performance"][v]) == {"p50", "p75", "p95", "rating", "score"} for v in THRESHOLDS)
    assert set(r["user_experience"]) == {"rage_clicks", "dead_clicks", "avg_session_duration", "bounce_rate",
                                         "pages_per_session", "sessions"}
    assert set(r["alerts"]) == {"total", "critical", "warnings", "info", "auto_remediated", "mttr"}
    assert set(r["business"]) == {"checkout_success_rate", "api_success_rate", "revenue_impact", "uptime"}
    assert set(r["trend"]) == {"health_score", "error_rate", "lcp_p75", "inp_p75", "api_success_rate",
                               "checkout_success_rate", "bounce_rate", "rage_clicks"}
    assert all(set(t) == {"current", "previous", "change", "direction"} for t in r["trend"].values())


def test_traffic_without_page_views_has_no_error_rate_and_leaves_the_errors_component_out() -> None:
    f = figures_template()
    f["rollups"].update(rows=10, errors=3, api_calls=100, api_failures=0)
    f["uptime"].update(api_minutes=10, up_minutes=10)
    f["errors"].update(raw_errors=3, unique_errors=2, affected_users=0)
    r = report_of(f)
    assert r["errors"]["total_24h"] == 3 and r["errors"]["error_rate"] is None
    assert r["errors"]["affected_users"] == 0  # a measured zero: the period has data
    assert r["errors"]["p95_resolution_time"] is None  # nothing resolved: no time to measure
    assert r["health_components"]["errors"]["score"] is None
    assert r["health_components"]["errors"]["effective_weight"] == 0.0
    # business 100 (API and uptime), alerts 100 (nothing fired): the rest has no data
    assert r["health_components"]["business"]["score"] == 100.0
    assert r["health_components"]["business"]["effective_weight"] == 0.5
    assert r["health_score"] == 100.0 and r["health_status"] == "healthy"
    assert r["business"]["checkout_success_rate"] is None and r["business"]["revenue_impact"] is None
    assert r["user_experience"]["sessions"] == 0 and r["user_experience"]["bounce_rate"] is None


def test_revenue_impact_needs_an_order_value_and_checkout_calls() -> None:
    f = figures_template()
    f["rollups"].update(rows=5, checkout_calls=40, checkout_failures=3, api_calls=40, api_failures=3)
    assert report_of(f)["business"]["revenue_impact"] is None
    assert report_of(f, average_order_value=80.5)["business"]["revenue_impact"] == 241.5
    assert report_of(f, average_order_value=80.5)["business"]["checkout_success_rate"] == 0.925
    f["rollups"].update(checkout_calls=0, checkout_failures=0)
    assert report_of(f, average_order_value=80.5)["business"]["revenue_impact"] is None


# ---------------------------------------------------------------------------------------- the worked example


def test_worked_example_of_the_docs() -> None:
    r = report_of(worked_example())
    assert r["errors"]["error_rate"] == 0.02
    perf = r["performance"]
    assert (perf["lcp"]["rating"], perf["lcp"]["score"]) == ("needs-improvement", 83.3)
    assert (perf["inp"]["rating"], perf["inp"]["score"]) == ("good", 100.0)
    assert (perf["cls"]["rating"], perf["cls"]["score"]) == ("poor", 40.0)
    assert perf["fcp"]["score"] is None and perf["score"] == 74.4  # (83.33 + 100 + 40) / 3, equal weights here
    components = {k: c["score"] for k, c in r["health_components"].items()}
    assert components == {"errors": 87.5, "performance": 74.4, "user_experience": 87.5, "alerts": 97.0,
                          "business": None}
    assert r["health_components"]["errors"]["effective_weight"] == round(0.30 / 0.85, 4)
    assert r["health_score"] == 85.3 and r["health_status"] == "healthy"  # 72.536 / 0.85


def test_alert_penalties() -> None:
    f = worked_example()
    f["alerts"].update(fired=4, critical=2, warnings=1, info=1)
    f["incidents"] = [{"fingerprint": "f1", "rule": "error-rate", "severity": "critical", "level": "critical",
                       "summary": "x", "starts_at": "2026-11-23T11:00:00Z", "value": 0.2, "threshold": 0.1},
                      {"fingerprint": "f2", "rule": "slo", "severity": "page", "level": "page",
                       "summary": "y", "starts_at": "2026-11-23T10:00:00Z", "value": None, "threshold": None}]
    r = report_of(f)
    # 100 - 2*10 - 3 - 1 (fired) - 25 (critical firing) - 10 (another level firing)
    assert r["health_components"]["alerts"]["score"] == 41.0
    assert [i["fingerprint"] for i in r["active_incidents"]] == ["f1", "f2"]
    assert "level" not in r["active_incidents"][0]
    f["alerts"].update(critical=20)
    assert report_of(f)["health_components"]["alerts"]["score"] == 0.0  # floored


# ---------------------------------------------------------------------------------------- trend


def test_trend_directions() -> None:
    assert trend_entry(0.12, 0.10)["direction"] == "up"
    assert trend_entry(0.08, 0.10)["direction"] == "down"
    assert trend_entry(0.10, 0.10) == {"current": 0.10, "previous": 0.10, "change": 0.0, "direction": "flat"}
    assert trend_entry(100.5, 100.0)["direction"] == "flat"  # within 1 % of the previous value
    assert trend_entry(102.0, 100.0)["direction"] == "up"
    assert trend_entry(3, 0)["direction"] == "up" and trend_entry(0, 0)["direction"] == "flat"
    assert trend_entry(0.5, None) == {"current": 0.5, "previous": None, "change": None, "direction": None}
    assert trend_entry(None, 0.5)["direction"] is None
    assert trend_entry(0.3, 0.1)["change"] == 0.2  # rounded, no 0.19999999999999998


def test_trend_of_the_report_compares_with_the_previous_period() -> None:
    previous = worked_example()
    current = copy.deepcopy(previous)
    current["rollups"].update(errors=80, vitals=vitals(lcp=5000, inp=150, cls=0.3))
    current["ux"].update(rage_clicks=30)
    r = report_of(current, previous)
    t = r["trend"]
    assert t["error_rate"] == {"current": 0.08, "previous": 0.02, "change": 0.06, "direction": "up"}
    assert t["lcp_p75"] == {"current": 5000, "previous": 3000, "change": 2000, "direction": "up"}
    assert t["inp_p75"]["direction"] == "flat"
    assert t["rage_clicks"] == {"current": 30, "previous": 15, "change": 15, "direction": "up"}
    assert t["health_score"]["previous"] == 85.3 and t["health_score"]["direction"] == "down"
    assert t["health_score"]["current"] == r["health_score"]
    assert t["api_success_rate"]["direction"] is None  # no API calls in either period


# ---------------------------------------------------------------------------------------- recommendations


def recs_of(f: dict[str, Any], **kw: Any) -> list[dict[str, str]]:
    return report_of(f, **kw)["recommendations"]


def test_no_recommendation_when_nothing_crosses_a_threshold() -> None:
    f = worked_example()
    f["rollups"]["vitals"] = vitals(lcp=2000, inp=100, cls=0.05)
    f["ux"].update(rage_clicks=0, dead_clicks=0)
    assert recs_of(f) == []


def test_error_rate_recommendation_names_the_top_issue() -> None:
    f = worked_example()
    f["rollups"]["vitals"] = vitals(lcp=2000)
    f["ux"].update(rage_clicks=0, dead_clicks=0)
    f["top_issue"] = {"fingerprint": "3f9a1c2b77aa00112233", "title": "TypeError: cart is undefined",
                      "culprit": "checkout.js", "events": 61}
    f["rollups"]["errors"] = 50  # exactly 5 %: not above it
    assert recs_of(f) == []
    f["rollups"]["errors"] = 60
    [rec] = recs_of(f)
    assert rec["priority"] == "medium" and rec["area"] == "errors"
    assert "6.0%" in rec["message"] and "TypeError: cart is undefined" in rec["message"] and "3f9a1c2b77aa" in rec["message"]
    f["rollups"]["errors"] = 120
    [rec] = recs_of(f)
    assert rec["priority"] == "high" and "above 10%" in rec["message"]


def test_vital_recommendations_name_the_worst_page() -> None:
    f = worked_example()
    f["ux"].update(rage_clicks=0, dead_clicks=0)
    f["worst_pages"]["lcp"] = {"page": "/product/:id", "p75": 3900.0, "samples": 412}
    f["worst_pages"]["cls"] = {"page": "/", "p75": 0.41, "samples": 90}
    recs = recs_of(f)
    assert [(r["priority"], r["area"]) for r in recs] == [("high", "performance"), ("medium", "performance")]
    assert recs[0]["message"].startswith("CLS p75 is 0.300 (poor") and "Worst page: / (p75 0.410" in recs[0]["message"]
    assert "LCP p75 is 3000 ms (needs-improvement" in recs[1]["message"]
    assert "/product/:id (p75 3900 ms over 412 samples)" in recs[1]["message"]


def test_alert_business_and_click_recommendations_high_first() -> None:
    f = worked_example()
    f["rollups"]["vitals"] = vitals(lcp=2000)
    f["rollups"].update(checkout_calls=100, checkout_failures=15, api_calls=1000, api_failures=15)
    f["uptime"].update(api_minutes=1000, up_minutes=995)
    f["ux"].update(rage_clicks=12, dead_clicks=3)
    f["top_clicks"] = {"rage_clicks": {"page": "/checkout", "selector": "button#pay", "n": 7},
                       "dead_clicks": {"page": "/", "selector": "img.hero", "n": 2}}
    f["incidents"] = [{"fingerprint": "f1", "rule": "checkout-failure-rate", "severity": "critical",
                       "level": "critical", "summary": "15% of checkout calls failed", "starts_at": "2026-11-23T11:00:00Z",
                       "value": 0.15, "threshold": 0.1}]
    recs = recs_of(f, average_order_value=120.0)
    assert [(r["priority"], r["area"]) for r in recs] == [
        ("high", "alerts"), ("high", "business"), ("medium", "business"), ("medium", "business"),
        ("medium", "user_experience"), ("low", "user_experience")]
    assert "1 critical alert firing: checkout-failure-rate: 15% of checkout calls failed" in recs[0]["message"]
    assert "Checkout success is 85.0%" in recs[1]["message"] and "1,800.00" in recs[1]["message"]
    assert "API success is 98.5%" in recs[2]["message"]
    assert "Uptime is 99.50%" in recs[3]["message"]
    assert "12 rage clicks; most on button#pay at /checkout (7)" in recs[4]["message"]
    assert "3 dead clicks; most on img.hero at / (2)" in recs[5]["message"]


def test_recommendations_work_on_sections_directly() -> None:
    f = worked_example()
    f["ux"].update(bounce_rate=0.8, rage_clicks=0, dead_clicks=0)
    f["rollups"]["vitals"] = vitals(lcp=2000)
    current, _ = sections(f)
    assert recommendations(current, f) == [
        {"priority": "medium", "area": "user_experience", "message": "Bounce rate is 80.0% (above 70%)."}]


# ---------------------------------------------------------------------------------------- periods, queries


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("24h", 86_400), ("7d", 604_800), ("30d", 2_592_000),
                                               ("2w", 1_209_600), (" 12H ", 43_200), ("90d", 7_776_000)])
def test_parse_period(text: str, seconds: int) -> None:
    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "5x", "1m", "0h", "91d", "1.5h", "-1h", "h"])
def test_bad_periods_are_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="period must"):
        parse_period(text)
    if text:  # an empty ?period= is the default
        with pytest.raises(ApiError) as info:
            report_params(text, None)
        assert info.value.status == 400 and "period must" in info.value.message


def test_report_params_defaults() -> None:
    assert report_params(None, None) == (86_400, None) == report_params("", None)
    assert report_params("7d", "") == (604_800, None)
    assert report_params("1h", "shop") == (3600, "shop")


def test_format_period() -> None:
    assert [format_period(s) for s in (3600, 86_400, 129_600, 172_800, 604_800, 2_592_000)] == \
        ["1h", "24h", "36h", "2d", "7d", "30d"]


def test_window_picks_the_rollup_table_and_aligns_buckets() -> None:
    day = queries.Window(1_000_000_000 - 86_400, 1_000_000_000, "shop")
    assert day.rollup == ("rollups_minute", "minute", 60)
    week = queries.Window(1_000_000_000 - 7 * 86_400, 1_000_000_000, None)
    assert week.rollup == ("rollups_hour", "hour", 3600)
    # 1_000_000_000 is 01:46:40 UTC: hour buckets that start inside each period, tiling
    where, period = week.buckets("hour", 3600)
    assert "hour >= toDateTime(998791200, 'UTC')" in where and "hour < toDateTime(1000000800, 'UTC')" in where
    assert period == "if(hour >= toDateTime(999396000, 'UTC'), 'current', 'previous')"
    assert "project" not in where
    assert day.project_filter() == " AND project = 'shop'"
    assert queries.Window(0, 60, "it's").project_filter() == " AND project = 'it\\'s'"
    with pytest.raises(ValueError):
        queries.Window(10, 10)


def test_alert_summary_sql_names_remediated_rules() -> None:
    w = queries.Window(0, 3600)
    assert "status = 'resolved' AND 0" in queries.alert_summary(w, [])
    assert "rule IN ('api-latency', 'error-rate')" in queries.alert_summary(w, ["error-rate", "api-latency"])


# ---------------------------------------------------------------------------------------- GET /api/report


async def test_report_endpoint_checks_access_and_the_period(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from tests.unit.test_api_access import client_for

    client = await client_for(monkeypatch, tmp_path, PULSE_COLLECTOR_API_TOKEN="s3cret")
    try:
        resp = await client.get("/api/report")
        assert resp.status == 401
        auth = {"Authorization": "Bearer s3cret"}
        resp = await client.get("/api/report?period=5x", headers=auth)
        assert resp.status == 400 and "period must be a whole number of hours" in (await resp.json())["error"]
        resp = await client.get("/api/report?period=7d&project=shop", headers=auth)
        # valid: the queries go to the sink only (a long-running process never opens chDB itself)
        assert resp.status == 503 and "sink" in (await resp.json())["error"]
        assert not (tmp_path / "chdb").exists()
    finally:
        await client.close()
