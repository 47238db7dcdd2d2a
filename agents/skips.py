"""The one adapter over faust-streaming's private consumer books, for the issue and alert agents.

The raw-event hot path no longer goes through Faust (``agents/ingest.py``); the two low-volume
Faust agents still do, and need two workarounds that read faust's private attributes. Both read
them through ``FaustBooks``, which checks at start-up that they exist with the expected types
(``check``, called when the worker starts): an upgrade that renames them stops the worker with a
clear error instead of silently turning the guards off.

Complete batches from faust's ``take_events``: every agent that reads batches goes through this.

At a batch boundary ``take_events`` can put one event into a batch twice and drop the next (seen
here under load, with the C and the Python stream, faust-streaming 0.15). The dropped message is
never acked, so faust does not commit past it, but the agent would never see it either (until a
restart replays it, after later messages were applied). ``CompleteBatches.complete`` drops the
duplicates, notices offset gaps per partition within one consumer generation, re-reads the
missing messages straight from Kafka, and acks them in faust's books.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from pipeline.ingest.process import RawMessage

log = logging.getLogger(__name__)


class FaustBooks:
    """faust-streaming's private consumer bookkeeping, asserted once (0.11-0.15 keep both)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def check(self) -> None:
        """Raise if the private API the workarounds need is missing or changed."""
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", None)
        unacked = getattr(consumer, "_unacked_messages", None)
        problems = []
        if not isinstance(committed, dict):
            problems.append(f"Consumer._committed_offset is {type(committed).__name__}, expected a dict")
        if not (hasattr(unacked, "__iter__") and hasattr(unacked, "add")):
            problems.append(f"Consumer._unacked_messages is {type(unacked).__name__}, expected a set of messages")
        if not hasattr(self.app, "consumer_generation_id"):
            problems.append("App.consumer_generation_id is missing")
        if problems:
            raise RuntimeError("this faust-streaming version changed the private consumer API that agents/skips.py "
                               "relies on (" + "; ".join(problems) + "); pin faust-streaming to a tested version "
                               "(see pyproject.toml) or update agents/skips.py")

    def committed_offset(self, tp: Any) -> int | None:
        """The next offset to read as committed to Kafka, as faust last knew it (None if unknown)."""
        value = self.app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        return value if isinstance(value, int) and value >= 0 else None

    def unacked(self) -> list[Any]:
        return list(self.app.consumer._unacked_messages)  # type: ignore[attr-defined]


def to_raw_message(event: Any) -> RawMessage:
    """A faust Event (raw serializer) as plain data."""
    m = event.message
    ts = m.timestamp
    return RawMessage(m.topic, m.partition, m.offset, m.key, m.value if m.value is not None else b"",
                      int(ts * 1000) if ts and ts > 0 else None)


class CompleteBatches:
    def __init__(self, app: faust.App, bootstrap_servers: str) -> None:
        self.app = app
        self.books = FaustBooks(app)
        self.bootstrap_servers = bootstrap_servers
        self.last_offsets: dict[tuple[str, int], tuple[int, int]] = {}  # (topic, partition) -> (generation, offset)

    async def complete(self, events: Sequence[Any]) -> list[RawMessage]:
        """The batch's messages, each once, in faust's order; with whatever faust skipped, in (topic,
        partition, offset) order."""
        unique = {(m.topic, m.partition, m.offset): m for m in map(to_raw_message, events)}
        messages = list(unique.values())
        skips = self.find_skips(messages)
        if not skips:
            return messages
        log.warning("faust skipped %s; re-reading them from Kafka", skips)
        recovered = await self.fetch(skips)
        self.ack(recovered)
        return sorted(messages + recovered, key=lambda m: (m.topic, m.partition, m.offset))

    def find_skips(self, messages: list[RawMessage]) -> list[tuple[str, int, int, int]]:
        """(topic, partition, first, last) offset ranges missing between batches of this generation,
        or, the first time this process reads a partition, between its committed offset (where faust
        started reading) and the first message handed over (a restart can lose that one too)."""
        generation = self.app.consumer_generation_id
        skips = []
        for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
            seen = self.last_offsets.get((m.topic, m.partition))
            if seen is not None and seen[0] == generation and m.offset > seen[1] + 1:
                skips.append((m.topic, m.partition, seen[1] + 1, m.offset - 1))
            elif seen is None:
                committed = self._committed(m.topic, m.partition)
                if committed is not None and m.offset > committed:
                    skips.append((m.topic, m.partition, committed, m.offset - 1))
            if seen is None or seen[0] != generation or m.offset > seen[1]:
                self.last_offsets[(m.topic, m.partition)] = (generation, m.offset)
        return skips

    def _committed(self, topic: str, partition: int) -> int | None:
        from faust.types import TP

        return self.books.committed_offset(TP(topic, partition))

    async def fetch(self, skips: list[tuple[str, int, int, int]]) -> list[RawMessage]:
        """Read the skipped offsets straight from Kafka (a short-lived, group-less consumer)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        wanted = {(t, p, o) for t, p, first, last in skips for o in range(first, last + 1)}
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        found: list[RawMessage] = []
        try:
            tps = {TopicPartition(t, p): first for t, p, first, _ in skips}
            consumer.assign(list(tps))
            for tp, first in tps.items():
                consumer.seek(tp, first)
            deadline = time.monotonic() + 30
            while wanted and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    if records:  # offsets below the first one returned are gone (retention): stop waiting
                        wanted -= {w for w in wanted if w[:2] == (tp.topic, tp.partition) and w[2] < records[0].offset}
                    for r in records:
                        if (tp.topic, tp.partition, r.offset) in wanted:
                            wanted.discard((tp.topic, tp.partition, r.offset))
                            ts = r.timestamp
                            found.append(RawMessage(tp.topic, tp.partition, r.offset, r.key, r.value or b"",
                                                    int(ts) if ts and ts > 0 else None))
        finally:
            await consumer.stop()
        if wanted:
            log.error("could not re-read %d skipped messages; they replay after a restart", len(wanted))
        return found

    def ack(self, recovered: list[RawMessage]) -> None:
        """Ack the re-read messages in faust's books, so its commits move past them again."""
        keys = {(m.topic, m.partition, m.offset) for m in recovered}
        for message in self.books.unacked():
            if (message.topic, message.partition, message.offset) in keys:
                self.app.consumer.ack(message)


class StartPositions:
    """Rewind newly assigned partitions that faust moved past their committed offset before any
    batch of this process saw them.

    Seen here after a restart (faust-streaming 0.15, aiokafka 0.14): while faust recovers its
    tables, records it fetches for the active partitions are dropped, yet the consumer's position
    has moved on, so those records are never handed to an agent; with nothing committed yet, the
    position can sit at the end of the log and the worker then idles with its input unread. When
    recovery ends (before the streams resume), every partition this process did not hold before
    goes back to its committed offset, or to the start of the log when nothing was committed.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.books = FaustBooks(app)
        self.held: set[Any] = set()

    async def rewind_new_partitions(self) -> None:
        consumer = self.app.consumer
        assigned = {tp for tp in consumer.assignment() if not tp.topic.endswith("-changelog")}
        for tp in sorted(assigned - self.held):
            committed = self.books.committed_offset(tp)
            start = committed if committed is not None else 0
            position = await consumer.position(tp)
            if position is not None and position > start:
                log.warning("%s:%d: position %d is past the committed offset %s; rewinding to %d",
                            tp.topic, tp.partition, position, committed, start)
                await consumer.seek(tp, start)
        self.held = assigned
