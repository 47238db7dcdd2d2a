"""Alert events from the worker's rule evaluation."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import ALERTS

VERSION = 7
NAME = "alerts"


def forward(settings: Settings) -> list[str]:
    return [ALERTS.create_sql(settings)]
