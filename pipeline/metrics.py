"""Every Prometheus metric, declared once. Processes label themselves with ``process``.

Append new metrics here (never redefine one elsewhere); /metrics on each process serves the
default registry, except a collector of several processes: it serves the merge of every process's
values (``pipeline/collector/shared_metrics.py``), counters and histograms summed.

Every gauge names its ``multiprocess_mode``: how the values of several processes combine in that
merge (prometheus-client's default, ``all``, would add a ``pid`` label, one series per process). Only
the collector runs in multiprocess mode, and the one gauge it sets is ``pulse_consumer_group_lag``;
elsewhere the mode is ignored, but each gauge says what it would mean, so that a gauge the collector
starts to set is not summed or split by pid by accident. ``*mostrecent``: the newest value set by any
process (for facts that any process measures, or whoever owns a partition now reports);
``live*``: a stopped process's value is dropped (``mark_process_dead``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("pulse_events_in_total", "Events accepted by a stage", ["process", "type"])
EVENTS_OUT = Counter("pulse_events_out_total", "Events/rows handed to the next stage", ["process", "type"])
DEAD_LETTERS = Counter("pulse_dead_letters_total",
                       "Inputs rejected to the dead-letter topic, by step and reason kind (pipeline.contract.REASON_KINDS; "
                       "the full reason is in the dead_letters table)", ["process", "step", "reason"])
DUPLICATES_DROPPED = Counter("pulse_duplicates_dropped_total", "Events/messages dropped as duplicates", ["process", "by"])
HTTP_REQUESTS = Counter("pulse_http_requests_total", "HTTP requests by endpoint and status", ["process", "endpoint", "status"])
SQL_COMPRESSION = Counter("pulse_sql_compression_total", "SQL endpoint bodies by direction (request/response) and "
                          "compression (blocks: ClickHouse's compress/decompress=1; else the HTTP encoding)",
                          ["direction", "compression"])
PRODUCE_FAILURES = Counter("pulse_produce_failures_total", "Kafka produce failures", ["process"])
BATCH_SIZE = Histogram("pulse_batch_size", "Messages per processed batch", ["process"],
                       buckets=(1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000))
BATCH_SECONDS = Histogram("pulse_batch_seconds", "Time to process one batch", ["process"])
INSERT_SECONDS = Histogram("pulse_clickhouse_insert_seconds", "ClickHouse insert latency", ["table"])
ROWS_INSERTED = Counter("pulse_clickhouse_rows_inserted_total", "Rows inserted into ClickHouse", ["table"])
INSERT_FAILURES = Counter("pulse_clickhouse_insert_failures_total", "Failed inserts (retried)", ["table"])
CONSUMER_GROUP_LAG = Gauge("pulse_consumer_group_lag",
                           "Messages behind the end offset per consumer group and partition, measured by the collector "
                           "from committed offsets (also for a stuck or stopped consumer)", ["group", "topic", "partition"],
                           # every collector process measures the same broker-side fact each health interval:
                           # the newest measurement is the answer (a sum would be N times the lag)
                           multiprocess_mode="mostrecent")
CONSUMER_LAG = Gauge("pulse_consumer_lag", "Messages behind the high watermark", ["process", "topic", "partition"],
                     multiprocess_mode="livemostrecent")  # the partition's current owner reports it
HTTP_REQUEST_SECONDS = Histogram("pulse_http_request_seconds", "HTTP request latency, delivery to Kafka included",
                                 ["process", "endpoint"])
HTTP_BODY_BYTES = Histogram("pulse_http_body_bytes", "Request body size after decompression", ["process", "endpoint"],
                            buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 5242880))
LATE_EVENTS = Counter("pulse_late_events_total",
                      "Late events by stage. sessions: behind the watermark, stored raw but not sessionized; "
                      "rollups: arrived after their window + allowed lateness, still counted in their minute",
                      ["process", "stage"])
ACTIVE_SESSIONS = Gauge("pulse_active_sessions", "Open sessions held by this worker", ["partition"],
                        multiprocess_mode="livemostrecent")  # the partition's current owner reports it
SESSION_OUTPUTS = Counter("pulse_session_outputs_total", "Rows emitted by sessionization", ["table"])
SESSION_BUFFER_OVERFLOW = Counter("pulse_session_buffer_overflow_total",
                                  "Events stored raw but not sessionized: their session already held "
                                  "PULSE_SESSIONS_MAX_BUFFERED_EVENTS events ahead of the watermark")
SESSION_REPLAY_SKIPPED = Counter("pulse_session_replay_skipped_total",
                                 "Replayed events skipped because the restored session state already held them")
ISSUE_TRANSITIONS = Counter("pulse_issue_transitions_total", "Issue status changes by the status entered", ["kind"])
FILTERED_EVENTS = Counter("pulse_filtered_events_total", "Events dropped by inbound filters at the collector", ["reason"])
SDK_ITEMS = Counter("pulse_sdk_items_total", "Items received through the Sentry and PostHog endpoints",
                    ["sdk", "type"])
ALERT_EVENTS = Counter("pulse_alert_events_total", "Alert events emitted by the worker's rule evaluation",
                       ["rule", "status", "severity"])
ALERT_SERIES_DROPPED = Counter("pulse_alert_series_dropped_total",
                               "New alert series not tracked because a rule (or the SLOs) already tracks "
                               "PULSE_ALERTS_MAX_SERIES series in a window", ["rule"])
ALERT_CONTEXT_EVICTED = Counter("pulse_alert_context_evicted_total",
                                "Projects whose alert enrichment context was forgotten at PULSE_ALERTS_MAX_PROJECTS")
ALERT_STATE_OVERSIZE = Counter("pulse_alert_state_oversize_total",
                               "Alert state records not written because they exceeded PULSE_ALERTS_MAX_STATE_BYTES "
                               "(or PULSE_KAFKA_MAX_REQUEST_BYTES)", ["partition"])
ALERT_STATE_BYTES = Gauge("pulse_alert_state_bytes", "Size of the last alert state record per partition", ["partition"],
                          multiprocess_mode="mostrecent")  # the last record written, by whichever process
NOTIFICATIONS = Counter("pulse_notifications_total",
                        "Notification send attempts by receiver, intent kind and outcome (delivered, retry, failed)",
                        ["receiver", "kind", "outcome"])
NOTIFIER_RECORDS = Counter("pulse_notifier_records_total",
                           "Alert-topic records read by the notifier: applied, skipped (offset already stored), invalid",
                           ["outcome"])
OUTBOX = Gauge("pulse_notifier_outbox", "Notifier outbox entries by status", ["status"],
               multiprocess_mode="livemostrecent")  # one outbox: the newest count of it, not a sum
