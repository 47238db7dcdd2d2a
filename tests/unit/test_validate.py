from __future__ import annotations

import gzip
import uuid
from datetime import datetime, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.validate import decode_message

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def vital(value: float = 100.0, **extra: object) -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "type": "vital", "project": "p", "timestamp": "2026-11-23T09:59:00Z",
            "session_id": "s1", "vital": {"name": "INP", "value": value}, **extra}


def test_single_object_and_array() -> None:
    assert len(decode_message(orjson.dumps(vital()), step="worker", source="t:0:0", now=NOW).events) == 1
    assert len(decode_message(orjson.dumps([vital(), vital()]), step="worker", source="t:0:0", now=NOW).events) == 2


def test_one_bad_event_does_not_take_its_neighbours() -> None:
    bad = vital(-1)
    out = decode_message(orjson.dumps([vital(), bad, vital()]), step="worker", source="t:1:7", now=NOW)
    assert len(out.events) == 2
    [dead] = out.dead_letters
    assert dead.event_id == bad["event_id"] and dead.source == "t:1:7" and dead.step == "worker"
    assert "vital.value: Input should be greater than or equal to 0" in dead.reason
    assert orjson.loads(dead.payload) == bad


def test_not_json_and_wrong_shape_are_dead_letters_with_original_bytes() -> None:
    out = decode_message(b"{nope", step="collector", source="/api/v1/events", now=NOW)
    assert out.events == [] and out.dead_letters[0].reason.startswith("invalid JSON")
    assert out.dead_letters[0].payload == "{nope"
    out = decode_message(b"42", step="collector", source="x", now=NOW)
    assert "expected a JSON object or array, got int" in out.dead_letters[0].reason


def test_binary_garbage_is_kept_as_base64() -> None:
    raw = gzip.compress(b"not what you think")
    [dead] = decode_message(raw, step="worker", source="t:0:1", now=NOW).dead_letters
    assert dead.payload_encoding == "base64"


def test_naive_timestamps_are_utc_and_unknown_fields_ignored() -> None:
    [e] = decode_message(orjson.dumps(vital(timestamp="2026-11-23T09:59:00", future_field=1)),
                         step="worker", source="t", now=NOW).events
    assert e.timestamp == datetime(2026, 11, 23, 9, 59, tzinfo=timezone.utc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_nothing_is_lost(raw: bytes) -> None:
    out = decode_message(raw, step="worker", source="t", now=NOW)
    assert len(out.events) + len(out.dead_letters) >= 1


def test_rejected_items_report_their_input_position() -> None:
    from pipeline.ingest.validate import validate_items

    out = validate_items([vital(), vital(-1), vital(), {"type": "nope"}], step="collector", source="x", now=NOW)
    assert len(out.events) == 2 and out.rejected_at == [1, 3]
    assert validate_items([vital()], step="collector", source="x", now=NOW).rejected_at == []


def test_dead_letter_reasons_fall_into_few_kinds() -> None:
    from pipeline.contract import REASON_KINDS, reason_kind

    cases = {
        "invalid JSON: unexpected character: line 1 column 2": "invalid_json",
        "expected a JSON object or array, got int": "invalid_json",
        "vital.value: Input should be a valid number": "invalid_event",
        "<event>: Unable to extract tag using discriminator 'type'": "invalid_event",
        "project 'x' does not match the project key's project 'demo'": "project_mismatch",
        "ClickHouse rejected the row for errors: Code: 27": "clickhouse_rejected",
        "worker batch failed: KeyError: 'x'": "processing_failed",
        "issue agent: not an occurrence record": "processing_failed",
        "item 2 (event): payload is not JSON: bad": "unreadable",
        "something new": "other",
    }
    for reason, kind in cases.items():
        assert reason_kind(reason) == kind, reason
    assert set(cases.values()) == set(REASON_KINDS)
