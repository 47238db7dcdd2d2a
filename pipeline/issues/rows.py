"""Between issue logic and the outside: occurrence records from error rows, and table rows. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pipeline.issues.lifecycle import IssueState, Occurrence, OccurrenceRecord, Transition


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def occurrence_records(error_rows: Iterable[dict[str, Any]], topic: str, partition: int,
                       offset: int) -> list[OccurrenceRecord]:
    """One record per fingerprint among one raw message's first-time error rows; noise and
    ungrouped errors are not issues."""
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in error_rows:
        if row.get("noise") or not row.get("group_id"):
            continue
        by_group.setdefault((row["project"], row["group_id"]), []).append(row)
    return [OccurrenceRecord(project, group_id, rows[-1]["title"], rows[-1]["culprit"], topic, partition, offset,
                             tuple(Occurrence(str(r["event_id"]), _ms(r["timestamp"]), r["release"]) for r in rows))
            for (project, group_id), rows in by_group.items()]


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def state_row(state: IssueState, updated_ms: int) -> dict[str, Any]:
    """A row of ``issue_state`` (ReplacingMergeTree by ``version``: the newest state wins)."""
    return {"project": state.project, "group_id": state.group_id, "status": state.status,
            "status_since": _dt(state.status_since_ms), "first_seen": _dt(state.first_seen_ms),
            "last_seen": _dt(state.last_seen_ms), "events": state.events, "resolved_at": _dt(state.resolved_at_ms),
            "ignored_until_escalating": state.ignored_until_escalating, "releases": len(state.releases),
            "version": state.version, "updated_at": _dt(updated_ms)}


def transition_row(t: Transition) -> dict[str, Any]:
    """A row of ``issue_transitions`` (ReplacingMergeTree by transition id: replays collapse)."""
    return {"transition_id": t.transition_id, "project": t.project, "group_id": t.group_id, "kind": t.kind,
            "from_status": t.from_status, "at": _dt(t.at_ms), "reason": t.reason, "title": t.title,
            "culprit": t.culprit, "release": t.release, "caused_by": t.caused_by, "actor": t.actor,
            "events": t.events}
