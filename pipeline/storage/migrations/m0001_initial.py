"""Raw event tables, dead letters, and the sink's bookkeeping tables."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import ALL_TABLES

VERSION = 1
NAME = "initial"


def forward(settings: Settings) -> list[str]:
    return [t.create_sql(settings) for t in ALL_TABLES]
