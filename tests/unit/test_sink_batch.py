"""The sink's pure batch builder: what tests/unit/storage/test_batching.py does not cover.

Bad headers never stop the sink, dead-letter topic messages pass through, marks are per
(source topic, source partition, table).
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from pipeline.contract import DeadLetter
from pipeline.storage.batching import BAD_SOURCE, BatchBuilder, Record, parse_source
from pipeline.storage.tables import STORABLE

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def rec(offset: int, headers: dict[str, bytes], value: bytes = b'{"a":1}', topic: str = "storage",
        partition: int = 0) -> Record:
    return Record(topic, partition, offset, headers, value)


def test_parse_source_accepts_topics_with_colons_and_refuses_garbage() -> None:
    assert parse_source(b"ns:raw.actions:1:42") == ("ns:raw.actions", 1, 42)
    for bad in (b"", b"raw:1", b"raw:x:1", b"raw:1:-5", b":1:2", b"\xff:1:2"):
        assert parse_source(bad) == BAD_SOURCE, bad


def test_malformed_source_header_becomes_a_dead_letter_and_the_offset_is_still_committed() -> None:
    b = BatchBuilder({}, STORABLE, now=NOW)
    b.add(rec(3, {"pulse-table": b"actions", "pulse-src": b"nonsense"}, b'{"event_id":"x"}'))
    batch = b.build()
    [chunk] = batch.chunks
    row = orjson.loads(chunk.body())
    assert chunk.table == "dead_letters" and "malformed pulse-src" in row["reason"]
    assert row["payload"] == '{"event_id":"x"}' and row["received_at"].startswith("2026-01-02T03:04:05")
    assert batch.new_marks == {} and [(i.first_offset, i.last_offset) for i in batch.intents] == [(3, 3)]


def test_dead_letter_topic_messages_pass_through_unmarked() -> None:
    dead = DeadLetter.of(b"{oops", step="collector", source="/api/v1/events", reason="invalid JSON", now=NOW)
    b = BatchBuilder({}, STORABLE)
    b.add(rec(0, {"pulse-table": b"dead_letters"}, dead.to_row_json(), topic="dlq", partition=1))
    batch = b.build()
    [chunk] = batch.chunks
    assert chunk.token == "dead_letters:dlq:1:0-0"
    assert orjson.loads(chunk.body())["reason"] == "invalid JSON"
    assert batch.new_marks == {} and batch.duplicates == 0


def test_marks_are_per_source_partition_and_rows_count_lines() -> None:
    marks = {("raw.errors", 0, "errors"): 10}
    b = BatchBuilder(marks, STORABLE)
    b.add(rec(0, {"pulse-table": b"errors", "pulse-src": b"raw.errors:0:10"}))  # duplicate
    b.add(rec(1, {"pulse-table": b"errors", "pulse-src": b"raw.errors:1:10"}, b'{"a":1}\n{"a":2}\n'))  # other partition
    b.add(rec(2, {"pulse-table": b"errors", "pulse-src": b"raw.other:0:3"}, b'{"a":3}'))  # other topic
    batch = b.build()
    assert batch.duplicates == 1 and batch.rows == 3
    assert batch.new_marks == {("raw.errors", 1, "errors"): 10, ("raw.other", 0, "errors"): 3}
    [chunk] = batch.chunks
    assert chunk.body() == b'{"a":1}\n{"a":2}\n{"a":3}'  # trailing newlines never make empty rows
    assert marks == {("raw.errors", 0, "errors"): 10}  # the caller's marks are not mutated by build
