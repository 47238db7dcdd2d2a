"""Per-minute rollup partials, their hourly and daily merges, and the ``pulseQuantile`` function."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import ROLLUP_TABLES, ROLLUP_VIEWS

VERSION = 3
NAME = "rollups"


def forward(settings: Settings) -> list[str]:
    return [t.create_sql(settings) for t in ROLLUP_TABLES] + list(ROLLUP_VIEWS)
