"""The SQL behind each dashboard panel, for one period and optionally one project. Pure.

Periods: 15m, 1h, 6h, 24h, 7d. Rates and percentiles come from the rollups (``rollups_minute`` for
periods up to 24 h, ``rollups_hour`` beyond), merging DDSketch buckets with ``pulseQuantile``; top
issues from the raw ``errors`` table (events and users *in the period*) plus the ``issues`` view for
their status; rage and dead clicks from the deduplicated session tables (``FINAL``); active alerts
from ``alerts``: a fingerprint whose latest event is ``firing``.

Every time filter is on event time (``timestamp``, the rollups' minute/hour), and the window starts
at a whole bucket: ``start = (now - period) // bucket * bucket + bucket``, so the current, partial
bucket is the last point and the first point is never a sliver.
"""

from __future__ import annotations

from dataclasses import dataclass

# label -> seconds
PERIODS: dict[str, int] = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400}
DEFAULT_PERIOD = "1h"
MINUTE_TABLE_MAX_S = 86_400  # up to 24 h from rollups_minute, longer periods from rollups_hour
# the dashboard's vitals, in display order (FID is retired in favour of INP)
DASHBOARD_VITALS = ("LCP", "INP", "CLS", "FCP", "TTFB")
TOP_ISSUES = 10
TOP_PAGES = 12
MAX_ALERTS = 100


def parse_period(text: str) -> int:
    """Seconds of a period label; ``ValueError`` naming the valid ones otherwise."""
    try:
        return PERIODS[text]
    except KeyError:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {text!r}") from None


def period_label(period_s: int) -> str:
    """``3600 -> '1h'``; an unlisted length as seconds (``'120s'``)."""
    for label, seconds in PERIODS.items():
        if seconds == period_s:
            return label
    return f"{period_s}s"


def bucket_for(period_s: int) -> int:
    """Seconds per point of the error-rate series: minutes up to 6 h, 5 minutes up to a day, hours beyond."""
    if period_s <= 6 * 3600:
        return 60
    if period_s <= MINUTE_TABLE_MAX_S:
        return 300
    return 3600


def quote(value: str) -> str:
    """A ClickHouse string literal (as ``pipeline.api.common.quote``; this module stays free of aiohttp)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class DashboardQueries:
    """The SQL of every panel for one request. ``issue_status(fingerprints)`` is the one query that
    depends on another's answer (the top issues of the period)."""

    period_s: int
    now_s: int
    project: str | None
    table: str  # rollups_minute | rollups_hour
    time_column: str  # minute | hour
    bucket_s: int
    start_s: int

    @property
    def _project_and(self) -> str:
        return f" AND project = {quote(self.project)}" if self.project else ""

    @property
    def _rollup_where(self) -> str:
        return f"{self.time_column} >= toDateTime({self.start_s}, 'UTC'){self._project_and}"

    def _since(self, column: str) -> str:
        return f"{column} >= toDateTime64({self.start_s}, 3, 'UTC')"

    @property
    def error_rate(self) -> str:
        """Errors and page views per bucket (known noise is already out of ``errors``)."""
        b = self.bucket_s
        return (f"SELECT intDiv(toUnixTimestamp({self.time_column}), {b}) * {b} AS t, sum(errors) AS n_errors, "
                f"sum(pageviews) AS n_pageviews FROM {self.table} WHERE {self._rollup_where} GROUP BY t ORDER BY t")

    @property
    def totals(self) -> str:
        """One row: counters of the period, API p95, and per vital its p75 and good/ni/poor counts."""
        cols = ["sum(events) AS n_events", "sum(errors) AS n_errors", "sum(pageviews) AS n_pageviews",
                "sum(api_calls) AS n_api_calls", "sum(api_failures) AS n_api_failures",
                "pulseQuantile(0.95, sumMap(api_latency)) AS api_p95"]
        for name in DASHBOARD_VITALS:
            v = name.lower()
            cols += [f"pulseQuantile(0.75, sumMap({v})) AS {v}_p75", f"sum({v}_good) AS {v}_n_good",
                     f"sum({v}_ni) AS {v}_n_ni", f"sum({v}_poor) AS {v}_n_poor"]
        return f"SELECT {', '.join(cols)} FROM {self.table} WHERE {self._rollup_where}"

    @property
    def top_issues(self) -> str:
        """The period's most frequent issues: events, users (as the issues view counts them), last seen."""
        return ("SELECT project, group_id AS fingerprint, any(title) AS issue_title, any(culprit) AS issue_culprit, "
                "count() AS n_events, "
                "uniq(if(user_id != '', user_id, if(anonymous_id != '', anonymous_id, session_id))) AS n_users, "
                "toUnixTimestamp64Milli(max(timestamp)) AS last_seen_ms "
                f"FROM errors WHERE {self._since('timestamp')} AND noise = '' AND group_id != ''{self._project_and} "
                f"GROUP BY project, group_id ORDER BY n_events DESC, last_seen_ms DESC LIMIT {TOP_ISSUES}")

    def issue_status(self, fingerprints: list[str]) -> str:
        """Status (and all-time totals) of these issues from the ``issues`` view."""
        listed = ", ".join(quote(f) for f in fingerprints) or "''"
        return ("SELECT project, fingerprint, status, title, events AS total_events, "
                "toUnixTimestamp64Milli(first_seen) AS first_seen_ms "
                f"FROM issues WHERE fingerprint IN ({listed}){self._project_and}")

    @property
    def clicks(self) -> str:
        """Rage and dead clicks per page, most first (deduplicated rows: FINAL)."""
        return ("SELECT page, sum(rage) AS n_rage, sum(dead) AS n_dead FROM ("
                f"SELECT page, count() AS rage, toUInt64(0) AS dead FROM rage_clicks FINAL "
                f"WHERE {self._since('first_click')}{self._project_and} GROUP BY page "
                "UNION ALL "
                f"SELECT page, toUInt64(0) AS rage, count() AS dead FROM dead_clicks FINAL "
                f"WHERE {self._since('timestamp')}{self._project_and} GROUP BY page"
                f") GROUP BY page ORDER BY n_rage + n_dead DESC, page LIMIT {TOP_PAGES}")

    @property
    def active_alerts(self) -> str:
        """Fingerprints whose latest alert event is ``firing`` (on a tie in time, ``resolved`` wins).
        Not limited to the period: an alert that fired a week ago and never resolved is still active.
        Issue alerts (new / regressed / escalating issue) are moments the rules never resolve: they
        show only while they happened within the period."""
        where = (f"WHERE (JSONExtractString(annotations, 'kind') != 'issue' OR at >= toDateTime({self.start_s}, 'UTC')) "
                 + (f"AND project = {quote(self.project)} " if self.project else ""))
        latest = ("argMax(tuple(status, rule, severity, project, summary, toUnixTimestamp64Milli(starts_at), "
                  "value, threshold, runbook_url), tuple(at, status = 'resolved'))")
        return ("SELECT fingerprint, latest.1 AS last_status, latest.2 AS rule_name, latest.3 AS sev, "
                "latest.4 AS alert_project, latest.5 AS summary_text, latest.6 AS starts_at_ms, "
                "latest.7 AS last_value, latest.8 AS threshold_value, latest.9 AS runbook, last_at_ms "
                f"FROM (SELECT fingerprint, {latest} AS latest, toUnixTimestamp64Milli(max(at)) AS last_at_ms "
                f"FROM alerts FINAL {where}GROUP BY fingerprint) "
                "WHERE last_status = 'firing' "
                "ORDER BY multiIf(sev = 'critical', 0, sev = 'warning', 1, 2), last_at_ms DESC "
                f"LIMIT {MAX_ALERTS}")

    @property
    def projects(self) -> str:
        """Projects with data in the period (for the project picker; not filtered by project)."""
        return (f"SELECT DISTINCT project FROM {self.table} WHERE {self.time_column} >= toDateTime({self.start_s}, "
                "'UTC') ORDER BY project LIMIT 200")


def plan(period_s: int, now_s: int, project: str | None = None) -> DashboardQueries:
    """The queries for ``period_s`` seconds up to ``now_s`` (epoch seconds)."""
    if period_s <= 0:
        raise ValueError(f"period must be positive, got {period_s} s")
    minute = period_s <= MINUTE_TABLE_MAX_S
    bucket = bucket_for(period_s)
    start = (now_s - period_s) // bucket * bucket + bucket
    return DashboardQueries(period_s=period_s, now_s=now_s, project=project or None,
                            table="rollups_minute" if minute else "rollups_hour",
                            time_column="minute" if minute else "hour", bucket_s=bucket, start_s=start)


__all__ = ["DASHBOARD_VITALS", "DEFAULT_PERIOD", "PERIODS", "DashboardQueries", "bucket_for", "parse_period",
           "period_label", "plan"]
