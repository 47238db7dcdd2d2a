"""Which topic carries which event type, and the headers on storage messages."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.settings import KafkaSettings

# Storage messages (worker -> sink, and dead letters) carry their destination in headers so the
# sink can route bytes without parsing them.
HEADER_TABLE = "pulse-table"
HEADER_SOURCE = "pulse-src"  # "topic:partition:offset" of the raw message, or "topic:partition:first-last"
HEADER_SOURCE_LINES = "pulse-src-lines"  # with a range: each line's raw offset, as runs "<offset>x<count>,..."


def encode_line_sources(offsets: Sequence[int]) -> bytes:
    """Each line's raw offset (non-decreasing, one per line) as ``b"100x3,101x1,105x2"``."""
    runs: list[str] = []
    prev, count = None, 0
    for off in offsets:
        if off == prev:
            count += 1
            continue
        if prev is not None:
            runs.append(f"{prev}x{count}")
        prev, count = off, 1
    if prev is not None:
        runs.append(f"{prev}x{count}")
    return ",".join(runs).encode()


def topic_for_type(kafka: KafkaSettings, event_type: str) -> str:
    """API calls, resources and custom metrics travel with vitals: all are measurements."""
    if event_type == "error":
        return kafka.topic_errors
    if event_type == "action":
        return kafka.topic_actions
    if event_type in ("vital", "api", "metric"):
        return kafka.topic_vitals
    raise ValueError(f"unknown event type {event_type!r}")
