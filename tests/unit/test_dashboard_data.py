"""The dashboard without a database: period plans and their SQL, web-vital ratings, the assembly of every
panel from query rows, and the HTTP routes (page, static files, access, 400/401/503)."""

from __future__ import annotations

import hashlib
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from pipeline.dashboard import data as dashboard
from pipeline.dashboard.data import (
    alerts_panel,
    assemble,
    clicks_panel,
    error_rate_series,
    panel_counts,
    rate_vital,
    summary,
    top_issues_panel,
    vitals_panel,
)
from pipeline.dashboard.queries import PERIODS, bucket_for, parse_period, period_label, plan
from pipeline.dashboard.routes import STATIC_DIR
from pipeline.settings import Settings
from tests.unit.test_api_access import client_for

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_795_000_000  # 2026-11-18 11:06:40 UTC: not on a minute boundary
CHART_JS_SHA256 = "338399fb5bafe598d21cfc471b0590b61ceb321a985fade4f68499b151f67fbf"  # chart.js 4.6.1 dist/chart.umd.js


# ------------------------------------------------------------------ ratings


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("LCP", 0, "good"), ("LCP", 2500, "good"), ("LCP", 2501, "needs-improvement"), ("LCP", 4000, "needs-improvement"),
    ("LCP", 4001, "poor"),
    ("INP", 200, "good"), ("INP", 201, "needs-improvement"), ("INP", 500, "needs-improvement"), ("INP", 501, "poor"),
    ("CLS", 0.1, "good"), ("CLS", 0.101, "needs-improvement"), ("CLS", 0.25, "needs-improvement"), ("CLS", 0.251, "poor"),
    ("FCP", 1800, "good"), ("FCP", 1801, "needs-improvement"), ("FCP", 3000, "needs-improvement"), ("FCP", 3001, "poor"),
    ("TTFB", 800, "good"), ("TTFB", 801, "needs-improvement"), ("TTFB", 1800, "needs-improvement"),
    ("TTFB", 1801, "poor"),
    ("LCP", None, None), ("MEMORY", 10, None),
])
def test_vitals_are_rated_by_the_spec_thresholds(name: str, value: float | None, expected: str | None) -> None:
    assert rate_vital(name, value) == expected


def _totals(**vitals: tuple[float | None, int, int, int]) -> dict[str, Any]:
    row: dict[str, Any] = {"n_events": 500, "n_errors": 12, "n_pageviews": 200, "n_api_calls": 80, "n_api_failures": 4,
                           "api_p95": 3210.7}
    for name in ("lcp", "inp", "cls", "fcp", "ttfb"):
        p75, good, ni, poor = vitals.get(name, (None, 0, 0, 0))
        row.update({f"{name}_p75": p75, f"{name}_n_good": good, f"{name}_n_ni": ni, f"{name}_n_poor": poor})
    return row


def test_vitals_panel_rates_the_p75_as_displayed_and_keeps_the_sample_breakdown() -> None:
    panel = vitals_panel(_totals(lcp=(2500.4, 60, 30, 10), inp=(612.0, 5, 5, 10), cls=(0.2504, 7, 2, 1),
                                 fcp=(1799.6, 9, 0, 0), ttfb=(float("nan"), 0, 0, 0)))
    by = {v["name"]: v for v in panel}
    assert [v["name"] for v in panel] == ["LCP", "INP", "CLS", "FCP", "TTFB"]
    assert by["LCP"] == {"name": "LCP", "unit": "ms", "p75": 2500.0, "rating": "good", "samples": 100, "good": 60,
                         "needs_improvement": 30, "poor": 10, "thresholds": {"good": 2500, "poor": 4000}}
    assert (by["INP"]["p75"], by["INP"]["rating"]) == (612.0, "poor")
    assert (by["CLS"]["p75"], by["CLS"]["rating"], by["CLS"]["unit"]) == (0.25, "needs-improvement", "")
    assert (by["FCP"]["p75"], by["FCP"]["rating"]) == (1800.0, "good")
    # no samples: no value and no rating, whatever the sketch said
    assert (by["TTFB"]["p75"], by["TTFB"]["rating"], by["TTFB"]["samples"]) == (None, None, 0)


def test_summary_derives_rates_and_leaves_them_null_without_a_denominator() -> None:
    s = summary(_totals())
    assert s == {"events": 500, "errors": 12, "pageviews": 200, "error_rate": 0.06, "api_calls": 80,
                 "api_failures": 4, "api_failure_rate": 0.05, "api_p95_ms": 3211.0}
    empty = summary({})
    assert empty["error_rate"] is None and empty["api_failure_rate"] is None and empty["api_p95_ms"] is None
    assert empty["errors"] == 0


# ------------------------------------------------------------------ periods and SQL


@pytest.mark.parametrize(("period", "table", "column", "bucket"), [
    ("15m", "rollups_minute", "minute", 60), ("1h", "rollups_minute", "minute", 60),
    ("6h", "rollups_minute", "minute", 60), ("24h", "rollups_minute", "minute", 300),
    ("7d", "rollups_hour", "hour", 3600),
])
def test_plan_reads_minutes_up_to_a_day_and_hours_beyond(period: str, table: str, column: str, bucket: int) -> None:
    q = plan(parse_period(period), NOW)
    assert (q.table, q.time_column, q.bucket_s) == (table, column, bucket)
    assert q.start_s % bucket == 0 and NOW - q.period_s < q.start_s <= NOW - q.period_s + bucket
    for sql in (q.error_rate, q.totals, q.projects):
        assert f"FROM {table} " in sql and f"{column} >= toDateTime({q.start_s}, 'UTC')" in sql
    assert f"toDateTime64({q.start_s}, 3, 'UTC')" in q.top_issues and "rage_clicks FINAL" in q.clicks
    assert period_label(q.period_s) == period


def test_bad_periods_are_refused_with_the_valid_ones_named() -> None:
    for bad in ("2h", "", "1H", "30d"):
        with pytest.raises(ValueError, match="15m, 1h, 6h, 24h, 7d"):
            parse_period(bad)
    with pytest.raises(ValueError):
        plan(0, NOW)
    assert bucket_for(PERIODS["6h"]) == 60 and period_label(120) == "120s"


def test_project_filter_is_a_quoted_literal_in_every_query() -> None:
    q = plan(3600, NOW, "it's\\x")
    literal = "'it\\'s\\\\x'"
    for sql in (q.error_rate, q.totals, q.top_issues, q.clicks, q.active_alerts, q.issue_status(["a'b"])):
        assert f"project = {literal}" in sql, sql
    assert "'a\\'b'" in q.issue_status(["a'b"])
    assert "project =" not in plan(3600, NOW).active_alerts
    assert "project =" not in q.projects  # the picker lists every project


def test_active_alerts_take_the_latest_event_per_fingerprint_and_keep_firing_ones() -> None:
    sql = plan(3600, NOW).active_alerts
    assert "GROUP BY fingerprint" in sql and "argMax(" in sql and "WHERE last_status = 'firing'" in sql
    # not limited to the period, except issue alerts (moments the rules never resolve)
    q = plan(3600, NOW)
    assert "alerts FINAL WHERE (JSONExtractString(annotations, 'kind') != 'issue' OR " \
           f"at >= toDateTime({q.start_s}, 'UTC'))" in sql


# ------------------------------------------------------------------ panels


def test_error_rate_series_fills_empty_buckets_and_divides_by_page_views() -> None:
    q = plan(900, NOW)  # 15 points of a minute; the last one holds NOW
    first = q.start_s
    rows = [{"t": first, "n_errors": 2, "n_pageviews": 40}, {"t": first + 120, "n_errors": 0, "n_pageviews": 10},
            {"t": first + 180, "n_errors": 3, "n_pageviews": 0}]
    points = error_rate_series(rows, q.start_s, NOW, 60)
    assert len(points) == 15 and points[0]["t"] == first * 1000 and points[-1]["t"] == NOW // 60 * 60 * 1000
    assert points[0] == {"t": first * 1000, "errors": 2, "pageviews": 40, "rate": 0.05}
    assert points[1] == {"t": (first + 60) * 1000, "errors": 0, "pageviews": 0, "rate": None}
    assert points[2]["rate"] == 0.0  # page views without errors is a rate of zero, not a gap
    assert points[3]["rate"] is None and points[3]["errors"] == 3  # errors without page views: no rate
    # a client clock ahead of ours still shows; rows before the window do not
    later = error_rate_series([{"t": NOW // 60 * 60 + 120, "n_errors": 1, "n_pageviews": 1},
                               {"t": first - 60, "n_errors": 1, "n_pageviews": 1}], q.start_s, NOW, 60)
    assert len(later) == 16 and later[-1]["rate"] == 1.0


def test_top_issues_use_the_period_counts_and_the_issue_status() -> None:
    period_rows = [
        {"project": "shop", "fingerprint": "b", "issue_title": "TypeError: x", "issue_culprit": "checkout.js in render",
         "n_events": 5, "n_users": 3, "last_seen_ms": 1_795_000_000_000},
        {"project": "shop", "fingerprint": "a", "issue_title": "", "issue_culprit": "", "n_events": 9, "n_users": 1,
         "last_seen_ms": 1_794_999_000_000},
        {"project": "blog", "fingerprint": "c", "issue_title": "RangeError", "issue_culprit": "", "n_events": 5,
         "n_users": 5, "last_seen_ms": 1_795_000_100_000},
    ]
    statuses = [{"project": "shop", "fingerprint": "a", "status": "escalating", "title": "ChunkLoadError: 3",
                 "total_events": 120, "first_seen_ms": 1_790_000_000_000},
                {"project": "shop", "fingerprint": "b", "status": "regressed", "title": "TypeError: x", "total_events": 7,
                 "first_seen_ms": 1_794_000_000_000},
                {"project": "other", "fingerprint": "c", "status": "resolved", "title": "?", "total_events": 1,
                 "first_seen_ms": 0}]
    issues = top_issues_panel(period_rows, statuses)
    assert [(i["project"], i["fingerprint"]) for i in issues] == [("shop", "a"), ("blog", "c"), ("shop", "b")]
    a, c, b = issues
    assert a["title"] == "ChunkLoadError: 3" and a["status"] == "escalating" and a["events"] == 9
    assert a["total_events"] == 120 and a["first_seen"] == "2026-09-21T14:13:20.000Z"
    assert b == {"project": "shop", "fingerprint": "b", "title": "TypeError: x", "culprit": "checkout.js in render",
                 "status": "regressed", "events": 5, "users": 3, "last_seen": "2026-11-18T11:06:40.000Z",
                 "total_events": 7, "first_seen": "2026-11-06T21:20:00.000Z"}
    # same fingerprint in another project is another issue: no status known yet -> new, as the view says
    assert c["status"] == "new" and c["total_events"] is None


def test_clicks_by_page_most_frustrating_first() -> None:
    rows = [{"page": "/", "n_rage": 0, "n_dead": 2}, {"page": "/checkout", "n_rage": 1, "n_dead": 3},
            {"page": "/search", "n_rage": 0, "n_dead": 0}, {"page": "/cart", "n_rage": 3, "n_dead": 1}]
    # most clicks in total first; on a tie, more rage clicks (the stronger signal); pages with neither left out
    assert clicks_panel(rows) == [{"page": "/cart", "rage_clicks": 3, "dead_clicks": 1},
                                  {"page": "/checkout", "rage_clicks": 1, "dead_clicks": 3},
                                  {"page": "/", "rage_clicks": 0, "dead_clicks": 2}]


def test_active_alerts_most_severe_then_most_recent_and_only_firing() -> None:
    def row(fp: str, sev: str, at_ms: int, status: str = "firing") -> dict[str, Any]:
        return {"fingerprint": fp, "last_status": status, "rule_name": f"rule-{fp}", "sev": sev, "alert_project": "shop",
                "summary_text": f"summary {fp}", "starts_at_ms": at_ms - 60_000, "last_value": float("nan"),
                "threshold_value": 0.05, "runbook": "", "last_at_ms": at_ms}
    alerts = alerts_panel([row("w-old", "warning", 1_000_000), row("c", "critical", 500_000),
                           row("w-new", "warning", 2_000_000), row("gone", "critical", 3_000_000, "resolved")])
    assert [a["fingerprint"] for a in alerts] == ["c", "w-new", "w-old"]
    assert alerts[0]["value"] is None and alerts[0]["threshold"] == 0.05 and alerts[0]["runbook_url"] is None
    assert alerts[1]["starts_at"] == "1970-01-01T00:32:20.000Z" and alerts[1]["summary"] == "summary w-new"


def test_assemble_builds_every_panel_and_counts_what_holds_data() -> None:
    q = plan(3600, NOW, "shop")
    doc = assemble(
        q, series_rows=[{"t": q.start_s + 600, "n_errors": 1, "n_pageviews": 20},
                        {"t": q.start_s + 660, "n_errors": 0, "n_pageviews": 5}],
        totals_rows=[_totals(lcp=(3100.0, 1, 1, 0), cls=(0.01, 2, 0, 0))],
        issue_rows=[{"project": "shop", "fingerprint": "f", "issue_title": "E", "n_events": 1, "n_users": 1,
                     "last_seen_ms": NOW * 1000}],
        status_rows=[], click_rows=[{"page": "/cart", "n_rage": 1, "n_dead": 0}], alert_rows=[],
        project_rows=[{"project": "shop"}, {"project": "blog"}, {"project": ""}], generated_at_s=NOW)
    assert doc["period"] == "1h" and doc["period_s"] == 3600 and doc["project"] == "shop"
    assert doc["source"] == "rollups_minute" and doc["projects"] == ["blog", "shop"]
    assert doc["generated_at"] == doc["to"] == "2026-11-18T11:06:40.000Z"
    assert doc["error_rate"]["bucket_s"] == 60 and len(doc["error_rate"]["points"]) == 60
    assert doc["counts"] == {"errorRate": 2, "topIssues": 1, "vitals": 2, "clicks": 1, "alerts": 0}
    assert doc["counts"] == panel_counts(doc)
    assert [v["rating"] for v in doc["vitals"]] == ["needs-improvement", None, "good", None, None]
    # no rows at all (an empty database): every panel empty, nothing breaks
    empty = assemble(q, series_rows=[], totals_rows=[], issue_rows=[], status_rows=[], click_rows=[], alert_rows=[],
                     project_rows=[], generated_at_s=NOW)
    assert empty["counts"] == {"errorRate": 0, "topIssues": 0, "vitals": 0, "clicks": 0, "alerts": 0}
    assert empty["summary"]["error_rate"] is None and len(empty["error_rate"]["points"]) == 60


async def test_dashboard_data_runs_each_panel_query_and_looks_up_the_status_of_its_issues(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def fake_rows(settings: Settings, sql: str, allow_direct: bool = False) -> list[dict[str, Any]]:
        seen.append(sql)
        assert allow_direct is False
        if sql.startswith("SELECT intDiv"):
            return [{"t": NOW // 60 * 60, "n_errors": 1, "n_pageviews": 4}]
        if "FROM errors" in sql:
            return [{"project": "demo", "fingerprint": "fp1", "issue_title": "TypeError", "n_events": 3, "n_users": 2,
                     "last_seen_ms": NOW * 1000}]
        if "FROM issues" in sql:
            assert "IN ('fp1')" in sql
            return [{"project": "demo", "fingerprint": "fp1", "status": "ongoing", "total_events": 40,
                     "first_seen_ms": 0}]
        if "pulseQuantile" in sql:
            return [_totals(inp=(150.0, 3, 0, 0))]
        if "rage_clicks" in sql:
            return [{"page": "/cart", "n_rage": 2, "n_dead": 5}]
        if "FROM alerts" in sql:
            return [{"fingerprint": "a1", "last_status": "firing", "rule_name": "error-rate", "sev": "critical",
                     "last_at_ms": NOW * 1000}]
        if "DISTINCT project" in sql:
            return [{"project": "demo"}]
        raise AssertionError(sql)

    monkeypatch.setattr(dashboard, "query_rows", fake_rows)
    doc = await dashboard.dashboard_data(Settings(), 900, None, now_s=NOW)
    assert len(seen) == 7 and seen[-1].startswith("SELECT project, fingerprint, status")
    assert doc["counts"] == {"errorRate": 1, "topIssues": 1, "vitals": 1, "clicks": 1, "alerts": 1}
    assert doc["top_issues"][0]["status"] == "ongoing" and doc["alerts"][0]["rule"] == "error-rate"
    assert doc["error_rate"]["points"][-1]["rate"] == 0.25 and doc["period"] == "15m"


async def test_dashboard_data_skips_the_status_lookup_without_issues(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def no_rows(settings: Settings, sql: str, allow_direct: bool = False) -> list[dict[str, Any]]:
        seen.append(sql)
        return []

    monkeypatch.setattr(dashboard, "query_rows", no_rows)
    doc = await dashboard.dashboard_data(Settings(), 3600, "demo", now_s=NOW)
    assert len(seen) == 6 and not any("FROM issues" in s for s in seen)
    assert doc["top_issues"] == [] and len(doc["error_rate"]["points"]) == 60 and doc["project"] == "demo"


# ------------------------------------------------------------------ HTTP


async def test_the_page_and_its_static_files_are_served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client = await client_for(monkeypatch, tmp_path, PULSE_COLLECTOR_API_TOKEN="s3cret")
    try:
        resp = await client.get("/dashboard")  # no token needed: the page holds no data
        html = await resp.text()
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        for src in ("/dashboard/static/vendor/chart.umd.js", "/dashboard/static/dashboard.js",
                    "/dashboard/static/dashboard.css"):
            assert f'"{src}"' in html
            got = await client.get(src)
            assert got.status == 200, src
            assert got.headers["Content-Type"].startswith("text/javascript" if src.endswith(".js") else "text/css")
        chart = await (await client.get("/dashboard/static/vendor/chart.umd.js")).read()
        assert hashlib.sha256(chart).hexdigest() == CHART_JS_SHA256 and b"Chart.js v4.6.1" in chart[:200]
        license_text = await (await client.get("/dashboard/static/vendor/chart.js-LICENSE.md")).text()
        assert "MIT License" in license_text
        for bad in ("/dashboard/static/nope.js", "/dashboard/static/../data.py", "/dashboard/static/%2e%2e/routes.py",
                    "/dashboard/static/index.html", "/dashboard/static/vendor", "/dashboard/static/a%00.js",
                    f"/dashboard/static/{'x' * 5000}.js"):
            resp = await client.get(bad)
            assert resp.status == 404, bad
    finally:
        await client.close()


async def test_the_data_endpoint_checks_access_then_the_period(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client = await client_for(monkeypatch, tmp_path, PULSE_COLLECTOR_API_TOKEN="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    try:
        resp = await client.get("/api/dashboard?period=1h")
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        resp = await client.get("/api/dashboard?period=2h", headers=auth)
        assert resp.status == 400 and "15m, 1h, 6h, 24h, 7d" in (await resp.json())["error"]
        resp = await client.get(f"/api/dashboard?project={'x' * 300}", headers=auth)
        assert resp.status == 400
        # past the checks: no sink runs here, so 503 with Retry-After (and the database is never opened directly)
        resp = await client.get("/api/dashboard?period=7d&project=demo", headers=auth)
        assert resp.status == 503 and resp.headers["Retry-After"] == "5" and "sink" in (await resp.json())["error"]
        assert not (tmp_path / "chdb").exists()
    finally:
        await client.close()


def test_every_static_file_ships_with_the_package() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "pipeline.dashboard"]
    files = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert {"static/index.html", "static/dashboard.js", "static/dashboard.css", "static/vendor/chart.umd.js",
            "static/vendor/chart.js-LICENSE.md"} <= set(files)
    unshipped = [f for f in files if not any(fnmatch(f, pat) and "/" not in f[len(pat.rsplit("/", 1)[0]) + 1:]
                                             for pat in patterns)]
    assert unshipped == []
