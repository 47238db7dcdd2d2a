"""process_batch: raw messages -> one storage message per (message, table), dead letters, dedup."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from pipeline.contract import HEADER_SOURCE, HEADER_SOURCE_LINES, HEADER_TABLE
from pipeline.ingest.dedup import RecentIds
from pipeline.ingest.process import RawMessage, process_batch, range_messages, storage_records
from tests.events import ev

NOW = datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=timezone.utc)
TS_MS = 1_795_425_600_250  # 2026-11-23T09:20:00.250Z
ENVELOPE_KEYS = {"event_id", "project", "timestamp", "received_at", "session_id", "user_id", "anonymous_id", "release",
                 "environment", "url", "route", "user_agent", "sdk_name", "sdk_version", "consent"}


def msg(value: Any, offset: int = 0, partition: int = 0, topic: str = "raw.vitals", key: bytes | None = b"s-1",
        ts: int | None = TS_MS) -> RawMessage:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return RawMessage(topic, partition, offset, key, raw, ts)


def rows(value: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in value.split(b"\n")]


def run(*messages: RawMessage, dedup: RecentIds | None = None, partitions: int = 2):  # type: ignore[no-untyped-def]
    return process_batch(list(messages), dedup if dedup is not None else RecentIds(1000), partitions, NOW)


def test_single_object_message_becomes_one_storage_message() -> None:
    e = ev("vital")
    out = run(msg(e, offset=7, partition=3, topic="raw.vitals"))
    assert out.dead_letters == [] and len(out.storage) == 1
    s = out.storage[0]
    assert s.table == "vitals" and s.source == "raw.vitals:3:7" and s.key == b"s-1"
    assert s.partition_hint == 3 % 2
    assert s.headers == [(HEADER_TABLE, b"vitals"), (HEADER_SOURCE, b"raw.vitals:3:7")]
    (row,) = rows(s.value)
    assert ENVELOPE_KEYS <= row.keys() and {"name", "value", "rating"} <= row.keys()
    assert row["event_id"] == e["event_id"] and row["value"] == 1200.0
    assert out.events_in == {"vital": 1} and out.rows_out == {"vitals": 1}


def test_array_message_one_storage_message_per_table_in_event_order() -> None:
    events = [ev("vital"), ev("api"), ev("vital"), ev("error"), ev("action")]
    out = run(msg(events, offset=11, partition=1))
    assert sorted(s.table for s in out.storage) == ["actions", "api_calls", "errors", "vitals"]
    by_table = {s.table: rows(s.value) for s in out.storage}
    assert [r["event_id"] for r in by_table["vitals"]] == [events[0]["event_id"], events[2]["event_id"]]
    assert {"request_url", "method", "status", "duration_ms", "ok"} <= by_table["api_calls"][0].keys()
    assert {"exception_type", "message", "stacktrace", "fingerprint"} <= by_table["errors"][0].keys()
    assert {"kind", "selector", "dom_mutation_ms"} <= by_table["actions"][0].keys()
    assert all(s.source == "raw.vitals:1:11" and s.partition_hint == 1 for s in out.storage)
    assert out.rows_out == {"vitals": 2, "api_calls": 1, "errors": 1, "actions": 1}


def test_invalid_json_is_a_dead_letter_with_the_original_bytes() -> None:
    out = run(msg(b'{"event_id": nope', offset=4, topic="raw.errors"))
    assert out.storage == []
    (dl,) = out.dead_letters
    assert dl.step == "worker" and dl.source == "raw.errors:0:4" and dl.reason.startswith("invalid JSON")
    assert dl.payload == '{"event_id": nope'
    doc = orjson.loads(dl.to_row_json())
    assert doc["reason"] == dl.reason


def test_not_an_object_or_array_is_a_dead_letter() -> None:
    out = run(msg(b"42"))
    assert out.storage == [] and "expected a JSON object or array" in out.dead_letters[0].reason


def test_non_utf8_payload_is_kept_base64() -> None:
    out = run(msg(b"\xff\xfe\x00"))
    assert out.dead_letters[0].payload_encoding == "base64"


def test_one_bad_event_in_an_array_only_it_is_dead_lettered() -> None:
    good1, good2 = ev("vital"), ev("vital")
    bad = ev("vital", vital={"name": "LCP", "value": -1})
    out = run(msg([good1, bad, good2], offset=9))
    (s,) = out.storage
    assert [r["event_id"] for r in rows(s.value)] == [good1["event_id"], good2["event_id"]]
    (dl,) = out.dead_letters
    assert dl.event_id == bad["event_id"] and "value" in dl.reason and dl.source == "raw.vitals:0:9"
    assert orjson.loads(dl.payload)["event_id"] == bad["event_id"]


def test_duplicates_dropped_within_a_message() -> None:
    e = ev("vital")
    out = run(msg([e, e, ev("vital")]))
    assert len(rows(out.storage[0].value)) == 2 and out.duplicates == 1


def test_duplicates_dropped_across_messages_and_batches() -> None:
    dedup = RecentIds(1000)
    a, b = ev("vital"), ev("error")
    first = run(msg([a, b], offset=0), msg(a, offset=1), dedup=dedup)
    assert [s.source for s in first.storage] == ["raw.vitals:0:0", "raw.vitals:0:0"]
    assert first.duplicates == 1
    second = run(msg([b, ev("error")], offset=2), dedup=dedup)
    (s,) = second.storage
    assert s.table == "errors" and len(rows(s.value)) == 1 and second.duplicates == 1


def test_all_duplicate_message_emits_nothing() -> None:
    dedup = RecentIds(1000)
    e = ev("vital")
    run(msg(e), dedup=dedup)
    out = run(msg(e, offset=1), dedup=dedup)
    assert out.storage == [] and out.dead_letters == [] and out.duplicates == 1


def test_consent_false_drops_user_ids() -> None:
    out = run(msg([ev("vital", consent=False), ev("vital")]))
    r1, r2 = rows(out.storage[0].value)
    assert (r1["user_id"], r1["anonymous_id"], r1["consent"]) == ("", "", False)
    assert (r2["user_id"], r2["anonymous_id"]) == ("u1", "a1")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_received_at_from_message_timestamp_unless_the_event_has_one() -> None:
    own = ev("vital", received_at="2026-11-23T10:00:01.000Z")
    out = run(msg([ev("vital"), own]))
    r1, r2 = rows(out.storage[0].value)
    assert _at(r1["received_at"]) == _at("2026-11-23T09:20:00.250+00:00")
    assert _at(r2["received_at"]) == _at("2026-11-23T10:00:01.000+00:00")
    (r,) = rows(run(msg(ev("vital"), ts=None)).storage[0].value)
    assert _at(r["received_at"]) == _at("2026-11-23T10:00:05.123+00:00")


def test_partition_hint_is_raw_partition_modulo_storage_partitions() -> None:
    out = run(*(msg(ev("vital"), partition=p, offset=p) for p in range(5)), partitions=3)
    assert [s.partition_hint for s in out.storage] == [0, 1, 2, 0, 1]


def test_unexpected_exception_dead_letters_only_that_message() -> None:
    class Exploding(RecentIds):
        def first_time(self, event_id: object) -> bool:
            if str(event_id) == boom["event_id"]:
                raise RuntimeError("kaboom")
            return super().first_time(event_id)  # type: ignore[arg-type]

    boom = ev("vital")
    out = run(msg(ev("vital"), offset=0), msg(boom, offset=1), msg(ev("vital"), offset=2), dedup=Exploding(1000))
    assert [s.source for s in out.storage] == ["raw.vitals:0:0", "raw.vitals:0:2"]
    (dl,) = out.dead_letters
    assert dl.source == "raw.vitals:0:1" and "RuntimeError: kaboom" in dl.reason


# ---------------------------------------------------------------- per-batch output (agents/ingest.py)
def by_source(*messages: RawMessage) -> dict[str, RawMessage]:
    return {m.source: m for m in messages}


def test_a_batch_becomes_one_range_record_per_table_and_raw_partition() -> None:
    ms = [msg([ev("vital"), ev("vital")], offset=10), msg(ev("vital"), offset=11), msg(ev("error"), offset=12),
          msg(ev("vital"), offset=13, partition=1)]
    out = run(*ms)
    recs, dead = range_messages(out.storage, by_source(*ms), 512 * 1024, NOW)
    assert dead == []
    got = {(r.table, r.source): r for r in recs}
    assert set(got) == {("vitals", "raw.vitals:0:10-11"), ("errors", "raw.vitals:0:12-12"),
                        ("vitals", "raw.vitals:1:13-13")}
    vitals = got[("vitals", "raw.vitals:0:10-11")]
    assert vitals.rows == 3 and len(rows(vitals.value)) == 3 and vitals.key is None
    assert dict(vitals.headers)[HEADER_SOURCE_LINES] == b"10x2,11x1"
    assert dict(vitals.headers)[HEADER_TABLE] == b"vitals"


def test_range_records_are_cut_below_the_limit_between_messages() -> None:
    ms = [msg([ev("vital") for _ in range(3)], offset=o) for o in range(40)]
    out = run(*ms)
    one_message = max(len(s.value) for s in out.storage if s.table == "vitals")
    limit = one_message * 5 + 10
    recs, dead = range_messages(out.storage, by_source(*ms), limit, NOW)
    vitals = [r for r in recs if r.table == "vitals"]
    assert dead == [] and len(vitals) >= 8 and all(len(r.value) <= limit for r in recs)
    lines = [run_.split(b"x") for r in vitals for run_ in dict(r.headers)[HEADER_SOURCE_LINES].split(b",")]
    assert [int(o) for o, _ in lines] == list(range(40)) and all(int(c) == 3 for _, c in lines)


def test_a_message_whose_rows_pass_the_limit_is_a_dead_letter_whole() -> None:
    big = msg([ev("error", error={"exception_type": "E", "message": "x" * 5000})] + [ev("vital")], offset=5)
    small = msg(ev("vital"), offset=6)
    out = run(big, small)
    recs, dead = range_messages(out.storage, by_source(big, small), 4096, NOW)
    assert [d.source for d in dead] == ["raw.vitals:0:5"] and "PULSE_WORKER_MAX_RECORD_BYTES" in dead[0].reason
    assert [(r.table, r.source) for r in recs if r.table == "vitals"] == [("vitals", "raw.vitals:0:6-6")]
    assert not any(r.source.endswith(":5-5") for r in recs)


def test_range_records_keep_the_order_of_the_first_message_kept_and_cut_exactly_at_the_limit() -> None:
    """Record order is part of the output: a table whose first message was dropped as too big comes
    where its first kept message is. A record may fill the limit to the byte, not one more."""
    big = msg([ev("error", error={"exception_type": "E", "message": "x" * 5000})], offset=1)
    ms = [big, msg(ev("vital"), offset=2), msg(ev("error"), offset=3), msg(ev("vital"), offset=4)]
    out = run(*ms)
    recs, dead = range_messages(out.storage, None, 4096, NOW)  # the step's storage messages carry their origin
    assert [d.source for d in dead] == ["raw.vitals:0:1"]
    assert [(r.table, r.source) for r in recs] == [("vitals", "raw.vitals:0:2-4"), ("errors", "raw.vitals:0:3-3")]
    vitals = [s for s in out.storage if s.table == "vitals"]
    exact = len(vitals[0].value) + len(vitals[1].value) + 2
    assert [r.source for r in range_messages(vitals, None, exact, NOW)[0]] == ["raw.vitals:0:2-4"]
    cut = range_messages(vitals, None, exact - 1, NOW)[0]
    assert [r.source for r in cut] == ["raw.vitals:0:2-2", "raw.vitals:0:4-4"]


def test_direct_producers_are_held_to_the_collectors_time_window() -> None:
    """Issue 16/14: an event stamped 9999 written straight to Kafka must not reach sessions or
    rollups (it pushed its partition's clock to 9999); it is a dead letter with the reason."""
    from pipeline.ingest.validate import EventTimeWindow

    ok, future = ev("action", timestamp="2026-11-23T09:19:00Z"), ev("action", timestamp="9999-01-01T00:00:00Z")
    m = msg([ok, future], topic="raw.actions")
    out = process_batch([m], RecentIds(1000), 2, NOW, frozenset({"raw.actions"}), time_window=EventTimeWindow())
    assert [d.event_id for d in out.dead_letters] == [future["event_id"]]
    assert out.dead_letters[0].reason.startswith("timestamp out of range")
    assert [s.event.event_id for s in out.session_events[0]] == [ok["event_id"]]
    clamped = process_batch([msg(ev("vital", timestamp="9999-01-01T00:00:00Z"))], RecentIds(1000), 2, NOW,
                            time_window=EventTimeWindow(out_of_range="clamp"))
    assert clamped.dead_letters == [] and rows(clamped.storage[0].value)[0]["timestamp"].startswith("2026-11-23T09:20")


def test_no_dead_letter_record_passes_a_megabyte() -> None:
    """A rejected input near Kafka's 1 MB limit, escaped as JSON or base64, would pass it."""
    from pipeline.contract.dead_letter import MAX_PAYLOAD_BYTES

    for raw in (b'"\x01' * 450_000, b"\xff\xfe" * 450_000, ("é" * 400_000).encode()):
        out = run(msg(raw, offset=9))
        (dead,) = out.dead_letters
        assert len(dead.to_row_json()) < 1_000_000
        assert f"payload cut to its first {MAX_PAYLOAD_BYTES} of {len(raw)} bytes" in dead.reason
    text = run(msg(("é" * 400_000).encode())).dead_letters[0]
    assert text.payload_encoding == "utf8" and text.payload == "é" * (MAX_PAYLOAD_BYTES // 2)


def test_line_runs_encode_as_line_sources_do() -> None:
    from pipeline.contract import encode_line_runs, encode_line_sources
    runs = [(0, 1), (7, 3), (8, 1), (1000, 12)]
    assert encode_line_runs(runs) == encode_line_sources([o for o, n in runs for _ in range(n)]) == b"0x1,7x3,8x1,1000x12"
    for bad in ([], [(5, 1), (5, 1)], [(5, 1), (4, 1)], [(-1, 1)], [(3, 0)]):
        try:
            encode_line_runs(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def records(recs: list) -> list[tuple]:  # type: ignore[type-arg]
    return [(r.table, r.source, r.key, r.partition_hint, r.value, r.rows, r.headers) for r in recs]


def test_the_workers_cut_from_grouped_lines_makes_the_same_records_as_range_messages() -> None:
    """``storage_records`` cuts the lines process_batch grouped as it went; it must give exactly the
    records (and dead letters) of ``range_messages`` over the per-message output, whatever the limit:
    several tables and raw partitions, out-of-order and repeated offsets, a message too big."""
    big = msg([ev("error", error={"exception_type": "E", "message": "x" * 5000}), ev("vital")], offset=9)
    ms = [msg([ev("vital"), ev("action"), ev("vital")], offset=10), msg(ev("vital"), offset=12, partition=1),
          msg(ev("error"), offset=8), msg([ev("api"), ev("vital")], offset=11), msg(ev("vital"), offset=13, partition=1),
          msg(ev("vital"), offset=11)]
    for batch in (ms, [ms[0], big, *ms[1:]]):
        out = run(*batch)
        assert [(s.table, s.source) for s in out.storage][:2] == [("vitals", "raw.vitals:0:10"), ("actions", "raw.vitals:0:10")]
        for limit in (100, 1500, 2500, 4096, 512 * 1024):
            want, want_dead = range_messages(out.storage, None, limit, NOW)
            got, got_dead = storage_records(out, limit, NOW)
            assert records(got) == records(want) and (len(want) > 0 or limit == 100)
            assert [(d.source, d.reason) for d in got_dead] == [(d.source, d.reason) for d in want_dead]
    assert [d.source for d in storage_records(run(*[ms[0], big]), 4096, NOW)[1]] == ["raw.vitals:0:9"]
