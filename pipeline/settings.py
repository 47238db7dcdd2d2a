"""The one typed settings object.

Every knob is read from an environment variable with the ``PULSE_`` prefix; each part has its own
sub-prefix (``PULSE_KAFKA_``, ``PULSE_CLICKHOUSE_``, ``PULSE_COLLECTOR_``, ``PULSE_WORKER_``,
``PULSE_SINK_``). Defaults run everything locally: broker on 127.0.0.1:9092, embedded chDB under
``.pulse/chdb``. The CLI builds one ``Settings`` and passes it down; nothing reads the environment
anywhere else.

Example::

    PULSE_KAFKA_BOOTSTRAP_SERVERS=10.0.0.5:9092 PULSE_CLICKHOUSE_URL=http://ch:8123 pulse sink
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from pipeline.alerts.buffer import AlertLimits
    from pipeline.grouping import NoiseRules
    from pipeline.ingest.filters import InboundFilters
    from pipeline.ingest.validate import EventTimeWindow
    from pipeline.issues import IssueRules
    from pipeline.rollups.minute import RollupRules
    from pipeline.sessions.sessionizer import SessionRules

ENV_PREFIX = "PULSE_"


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", validate_default=True)


class KafkaSettings(BaseSettings):
    """Broker address, topic names and partition counts (``PULSE_KAFKA_*``)."""

    model_config = _config("PULSE_KAFKA_")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="PULSE_KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port]")
    partitions: int = Field(4, ge=1, le=1024, description="PULSE_KAFKA_PARTITIONS: partitions of every topic the project creates")
    replication_factor: int = Field(1, ge=1, description="PULSE_KAFKA_REPLICATION_FACTOR")
    topic_errors: str = Field("pulse.raw.errors", description="PULSE_KAFKA_TOPIC_ERRORS: raw error events")
    topic_vitals: str = Field("pulse.raw.vitals", description="PULSE_KAFKA_TOPIC_VITALS: raw web vitals, API calls and resources")
    topic_actions: str = Field("pulse.raw.actions", description="PULSE_KAFKA_TOPIC_ACTIONS: raw user actions")
    topic_dead_letter: str = Field("pulse.dead-letter", description="PULSE_KAFKA_TOPIC_DEAD_LETTER: invalid input with the reason")
    topic_storage: str = Field("pulse.storage", description="PULSE_KAFKA_TOPIC_STORAGE: rows for ClickHouse, written by the worker")
    topic_ux_signals: str = Field("pulse.ux-signals", description="PULSE_KAFKA_TOPIC_UX_SIGNALS: rage and dead clicks, for alerting")
    topic_issue_events: str = Field(
        "pulse.issue-events", description="PULSE_KAFKA_TOPIC_ISSUE_EVENTS: errors re-keyed by issue, and resolve/ignore commands")
    topic_issue_transitions: str = Field(
        "pulse.issue-transitions", description="PULSE_KAFKA_TOPIC_ISSUE_TRANSITIONS: new, regressed and escalating issues, for alerting")
    topic_rollup_partials: str = Field(
        "pulse.rollup-partials", description="PULSE_KAFKA_TOPIC_ROLLUP_PARTIALS: minute partials keyed by project, for alert rules")
    topic_alerts: str = Field("pulse.alerts", description="PULSE_KAFKA_TOPIC_ALERTS: alert events (firing / resolved) for the notifier")
    compression: Literal["none", "gzip", "lz4", "zstd"] = Field(
        "zstd", description="PULSE_KAFKA_COMPRESSION: producer compression. zstd by default: aiokafka compresses "
        "lz4 at level 9 (LZ4 HC, ~130 MB/s, a tenth of the worker's CPU), zstd at level 3 (~650 MB/s) with a "
        "better ratio (bench/ingest_replay.py)")
    linger_ms: int = Field(5, ge=0, le=10_000, description="PULSE_KAFKA_LINGER_MS: producer linger")
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="PULSE_KAFKA_MAX_REQUEST_BYTES: largest produce request")

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @property
    def raw_topics(self) -> list[str]:
        return [self.topic_errors, self.topic_vitals, self.topic_actions]

    @property
    def all_topics(self) -> list[str]:
        return [*self.raw_topics, self.topic_dead_letter, self.topic_storage, self.topic_ux_signals,
                self.topic_issue_events, self.topic_issue_transitions, self.topic_rollup_partials, self.topic_alerts]

    @property
    def session_topics(self) -> list[str]:
        """Raw topics sessionization reads (co-partitioned by session_id)."""
        return [self.topic_errors, self.topic_actions]

    @property
    def compression_type(self) -> str | None:
        return None if self.compression == "none" else self.compression


class ClickHouseSettings(BaseSettings):
    """Embedded chDB by default; a ClickHouse server when ``url`` is set (``PULSE_CLICKHOUSE_*``)."""

    model_config = _config("PULSE_CLICKHOUSE_")

    url: str | None = Field(None, description="PULSE_CLICKHOUSE_URL: e.g. http://default:@127.0.0.1:8123; empty = embedded chDB")
    path: Path = Field(Path(".pulse/chdb"), description="PULSE_CLICKHOUSE_PATH: chDB data directory (embedded mode)")
    database: str = Field("pulse", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="PULSE_CLICKHOUSE_DATABASE")
    raw_ttl_days: int = Field(30, ge=1, le=3650, description="PULSE_CLICKHOUSE_RAW_TTL_DAYS: retention of raw event, "
                                                             "dead-letter and session tables")
    ttl_days: dict[str, int] = Field(
        default_factory=dict,
        description='PULSE_CLICKHOUSE_TTL_DAYS: retention per table in days, JSON, e.g. {"sessions": 180, '
                    '"rollups_minute": 14, "errors": 0}; 0 = keep forever. Overrides RAW_TTL_DAYS; rollups, '
                    "metrics rollups, alerts and issue transitions are kept forever unless listed")

    @field_validator("ttl_days")
    @classmethod
    def _check_ttl_days(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if not 0 <= v <= 36500}
        if bad:
            raise ValueError(f"days must be 0 (keep forever) to 36500, got {bad}")
        return value
    dedup_window: int = Field(10_000, ge=100, description="PULSE_CLICKHOUSE_DEDUP_WINDOW: insert blocks remembered for deduplication")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @property
    def embedded(self) -> bool:
        return self.url is None

    def data_identity(self) -> str:
        """Which data these settings mean, comparable across processes: the chDB directory's resolved
        path, or the server URL (without credentials) and database. The sink reports its own in
        /health; ``pulse query`` refuses a sink whose identity is not its own.

        Example: ``chdb:/srv/pulse/.pulse/chdb`` or ``clickhouse:http://ch:8123/pulse``.
        """
        if self.url is None:
            return f"chdb:{self.path.expanduser().resolve()}"
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"clickhouse:{parts.scheme}://{netloc}/{self.database}"


class CollectorSettings(BaseSettings):
    """HTTP collector (``PULSE_COLLECTOR_*``)."""

    model_config = _config("PULSE_COLLECTOR_")

    host: str = Field("127.0.0.1", description="PULSE_COLLECTOR_HOST")
    port: int = Field(8080, ge=0, le=65535, description="PULSE_COLLECTOR_PORT")
    project_keys: dict[str, str] = Field(
        default_factory=lambda: {"demo-public-key": "demo", "demo_public_key": "demo"},
        description='PULSE_COLLECTOR_PROJECT_KEYS: JSON object key -> project, e.g. {"k1":"shop"}',
    )
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="PULSE_COLLECTOR_MAX_BODY_BYTES: after decompression")
    max_event_bytes: int = Field(256 * 1024, ge=256, description="PULSE_COLLECTOR_MAX_EVENT_BYTES: one event, encoded")
    max_events_per_request: int = Field(1000, ge=1, description="PULSE_COLLECTOR_MAX_EVENTS_PER_REQUEST")
    produce_timeout_s: float = Field(5.0, gt=0, description="PULSE_COLLECTOR_PRODUCE_TIMEOUT_S: then 503 + Retry-After")
    retry_after_s: int = Field(5, ge=1, description="PULSE_COLLECTOR_RETRY_AFTER_S: Retry-After on 503")
    header_timeout_s: float = Field(
        15.0, gt=0, description="PULSE_COLLECTOR_HEADER_TIMEOUT_S: a connection must deliver complete request headers "
        "this many seconds after it opens or after the previous answer, else it is closed (also the keep-alive idle time)")
    body_timeout_s: float = Field(
        30.0, gt=0, description="PULSE_COLLECTOR_BODY_TIMEOUT_S: a request body must be complete this many seconds "
        "after its headers, else 408 and the connection is closed")
    slow_body_after_s: float = Field(
        2.0, gt=0, description="PULSE_COLLECTOR_SLOW_BODY_AFTER_S: a body still arriving this long after its headers "
        "is slow and needs one of PULSE_COLLECTOR_MAX_SLOW_BODIES slots to go on")
    max_slow_bodies: int = Field(
        64, ge=0, description="PULSE_COLLECTOR_MAX_SLOW_BODIES: slow bodies read at once; one more is answered 503 + "
        "Retry-After and closed, so trickling clients cannot hold the collector")
    rate_limits: dict[str, int] = Field(
        default_factory=dict, description='PULSE_COLLECTOR_RATE_LIMITS: JSON project -> events per minute, e.g. {"shop": 60000}; '
        "over it: 429 + Retry-After (Sentry: also X-Sentry-Rate-Limits); unlisted projects are not limited")
    scrub_ip_addresses: bool = Field(
        True, description="PULSE_COLLECTOR_SCRUB_IP_ADDRESSES: replace IPv4 addresses in event text with [ip] (Relay's default)")
    filter_web_crawlers: bool = Field(True, description="PULSE_COLLECTOR_FILTER_WEB_CRAWLERS: drop events from bots' user agents")
    filter_localhost: bool = Field(False, description="PULSE_COLLECTOR_FILTER_LOCALHOST: drop events from pages on localhost")
    filter_legacy_browsers: bool = Field(False, description="PULSE_COLLECTOR_FILTER_LEGACY_BROWSERS: drop events from IE and very old browsers")
    filter_browser_extensions: bool = Field(
        False, description="PULSE_COLLECTOR_FILTER_BROWSER_EXTENSIONS: drop errors from extension scripts (default: keep, marked as noise)")
    api_token: SecretStr | None = Field(
        None, description="PULSE_COLLECTOR_API_TOKEN: bearer token for the query and management API (/api/issues, "
        "GET /api/metrics); unset = those endpoints answer loopback clients only")

    processes: int = Field(
        1, ge=1, le=64, description="PULSE_COLLECTOR_PROCESSES: collector processes serving the one port (SO_REUSEPORT; "
        "the kernel spreads connections over them). One process takes roughly one core; rate limits and "
        "max_slow_bodies are split evenly between the processes")
    metrics_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()),
        description="PULSE_COLLECTOR_METRICS_DIR: with PULSE_COLLECTOR_PROCESSES > 1, where each run makes its "
        "directory of per-process metric files (pulse-collector-metrics-<pid>: emptied at start, removed at exit) so "
        "that every scrape of /metrics sums all processes; default: the system temp directory ($TMPDIR or /tmp)")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="PULSE_COLLECTOR_EVENT_LOOP: auto = uvloop when installed (a third less CPU per request), "
        "else asyncio's own loop")

    health_lag_degraded: int = Field(
        10_000, ge=1, description="PULSE_COLLECTOR_HEALTH_LAG_DEGRADED: /api/health is degraded when a consumer group is "
        "this many messages behind")
    health_lag_unhealthy: int = Field(
        1_000_000, ge=1, description="PULSE_COLLECTOR_HEALTH_LAG_UNHEALTHY: ... and unhealthy (503) from this many")
    health_interval_s: float = Field(
        15.0, gt=0, description="PULSE_COLLECTOR_HEALTH_INTERVAL_S: how often consumer lag is measured for /metrics")

    max_future_s: float = Field(
        86_400.0, gt=0, description="PULSE_COLLECTOR_MAX_FUTURE_S: an event time (after clock-skew correction) more "
        "than this many seconds after the receive time is out of range")
    max_past_days: float = Field(
        365.0, gt=0, description="PULSE_COLLECTOR_MAX_PAST_DAYS: ... and more than this many days before it")
    clock_skew_min_s: float = Field(
        60.0, ge=0, description="PULSE_COLLECTOR_CLOCK_SKEW_MIN_S: receive time - sent_at of at least this many seconds "
        "(either way) is the client's clock error and is added to its event times; less is network delay")
    out_of_range_timestamps: Literal["reject", "clamp"] = Field(
        "reject", description="PULSE_COLLECTOR_OUT_OF_RANGE_TIMESTAMPS: reject (a dead letter with the reason) or "
        "clamp (set to the receive time, as Sentry does) events whose time is out of range")

    def event_time_window(self) -> "EventTimeWindow":
        from pipeline.ingest.validate import EventTimeWindow

        return EventTimeWindow(self.max_future_s, self.max_past_days, self.clock_skew_min_s,
                               self.out_of_range_timestamps)

    def inbound_filters(self) -> "InboundFilters":
        from pipeline.ingest.filters import InboundFilters

        return InboundFilters(self.filter_web_crawlers, self.filter_localhost, self.filter_legacy_browsers,
                              self.filter_browser_extensions)

    @field_validator("project_keys")
    @classmethod
    def _check_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one project key is required")
        return value


class WorkerSettings(BaseSettings):
    """The Faust worker (``PULSE_WORKER_*``)."""

    model_config = _config("PULSE_WORKER_")

    app_id: str = Field("pulse-worker", description="PULSE_WORKER_APP_ID: Faust app id = consumer group of the "
                        "issue and alert agents; the raw topics are read by the group '<app id>-ingest'")
    batch_size: int = Field(5000, ge=1, description="PULSE_WORKER_BATCH_SIZE: most raw messages in one step "
                            "(one batch: all stages, outputs, state, commit); a full batch steps at once")
    step_interval_s: float = Field(
        1.0, gt=0, le=60, description="PULSE_WORKER_STEP_INTERVAL_S: how long the worker gathers raw messages "
        "before a step (unless BATCH_SIZE come sooner); also the longest wait before it checks its clocks (quiet "
        "partitions). Longer: less CPU and fewer state bytes per event at ordinary rates, later rows (up to this "
        "much; see the README's sizing section)")
    fetch_min_bytes: int = Field(
        256 * 1024, ge=1, le=16 * 1024 * 1024, description="PULSE_WORKER_FETCH_MIN_BYTES: the broker answers the "
        "raw-topic consumer's fetch when this much input is ready or FETCH_MAX_WAIT_MS passed. 1 (Kafka's default) "
        "answers every new record at once: at ordinary rates a fetch round trip per collector flush, which cost "
        "the worker more CPU than the events themselves (bench/README.md)")
    fetch_max_wait_ms: int = Field(
        250, ge=0, le=5000, description="PULSE_WORKER_FETCH_MAX_WAIT_MS: longest the broker holds a raw-topic fetch "
        "waiting for FETCH_MIN_BYTES (capped at STEP_INTERVAL_S); rows are stored up to this much later at low rates")
    batch_within_s: float | None = Field(
        None, description="PULSE_WORKER_BATCH_WITHIN_S: replaced by PULSE_WORKER_STEP_INTERVAL_S (an error if set)")
    max_record_bytes: int = Field(512 * 1024, ge=16 * 1024, le=900 * 1024,
                                  description="PULSE_WORKER_MAX_RECORD_BYTES: largest record the worker produces "
                                  "(storage rows and alert partials are cut below it; Kafka's default limit is 1 MB)")
    dedup_capacity: int = Field(500_000, ge=1000, description="PULSE_WORKER_DEDUP_CAPACITY: recent event_ids remembered "
                                "(at least this many, at most twice)")
    dedup_rebuild_s: float = Field(120.0, ge=0, description="PULSE_WORKER_DEDUP_REBUILD_S: when a worker takes a raw "
                                   "partition (start, restart, rebalance) it reads back this many seconds of the "
                                   "partition before its committed offset and remembers their event ids, so an SDK "
                                   "retry of an event the previous holder stored is still dropped; 0 turns it off")
    trim_interval_s: float = Field(5.0, ge=0, description="PULSE_WORKER_TRIM_INTERVAL_S: at most this often (after a "
                                   "batch) the worker hands the C allocator's free pages back to the OS "
                                   "(glibc malloc_trim): without it the garbage of past batches stays in RSS, "
                                   "about 3.5 KB per open session; 0 turns it off")
    keep_state_on_rebalance: bool = Field(
        True, description="PULSE_WORKER_KEEP_STATE_ON_REBALANCE: a raw partition assigned back to the same worker "
        "at a rebalance keeps its sessions and dedup memory when nobody committed its input or wrote its session "
        "state meanwhile (else it is rebuilt); false rebuilds every partition at every rebalance")
    data_dir: Path = Field(Path(".pulse/worker"), description="PULSE_WORKER_DATA_DIR: Faust table state")
    web_port: int = Field(6066, ge=0, le=65535, description="PULSE_WORKER_WEB_PORT: /health and /metrics")
    web_host: str = Field("127.0.0.1", description="PULSE_WORKER_WEB_HOST: bind address of /health and /metrics "
                                                    "(0.0.0.0 in containers, so Prometheus can scrape it)")
    instance_id: str | None = Field(
        None, description="PULSE_WORKER_INSTANCE_ID: static consumer-group membership; default: app id, host and "
        "data directory, so a restarted worker takes its partitions back without a group rebalance")

    @field_validator("batch_within_s")
    @classmethod
    def _replaced(cls, value: float | None) -> None:
        if value is not None:
            raise ValueError("replaced by PULSE_WORKER_STEP_INTERVAL_S (how long the worker gathers input before "
                             "a step; a poll no longer makes a step)")
        return None

    def ingest_group(self) -> str:
        """Consumer group of the raw-event batch runner (agents/ingest.py)."""
        return f"{self.app_id}-ingest"

    def group_instance_id(self) -> str:
        """Stable per worker (host + data directory). A restart then rejoins without a rebalance:
        faust can lose messages that sit in its buffers when partitions are revoked (it commits past
        the gap they leave), and a crashed member otherwise causes two rebalances in a row."""
        if self.instance_id:
            return self.instance_id
        import hashlib
        import socket

        where = hashlib.sha1(str(self.data_dir.resolve()).encode(), usedforsecurity=False).hexdigest()[:10]
        return f"{self.app_id}-{socket.gethostname()}-{where}"


class SessionSettings(BaseSettings):
    """Sessionization, rage and dead clicks (``PULSE_SESSIONS_*``). Defaults are the product spec's."""

    model_config = _config("PULSE_SESSIONS_")

    idle_timeout_s: float = Field(1800, gt=0, description="PULSE_SESSIONS_IDLE_TIMEOUT_S: a gap longer than this starts a new session")
    max_duration_s: float = Field(86400, gt=0, description="PULSE_SESSIONS_MAX_DURATION_S: a session ends at this age")
    bounce_max_s: float = Field(10, ge=0, description="PULSE_SESSIONS_BOUNCE_MAX_S: one pageview and shorter than this = bounce")
    allowed_lateness_s: float = Field(60, ge=0, description="PULSE_SESSIONS_ALLOWED_LATENESS_S: out-of-order tolerance (watermark lag)")
    max_buffered_events: int = Field(
        400, ge=10, le=5000, description="PULSE_SESSIONS_MAX_BUFFERED_EVENTS: events one session may hold ahead of the "
        "watermark (they travel in its changelog record, which must stay below Kafka's 1 MB); more within the allowed "
        "lateness are stored raw but not sessionized (pulse_session_buffer_overflow_total)")
    max_buffered_chars: int = Field(
        256 * 1024, ge=16 * 1024, le=512 * 1024, description="PULSE_SESSIONS_MAX_BUFFERED_CHARS: the same bound on "
        "the length of those events' text (pages, selectors, user agent; an upper bound of what they add to the record)")
    rage_min_clicks: int = Field(3, ge=2, description="PULSE_SESSIONS_RAGE_MIN_CLICKS")
    rage_max_gap_ms: int = Field(1000, ge=1, description="PULSE_SESSIONS_RAGE_MAX_GAP_MS: between consecutive clicks (inclusive)")
    rage_max_distance_px: float = Field(30, ge=0, description="PULSE_SESSIONS_RAGE_MAX_DISTANCE_PX: Manhattan, inclusive")
    dead_click_window_ms: float = Field(2500, gt=0, description="PULSE_SESSIONS_DEAD_CLICK_WINDOW_MS: no effect within this = dead")
    timer_interval_s: float = Field(1.0, gt=0, description="PULSE_SESSIONS_TIMER_INTERVAL_S: how often quiet partitions follow the clock")
    quiet_partition_s: float = Field(
        5.0, ge=0, description="PULSE_SESSIONS_QUIET_PARTITION_S: a caught-up partition that received nothing for this long "
        "follows the wall clock (watermark = now - allowed lateness), closing idle sessions")

    def rules(self) -> "SessionRules":
        from pipeline.sessions.clicks import DeadClickRule, RageClickRule
        from pipeline.sessions.sessionizer import SessionRules

        return SessionRules(idle_ms=int(self.idle_timeout_s * 1000), max_ms=int(self.max_duration_s * 1000),
                            bounce_max_ms=int(self.bounce_max_s * 1000),
                            rage=RageClickRule(self.rage_min_clicks, self.rage_max_gap_ms, self.rage_max_distance_px),
                            dead=DeadClickRule(self.dead_click_window_ms),
                            max_buffered_events=self.max_buffered_events,
                            max_buffered_chars=self.max_buffered_chars)

    @property
    def lateness_ms(self) -> int:
        return int(self.allowed_lateness_s * 1000)


class RollupSettings(BaseSettings):
    """Per-minute rollups (``PULSE_ROLLUPS_*``)."""

    model_config = _config("PULSE_ROLLUPS_")

    window_s: int = Field(60, ge=1, le=3600, description="PULSE_ROLLUPS_WINDOW_S: tumbling window of the finest rollup")
    checkout_patterns: list[str] = Field(
        default_factory=lambda: ["/checkout"],
        description='PULSE_ROLLUPS_CHECKOUT_PATTERNS: JSON list; API calls whose URL path contains one count as checkout')
    allowed_lateness_s: float = Field(
        60, ge=0, description="PULSE_ROLLUPS_ALLOWED_LATENESS_S: an event that arrives later than its window's end plus this "
        "still lands in its minute, and is counted in pulse_late_events_total{stage=\"rollups\"}")

    def rules(self) -> "RollupRules":
        from pipeline.rollups.minute import RollupRules

        return RollupRules(window_s=self.window_s, checkout_patterns=tuple(self.checkout_patterns),
                           lateness_ms=int(self.allowed_lateness_s * 1000))


class IssueSettings(BaseSettings):
    """Error grouping noise filters and issue status rules (``PULSE_ISSUES_*``)."""

    model_config = _config("PULSE_ISSUES_")

    new_period_h: float = Field(168, gt=0, description="PULSE_ISSUES_NEW_PERIOD_H: an issue (or a regression) is new this long, then ongoing")
    escalation_factor: float = Field(
        5.0, gt=1, description="PULSE_ISSUES_ESCALATION_FACTOR: escalating when an hour has this many times the baseline's hourly average")
    escalation_min_events: int = Field(20, ge=1, description="PULSE_ISSUES_ESCALATION_MIN_EVENTS: ... and at least this many errors")
    baseline_hours: int = Field(24, ge=1, le=24 * 14, description="PULSE_ISSUES_BASELINE_HOURS: the trailing baseline for escalation")
    drop_browser_extensions: bool = Field(
        True, description="PULSE_ISSUES_DROP_BROWSER_EXTENSIONS: errors with a chrome-extension:// (etc.) frame are noise")
    drop_resize_observer: bool = Field(True, description="PULSE_ISSUES_DROP_RESIZE_OBSERVER: 'ResizeObserver loop' errors are noise")
    drop_script_error_without_stack: bool = Field(
        True, description="PULSE_ISSUES_DROP_SCRIPT_ERROR_WITHOUT_STACK: cross-origin 'Script error.' without frames is noise")
    ignored_messages: list[str] = Field(
        default_factory=list, description="PULSE_ISSUES_IGNORED_MESSAGES: JSON list of message substrings that are noise")
    ignored_exception_types: list[str] = Field(
        default_factory=list, description="PULSE_ISSUES_IGNORED_EXCEPTION_TYPES: JSON list of exception types that are noise")

    def rules(self) -> "IssueRules":
        from pipeline.issues import IssueRules

        return IssueRules(new_period_ms=int(self.new_period_h * 3_600_000), escalation_factor=self.escalation_factor,
                          escalation_min_events=self.escalation_min_events, baseline_hours=self.baseline_hours)

    def noise_rules(self) -> "NoiseRules":
        from pipeline.grouping import NoiseRules

        return NoiseRules(drop_browser_extensions=self.drop_browser_extensions,
                          drop_resize_observer=self.drop_resize_observer,
                          drop_script_error_without_stack=self.drop_script_error_without_stack,
                          ignored_messages=tuple(self.ignored_messages),
                          ignored_exception_types=tuple(self.ignored_exception_types))


class AlertSettings(BaseSettings):
    """Alert rule evaluation in the worker (``PULSE_ALERTS_*``)."""

    model_config = _config("PULSE_ALERTS_")

    rules_path: Path = Field(
        Path(__file__).resolve().parent / "alerts" / "default_rules.yaml",
        description="PULSE_ALERTS_RULES_PATH: YAML or TOML rule file (default: the spec's rules, pipeline/alerts/default_rules.yaml)")
    tick_interval_s: float = Field(1.0, gt=0, description="PULSE_ALERTS_TICK_INTERVAL_S: how often closed windows are evaluated")
    max_series: int = Field(
        1000, ge=1, description="PULSE_ALERTS_MAX_SERIES: per input partition, rule (or SLO) and window, the most series "
        "(project + group_by labels) tracked. Beyond it a new series is not evaluated and counted in "
        "pulse_alert_series_dropped_total{rule}; series already tracked (firing ones included) go on")
    max_projects: int = Field(
        1000, ge=1, description="PULSE_ALERTS_MAX_PROJECTS: per input partition, the most projects whose enrichment context "
        "(last release, recent issues) is kept; a new one beyond it evicts the project seen longest ago, counted in "
        "pulse_alert_context_evicted_total")
    recent_issues: int = Field(
        20, ge=0, le=1000, description="PULSE_ALERTS_RECENT_ISSUES: recent issue transitions kept per project for "
        "enrichment (the newest ones; alerts show the top 3)")
    max_state_bytes: int = Field(
        1_000_000, ge=64 * 1024, description="PULSE_ALERTS_MAX_STATE_BYTES: the largest alert state record written to the "
        "changelog (also capped by PULSE_KAFKA_MAX_REQUEST_BYTES). A bigger one is not written: an error is logged, "
        "pulse_alert_state_oversize_total counts it, and alerting goes on from memory (a restart resumes from the last "
        "state written); lower PULSE_ALERTS_MAX_SERIES or the rules' group_by")
    partials_max_bytes: int = Field(
        256 * 1024, ge=4096, le=1_000_000, description="PULSE_ALERTS_PARTIALS_MAX_BYTES: the largest rollup-partials "
        "message the worker produces (rows merged per series and minute, split across messages above this)")

    def limits(self) -> "AlertLimits":
        from pipeline.alerts.buffer import AlertLimits

        return AlertLimits(max_series=self.max_series, max_projects=self.max_projects, recent_issues=self.recent_issues)


class ReportSettings(BaseSettings):
    """The health report, ``pulse report`` and ``GET /api/report`` (``PULSE_REPORT_*``). Every figure
    and the health score are defined in docs/report.md."""

    model_config = _config("PULSE_REPORT_")

    average_order_value: float | None = Field(
        None, ge=0, description="PULSE_REPORT_AVERAGE_ORDER_VALUE: revenue of one checkout; the report's revenue_impact = "
        "failed checkout calls x this (unset: revenue_impact is null)")
    uptime_min_success: float = Field(
        0.95, ge=0, le=1, description="PULSE_REPORT_UPTIME_MIN_SUCCESS: a minute with API calls counts as up when at least "
        "this share of them succeeded (uptime = up minutes / minutes with API calls)")


class SinkSettings(BaseSettings):
    """The ClickHouse sink, the single owner of the database connection (``PULSE_SINK_*``)."""

    model_config = _config("PULSE_SINK_")

    group_id: str = Field("pulse-sink", description="PULSE_SINK_GROUP_ID: consumer group")
    batch_rows: int = Field(50_000, ge=1, description="PULSE_SINK_BATCH_ROWS: flush when this many rows are buffered")
    batch_seconds: float = Field(1.0, gt=0, description="PULSE_SINK_BATCH_SECONDS: flush at least this often")
    host: str = Field("127.0.0.1", description="PULSE_SINK_HOST: read-only SQL endpoint")
    port: int = Field(8124, ge=0, le=65535, description="PULSE_SINK_PORT: read-only SQL endpoint, /health, /metrics")
    retry_backoff_max_s: float = Field(30.0, gt=0, description="PULSE_SINK_RETRY_BACKOFF_MAX_S: ClickHouse down -> pause")
    sql_access_key: SecretStr | None = Field(
        None, description="PULSE_SINK_SQL_ACCESS_KEY: when set, the SQL endpoint needs it as the ClickHouse password "
                          "(basic auth, X-ClickHouse-Key header or password= parameter); any user name")
    sql_allow_writes: bool = Field(
        False, description="PULSE_SINK_SQL_ALLOW_WRITES: admin only; let the SQL endpoint run INSERT/ALTER/DROP... "
                           "(needs PULSE_SINK_SQL_ACCESS_KEY). Off: writes are refused with ClickHouse's READONLY error")
    sql_max_execution_time_s: float = Field(
        30, ge=0, description="PULSE_SINK_SQL_MAX_EXECUTION_TIME_S: per analyst query (ClickHouse max_execution_time; "
                              "0 = none); past it the query fails with TIMEOUT_EXCEEDED")
    sql_max_memory_usage: int = Field(
        2_000_000_000, ge=0, description="PULSE_SINK_SQL_MAX_MEMORY_USAGE: bytes per analyst query (max_memory_usage)")
    sql_max_result_rows: int = Field(
        1_000_000, ge=0, description="PULSE_SINK_SQL_MAX_RESULT_ROWS: rows in one answer (max_result_rows)")
    sql_max_result_bytes: int = Field(
        256 * 1024 * 1024, ge=0, description="PULSE_SINK_SQL_MAX_RESULT_BYTES: bytes in one answer (max_result_bytes)")
    sql_max_rows_to_read: int = Field(
        10_000_000_000, ge=0, description="PULSE_SINK_SQL_MAX_ROWS_TO_READ: rows one analyst query may read (max_rows_to_read)")
    sql_max_request_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="PULSE_SINK_SQL_MAX_REQUEST_BODY_BYTES: a request body once decompressed "
                                               "(decompress=1 blocks, Content-Encoding); past it 413 TOO_MANY_BYTES. "
                                               "Bounds decompression bombs; the body as sent is bounded by the same number")
    sql_max_concurrent_reads: int = Field(
        2, ge=1, le=64, description="PULSE_SINK_SQL_MAX_CONCURRENT_READS: analyst queries run at once (the read lane's "
                                    "threads); more wait. Inserts and /health have lanes of their own")
    crash_after_insert: int = Field(
        0, ge=0, description="PULSE_SINK_CRASH_AFTER_INSERT: testing only; SIGKILL itself after the Nth flush's insert, before commit"
    )

    @model_validator(mode="after")
    def _writes_need_a_key(self) -> "SinkSettings":
        if self.sql_allow_writes and self.sql_access_key is None:
            raise ValueError("PULSE_SINK_SQL_ALLOW_WRITES=true needs PULSE_SINK_SQL_ACCESS_KEY: "
                             "writes are never open to anyone who can reach the port")
        return self


class NotifierSettings(BaseSettings):
    """The notifier process: alert events in, pages out (``PULSE_NOTIFIER_*``). Routing, receivers,
    silencing rules and escalation live in its config file (``config_path``, see pipeline/notify/config.py)."""

    model_config = _config("PULSE_NOTIFIER_")

    config_path: Path = Field(Path(__file__).resolve().parent / "notify" / "default_config.yaml",
                              description="PULSE_NOTIFIER_CONFIG_PATH: receivers, routes, inhibition, escalation (YAML)")
    group_id: str = Field("pulse-notifier", description="PULSE_NOTIFIER_GROUP_ID: consumer group (run one notifier per group)")
    host: str = Field("127.0.0.1", description="PULSE_NOTIFIER_HOST: HTTP API (silences, ack, incidents), /health, /metrics")
    port: int = Field(8125, ge=0, le=65535, description="PULSE_NOTIFIER_PORT")
    state_path: Path = Field(Path(".pulse/notifier/state.sqlite3"),
                             description="PULSE_NOTIFIER_STATE_PATH: SQLite file with the state, the outbox and the consumer offsets")
    tick_interval_s: float = Field(1.0, gt=0, le=60, description="PULSE_NOTIFIER_TICK_INTERVAL_S: how often timers are checked")
    delivery_timeout_s: float = Field(10, gt=0, le=300, description="PULSE_NOTIFIER_DELIVERY_TIMEOUT_S: per HTTP request / SMTP session")


class Settings(BaseSettings):
    """Everything, composed. ``Settings()`` reads the environment once."""

    model_config = _config(ENV_PREFIX)

    data_dir: Path = Field(Path(".pulse"), description="PULSE_DATA_DIR: local state (pids, logs)")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    rollups: RollupSettings = Field(default_factory=RollupSettings)
    issues: IssueSettings = Field(default_factory=IssueSettings)
    notifier: NotifierSettings = Field(default_factory=NotifierSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @model_validator(mode="after")
    def _distinct_topics(self) -> "Settings":
        topics = self.kafka.all_topics
        if len(set(topics)) != len(topics):
            raise ValueError(f"topic names must be distinct, got {topics}")
        return self


def describe_settings_error(exc: Exception) -> str:
    """One line per bad field, naming the environment variable to fix."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    title = exc.title
    prefix = {
        "KafkaSettings": "PULSE_KAFKA_",
        "ClickHouseSettings": "PULSE_CLICKHOUSE_",
        "CollectorSettings": "PULSE_COLLECTOR_",
        "WorkerSettings": "PULSE_WORKER_",
        "SinkSettings": "PULSE_SINK_",
        "SessionSettings": "PULSE_SESSIONS_",
        "RollupSettings": "PULSE_ROLLUPS_",
        "NotifierSettings": "PULSE_NOTIFIER_",
        "ReportSettings": "PULSE_REPORT_",
    }.get(title, ENV_PREFIX)
    lines = []
    for err in exc.errors():
        field = "_".join(str(p) for p in err["loc"] if isinstance(p, str)).upper()
        lines.append(f"{prefix}{field}: {err['msg']} (got {err.get('input')!r})")
    return "invalid settings:\n  " + "\n  ".join(lines)
