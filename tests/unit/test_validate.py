from __future__ import annotations

import gzip
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract import reason_kind
from pipeline.ingest.producer import prepare_events
from pipeline.ingest.validate import EventTimeWindow, check_event_time, decode_message
from pipeline.settings import KafkaSettings, Settings

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
        "timestamp out of range: 9999-01-01T00:00:00+00:00 is more than 86400 s after ...": "timestamp_out_of_range",
        "something new": "other",
    }
    for reason, kind in cases.items():
        assert reason_kind(reason) == kind, reason
    assert set(cases.values()) == set(REASON_KINDS)


# ---------------------------------------------------------------- event time sanity (collector side)

WINDOW = EventTimeWindow(max_future_s=86_400, max_past_days=30, skew_min_s=60)


@pytest.mark.parametrize(("timestamp", "sent_at", "expected"), [
    (NOW - timedelta(seconds=5), None, NOW - timedelta(seconds=5)),  # normal
    (NOW - timedelta(seconds=5), NOW - timedelta(seconds=2), NOW - timedelta(seconds=5)),  # 2 s: network delay
    # the client's clock is a year ahead: its sent_at says so, the event lands 5 s before receipt
    (NOW + timedelta(days=365, seconds=-5), NOW + timedelta(days=365), NOW - timedelta(seconds=5)),
    (NOW - timedelta(hours=3, seconds=5), NOW - timedelta(hours=3), NOW - timedelta(seconds=5)),  # 3 h behind
    (NOW + timedelta(seconds=86_400), None, NOW + timedelta(seconds=86_400)),  # exactly at the future limit
    (NOW - timedelta(days=30), None, NOW - timedelta(days=30)),  # exactly at the past limit
])
def test_clock_skew_is_corrected_from_sent_at(timestamp: datetime, sent_at: datetime | None,
                                              expected: datetime) -> None:
    checked = check_event_time(timestamp, sent_at, NOW, WINDOW)
    assert (checked.timestamp, checked.reason) == (expected, None)


@pytest.mark.parametrize(("timestamp", "sent_at", "words"), [
    (datetime(9999, 12, 31, tzinfo=timezone.utc), None, "after the receive time"),
    (NOW + timedelta(seconds=86_401), None, "PULSE_COLLECTOR_MAX_FUTURE_S"),
    (datetime(1970, 1, 1, tzinfo=timezone.utc), None, "PULSE_COLLECTOR_MAX_PAST_DAYS"),
    (NOW - timedelta(days=30, seconds=1), None, "30 days before"),
    # the sent_at corrects a wrong clock, not an event from last year
    (NOW - timedelta(days=400), NOW, "before the receive time"),
    (datetime(9999, 12, 31, tzinfo=timezone.utc), datetime(1970, 1, 2, tzinfo=timezone.utc), "cannot be corrected"),
])
def test_times_outside_the_window_are_rejected_with_the_reason(timestamp: datetime, sent_at: datetime | None,
                                                               words: str) -> None:
    checked = check_event_time(timestamp, sent_at, NOW, WINDOW)
    assert checked.timestamp is None and checked.reason is not None
    assert checked.reason.startswith("timestamp out of range") and words in checked.reason
    assert reason_kind(checked.reason) == "timestamp_out_of_range"
    clamped = check_event_time(timestamp, sent_at, NOW, EventTimeWindow(30, 30, 60, "clamp"))
    assert (clamped.timestamp, clamped.clamped, clamped.reason) == (NOW, True, None)


def test_the_collector_path_corrects_and_dead_letters_event_times() -> None:
    skewed = vital(timestamp="2027-11-23T09:59:55Z", sent_at="2027-11-23T10:00:00Z")  # clock a year ahead
    future = vital(timestamp="9999-01-01T00:00:00Z")
    ancient = vital(timestamp="1970-01-01T00:00:00Z")
    fine = vital()
    window = Settings().collector.event_time_window()
    prepared = prepare_events([skewed, future, ancient, fine], kafka=KafkaSettings(), now=NOW, source="test",
                              project="p", received_at=NOW, time_window=window)
    assert prepared.accepted == 2
    sent = [e for m in prepared.messages for e in orjson.loads(m.value)]
    by_id = {e["event_id"]: e for e in sent}
    assert datetime.fromisoformat(by_id[skewed["event_id"]]["timestamp"]) == NOW - timedelta(seconds=5)
    assert by_id[fine["event_id"]]["timestamp"] == fine["timestamp"]  # untouched
    assert {r.index for r in prepared.rejected} == {1, 2}
    assert all(r.reason.startswith("timestamp out of range") for r in prepared.rejected)
    dead = [orjson.loads(m.value) for m in prepared.dead_letters]
    assert {d["event_id"] for d in dead} == {future["event_id"], ancient["event_id"]}
    clamp = EventTimeWindow(out_of_range="clamp")
    kept = prepare_events([future], kafka=KafkaSettings(), now=NOW, source="test", project="p", received_at=NOW,
                          time_window=clamp)
    assert kept.accepted == 1
    assert datetime.fromisoformat(orjson.loads(kept.messages[0].value)[0]["timestamp"]) == NOW


def test_settings_make_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"MAX_FUTURE_S": "600", "MAX_PAST_DAYS": "7", "CLOCK_SKEW_MIN_S": "5",
                       "OUT_OF_RANGE_TIMESTAMPS": "clamp"}.items():
        monkeypatch.setenv(f"PULSE_COLLECTOR_{key}", value)
    assert Settings().collector.event_time_window() == EventTimeWindow(600, 7, 5, "clamp")


def test_raw_tables_expire_by_receive_time_not_the_clients_clock() -> None:
    from pipeline.storage.tables import RAW_TABLES
    for table in RAW_TABLES:
        sql = table.create_sql(Settings())
        assert "TTL toDateTime(received_at) + INTERVAL 30 DAY" in sql, table.name
        assert "PARTITION BY toYYYYMM(timestamp)" in sql, table.name  # existing partitions unchanged
