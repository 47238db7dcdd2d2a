"""Alerting's pure core: rule files, their evaluation on closed windows, SLO burn rates.

No Kafka, ClickHouse or clock here: the worker feeds closed windows (and issue transitions) in
event-time order, persists the evaluators' JSON state, and hands the ``AlertEvent``s on to
notification (``pipeline/notify``).
"""

from pipeline.alerts.evaluate import (
    AlertEvent,
    RuleEvaluator,
    SeriesState,
    WindowAggregate,
    event_id,
    fingerprint,
    merge,
    project_labels,
    ux_aggregates,
)
from pipeline.alerts.rules import (
    DEFAULT_RULES_PATH,
    RuleFileError,
    RuleSet,
    Slo,
    format_duration,
    load_default_rules,
    load_rules,
    parse_duration,
    parse_rules,
)
from pipeline.alerts.slo import SloEvaluator, SloSeries, SloStatus

__all__ = ["DEFAULT_RULES_PATH", "AlertEvent", "RuleEvaluator", "RuleFileError", "RuleSet", "SeriesState", "Slo",
           "SloEvaluator", "SloSeries", "SloStatus", "WindowAggregate", "event_id", "fingerprint", "format_duration",
           "load_default_rules", "load_rules", "merge", "parse_duration", "parse_rules", "project_labels",
           "ux_aggregates"]
