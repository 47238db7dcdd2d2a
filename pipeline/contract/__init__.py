"""The contract: event models, dead letters, topic routing. Imports nothing from Kafka or ClickHouse."""

from pipeline.contract.dead_letter import REASON_KINDS, DeadLetter, reason_kind
from pipeline.contract.events import (
    EVENT_ADAPTER,
    EVENT_BATCH_ADAPTER,
    EVENT_TYPES,
    ActionEvent,
    ActionPayload,
    ApiEvent,
    ApiPayload,
    ClickObservation,
    Envelope,
    ErrorEvent,
    ErrorPayload,
    Event,
    MetricEvent,
    MetricPayload,
    StackFrame,
    VitalEvent,
    VitalPayload,
)
from pipeline.contract.topics import (
    HEADER_SOURCE,
    HEADER_SOURCE_LINES,
    HEADER_TABLE,
    encode_line_runs,
    encode_line_sources,
    encode_source_range,
    parse_line_sources,
    topic_for_type,
)

__all__ = [
    "DeadLetter", "REASON_KINDS", "reason_kind", "EVENT_ADAPTER", "EVENT_BATCH_ADAPTER", "EVENT_TYPES", "ActionEvent", "ActionPayload",
    "ApiEvent", "ApiPayload", "ClickObservation", "Envelope", "ErrorEvent", "ErrorPayload", "Event",
    "MetricEvent", "MetricPayload",
    "StackFrame", "VitalEvent", "VitalPayload", "HEADER_SOURCE", "HEADER_SOURCE_LINES", "HEADER_TABLE",
    "encode_line_runs", "encode_line_sources", "encode_source_range", "parse_line_sources", "topic_for_type",
]
