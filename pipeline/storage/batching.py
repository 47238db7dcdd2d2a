"""The sink's batch, as plain data: what to record, insert and commit. No Kafka, no ClickHouse.

Tokens are derived from the batch's offset range per partition, so re-forming the same range after
a crash yields the same tokens and ClickHouse drops the repeated insert. Source marks drop rows the
worker produced again after a replay (see README, "Delivery guarantees").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipeline.contract import HEADER_SOURCE, HEADER_TABLE, DeadLetter

MarkKey = tuple[str, int, str]  # (source topic, source partition, table)
BAD_SOURCE = ("", -1, -1)


def parse_source(header: bytes) -> tuple[str, int, int]:
    """``b"topic:partition:offset"`` -> parts; BAD_SOURCE when it is not that shape."""
    try:
        topic, partition, offset = header.decode("utf-8").rsplit(":", 2)
        parsed = (topic, int(partition), int(offset))
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return BAD_SOURCE
    return parsed if topic and parsed[1] >= 0 and parsed[2] >= 0 else BAD_SOURCE


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
        table = r.headers.get(HEADER_TABLE, b"").decode("utf-8", "replace")
        value = r.value.rstrip(b"\n")
        src = parse_source(r.headers[HEADER_SOURCE]) if HEADER_SOURCE in r.headers else None
        reason = (f"storage message without a known {HEADER_TABLE} header (got {table!r})" if table not in self.tables
                  else "empty storage message" if not value
                  else f"malformed {HEADER_SOURCE} header {r.headers[HEADER_SOURCE]!r}" if src == BAD_SOURCE
                  else None)
        if reason is not None:
            # Expected bad input is a value: it becomes a dead_letters row, the sink never stops on it.
            value = DeadLetter.of(r.value, step="sink", source=f"{r.topic}:{r.partition}:{r.offset}", reason=reason,
                                  now=self.now).to_row_json()
            table = "dead_letters"
        elif src is not None:
            src_topic, src_part, src_off = src
            key = (src_topic, src_part, table)
            if max(self.marks.get(key, -1), self._new_marks.get(key, -1)) >= src_off:
                self.duplicates += 1
                return
            self._new_marks[key] = src_off
        self._values.setdefault((table, r.topic, r.partition), []).append(value)
        self.rows += value.count(b"\n") + 1

    def build(self) -> Batch:
        intents = {tp: Intent(tp[0], tp[1], rng[0], rng[1]) for tp, rng in self._ranges.items()}
        chunks = [Chunk(table, intents[(topic, part)], values) for (table, topic, part), values in self._values.items()]
        return Batch(list(intents.values()), chunks, dict(self._new_marks), self.duplicates, self.rows)
