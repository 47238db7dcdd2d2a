"""What ``GET /api/dashboard`` answers: every panel's data as plain JSON.

``dashboard_data`` runs the panel queries (``queries.py``) through the sink, concurrently, and hands
the rows to ``assemble``; everything below the I/O line is pure (rows in, dicts out) and unit-tested.

Web vitals are rated at their p75 by the spec's thresholds (``pipeline.rollups.minute.VITAL_THRESHOLDS``:
good <= the first, poor > the second, needs-improvement in between), on the value as displayed (ms
rounded to whole milliseconds, CLS to three decimals), as the cookbook's "p75 LCP by page" does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from pipeline.api.common import query_rows
from pipeline.dashboard.queries import DASHBOARD_VITALS, DashboardQueries, period_label, plan
from pipeline.rollups.minute import VITAL_THRESHOLDS
from pipeline.settings import Settings

GOOD, NEEDS_IMPROVEMENT, POOR = "good", "needs-improvement", "poor"
RATINGS = (GOOD, NEEDS_IMPROVEMENT, POOR)
UNITS = {"LCP": "ms", "INP": "ms", "CLS": "", "FCP": "ms", "TTFB": "ms"}
Row = Mapping[str, Any]


# ------------------------------------------------------------------ pure helpers


def number(value: Any) -> float | None:
    """A finite float, else None (ClickHouse sends an empty sketch's quantile as null or nan)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def count(value: Any) -> int:
    f = number(value)
    return int(f) if f is not None else 0


def iso_ms(ms: Any) -> str | None:
    """Epoch milliseconds as an ISO-8601 UTC string with a ``Z``."""
    f = number(ms)
    if f is None:
        return None
    return datetime.fromtimestamp(f / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None


def display_value(name: str, value: float | None) -> float | None:
    """A vital as shown: CLS to three decimals, times to whole milliseconds."""
    if value is None:
        return None
    return round(value, 3) if name == "CLS" else float(round(value))


def rate_vital(name: str, p75: float | None) -> str | None:
    """good / needs-improvement / poor for a vital's p75 (None: no value, or not a rated vital)."""
    limits = VITAL_THRESHOLDS.get(name)
    if limits is None or p75 is None:
        return None
    good, poor = limits
    return GOOD if p75 <= good else POOR if p75 > poor else NEEDS_IMPROVEMENT


# ------------------------------------------------------------------ panels


def error_rate_series(rows: Iterable[Row], start_s: int, now_s: int, bucket_s: int) -> list[dict[str, Any]]:
    """One point per bucket from ``start_s`` to the bucket holding ``now_s`` (empty buckets too, rate
    null: no page views, no rate), plus any bucket the rows hold beyond (clients ahead of our clock).
    ``t`` is the bucket's start in epoch ms."""
    by_t: dict[int, tuple[int, int]] = {}
    for r in rows:
        t = count(r.get("t"))
        errors, pageviews = by_t.get(t, (0, 0))
        by_t[t] = (errors + count(r.get("n_errors")), pageviews + count(r.get("n_pageviews")))
    last = now_s // bucket_s * bucket_s
    buckets = set(range(start_s, last + 1, bucket_s)) | {t for t in by_t if t >= start_s}
    points = []
    for t in sorted(buckets):
        errors, pageviews = by_t.get(t, (0, 0))
        points.append({"t": t * 1000, "errors": errors, "pageviews": pageviews, "rate": ratio(errors, pageviews)})
    return points


def summary(totals: Row) -> dict[str, Any]:
    errors, pageviews = count(totals.get("n_errors")), count(totals.get("n_pageviews"))
    calls, failures = count(totals.get("n_api_calls")), count(totals.get("n_api_failures"))
    p95 = number(totals.get("api_p95"))
    return {"events": count(totals.get("n_events")), "errors": errors, "pageviews": pageviews,
            "error_rate": ratio(errors, pageviews), "api_calls": calls, "api_failures": failures,
            "api_failure_rate": ratio(failures, calls), "api_p95_ms": None if p95 is None else float(round(p95))}


def vitals_panel(totals: Row) -> list[dict[str, Any]]:
    """Per vital: p75 (from the merged sketch), its rating, and how the samples were rated one by one."""
    out = []
    for name in DASHBOARD_VITALS:
        v = name.lower()
        good, ni, poor = (count(totals.get(f"{v}_n_{r}")) for r in ("good", "ni", "poor"))
        samples = good + ni + poor
        p75 = display_value(name, number(totals.get(f"{v}_p75"))) if samples else None
        good_max, poor_min = VITAL_THRESHOLDS[name]
        out.append({"name": name, "unit": UNITS[name], "p75": p75, "rating": rate_vital(name, p75),
                    "samples": samples, "good": good, "needs_improvement": ni, "poor": poor,
                    "thresholds": {"good": good_max, "poor": poor_min}})
    return out


def top_issues_panel(period_rows: Iterable[Row], status_rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The period's top issues (events and users in the period) with their status from the issues view;
    an issue the view does not list yet (its state not written) is ``new``, as the view itself says."""
    known = {(str(r.get("project")), str(r.get("fingerprint"))): r for r in status_rows}
    out = []
    for r in period_rows:
        key = (str(r.get("project")), str(r.get("fingerprint")))
        state = known.get(key, {})
        out.append({"project": key[0], "fingerprint": key[1],
                    "title": r.get("issue_title") or state.get("title") or "(untitled)",
                    "culprit": r.get("issue_culprit") or "", "status": state.get("status") or "new",
                    "events": count(r.get("n_events")), "users": count(r.get("n_users")),
                    "last_seen": iso_ms(r.get("last_seen_ms")),
                    "total_events": count(state.get("total_events")) if state else None,
                    "first_seen": iso_ms(state.get("first_seen_ms")) if state else None})
    out.sort(key=lambda i: i["last_seen"] or "", reverse=True)  # ISO strings sort by time
    out.sort(key=lambda i: -i["events"])  # stable: most events first, then most recent
    return out


def clicks_panel(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Rage and dead clicks per page, most frustrating first; pages with neither are left out."""
    out = [{"page": str(r.get("page") or ""), "rage_clicks": count(r.get("n_rage")), "dead_clicks": count(r.get("n_dead"))}
           for r in rows]
    out = [p for p in out if p["rage_clicks"] or p["dead_clicks"]]
    out.sort(key=lambda p: (-(p["rage_clicks"] + p["dead_clicks"]), -p["rage_clicks"], p["page"]))
    return out


SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def alerts_panel(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Alerts whose latest event is firing: most severe first, then most recent."""
    out = [{"fingerprint": str(r.get("fingerprint")), "rule": r.get("rule_name") or "",
            "severity": r.get("sev") or "", "project": r.get("alert_project") or "",
            "summary": r.get("summary_text") or "", "starts_at": iso_ms(r.get("starts_at_ms")),
            "last_event_at": iso_ms(r.get("last_at_ms")), "value": number(r.get("last_value")),
            "threshold": number(r.get("threshold_value")), "runbook_url": r.get("runbook") or None}
           for r in rows if (r.get("last_status") or "firing") == "firing"]
    out.sort(key=lambda a: a["last_event_at"] or "", reverse=True)
    out.sort(key=lambda a: SEVERITY_ORDER.get(a["severity"], len(SEVERITY_ORDER)))  # stable
    return out


def panel_counts(doc: Mapping[str, Any]) -> dict[str, int]:
    """What each panel holds, by the names the page exposes in ``window.pulseDashboard.panels``."""
    return {"errorRate": sum(1 for p in doc["error_rate"]["points"] if p["rate"] is not None),
            "topIssues": len(doc["top_issues"]),
            "vitals": sum(1 for v in doc["vitals"] if v["p75"] is not None),
            "clicks": len(doc["clicks"]),
            "alerts": len(doc["alerts"])}


def assemble(q: DashboardQueries, *, series_rows: Iterable[Row], totals_rows: list[Row], issue_rows: Iterable[Row],
             status_rows: Iterable[Row], click_rows: Iterable[Row], alert_rows: Iterable[Row],
             project_rows: Iterable[Row], generated_at_s: float) -> dict[str, Any]:
    totals = totals_rows[0] if totals_rows else {}
    doc: dict[str, Any] = {
        "period": period_label(q.period_s), "period_s": q.period_s, "project": q.project or "",
        "generated_at": iso_ms(generated_at_s * 1000), "from": iso_ms(q.start_s * 1000), "to": iso_ms(q.now_s * 1000),
        "source": q.table, "projects": sorted({str(r.get("project")) for r in project_rows if r.get("project")}),
        "summary": summary(totals),
        "error_rate": {"bucket_s": q.bucket_s, "points": error_rate_series(series_rows, q.start_s, q.now_s, q.bucket_s)},
        "top_issues": top_issues_panel(issue_rows, status_rows),
        "vitals": vitals_panel(totals),
        "clicks": clicks_panel(click_rows),
        "alerts": alerts_panel(alert_rows),
    }
    doc["counts"] = panel_counts(doc)
    return doc


# ------------------------------------------------------------------ I/O


async def _all(*calls: Any) -> list[Any]:
    """Await them together; raise the first failure after every one has finished (no orphaned errors)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


async def dashboard_data(settings: Settings, period_s: int, project: str | None, allow_direct: bool = False,
                         now_s: int | None = None) -> dict[str, Any]:
    """Every panel for the last ``period_s`` seconds (of ``project``, or all projects). Queries go
    through the sink; ``ApiError`` 503 when it is not running, 502 when a query fails."""
    now = int(time.time()) if now_s is None else now_s
    q = plan(period_s, now, project)

    def run(sql: str) -> Any:
        return query_rows(settings, sql, allow_direct=allow_direct)

    series, totals, issues, clicks, alerts, projects = await _all(
        run(q.error_rate), run(q.totals), run(q.top_issues), run(q.clicks), run(q.active_alerts), run(q.projects))
    fingerprints = sorted({str(r["fingerprint"]) for r in issues})
    statuses = await run(q.issue_status(fingerprints)) if fingerprints else []
    return assemble(q, series_rows=series, totals_rows=totals, issue_rows=issues, status_rows=statuses,
                    click_rows=clicks, alert_rows=alerts, project_rows=projects, generated_at_s=time.time())
