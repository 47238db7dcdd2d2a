"""Which topic carries which event type, and the headers on storage messages."""

from __future__ import annotations

from pipeline.settings import KafkaSettings

# Storage messages (worker -> sink, and dead letters) carry their destination in headers so the
# sink can route bytes without parsing them.
HEADER_TABLE = "pulse-table"
HEADER_SOURCE = "pulse-src"  # "topic:partition:offset" of the raw message the rows came from


def topic_for_type(kafka: KafkaSettings, event_type: str) -> str:
    """API calls, resources and custom metrics travel with vitals: all are measurements."""
    if event_type == "error":
        return kafka.topic_errors
    if event_type == "action":
        return kafka.topic_actions
    if event_type in ("vital", "api", "metric"):
        return kafka.topic_vitals
    raise ValueError(f"unknown event type {event_type!r}")
