"""Issue status: the worker's issue states and transitions, and the `issues` view with the status."""

from __future__ import annotations

from pipeline.settings import Settings
from pipeline.storage.tables import ISSUE_STATE, ISSUE_TRANSITIONS, ISSUES_VIEW

VERSION = 5
NAME = "issue_status"


def forward(settings: Settings) -> list[str]:
    return [ISSUE_STATE.create_sql(settings), ISSUE_TRANSITIONS.create_sql(settings),
            "DROP VIEW IF EXISTS issues", ISSUES_VIEW]
