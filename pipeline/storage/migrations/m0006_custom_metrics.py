"""Custom metrics: raw points, per-minute partials, and their hourly and daily merges."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import METRIC_ROLLUP_TABLES, METRIC_ROLLUP_VIEWS, METRICS

VERSION = 6
NAME = "custom_metrics"


def forward(settings: Settings) -> list[str]:
    return [METRICS.create_sql(settings), *(t.create_sql(settings) for t in METRIC_ROLLUP_TABLES),
            *METRIC_ROLLUP_VIEWS]
