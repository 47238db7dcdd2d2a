"""The sink's pure batch builder: what tests/unit/storage/test_batching.py does not cover.

Bad headers never stop the sink, dead-letter topic messages pass through, marks are per
(source topic, source partition, table), and range messages (one per table and raw partition per
worker batch) drop exactly the lines a replay produced again.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from pipeline.contract import DeadLetter, encode_line_sources, encode_source_range, parse_line_sources
from pipeline.storage.batching import BAD_SOURCE, BatchBuilder, Record, parse_source
from pipeline.storage.tables import STORABLE

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def rec(offset: int, headers: dict[str, bytes], value: bytes = b'{"a":1}', topic: str = "storage",
        partition: int = 0) -> Record:
    return Record(topic, partition, offset, headers, value)


def test_parse_source_accepts_topics_with_colons_and_refuses_garbage() -> None:
    assert parse_source(b"ns:raw.actions:1:42") == ("ns:raw.actions", 1, 42, None)
    assert parse_source(b"ns:raw.actions:1:42-42") == ("ns:raw.actions", 1, 42, 42)
    assert parse_source(b"raw:0:100-300") == ("raw", 0, 100, 300)
    for bad in (b"", b"raw:1", b"raw:x:1", b"raw:1:-5", b":1:2", b"\xff:1:2", b"raw:1:5-", b"raw:1:-5-6",
                b"raw:1:9-3", b"raw:1:1-2-3", b"raw:1:1-x"):
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


# ---------------------------------------------------------------- range messages

def line_sources_of(first: int, last: int, per_offset: int = 1) -> list[int]:
    return [o for o in range(first, last + 1) for _ in range(per_offset)]


def rows_of(offsets: list[int]) -> bytes:
    """One JSON line per offset, numbered within its offset so every line is distinct."""
    seen: dict[int, int] = {}
    lines = []
    for o in offsets:
        seen[o] = seen.get(o, -1) + 1
        lines.append(b'{"o":%d,"n":%d}' % (o, seen[o]))
    return b"\n".join(lines)


def range_rec(offset: int, offsets: list[int], table: str = "actions", src_topic: str = "raw.actions",
              src_partition: int = 0, first: int | None = None, last: int | None = None,
              lines: bytes | None = None, value: bytes | None = None) -> Record:
    headers = {"pulse-table": table.encode(),
               "pulse-src": encode_source_range(src_topic, src_partition, offsets[0] if first is None else first,
                                                offsets[-1] if last is None else last),
               "pulse-src-lines": encode_line_sources(offsets) if lines is None else lines}
    return rec(offset, headers, rows_of(offsets) if value is None else value)


def stored_lines(chunk_body: bytes) -> list[tuple[int, int]]:
    return [(row["o"], row["n"]) for row in map(orjson.loads, chunk_body.split(b"\n"))]


def test_line_sources_round_trip_as_run_lengths() -> None:
    offsets = [100, 100, 100, 101, 105, 105]
    assert encode_line_sources(offsets) == b"100x3,101x1,105x2"
    assert parse_line_sources(b"100x3,101x1,105x2") == ([100, 101, 105], [3, 1, 2])
    assert encode_line_sources([7]) == b"7x1" and encode_line_sources(range(3)) == b"0x1,1x1,2x1"
    for bad in ([], [5, 4], [3, 3, 2], [-1]):
        with pytest.raises(ValueError):
            encode_line_sources(bad)
    for bad_header in (b"", b"1x0", b"2x1,1x1", b"1x1,1x1", b"1x1,", b"1 x1", b"+1x1", b"1x1x2", b"1,1", b"\xff"):
        with pytest.raises(ValueError):
            parse_line_sources(bad_header)


def test_replay_overlapping_the_mark_keeps_exactly_the_lines_above_it() -> None:
    stored = BatchBuilder({}, STORABLE, now=NOW)
    stored.add(range_rec(0, line_sources_of(100, 200, per_offset=2)))
    first = stored.build()
    assert first.rows == 202 and first.duplicates == 0
    assert first.new_marks == {("raw.actions", 0, "actions"): 200}

    # The crashed worker re-forms its batch with other boundaries: 150-300, three lines per offset.
    replay = BatchBuilder(first.new_marks, STORABLE, now=NOW)
    replay.add(range_rec(1, line_sources_of(150, 300, per_offset=3)))
    batch = replay.build()
    [chunk] = batch.chunks
    assert stored_lines(chunk.body()) == [(o, n) for o in range(201, 301) for n in range(3)]
    assert batch.rows == 300 and batch.duplicates == 51 * 3
    assert batch.new_marks == {("raw.actions", 0, "actions"): 300}


def test_replay_entirely_at_or_below_the_mark_is_dropped() -> None:
    b = BatchBuilder({("raw.actions", 0, "actions"): 200}, STORABLE)
    b.add(range_rec(5, [120, 120, 150, 200]))
    batch = b.build()
    assert batch.chunks == [] and batch.rows == 0 and batch.duplicates == 4 and batch.new_marks == {}
    assert [(i.first_offset, i.last_offset) for i in batch.intents] == [(5, 5)]  # still committed


def test_lines_of_one_offset_are_kept_or_dropped_together_and_gaps_are_fine() -> None:
    b = BatchBuilder({("raw.actions", 0, "actions"): 104}, STORABLE)
    b.add(range_rec(0, [100, 100, 104, 104, 104, 105, 109, 109], first=90, last=110))
    batch = b.build()
    assert stored_lines(batch.chunks[0].body()) == [(105, 0), (109, 0), (109, 1)]
    assert batch.duplicates == 5 and batch.new_marks == {("raw.actions", 0, "actions"): 109}


def test_single_offset_and_range_messages_of_one_source_share_one_mark() -> None:
    b = BatchBuilder({}, STORABLE)
    b.add(rec(0, {"pulse-table": b"actions", "pulse-src": b"raw.actions:0:10"}, b'{"o":10,"n":0}'))
    b.add(range_rec(1, [8, 10, 11, 11, 12]))  # 8 and 10 already in this batch
    b.add(rec(2, {"pulse-table": b"actions", "pulse-src": b"raw.actions:0:12"}, b'{"o":12,"n":9}'))  # replayed
    b.add(rec(3, {"pulse-table": b"actions", "pulse-src": b"raw.actions:0:13"}, b'{"o":13,"n":0}'))
    b.add(range_rec(4, [13, 14]))
    b.add(range_rec(5, [1, 2], src_partition=1))  # another raw partition: its own mark
    batch = b.build()
    [chunk] = batch.chunks
    assert stored_lines(chunk.body()) == [(10, 0), (11, 0), (11, 1), (12, 0), (13, 0), (14, 0), (1, 0), (2, 0)]
    assert batch.duplicates == 2 + 1 + 1  # lines of ranges, whole single-offset messages
    assert batch.rows == 8
    assert batch.new_marks == {("raw.actions", 0, "actions"): 14, ("raw.actions", 1, "actions"): 2}


@pytest.mark.parametrize(("lines", "value", "why"), [
    (None, b'{"o":1}', "no pulse-src-lines header"),
    (b"1x1,2", b'{"o":1}\n{"o":2}', "is not <offset>x<count>"),
    (b"1x0,2x2", b'{"o":1}\n{"o":2}', "is not <offset>x<count>"),
    (b"2x1,1x1", b'{"o":2}\n{"o":1}', "not strictly increasing"),
    (b"1x2,2x1", b'{"o":1}\n{"o":2}', "counts 3 lines, the message has 2"),
    (b"1x1", b'{"o":1}\n{"o":2}', "counts 1 lines, the message has 2"),
    (b"0x1,2x1", b'{"o":0}\n{"o":2}', "outside pulse-src range 1-5"),
    (b"1x1,6x1", b'{"o":1}\n{"o":6}', "outside pulse-src range 1-5"),
])
def test_range_message_with_a_bad_lines_header_becomes_one_dead_letter(lines: bytes | None, value: bytes,
                                                                       why: str) -> None:
    headers = {"pulse-table": b"actions", "pulse-src": b"raw.actions:0:1-5"}
    if lines is not None:
        headers["pulse-src-lines"] = lines
    b = BatchBuilder({("raw.actions", 0, "actions"): 0}, STORABLE, now=NOW)
    b.add(range_rec(0, [1, 2]))  # a good neighbour before ...
    b.add(rec(1, headers, value))
    b.add(range_rec(2, [3, 3]))  # ... and after: both land
    batch = b.build()
    chunks = {c.table: c for c in batch.chunks}
    [dead] = map(orjson.loads, chunks["dead_letters"].body().split(b"\n"))
    assert why in dead["reason"] and "raw.actions:0:1-5" in dead["reason"], dead["reason"]
    assert dead["payload"] == value.decode() and dead["source"] == "storage:0:1"
    assert stored_lines(chunks["actions"].body()) == [(1, 0), (2, 0), (3, 0), (3, 1)]
    assert batch.rows == 5 and batch.duplicates == 0
    assert batch.new_marks == {("raw.actions", 0, "actions"): 3}  # the bad message moved no mark
