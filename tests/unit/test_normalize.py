from __future__ import annotations

import uuid
from datetime import datetime, timezone

import orjson

from pipeline.contract import EVENT_ADAPTER
from pipeline.ingest.normalize import event_to_row

NOW = datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=timezone.utc)


def base(**kw: object) -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "project": "p", "timestamp": "2026-11-23T10:00:00.5Z", "session_id": "s",
            "user_id": "u1", "anonymous_id": "a1", **kw}


def test_consent_false_keeps_no_user_identifiers() -> None:
    e = EVENT_ADAPTER.validate_python(base(type="vital", consent=False, vital={"name": "LCP", "value": 1}))
    _, row = event_to_row(e, NOW)
    assert row["user_id"] == "" and row["anonymous_id"] == "" and row["consent"] is False


def test_received_at_falls_back_to_given_time_and_serializes_as_rfc3339() -> None:
    e = EVENT_ADAPTER.validate_python(base(type="vital", vital={"name": "LCP", "value": 1}))
    _, row = event_to_row(e, NOW)
    line = orjson.loads(orjson.dumps(row))  # what the sink hands to ClickHouse
    assert line["received_at"] == "2026-11-23T10:00:05.123000+00:00"
    assert line["timestamp"] == "2026-11-23T10:00:00.500000+00:00"
    assert line["event_id"] == str(e.event_id)
    own = EVENT_ADAPTER.validate_python(base(type="vital", received_at="2026-11-23T09:00:00Z", vital={"name": "LCP", "value": 1}))
    assert orjson.loads(orjson.dumps(event_to_row(own, NOW)[1]))["received_at"] == "2026-11-23T09:00:00+00:00"


def test_api_ok_defaults_from_status() -> None:
    for status, ok in [(200, True), (302, True), (404, False), (0, False), (None, False)]:
        e = EVENT_ADAPTER.validate_python(base(type="api", api={"url": "/x", "status": status, "duration_ms": 3}))
        table, row = event_to_row(e, NOW)
        assert table == "api_calls" and row["ok"] is ok, status


def test_click_observation_flattened_for_dead_click_decisions() -> None:
    e = EVENT_ADAPTER.validate_python(base(type="action", action={
        "kind": "click", "selector": "#b", "x": 1, "y": 2, "interactive": False,
        "observed": {"dom_mutation_ms": 120, "navigated": False, "scrolled": True}}))
    table, row = event_to_row(e, NOW)
    assert table == "actions"
    assert (row["dom_mutation_ms"], row["navigated"], row["scrolled"], row["interactive"]) == (120, False, True, False)
