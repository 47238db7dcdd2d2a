"""Sessionization output: sessions, page views, rage and dead clicks, and the per-minute page UX view."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import SESSION_TABLES, VIEWS

VERSION = 2
NAME = "sessions"


def forward(settings: Settings) -> list[str]:
    return [t.create_sql(settings) for t in SESSION_TABLES] + list(VIEWS)
