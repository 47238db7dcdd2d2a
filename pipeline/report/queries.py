"""The health report's SQL. Pure: functions from a period to SQL strings, nothing runs here.

Each query covers the report's period *and* the one before it (same length) in one pass and says
which row is which in a ``period`` column (``'current'`` / ``'previous'``), so the trend costs no
extra round trip. The SQL is plain ClickHouse and runs the same on embedded chDB (through the sink
or directly) and on a server; it sets no query-level SETTINGS (the read-only guard adds its own).

Time ranges are half-open, ``[start, end)``:

* raw tables (``errors``), sessions and their derivatives, issue tables and ``alerts`` use the
  exact period (``timestamp``, ``start``, ``first_click``, ``at``...);
* rollups are bucketed (a minute or an hour): a bucket belongs to the period its *start* falls in,
  so both periods are whole buckets and tile without overlap, and the current, still filling
  bucket is included (like ``GET /api/metrics``). Periods up to 24 h read ``rollups_minute``,
  longer ones ``rollups_hour`` (a few hundred buckets at most). Uptime always counts minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.rollups.minute import VITALS

VITAL_COLUMNS = tuple(v.lower() for v in VITALS)  # lcp, inp, cls, fcp, ttfb, fid
QUANTILES = {"p50": 0.5, "p75": 0.75, "p95": 0.95}
MINUTE_TABLE_MAX_S = 86_400  # periods up to a day read rollups_minute, longer ones rollups_hour
MIN_PAGE_SAMPLES = 5  # a page needs this many samples of a vital to be named the worst for it
MAX_INCIDENTS = 1000  # active-incident rows fetched (the report lists 20; the rest are only counted)

# The alert's level: the rule's level (annotation, for rules with custom severity labels), else the
# severity label itself; SLO burn-rate alerts say page (counted as critical) or ticket (as warning).
ALERT_LEVEL = ("multiIf(JSONExtractString(annotations, 'level') IN ('critical', 'warning', 'info'), "
               "JSONExtractString(annotations, 'level'), severity = 'page', 'critical', severity = 'ticket', 'warning', "
               "toString(severity))")


def _quote(value: str) -> str:
    """A ClickHouse string literal (same rule as ``pipeline.api.common.quote``; kept here so this
    module imports nothing that does I/O)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ceil(seconds: int, bucket: int) -> int:
    return -(-seconds // bucket) * bucket


@dataclass(frozen=True)
class Window:
    """The report's period ``[start_s, end_s)`` (epoch seconds), the previous period of the same
    length before it, and the project (``None``: every project)."""

    start_s: int
    end_s: int
    project: str | None = None

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError(f"empty period: {self.start_s} .. {self.end_s}")

    @property
    def length_s(self) -> int:
        return self.end_s - self.start_s

    @property
    def previous_start_s(self) -> int:
        return self.start_s - self.length_s

    @property
    def rollup(self) -> tuple[str, str, int]:
        """(table, time column, bucket seconds) for this period's length."""
        if self.length_s <= MINUTE_TABLE_MAX_S:
            return "rollups_minute", "minute", 60
        return "rollups_hour", "hour", 3600

    def project_filter(self, column: str = "project") -> str:
        return f" AND {column} = {_quote(self.project)}" if self.project else ""

    # -- exact ranges (raw, session, issue and alert tables)

    def exact(self, column: str) -> tuple[str, str]:
        """(WHERE over both periods, expression naming the period) for a DateTime64 column."""
        p, s, e = (f"toDateTime64({t}, 3, 'UTC')" for t in (self.previous_start_s, self.start_s, self.end_s))
        return (f"{column} >= {p} AND {column} < {e}{self.project_filter()}",
                f"if({column} >= {s}, 'current', 'previous')")

    def exact_current(self, column: str) -> str:
        return (f"{column} >= toDateTime64({self.start_s}, 3, 'UTC') AND {column} < "
                f"toDateTime64({self.end_s}, 3, 'UTC'){self.project_filter()}")

    # -- bucketed ranges (rollups)

    def buckets(self, column: str, bucket: int) -> tuple[str, str]:
        """(WHERE over both periods, period expression) for buckets that start inside each period."""
        p, s, e = (f"toDateTime({_ceil(t, bucket)}, 'UTC')" for t in (self.previous_start_s, self.start_s, self.end_s))
        return (f"{column} >= {p} AND {column} < {e}{self.project_filter()}",
                f"if({column} >= {s}, 'current', 'previous')")

    def buckets_current(self, column: str, bucket: int) -> str:
        return (f"{column} >= toDateTime({_ceil(self.start_s, bucket)}, 'UTC') AND "
                f"{column} < toDateTime({_ceil(self.end_s, bucket)}, 'UTC'){self.project_filter()}")


def _vital_figures(prefix: str = "") -> str:
    parts = []
    for v in VITAL_COLUMNS:
        parts.append(f"sum({v}_good + {v}_ni + {v}_poor) AS {prefix}{v}_samples")
        parts += [f"pulseQuantile({q}, sumMap({v})) AS {prefix}{v}_{name}" for name, q in QUANTILES.items()]
    return ", ".join(parts)


def rollup_totals(w: Window) -> str:
    """Per period: rollup rows, errors, page views, API and checkout calls and failures, and each
    web vital's sample count and p50 / p75 / p95 from the merged sketches."""
    table, column, bucket = w.rollup
    where, period = w.buckets(column, bucket)
    return (f"SELECT {period} AS period, count() AS rollup_rows, sum(errors) AS total_errors, "
            "sum(pageviews) AS total_pageviews, sum(api_calls) AS total_api_calls, "
            "sum(api_failures) AS total_api_failures, sum(checkout_calls) AS total_checkout_calls, "
            f"sum(checkout_failures) AS total_checkout_failures, {_vital_figures()} "
            f"FROM {table} WHERE {where} GROUP BY period")


def worst_pages(w: Window, min_samples: int = MIN_PAGE_SAMPLES) -> str:
    """Current period only: for each vital, the page with the highest p75 among pages with at
    least ``min_samples`` samples, its p75 and samples, and how many pages qualified."""
    table, column, bucket = w.rollup
    inner = ", ".join(f"sum({v}_good + {v}_ni + {v}_poor) AS {v}_n, pulseQuantile(0.75, sumMap({v})) AS {v}_q"
                      for v in VITAL_COLUMNS)
    outer = ", ".join(f"countIf({v}_n >= {int(min_samples)}) AS {v}_pages, "
                      f"argMaxIf(page, {v}_q, {v}_n >= {int(min_samples)}) AS {v}_page, "
                      f"maxIf({v}_q, {v}_n >= {int(min_samples)}) AS {v}_page_p75, "
                      f"argMaxIf({v}_n, {v}_q, {v}_n >= {int(min_samples)}) AS {v}_page_samples"
                      for v in VITAL_COLUMNS)
    return (f"SELECT {outer} FROM (SELECT page, {inner} FROM {table} "
            f"WHERE {w.buckets_current(column, bucket)} GROUP BY page)")


def uptime(w: Window, min_success: float) -> str:
    """Per period: minutes with API calls, and those whose API success rate was at least ``min_success``."""
    where, period = w.buckets("minute", 60)
    return (f"SELECT {period} AS period, count() AS api_minutes, "
            f"countIf(calls - failures >= {float(min_success)!r} * calls) AS up_minutes "
            "FROM (SELECT minute, sum(api_calls) AS calls, sum(api_failures) AS failures FROM rollups_minute "
            f"WHERE {where} GROUP BY minute HAVING calls > 0) GROUP BY period")


def error_figures(w: Window) -> str:
    """Per period, from the raw ``errors`` table without known noise: errors, distinct
    fingerprints (issues), distinct non-empty user ids."""
    where, period = w.exact("timestamp")
    return (f"SELECT {period} AS period, count() AS raw_errors, uniqExactIf(group_id, group_id != '') AS unique_errors, "
            "uniqExactIf(user_id, user_id != '') AS affected_users "
            f"FROM errors WHERE noise = '' AND {where} GROUP BY period")


def top_issue(w: Window) -> str:
    """Current period: the issue with the most errors."""
    return ("SELECT group_id AS fingerprint, any(title) AS title, any(culprit) AS culprit, count() AS events "
            f"FROM errors WHERE noise = '' AND group_id != '' AND {w.exact_current('timestamp')} "
            "GROUP BY group_id ORDER BY events DESC, fingerprint LIMIT 1")


# An issue is opened when it is first seen (new), regresses, or is reopened by a person.
_OPENED = "(kind IN ('new', 'regressed') OR reason = 'reopened')"


def resolution_times(w: Window) -> str:
    """Per period: issues resolved (a ``resolved`` transition in the period) and the p95 of their
    resolution time, seconds from the latest opening before the resolution (linear interpolation
    between the closest ranks, ``quantileExactInclusive``)."""
    where, period = w.exact("at")
    opened_project = w.project_filter()
    return (f"SELECT {period} AS period, count() AS resolved, quantileExactInclusive(0.95)(seconds) AS p95_seconds "
            "FROM (SELECT r.project AS project, r.group_id AS group_id, r.at AS at, "
            "dateDiff('millisecond', max(o.at), r.at) / 1000 AS seconds "
            f"FROM (SELECT project, group_id, at FROM issue_transitions FINAL WHERE kind = 'resolved' AND {where}) AS r "
            f"INNER JOIN (SELECT project, group_id, at FROM issue_transitions FINAL WHERE {_OPENED}{opened_project}) AS o "
            "ON r.project = o.project AND r.group_id = o.group_id "
            "WHERE o.at <= r.at GROUP BY r.project, r.group_id, r.at) "
            "GROUP BY period")


def auto_resolved(w: Window) -> str:
    """Per period: issues that left ``escalating`` on their own. The lifecycle moves an issue from
    escalating back to ongoing without a transition row (nobody decided it), so: issues whose
    current state is ``ongoing`` since a time in the period, and whose latest transition before that
    time is ``escalating``."""
    where, period = w.exact("status_since")
    return (f"SELECT {period} AS period, count() AS auto_resolved FROM ("
            "SELECT s.project AS project, s.group_id AS group_id, any(s.status_since) AS status_since, "
            "argMax(t.kind, t.at) AS last_kind "
            f"FROM (SELECT project, group_id, status_since FROM issue_state FINAL WHERE status = 'ongoing' AND {where}) AS s "
            f"INNER JOIN (SELECT project, group_id, kind, at FROM issue_transitions FINAL "
            f"WHERE 1 = 1{w.project_filter()}) AS t "
            "ON s.project = t.project AND s.group_id = t.group_id "
            "WHERE t.at <= s.status_since GROUP BY s.project, s.group_id) "
            "WHERE last_kind = 'escalating' GROUP BY period")


def user_experience(w: Window) -> str:
    """Per period and source: sessions (by start) with their mean duration, bounce rate and pages
    per session; rage clicks (by first click) and dead clicks (by click time). ``FINAL``: exact."""
    s_where, s_period = w.exact("start")
    r_where, r_period = w.exact("first_click")
    d_where, d_period = w.exact("timestamp")
    return (f"SELECT 'sessions' AS source, {s_period} AS period, count() AS n, avg(duration_ms) / 1000 AS avg_duration_s, "
            "avg(bounce) AS bounce_rate, avg(pageviews) AS pages_per_session "
            f"FROM sessions FINAL WHERE {s_where} GROUP BY period "
            f"UNION ALL SELECT 'rage_clicks' AS source, {r_period} AS period, count() AS n, nan, nan, nan "
            f"FROM rage_clicks FINAL WHERE {r_where} GROUP BY period "
            f"UNION ALL SELECT 'dead_clicks' AS source, {d_period} AS period, count() AS n, nan, nan, nan "
            f"FROM dead_clicks FINAL WHERE {d_where} GROUP BY period")


def top_clicks(w: Window) -> str:
    """Current period: the page and element with the most rage clicks, and with the most dead clicks."""
    return ("SELECT * FROM (SELECT 'rage_clicks' AS source, page, selector, count() AS n FROM rage_clicks FINAL "
            f"WHERE {w.exact_current('first_click')} GROUP BY page, selector ORDER BY n DESC, page, selector LIMIT 1) "
            "UNION ALL SELECT * FROM (SELECT 'dead_clicks' AS source, page, selector, count() AS n FROM dead_clicks FINAL "
            f"WHERE {w.exact_current('timestamp')} GROUP BY page, selector ORDER BY n DESC, page, selector LIMIT 1)")


def alert_summary(w: Window, remediated_rules: Iterable[str] = ()) -> str:
    """Per period, from alert events decided (``at``) in it: firing events by level, resolved
    events, those of rules with a remediation configured, and the mean time to resolve (seconds
    from ``starts_at`` to ``ends_at`` of the resolved events)."""
    where, period = w.exact("at")
    rules = sorted(set(remediated_rules))
    remediated = f"rule IN ({', '.join(_quote(r) for r in rules)})" if rules else "0"
    return (f"SELECT {period} AS period, countIf(status = 'firing') AS fired, "
            "countIf(status = 'firing' AND level = 'critical') AS critical, "
            "countIf(status = 'firing' AND level = 'warning') AS warnings, "
            "countIf(status = 'firing' AND level NOT IN ('critical', 'warning')) AS info, "
            "countIf(status = 'resolved') AS resolved, "
            f"countIf(status = 'resolved' AND {remediated}) AS auto_remediated, "
            "avgIf(dateDiff('millisecond', starts_at, assumeNotNull(ends_at)) / 1000, "
            "status = 'resolved' AND ends_at IS NOT NULL) AS mttr_seconds "
            f"FROM (SELECT status, rule, starts_at, ends_at, at, {ALERT_LEVEL} AS level FROM alerts FINAL WHERE {where}) "
            "GROUP BY period")


def active_incidents(w: Window, limit: int = MAX_INCIDENTS) -> str:
    """Alerts whose latest event before the end of the period (``firing_now``) or before its start
    (``firing_before``, for the previous period's figures) is ``firing``. Issue alerts (new,
    regressed, escalating issues) are moments, never resolved by the rules, so they are not
    incidents. On a tie the resolved event wins. Critical first, then the most recent."""
    end = f"toDateTime64({w.end_s}, 3, 'UTC')"
    start = f"toDateTime64({w.start_s}, 3, 'UTC')"
    latest = "(at, status = 'resolved')"
    firing_now = f"at < {end} AND status = 'firing'"
    return ("SELECT fingerprint, any(rule) AS alert_rule, any(severity) AS alert_severity, any(level) AS alert_level, "
            f"argMaxIf(status, {latest}, at < {end}) = 'firing' AS firing_now, "
            f"argMaxIf(status, {latest}, at < {start}) = 'firing' AS firing_before, "
            f"argMaxIf(summary, at, {firing_now}) AS last_summary, "
            f"toUnixTimestamp64Milli(argMaxIf(starts_at, at, {firing_now})) AS starts_at_ms, "
            f"argMaxIf(value, at, {firing_now}) AS last_value, argMaxIf(threshold, at, {firing_now}) AS last_threshold "
            f"FROM (SELECT fingerprint, rule, severity, {ALERT_LEVEL} AS level, status, summary, starts_at, at, value, "
            f"threshold FROM alerts FINAL WHERE at < {end} AND JSONExtractString(annotations, 'kind') != 'issue'"
            f"{w.project_filter()}) "
            "GROUP BY fingerprint HAVING firing_now OR firing_before "
            "ORDER BY firing_now DESC, multiIf(alert_level = 'critical', 0, alert_level = 'warning', 1, 2), "
            f"starts_at_ms DESC, fingerprint LIMIT {int(limit)}")
