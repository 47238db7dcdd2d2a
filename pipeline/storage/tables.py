"""Table definitions as data; migrations create them, the DDL snapshot shows them.

Raw event tables share the envelope columns, are plain MergeTree (one row per event) with a TTL,
and keep ``non_replicated_deduplication_window`` so the sink's insert deduplication tokens work
on a single server or embedded chDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.rollups.minute import COUNTERS as ROLLUP_COUNTERS
from pipeline.rollups.minute import SKETCHES as ROLLUP_SKETCHES
from pipeline.rollups.minute import SUMS as ROLLUP_SUMS
from pipeline.rollups.sketch import SQL_QUANTILE_FUNCTION
from pipeline.settings import Settings

SCHEMAS_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"

ENVELOPE = [
    ("event_id", "UUID"),
    ("project", "LowCardinality(String)"),
    ("timestamp", "DateTime64(3, 'UTC')"),
    ("received_at", "DateTime64(3, 'UTC')"),
    ("session_id", "String"),
    ("user_id", "String"),
    ("anonymous_id", "String"),
    ("release", "LowCardinality(String)"),
    ("environment", "LowCardinality(String)"),
    ("url", "String"),
    ("route", "LowCardinality(String)"),
    ("user_agent", "String"),
    ("sdk_name", "LowCardinality(String)"),
    ("sdk_version", "LowCardinality(String)"),
    ("consent", "Bool"),
]


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[tuple[str, str]]
    order_by: str
    order_by_serves: str  # which queries the sort key is for
    ttl_column: str | None = "timestamp"
    internal: bool = False
    engine: str = "MergeTree"
    partition_by: str | None = None  # default: toYYYYMM of the TTL column
    # Kept forever by default, but a retention may be configured on this column (PULSE_CLICKHOUSE_TTL_DAYS).
    retention_column: str | None = None

    @property
    def time_column(self) -> str | None:
        """The column a retention applies to, if the table can have one."""
        return self.ttl_column or self.retention_column

    def retention_days(self, settings: Settings) -> int | None:
        """Days rows are kept; None = forever. PULSE_CLICKHOUSE_TTL_DAYS wins over the defaults."""
        if self.time_column is None:
            return None
        configured = settings.clickhouse.ttl_days.get(self.name)
        if configured is not None:
            return configured or None
        return settings.clickhouse.raw_ttl_days if self.ttl_column else None

    def ttl_clause(self, settings: Settings) -> str:
        days = self.retention_days(settings)
        return f"toDateTime({self.time_column}) + INTERVAL {days} DAY" if days else ""

    def create_sql(self, settings: Settings) -> str:
        cols = ",\n    ".join(f"`{n}` {t}" for n, t in self.columns)
        partition = self.partition_by or f"toYYYYMM({self.ttl_column or 'created_at'})"
        ttl = f"\nTTL {self.ttl_clause(settings)}" if self.ttl_clause(settings) else ""
        return (f"CREATE TABLE IF NOT EXISTS {self.name}\n(\n    {cols}\n)\nENGINE = {self.engine}\n"
                f"PARTITION BY {partition}\n"
                f"-- ORDER BY serves: {self.order_by_serves}\n"
                f"ORDER BY ({self.order_by}){ttl}\n"
                f"SETTINGS non_replicated_deduplication_window = {settings.clickhouse.dedup_window}")

    @property
    def column_names(self) -> list[str]:
        return [n for n, _ in self.columns]


# Added by migration 4 (error grouping); part of the table for fresh databases.
ERROR_GROUP_COLUMNS = [("group_id", "String"), ("title", "String"), ("culprit", "String"),
                       ("grouping", "LowCardinality(String)"), ("noise", "LowCardinality(String)")]

# Raw tables keep rows for the retention counted from received_at (the server's receive time), not the
# event time: a client cannot push its rows out of (or into) retention with its clock. They stay
# partitioned by event time, as they always were (a partition key cannot change in place).
RAW_RETENTION = {"ttl_column": "received_at", "partition_by": "toYYYYMM(timestamp)"}

RAW_TABLES = [
    Table("errors", ENVELOPE + [
        ("exception_type", "LowCardinality(String)"), ("message", "String"), ("level", "LowCardinality(String)"),
        ("handled", "Bool"), ("mechanism", "LowCardinality(String)"), ("stacktrace", "String"),
        ("breadcrumbs", "String"), ("tags", "Map(String, String)"), ("fingerprint", "Array(String)"),
        *ERROR_GROUP_COLUMNS,
    ], "project, exception_type, timestamp", "top errors per project by type and time range", **RAW_RETENTION),
    Table("vitals", ENVELOPE + [
        ("name", "LowCardinality(String)"), ("value", "Float64"), ("rating", "LowCardinality(String)"),
        ("navigation_type", "LowCardinality(String)"), ("element", "String"),
    ], "project, name, route, timestamp", "percentiles of one vital per route over a time range", **RAW_RETENTION),
    Table("actions", ENVELOPE + [
        ("kind", "LowCardinality(String)"), ("selector", "String"), ("tag", "LowCardinality(String)"),
        ("text", "String"), ("x", "Nullable(Float64)"), ("y", "Nullable(Float64)"), ("interactive", "Nullable(Bool)"),
        ("dom_mutation_ms", "Nullable(Float64)"), ("navigated", "Nullable(Bool)"), ("scrolled", "Nullable(Bool)"),
        ("scroll_depth", "Nullable(Float64)"), ("form", "String"), ("visibility", "LowCardinality(String)"),
        ("name", "String"), ("properties", "String"),
    ], "project, kind, route, session_id, timestamp", "clicks/pageviews per page; one session's actions in order",
        **RAW_RETENTION),
    Table("api_calls", ENVELOPE + [
        ("kind", "LowCardinality(String)"), ("request_url", "String"), ("method", "LowCardinality(String)"),
        ("status", "Nullable(UInt16)"), ("duration_ms", "Float64"), ("ok", "Bool"),
        ("initiator", "LowCardinality(String)"), ("size_bytes", "Nullable(UInt64)"),
    ], "project, kind, ok, timestamp", "failure rate and latency of API calls over a time range", **RAW_RETENTION),
]

DEAD_LETTERS = Table("dead_letters", [
    ("received_at", "DateTime64(3, 'UTC')"), ("step", "LowCardinality(String)"), ("source", "String"),
    ("project", "LowCardinality(String)"), ("reason", "String"), ("event_id", "String"), ("payload", "String"),
    ("payload_encoding", "LowCardinality(String)"),
], "step, received_at", "dead letters by step and time (what failed recently and why)", ttl_column="received_at")

SINK_BATCHES = Table("_pulse_sink_batches", [
    ("topic", "String"), ("partition", "UInt32"), ("first_offset", "Int64"), ("last_offset", "Int64"),
    ("created_at", "DateTime64(3, 'UTC')"),
], "topic, partition, first_offset", "the sink's pending batch for a partition at start-up", ttl_column="created_at",
    internal=True)

SINK_MARKS = Table("_pulse_sink_marks", [
    ("src_topic", "String"), ("src_partition", "UInt32"), ("table", "String"), ("offset", "Int64"),
    ("created_at", "DateTime64(3, 'UTC')"),
], "src_topic, src_partition, table", "highest stored source offset per raw partition and table",
    ttl_column=None, internal=True)

# Sessionization output. Rows are re-emitted identically when the worker replays after a crash, so
# each table is a ReplacingMergeTree whose sort key is the row's natural key: duplicates collapse
# in background merges, and `FINAL` (or GROUP BY the key) gives exact answers at any moment.
SESSION_TABLES = [
    Table("sessions", [
        ("project", "LowCardinality(String)"), ("session_id", "String"), ("user_id", "String"),
        ("start", "DateTime64(3, 'UTC')"), ("end", "DateTime64(3, 'UTC')"), ("duration_ms", "UInt64"),
        ("pageviews", "UInt32"), ("clicks", "UInt32"), ("rage_clicks", "UInt32"), ("dead_clicks", "UInt32"),
        ("errors", "UInt32"), ("max_scroll", "Float32"), ("forms_started", "UInt32"), ("forms_submitted", "UInt32"),
        ("forms_abandoned", "UInt32"), ("entry_page", "LowCardinality(String)"),
        ("exit_page", "LowCardinality(String)"), ("bounce", "Bool"), ("release", "LowCardinality(String)"),
        ("browser", "LowCardinality(String)"), ("browser_version", "LowCardinality(String)"),
        ("os", "LowCardinality(String)"), ("device", "LowCardinality(String)"), ("user_agent", "String"),
    ], "project, toDate(start), session_id, start", "sessions per project and day; one session by id",
        ttl_column="start", engine="ReplacingMergeTree"),
    Table("page_views", [
        ("project", "LowCardinality(String)"), ("session_id", "String"), ("session_start", "DateTime64(3, 'UTC')"),
        ("page", "LowCardinality(String)"), ("start", "DateTime64(3, 'UTC')"), ("end", "DateTime64(3, 'UTC')"),
        ("visible_ms", "UInt64"), ("max_scroll", "Float32"), ("milestones", "Array(UInt8)"), ("clicks", "UInt32"),
        ("rage_clicks", "UInt32"), ("dead_clicks", "UInt32"), ("forms_started", "UInt32"),
        ("forms_abandoned", "UInt32"),
    ], "project, page, start, session_id", "UX of one page over a time range (scroll depth, time on page, forms)",
        ttl_column="start", engine="ReplacingMergeTree"),
    Table("rage_clicks", [
        ("project", "LowCardinality(String)"), ("session_id", "String"), ("session_start", "DateTime64(3, 'UTC')"),
        ("page", "LowCardinality(String)"), ("selector", "String"), ("first_click", "DateTime64(3, 'UTC')"),
        ("detected_at", "DateTime64(3, 'UTC')"), ("clicks", "UInt32"),
    ], "project, page, selector, first_click, session_id", "rage clicks by page and element over a time range",
        ttl_column="first_click", engine="ReplacingMergeTree"),
    Table("dead_clicks", [
        ("project", "LowCardinality(String)"), ("session_id", "String"), ("session_start", "DateTime64(3, 'UTC')"),
        ("event_id", "String"), ("timestamp", "DateTime64(3, 'UTC')"), ("page", "LowCardinality(String)"),
        ("selector", "String"), ("kind", "LowCardinality(String)"),
    ], "project, page, selector, timestamp, event_id", "dead clicks by page and element over a time range",
        engine="ReplacingMergeTree"),
]

# Page-level UX per minute, computed from the deduplicated rows when queried (exact under replays;
# a materialized view would count a replayed block twice).
PAGE_UX_MINUTE_VIEW = """CREATE VIEW IF NOT EXISTS page_ux_minute AS
SELECT project, page, minute,
    sum(pageviews) AS pageviews, sum(visible_ms) AS visible_ms,
    sum(reached_25) AS reached_25, sum(reached_50) AS reached_50, sum(reached_75) AS reached_75,
    sum(reached_90) AS reached_90, sum(reached_100) AS reached_100,
    sum(forms_started) AS forms_started, sum(forms_abandoned) AS forms_abandoned,
    sum(rage) AS rage_clicks, sum(dead) AS dead_clicks
FROM
(
    SELECT project, page, toStartOfMinute(start) AS minute, count() AS pageviews, sum(visible_ms) AS visible_ms,
        countIf(has(milestones, 25)) AS reached_25, countIf(has(milestones, 50)) AS reached_50,
        countIf(has(milestones, 75)) AS reached_75, countIf(has(milestones, 90)) AS reached_90,
        countIf(has(milestones, 100)) AS reached_100, sum(forms_started) AS forms_started,
        sum(forms_abandoned) AS forms_abandoned, toUInt64(0) AS rage, toUInt64(0) AS dead
    FROM page_views FINAL GROUP BY project, page, minute
    UNION ALL
    SELECT project, page, toStartOfMinute(detected_at), 0, 0, 0, 0, 0, 0, 0, 0, 0, count(), 0
    FROM rage_clicks FINAL GROUP BY project, page, toStartOfMinute(detected_at)
    UNION ALL
    SELECT project, page, toStartOfMinute(timestamp), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, count()
    FROM dead_clicks FINAL GROUP BY project, page, toStartOfMinute(timestamp)
)
GROUP BY project, page, minute"""
VIEWS = [PAGE_UX_MINUTE_VIEW]

def _rollup_table(name: str, period: str, serves: str) -> Table:
    """Minute partials and their hourly/daily merges share one column layout (see
    ``pipeline/rollups/minute.py``): every value column is a SimpleAggregateFunction, so rows with the
    same key merge by summing (sketches by ``sumMap`` of DDSketch buckets)."""
    cols = [("project", "LowCardinality(String)"), (period, "DateTime('UTC')"),
            ("environment", "LowCardinality(String)"), ("release", "LowCardinality(String)"),
            ("page", "LowCardinality(String)"), ("browser", "LowCardinality(String)")]
    cols += [(c, "SimpleAggregateFunction(sum, UInt64)") for c in ROLLUP_COUNTERS]
    cols += [(c, "SimpleAggregateFunction(sum, Float64)") for c in ROLLUP_SUMS]
    cols += [(c, "SimpleAggregateFunction(sumMap, Map(Int16, UInt64))") for c in ROLLUP_SKETCHES]
    return Table(name, cols, f"project, {period}, environment, release, page, browser", serves, ttl_column=None,
                 engine="AggregatingMergeTree", partition_by=f"toYYYYMM({period})", retention_column=period)


ROLLUP_TABLES = [
    _rollup_table("rollups_minute", "minute", "rates and percentiles per minute for any project/time range"),
    _rollup_table("rollups_hour", "hour", "the same per hour (filled from rollups_minute)"),
    _rollup_table("rollups_day", "day", "the same per day (filled from rollups_minute)"),
]


def _rollup_view(target: str, period: str, fn: str) -> str:
    values = ", ".join([*(f"sum({c}) AS {c}" for c in (*ROLLUP_COUNTERS, *ROLLUP_SUMS)),
                        *(f"sumMap({c}) AS {c}" for c in ROLLUP_SKETCHES)])
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {target}_mv TO {target} AS\n"
            f"SELECT project, {fn}(minute) AS {period}, environment, release, page, browser, {values}\n"
            f"FROM rollups_minute GROUP BY project, {period}, environment, release, page, browser")


ROLLUP_VIEWS = [SQL_QUANTILE_FUNCTION, _rollup_view("rollups_hour", "hour", "toStartOfHour"),
                _rollup_view("rollups_day", "day", "toStartOfDay")]

# One row per issue (fingerprint), filled by ClickHouse from `errors` (noise excluded): exact,
# because the raw table is, and retried blocks are deduplicated in the view as well.
ISSUE_STATS = Table("issue_stats", [
    ("project", "LowCardinality(String)"), ("group_id", "String"),
    ("title", "SimpleAggregateFunction(anyLast, String)"), ("culprit", "SimpleAggregateFunction(anyLast, String)"),
    ("exception_type", "SimpleAggregateFunction(anyLast, String)"),
    ("first_seen", "SimpleAggregateFunction(min, DateTime64(3, 'UTC'))"),
    ("last_seen", "SimpleAggregateFunction(max, DateTime64(3, 'UTC'))"),
    ("events", "SimpleAggregateFunction(sum, UInt64)"),
    ("users", "AggregateFunction(uniq, String)"),
    ("first_release", "AggregateFunction(argMin, String, DateTime64(3, 'UTC'))"),
    ("last_release", "AggregateFunction(argMax, String, DateTime64(3, 'UTC'))"),
], "project, group_id", "one issue by fingerprint; all issues of a project", ttl_column=None,
    engine="AggregatingMergeTree", partition_by="tuple()")

ISSUE_STATS_MV = """CREATE MATERIALIZED VIEW IF NOT EXISTS issue_stats_mv TO issue_stats AS
SELECT project, group_id, anyLast(title) AS title, anyLast(culprit) AS culprit,
    anyLast(exception_type) AS exception_type, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
    count() AS events, uniqState(if(user_id != '', user_id, if(anonymous_id != '', anonymous_id, session_id))) AS users,
    argMinState(release, timestamp) AS first_release, argMaxState(release, timestamp) AS last_release
FROM errors WHERE noise = '' AND group_id != '' GROUP BY project, group_id"""

# Status of each issue, written by the worker's issue agent (agents/issues.py) after every change;
# the highest version is the current state.
ISSUE_STATE = Table("issue_state", [
    ("project", "LowCardinality(String)"), ("group_id", "String"),
    ("status", "LowCardinality(String)"), ("status_since", "DateTime64(3, 'UTC')"),
    ("first_seen", "DateTime64(3, 'UTC')"), ("last_seen", "DateTime64(3, 'UTC')"),
    ("events", "UInt64"), ("resolved_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("ignored_until_escalating", "Bool"), ("releases", "UInt32"),
    ("version", "UInt64"), ("updated_at", "DateTime64(3, 'UTC')"),
], "project, group_id", "the current status of one issue (FINAL) or all of a project", ttl_column=None,
    engine="ReplacingMergeTree(version)", partition_by="tuple()")

# Every status change (new, regressed, escalating, resolved, ignored, reopened) with its reason.
ISSUE_TRANSITIONS = Table("issue_transitions", [
    ("transition_id", "UUID"), ("project", "LowCardinality(String)"), ("group_id", "String"),
    ("kind", "LowCardinality(String)"), ("from_status", "LowCardinality(String)"),
    ("at", "DateTime64(3, 'UTC')"), ("reason", "String"), ("title", "String"), ("culprit", "String"),
    ("release", "LowCardinality(String)"), ("caused_by", "String"), ("actor", "String"), ("events", "UInt64"),
], "project, group_id, transition_id", "an issue's history; replayed transitions collapse (FINAL)",
    ttl_column=None, engine="ReplacingMergeTree", partition_by="toYYYYMM(at)", retention_column="at")

ISSUES_VIEW = """CREATE VIEW IF NOT EXISTS issues AS
SELECT s.project AS project, s.group_id AS fingerprint, s.title AS title, s.culprit AS culprit,
    s.exception_type AS exception_type, if(st.status = '', 'new', st.status) AS status,
    st.status_since AS status_since, st.resolved_at AS resolved_at, s.first_seen AS first_seen,
    s.last_seen AS last_seen, s.events AS events, s.affected_users AS affected_users,
    s.first_release AS first_release, s.last_release AS last_release
FROM
(
    SELECT project, group_id, any(title) AS title, any(culprit) AS culprit, any(exception_type) AS exception_type,
        min(first_seen) AS first_seen, max(last_seen) AS last_seen, sum(events) AS events,
        uniqMerge(users) AS affected_users, argMinMerge(first_release) AS first_release,
        argMaxMerge(last_release) AS last_release
    FROM issue_stats GROUP BY project, group_id
) AS s
LEFT JOIN (SELECT project, group_id, status, status_since, resolved_at FROM issue_state FINAL) AS st
    ON s.project = st.project AND s.group_id = st.group_id
SETTINGS join_use_nulls = 0"""
ISSUE_VIEWS = [ISSUE_STATS_MV, ISSUES_VIEW]

# Custom metric points (POST /api/metrics): raw, and per-minute partials merged into hours and days.
METRICS = Table("metrics", ENVELOPE + [
    ("name", "LowCardinality(String)"), ("value", "Float64"), ("unit", "LowCardinality(String)"),
    ("tags", "Map(String, String)"),
], "project, name, timestamp", "one metric's points over a time range")


def _metric_rollup_table(name: str, period: str, serves: str) -> Table:
    """Same merge rules as the browser rollups: every value column is a SimpleAggregateFunction."""
    return Table(name, [
        ("project", "LowCardinality(String)"), ("name", "LowCardinality(String)"), (period, "DateTime('UTC')"),
        ("environment", "LowCardinality(String)"), ("release", "LowCardinality(String)"), ("tags_key", "String"),
        ("tags", "SimpleAggregateFunction(anyLast, Map(String, String))"),
        ("count", "SimpleAggregateFunction(sum, UInt64)"), ("sum", "SimpleAggregateFunction(sum, Float64)"),
        ("min", "SimpleAggregateFunction(min, Float64)"), ("max", "SimpleAggregateFunction(max, Float64)"),
        ("negatives", "SimpleAggregateFunction(sum, UInt64)"),
        ("sketch", "SimpleAggregateFunction(sumMap, Map(Int16, UInt64))"),
    ], f"project, name, {period}, environment, release, tags_key", serves, ttl_column=None,
        engine="AggregatingMergeTree", partition_by=f"toYYYYMM({period})", retention_column=period)


METRIC_ROLLUP_TABLES = [
    _metric_rollup_table("metrics_minute", "minute", "one custom metric per minute, any tags, any time range"),
    _metric_rollup_table("metrics_hour", "hour", "the same per hour (filled from metrics_minute)"),
    _metric_rollup_table("metrics_day", "day", "the same per day (filled from metrics_minute)"),
]


def _metric_rollup_view(target: str, period: str, fn: str) -> str:
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {target}_mv TO {target} AS\n"
            f"SELECT project, name, {fn}(minute) AS {period}, environment, release, tags_key, anyLast(tags) AS tags, "
            "sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max, sum(negatives) AS negatives, "
            "sumMap(sketch) AS sketch\n"
            f"FROM metrics_minute GROUP BY project, name, {period}, environment, release, tags_key")


METRIC_ROLLUP_VIEWS = [_metric_rollup_view("metrics_hour", "hour", "toStartOfHour"),
                       _metric_rollup_view("metrics_day", "day", "toStartOfDay")]

# Alert events (firing / resolved) from the worker's rule evaluation; replays collapse by event id.
ALERTS = Table("alerts", [
    ("event_id", "UUID"), ("fingerprint", "String"), ("rule", "LowCardinality(String)"),
    ("status", "LowCardinality(String)"), ("severity", "LowCardinality(String)"), ("project", "LowCardinality(String)"),
    ("labels", "Map(String, String)"), ("starts_at", "DateTime64(3, 'UTC')"),
    ("ends_at", "Nullable(DateTime64(3, 'UTC'))"), ("at", "DateTime64(3, 'UTC')"), ("value", "Nullable(Float64)"),
    ("threshold", "Nullable(Float64)"), ("summary", "String"), ("runbook_url", "String"), ("annotations", "String"),
], "project, rule, fingerprint, at, event_id", "a project's alerts over time; one alert's history (FINAL)",
    ttl_column=None, engine="ReplacingMergeTree", partition_by="toYYYYMM(at)", retention_column="at")

ALL_TABLES = [*RAW_TABLES, DEAD_LETTERS, SINK_BATCHES, SINK_MARKS, *SESSION_TABLES, *ROLLUP_TABLES, ISSUE_STATS, ISSUE_STATE,
              ISSUE_TRANSITIONS, METRICS, *METRIC_ROLLUP_TABLES, ALERTS]
# tables the storage topic may name (hour and day are filled by ClickHouse)
STORABLE = {t.name for t in [*RAW_TABLES, DEAD_LETTERS, *SESSION_TABLES, ROLLUP_TABLES[0], ISSUE_STATE,
                              ISSUE_TRANSITIONS, METRICS, METRIC_ROLLUP_TABLES[0], ALERTS]}
MIGRATIONS_TABLE = "_pulse_migrations"
RETENTION_TABLES = [t for t in ALL_TABLES if t.time_column and not t.internal]


def check_retention(settings: Settings) -> None:
    """PULSE_CLICKHOUSE_TTL_DAYS may only name tables that can have a retention: say which ones."""
    known = {t.name for t in RETENTION_TABLES}
    unknown = sorted(set(settings.clickhouse.ttl_days) - known)
    if unknown:
        raise ValueError(f"PULSE_CLICKHOUSE_TTL_DAYS names {', '.join(unknown)}, which cannot have a retention; "
                         f"tables that can: {', '.join(sorted(known))}")


def render_ddl(settings: Settings) -> str:
    parts = ["-- Generated by `pulse schemas export` from pipeline/storage/tables.py; do not edit.",
             f"-- Database: {settings.clickhouse.database}; TTL days: {settings.clickhouse.raw_ttl_days}."]
    parts += [t.create_sql(settings) + ";" for t in ALL_TABLES]
    parts += [v + ";" for v in [*VIEWS, *ROLLUP_VIEWS, *ISSUE_VIEWS, *METRIC_ROLLUP_VIEWS]]
    return "\n\n".join(parts) + "\n"


def write_ddl_snapshot(path: Path = SCHEMAS_DIR / "clickhouse.sql") -> Path:
    path.write_text(render_ddl(Settings()))
    return path
