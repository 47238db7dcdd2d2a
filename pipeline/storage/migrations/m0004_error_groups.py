"""Error grouping: group columns on `errors`, and the issues they add up to."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import ERROR_GROUP_COLUMNS, ISSUE_STATS, ISSUE_STATS_MV

VERSION = 4
NAME = "error_groups"


def forward(settings: Settings) -> list[str]:
    add = [f"ALTER TABLE errors ADD COLUMN IF NOT EXISTS `{name}` {type_}" for name, type_ in ERROR_GROUP_COLUMNS]
    return [*add, ISSUE_STATS.create_sql(settings), ISSUE_STATS_MV, ISSUES_VIEW_V4]


# The view as this migration created it; migration 5 replaces it (adds the status).
ISSUES_VIEW_V4 = """CREATE VIEW IF NOT EXISTS issues AS
SELECT project, group_id AS fingerprint, any(title) AS title, any(culprit) AS culprit,
    any(exception_type) AS exception_type, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
    sum(events) AS events, uniqMerge(users) AS affected_users,
    argMinMerge(first_release) AS first_release, argMaxMerge(last_release) AS last_release
FROM issue_stats GROUP BY project, group_id"""
