"""Raw event tables, dead letters, and the sink's bookkeeping tables."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import DEAD_LETTERS, RAW_TABLES, SINK_BATCHES, SINK_MARKS

VERSION = 1
NAME = "initial"


def forward(settings: Settings) -> list[str]:
    return [t.create_sql(settings) for t in [*RAW_TABLES, DEAD_LETTERS, SINK_BATCHES, SINK_MARKS]]
