"""The sink's batch, as plain data: what to record, insert and commit. No Kafka, no ClickHouse.

Tokens are derived from the batch's offset range per partition, so re-forming the same range after
a crash yields the same tokens and ClickHouse drops the repeated insert. Source marks drop rows the
worker produced again after a replay: a whole single-offset message, or exactly the stored lines of a
range message, whose batch boundaries a replay may have moved (see README, "Delivery guarantees").
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipeline.contract import HEADER_SOURCE, HEADER_SOURCE_LINES, HEADER_TABLE, DeadLetter, parse_line_sources

MarkKey = tuple[str, int, str]  # (source topic, source partition, table)
Source = tuple[str, int, int, int | None]  # (topic, partition, first offset, last offset or None for one offset)
BAD_SOURCE: Source = ("", -1, -1, None)


def parse_source(header: bytes) -> Source:
    """``b"topic:partition:offset"`` -> ``(topic, partition, offset, None)``; the range form
    ``b"topic:partition:first-last"`` -> ``(topic, partition, first, last)``; BAD_SOURCE otherwise."""
    try:
        topic, partition, offsets = header.decode("utf-8").rsplit(":", 2)
        first, dash, last = offsets.partition("-")
        parsed = (topic, int(partition), int(first), int(last) if dash else None)
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return BAD_SOURCE
    ok = topic and parsed[1] >= 0 and parsed[2] >= 0 and (parsed[3] is None or parsed[3] >= parsed[2])
    return parsed if ok else BAD_SOURCE


def drop_stored_lines(value: bytes, lines: int, line_sources: bytes | None, first: int, last: int,
                      mark: int) -> tuple[bytes, int, int]:
    """The lines of a range message whose raw offset is above ``mark``: ``(kept value, lines
    dropped, offset of the last kept line)``; the kept value is empty when every line is stored.

    Offsets increase line by line, so the stored lines are a prefix. Raises ValueError (the
    reason) when ``line_sources`` is malformed or does not describe ``lines`` lines within
    ``first``-``last``: the message is then dead-lettered whole, never half-kept.
    """
    if line_sources is None:
        raise ValueError(f"no {HEADER_SOURCE_LINES} header")
    offsets, counts = parse_line_sources(line_sources)
    if sum(counts) != lines:
        raise ValueError(f"{HEADER_SOURCE_LINES} counts {sum(counts)} lines, the message has {lines}")
    if offsets[0] < first or offsets[-1] > last:
        raise ValueError(f"{HEADER_SOURCE_LINES} offsets {offsets[0]}-{offsets[-1]} outside {HEADER_SOURCE} "
                         f"range {first}-{last}")
    if offsets[0] > mark:  # the usual case: nothing stored yet
        return value, 0, offsets[-1]
    stored_runs = bisect_right(offsets, mark)
    if stored_runs == len(offsets):
        return b"", lines, mark
    dropped = sum(counts[:stored_runs])
    return value.split(b"\n", dropped)[dropped], dropped, offsets[-1]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    headers: dict[str, bytes]
    value: bytes


@dataclass(frozen=True, slots=True)
class Intent:
    topic: str
    partition: int
    first_offset: int
    last_offset: int


@dataclass(slots=True)
class Chunk:
    """Rows for one table from one partition of this batch, inserted as one block."""

    table: str
    intent: Intent
    values: list[bytes] = field(default_factory=list)

    @property
    def token(self) -> str:
        i = self.intent
        return f"{self.table}:{i.topic}:{i.partition}:{i.first_offset}-{i.last_offset}"

    def body(self) -> bytes:
        return b"\n".join(self.values)


@dataclass
class Batch:
    intents: list[Intent]
    chunks: list[Chunk]
    new_marks: dict[MarkKey, int]
    duplicates: int
    rows: int


class BatchBuilder:
    """Collects records in offset order per partition; ``build`` returns the batch to flush."""

    def __init__(self, marks: dict[MarkKey, int], tables: set[str], now: datetime | None = None) -> None:
        self.marks = marks
        self.tables = tables
        self.now = now or datetime.now(timezone.utc)
        self._ranges: dict[tuple[str, int], list[int]] = {}
        self._values: dict[tuple[str, str, int], list[bytes]] = {}
        self._new_marks: dict[MarkKey, int] = {}
        self.duplicates = 0
        self.rows = 0

    def __len__(self) -> int:
        return len(self._ranges)

    def add(self, r: Record) -> None:
        rng = self._ranges.setdefault((r.topic, r.partition), [r.offset, r.offset])
        rng[1] = r.offset
        headers = r.headers
        table = headers.get(HEADER_TABLE, b"").decode("utf-8", "replace")
        value = r.value.rstrip(b"\n")
        src = parse_source(headers[HEADER_SOURCE]) if HEADER_SOURCE in headers else None
        reason = (f"storage message without a known {HEADER_TABLE} header (got {table!r})" if table not in self.tables
                  else "empty storage message" if not value
                  else f"malformed {HEADER_SOURCE} header {headers[HEADER_SOURCE]!r}" if src == BAD_SOURCE
                  else None)
        lines = 0
        if reason is None and src is not None:
            src_topic, src_part, first, last = src
            key = (src_topic, src_part, table)
            mark = max(self.marks.get(key, -1), self._new_marks.get(key, -1))
            if last is None:  # one raw message: all its lines or none
                if first <= mark:
                    self.duplicates += 1
                    return
                self._new_marks[key] = first
            else:  # a range of raw messages: drop exactly the lines already stored
                lines = value.count(b"\n") + 1
                try:
                    value, dropped, last_kept = drop_stored_lines(value, lines, headers.get(HEADER_SOURCE_LINES),
                                                                  first, last, mark)
                except ValueError as exc:
                    reason = f"{HEADER_SOURCE} range {headers[HEADER_SOURCE]!r}: {exc}"
                else:
                    self.duplicates += dropped
                    if not value:
                        return
                    lines -= dropped
                    self._new_marks[key] = last_kept
        if reason is not None:
            # Expected bad input is a value: it becomes a dead_letters row, the sink never stops on it.
            value = DeadLetter.of(r.value, step="sink", source=f"{r.topic}:{r.partition}:{r.offset}", reason=reason,
                                  now=self.now).to_row_json()
            table, lines = "dead_letters", 1
        self._values.setdefault((table, r.topic, r.partition), []).append(value)
        self.rows += lines or value.count(b"\n") + 1

    def build(self) -> Batch:
        intents = {tp: Intent(tp[0], tp[1], rng[0], rng[1]) for tp, rng in self._ranges.items()}
        chunks = [Chunk(table, intents[(topic, part)], values) for (table, topic, part), values in self._values.items()]
        return Batch(list(intents.values()), chunks, dict(self._new_marks), self.duplicates, self.rows)
