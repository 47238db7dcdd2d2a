"""Read what landed on topics, polling with a deadline (shared by the integration tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int = 0

    @property
    def doc(self) -> Any:
        return orjson.loads(self.value)

    def rows(self) -> list[dict[str, Any]]:
        """Storage messages hold JSONEachRow lines."""
        return [orjson.loads(line) for line in self.value.split(b"\n")]

    def sourced_rows(self) -> list[tuple[str, dict[str, Any]]]:
        """Each row with the raw message it came from (``topic:partition:offset``), read from the
        ``pulse-src`` header, and with a range, from ``pulse-src-lines`` (``<offset>x<count>,...``)."""
        rows = self.rows()
        topic, partition, offsets = self.headers["pulse-src"].decode().rsplit(":", 2)
        if "-" not in offsets:
            return [(f"{topic}:{partition}:{offsets}", row) for row in rows]
        per_line = [int(off) for run in self.headers["pulse-src-lines"].decode().split(",")
                    for off, count in [run.split("x")] for _ in range(int(count))]
        assert len(per_line) == len(rows), (per_line, len(rows))
        return [(f"{topic}:{partition}:{off}", row) for off, row in zip(per_line, rows)]


async def read_topics(bootstrap: str, topics: list[str], *, until: Callable[[list[Record]], bool] | None = None,
                      timeout_s: float = 15.0, quiet_s: float = 1.0) -> list[Record]:
    """Every record from the start of ``topics``: stop once ``until(records)`` holds (then wait
    ``quiet_s`` more for strays), or at the deadline."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[Record] = []
    try:
        deadline = time.monotonic() + timeout_s
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out += [Record(r.topic, r.key, r.value, dict(r.headers), r.partition) for r in records]
            if until is not None and until(out):
                quiet_until = quiet_until or time.monotonic() + quiet_s
                if time.monotonic() >= quiet_until:
                    break
        return out
    finally:
        await consumer.stop()


def events_of(records: list[Record]) -> list[dict[str, Any]]:
    """Raw-topic messages are one event or an array of one session's events."""
    out: list[dict[str, Any]] = []
    for r in records:
        doc = r.doc
        out += doc if isinstance(doc, list) else [doc]
    return out
