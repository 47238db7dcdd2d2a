from __future__ import annotations

import orjson

from pipeline.storage.batching import BatchBuilder, Record
from pipeline.storage.tables import STORABLE


def rec(offset: int, table: str | None = "actions", src: str | None = None, partition: int = 0,
        value: bytes = b'{"a":1}') -> Record:
    headers = {}
    if table is not None:
        headers["pulse-table"] = table.encode()
    if src is not None:
        headers["pulse-src"] = src.encode()
    return Record("storage", partition, offset, headers, value)


def test_chunks_per_table_and_partition_with_range_tokens() -> None:
    b = BatchBuilder({}, STORABLE)
    for r in [rec(10), rec(11, "errors"), rec(12), rec(5, partition=1)]:
        b.add(r)
    batch = b.build()
    assert {(i.partition, i.first_offset, i.last_offset) for i in batch.intents} == {(0, 10, 12), (1, 5, 5)}
    assert sorted(c.token for c in batch.chunks) == [
        "actions:storage:0:10-12", "actions:storage:1:5-5", "errors:storage:0:10-12"]
    assert batch.rows == 4


def test_same_range_gives_same_tokens_and_bodies() -> None:
    def build() -> list[tuple[str, bytes]]:
        b = BatchBuilder({}, STORABLE)
        for o in range(3):
            b.add(rec(o, value=b'{"n":%d}\n{"n":%d}' % (o, o)))
        return [(c.token, c.body()) for c in b.build().chunks]

    assert build() == build()


def test_source_marks_drop_replayed_rows_including_equal_offsets() -> None:
    marks = {("raw.actions", 1, "actions"): 100}
    b = BatchBuilder(marks, STORABLE)
    b.add(rec(0, src="raw.actions:1:99"))
    b.add(rec(1, src="raw.actions:1:100"))
    b.add(rec(2, src="raw.actions:1:101"))
    b.add(rec(3, src="raw.actions:1:101"))  # replay inside the same batch
    b.add(rec(4, "vitals", src="raw.actions:1:100"))  # other table: its own mark
    batch = b.build()
    assert batch.duplicates == 3
    assert batch.new_marks == {("raw.actions", 1, "actions"): 101, ("raw.actions", 1, "vitals"): 100}
    # the intent still covers every offset read, so the commit moves past the duplicates
    assert [(i.first_offset, i.last_offset) for i in batch.intents] == [(0, 4)]


def test_unknown_or_missing_table_becomes_a_dead_letter_row() -> None:
    b = BatchBuilder({}, STORABLE)
    b.add(rec(7, "no_such_table", value=b"x"))
    b.add(rec(8, None, value=b"y"))
    [chunk] = b.build().chunks
    assert chunk.table == "dead_letters"
    rows = [orjson.loads(line) for line in chunk.body().split(b"\n")]
    assert [r["source"] for r in rows] == ["storage:0:7", "storage:0:8"]
    assert "no_such_table" in rows[0]["reason"] and rows[1]["payload"] == "y" and rows[0]["step"] == "sink"
