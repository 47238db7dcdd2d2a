"""Error grouping: group columns on `errors`, and the issues they add up to."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import ERROR_GROUP_COLUMNS, ISSUE_STATS, ISSUE_VIEWS

VERSION = 4
NAME = "error_groups"


def forward(settings: Settings) -> list[str]:
    add = [f"ALTER TABLE errors ADD COLUMN IF NOT EXISTS `{name}` {type_}" for name, type_ in ERROR_GROUP_COLUMNS]
    return [*add, ISSUE_STATS.create_sql(settings), *ISSUE_VIEWS]
