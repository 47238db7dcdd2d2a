"""Table definitions as data; migrations create them, the DDL snapshot shows them.

Raw event tables share the envelope columns, are plain MergeTree (one row per event) with a TTL,
and keep ``non_replicated_deduplication_window`` so the sink's insert deduplication tokens work
on a single server or embedded chDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    def create_sql(self, settings: Settings) -> str:
        cols = ",\n    ".join(f"`{n}` {t}" for n, t in self.columns)
        ttl = (f"\nTTL toDateTime({self.ttl_column}) + INTERVAL {settings.clickhouse.raw_ttl_days} DAY"
               if self.ttl_column else "")
        return (f"CREATE TABLE IF NOT EXISTS {self.name}\n(\n    {cols}\n)\nENGINE = MergeTree\n"
                f"PARTITION BY toYYYYMM({self.ttl_column or 'created_at'})\n"
                f"-- ORDER BY serves: {self.order_by_serves}\n"
                f"ORDER BY ({self.order_by}){ttl}\n"
                f"SETTINGS non_replicated_deduplication_window = {settings.clickhouse.dedup_window}")

    @property
    def column_names(self) -> list[str]:
        return [n for n, _ in self.columns]


RAW_TABLES = [
    Table("errors", ENVELOPE + [
        ("exception_type", "LowCardinality(String)"), ("message", "String"), ("level", "LowCardinality(String)"),
        ("handled", "Bool"), ("mechanism", "LowCardinality(String)"), ("stacktrace", "String"),
        ("breadcrumbs", "String"), ("tags", "Map(String, String)"), ("fingerprint", "Array(String)"),
    ], "project, exception_type, timestamp", "top errors per project by type and time range"),
    Table("vitals", ENVELOPE + [
        ("name", "LowCardinality(String)"), ("value", "Float64"), ("rating", "LowCardinality(String)"),
        ("navigation_type", "LowCardinality(String)"), ("element", "String"),
    ], "project, name, route, timestamp", "percentiles of one vital per route over a time range"),
    Table("actions", ENVELOPE + [
        ("kind", "LowCardinality(String)"), ("selector", "String"), ("tag", "LowCardinality(String)"),
        ("text", "String"), ("x", "Nullable(Float64)"), ("y", "Nullable(Float64)"), ("interactive", "Nullable(Bool)"),
        ("dom_mutation_ms", "Nullable(Float64)"), ("navigated", "Nullable(Bool)"), ("scrolled", "Nullable(Bool)"),
        ("scroll_depth", "Nullable(Float64)"), ("form", "String"), ("visibility", "LowCardinality(String)"),
        ("name", "String"), ("properties", "String"),
    ], "project, kind, route, session_id, timestamp", "clicks/pageviews per page; one session's actions in order"),
    Table("api_calls", ENVELOPE + [
        ("kind", "LowCardinality(String)"), ("request_url", "String"), ("method", "LowCardinality(String)"),
        ("status", "Nullable(UInt16)"), ("duration_ms", "Float64"), ("ok", "Bool"),
        ("initiator", "LowCardinality(String)"), ("size_bytes", "Nullable(UInt64)"),
    ], "project, kind, ok, timestamp", "failure rate and latency of API calls over a time range"),
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

ALL_TABLES = [*RAW_TABLES, DEAD_LETTERS, SINK_BATCHES, SINK_MARKS]
STORABLE = {t.name for t in [*RAW_TABLES, DEAD_LETTERS]}  # tables the storage topic may name
MIGRATIONS_TABLE = "_pulse_migrations"


def render_ddl(settings: Settings) -> str:
    parts = ["-- Generated by `pulse schemas export` from pipeline/storage/tables.py; do not edit.",
             f"-- Database: {settings.clickhouse.database}; TTL days: {settings.clickhouse.raw_ttl_days}."]
    parts += [t.create_sql(settings) + ";" for t in ALL_TABLES]
    return "\n\n".join(parts) + "\n"


def write_ddl_snapshot(path: Path = SCHEMAS_DIR / "clickhouse.sql") -> Path:
    path.write_text(render_ddl(Settings()))
    return path
