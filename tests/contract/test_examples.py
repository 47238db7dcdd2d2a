"""Every canonical example goes through validation and normalization; schemas never drift."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from pipeline.contract import EVENT_TYPES
from pipeline.contract.export import SCHEMAS_DIR, drifted
from pipeline.ingest.normalize import TABLE_FOR_TYPE, event_to_row
from pipeline.ingest.validate import decode_message

EXAMPLES = SCHEMAS_DIR / "examples"
NOW = datetime(2026, 11, 23, 10, 0, 30, tzinfo=timezone.utc)

VALID = sorted(p for p in EXAMPLES.glob("*/*.json") if p.parent.name != "invalid")
INVALID = sorted((EXAMPLES / "invalid").glob("*.json"))
EXPECTED_REASON = {
    "negative-vital.json": "vital.value",
    "click-without-selector.json": "requires selector",
    "bad-event-id.json": "event_id",
    "unknown-type.json": "tag 'heartbeat'",
    "missing-timestamp.json": "timestamp: Field required",
    "metric-bad-name.json": "metric.name: String should match pattern",
}


def test_schema_files_match_models() -> None:
    assert drifted() == [], "schemas/ drifted from the models: run `pulse schemas export`"


def test_examples_exist_for_every_raw_topic_and_type() -> None:
    assert {p.parent.name for p in VALID} == {"errors", "vitals", "actions"}
    types = set()
    for p in VALID:
        doc = orjson.loads(p.read_bytes())
        types |= {e["type"] for e in (doc if isinstance(doc, list) else [doc])}
    assert types == set(EVENT_TYPES)


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_valid_example_validates_and_normalizes(path: Path) -> None:
    raw = path.read_bytes()
    decoded = decode_message(raw, step="worker", source="example", now=NOW)
    doc = orjson.loads(raw)
    assert decoded.dead_letters == []
    assert len(decoded.events) == (len(doc) if isinstance(doc, list) else 1)
    for event in decoded.events:
        table, row = event_to_row(event, NOW)
        assert table == TABLE_FOR_TYPE[event.type]
        line = orjson.loads(orjson.dumps(row))  # rows must serialize as JSONEachRow
        assert line["event_id"] == str(event.event_id)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_a_dead_letter_with_its_reason(path: Path) -> None:
    decoded = decode_message(path.read_bytes(), step="worker", source="example", now=NOW)
    assert decoded.events == []
    [dead] = decoded.dead_letters
    assert EXPECTED_REASON[path.name] in dead.reason
    assert orjson.loads(dead.payload) == orjson.loads(path.read_bytes())  # nothing lost
