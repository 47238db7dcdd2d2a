"""Session state in the worker: pure ``PartitionSessions`` per owned partition, made durable
through a Faust table's changelog, and a timer that lets quiet partitions follow the clock.

The ingest agent calls ``SessionState.run_step`` once per batch (validation happened already), so
sessionization costs no extra decode and no extra coroutine hop per event. The order inside a step
is what makes a SIGKILL harmless (see ``pipeline/sessions/partition.py``):

1. compute the step (pure): rows, UX signals, and the state records to write;
2. send rows and signals and wait until Kafka confirmed them;
3. only then write the state records to the changelog (one per touched session, then the
   partition's record), and let Faust ack the raw batch.

A crash before 3 replays the batch and re-emits identical rows (collapsed by ClickHouse); a
crash after 3 skips what the records already hold. Nothing is lost, nothing counted twice.

The Faust table is used for what it is good at -- a compacted changelog, restored into memory
by Faust before a partition's events flow -- and the working state lives in ``PartitionSessions``
objects: after a partition is rebuilt from the restored records, those records are dropped from
the table's memory so each session is held once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson
from faust.types import TP

from agents.delivery import Send, SendAll, deliver_all
from agents.skips import StartPositions
from pipeline.contract import HEADER_TABLE
from pipeline.ingest.process import ProcessedBatch
from pipeline.metrics import ACTIVE_SESSIONS, LATE_EVENTS, SESSION_OUTPUTS, SESSION_REPLAY_SKIPPED
from pipeline.sessions.partition import PartitionSessions, Step, split_key
from pipeline.sessions.rows import rows_by_table, signals
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PROCESS = "worker"
TABLE_NAME = "session_state"


def changelog_topic(settings: Settings) -> str:
    """Faust's name for the table's changelog (created by the worker as a compacted topic)."""
    return f"{settings.worker.app_id}-{TABLE_NAME}-changelog"


class SessionState:
    """Owned partitions' sessions; one asyncio lock serialises the agent's batches and the timer."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.rules = settings.sessions.rules()
        self.lateness_ms = settings.sessions.lateness_ms
        self.topics = settings.kafka.session_topics
        self.storage_topic = settings.kafka.topic_storage
        self.signal_topic = settings.kafka.topic_ux_signals
        self.storage_partitions = settings.kafka.partitions
        self.parts: dict[int, PartitionSessions] = {}
        self.last_input: dict[int, float] = {}  # partition -> monotonic time of its last message
        self.lock = asyncio.Lock()
        self.start_positions = StartPositions(app)
        self.table = app.Table(TABLE_NAME, key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions,
                               on_recover=self._on_recovered)
        self.changelog = self.table.changelog_topic.get_topic_name()
        if self.changelog != changelog_topic(settings):  # the worker creates it by that name, compacted
            raise RuntimeError(f"Faust names the changelog {self.changelog!r}, expected {changelog_topic(settings)!r}")

    # ------------------------------------------------------------ partitions
    def owned_partitions(self) -> set[int]:
        """Partitions of which this worker holds every session topic."""
        by_topic: dict[str, set[int]] = {t: set() for t in self.topics}
        for tp in self.app.consumer.assignment():
            if tp.topic in by_topic:
                by_topic[tp.topic].add(tp.partition)
        return set.intersection(*by_topic.values()) if by_topic else set()

    def part(self, partition: int) -> PartitionSessions:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = self._restore(partition)
        return part

    def _restore(self, partition: int) -> PartitionSessions:
        store = self.table.data.data  # the memory store's dict, filled by Faust's recovery
        keys = [k for k in store if split_key(k.decode())[0] == partition]
        records = [(split_key(k.decode())[1], store[k]) for k in keys if store[k] is not None]
        part = PartitionSessions.restore(partition, records, self.rules, self.lateness_ms)
        for k in keys:
            store.pop(k, None)
        self.last_input.setdefault(partition, time.monotonic())
        if records:  # rare and worth seeing in the log: a restart or a partition moving here
            log.warning("partition %d: restored %d open sessions, %d buffered events, watermark %d",
                        partition, part.active_sessions, part.buffered_events, part.watermark_ms)
        return part

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.parts.pop(p, None)
            self.last_input.pop(p, None)
            ACTIVE_SESSIONS.labels(str(p)).set(0)

    async def _on_recovered(self) -> None:
        """Faust restored the table for this assignment (streams resume after this). The only
        moment the table's memory is complete for newly assigned partitions: rebuild them now.
        Partitions held across the rebalance keep their live state; Faust's re-read copies go.
        Also the moment to put newly assigned input partitions back where they were committed."""
        await self.start_positions.rewind_new_partitions()
        owned = self.owned_partitions()
        self.forget({p for p in self.parts if p not in owned})
        for p in sorted(owned):
            if p not in self.parts:
                self.parts[p] = self._restore(p)
        self.drop_restored_copies()

    def drop_restored_copies(self) -> None:
        """Records Faust re-read for partitions already held (e.g. after a rebalance) are stale copies."""
        store = self.table.data.data
        for k in [k for k in store if split_key(k.decode())[0] in self.parts]:
            store.pop(k, None)

    # ------------------------------------------------------------ steps
    def step_batch(self, out: ProcessedBatch) -> list[tuple[int, Step]]:
        steps = []
        for p in sorted(set(out.session_events) | set(out.session_upto)):
            part, upto = self.part(p), out.session_upto.get(p, {})
            self.last_input[p] = time.monotonic()
            step = part.process(out.session_events.get(p, []), upto, self.lagging_topics(p, part, upto))
            steps.append((p, step))
        return steps

    def lagging_topics(self, partition: int, part: PartitionSessions, upto: dict[str, int]) -> list[str]:
        """Session topics of ``partition`` with unread messages, by the high watermark of the last
        fetch (no broker round trip). Unknown counts as lagging: the watermark then waits."""
        lagging = []
        for topic in self.topics:
            try:
                hw = self.app.consumer.highwater(TP(topic, partition))
            except Exception:  # noqa: BLE001 - not assigned any more / no fetch yet
                hw = None
            if hw is None or max(part.marks.get(topic, -1), upto.get(topic, -1)) < hw - 1:
                lagging.append(topic)
        return lagging

    def sends_for(self, steps: list[tuple[int, Step]]) -> list[Send]:
        sends: list[Send] = []
        for p, step in steps:
            partition = p % self.storage_partitions
            for table, rows in rows_by_table(step.emitted).items():
                value = b"\n".join(orjson.dumps(r) for r in rows)
                sends.append((self.storage_topic, None, value, partition, [(HEADER_TABLE, table.encode())]))
                SESSION_OUTPUTS.labels(table).inc(len(rows))
            for signal in signals(step.emitted):
                sends.append((self.signal_topic, signal["project"].encode(), orjson.dumps(signal), None, []))
        return sends

    async def write_changelog(self, steps: list[tuple[int, Step]], send_all: SendAll) -> None:
        """Produce the state records in order and wait until Kafka has them all, so the raw offsets
        Faust acks after this are never ahead of the state. Straight through the producer, not the
        table's ``send_soon`` buffer: that one publishes a message at a time (hundreds per batch
        here). On any failure the whole sequence is sent again, so a record never lands after the
        partition record that is meant to follow it."""
        sends: list[Send] = [(self.changelog, key.encode(), value, p, []) for p, step in steps
                             for key, value in step.writes]
        delay = 0.5
        while sends:
            errors = await send_all(sends)
            failed = next((e for e in errors if e is not None), None)
            if failed is None:
                break
            log.error("could not write session state (%r); writing it again in %.1fs", failed, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        for p, step in steps:
            part = self.parts.get(p)
            if part is not None:
                ACTIVE_SESSIONS.labels(str(p)).set(part.active_sessions)
            if step.late:
                LATE_EVENTS.labels(PROCESS, "sessions").inc(len(step.late))
                first = step.late[0]
                log.warning("partition %d: %d events behind the watermark (%d) stored raw, not in sessions; "
                            "first: session %s at %d", p, len(step.late), self.parts[p].watermark_ms
                            if p in self.parts else -1, first.session_id, first.ts_ms)
            if step.skipped:
                SESSION_REPLAY_SKIPPED.inc(step.skipped)

    async def deliver(self, sends: list[Send], send_all: SendAll) -> None:
        """Outputs must be on Kafka before the state that produced them is written."""
        await deliver_all(sends, send_all, "session outputs")

    # ------------------------------------------------------------ timer
    async def advance_quiet_partitions(self, send_all: SendAll) -> None:
        """Quiet, caught-up partitions follow the wall clock: watermark = now - allowed lateness,
        so idle sessions close even when no more events arrive on their partition.

        Both conditions matter: *caught up* (every message in the log processed, by the broker's
        end offsets) so a backlog is never declared late, and *quiet* (nothing arrived for
        ``quiet_partition_s``) so a slow replay of older data is not cut off between messages."""
        app = self.app
        if self.lock.locked():  # a batch is being processed: nothing is quiet now
            return
        if app.rebalancing or getattr(app, "in_recovery", False) or not app.tables.recovery.completed.is_set():
            return
        # Only partitions already rebuilt (after recovery, or by their first batch): restoring here,
        # between a rebalance and its recovery, could read a half-restored table.
        owned = self.owned_partitions() & set(self.parts)
        if not owned:
            return
        tps = [tp for tp in app.consumer.assignment() if tp.topic in self.topics and tp.partition in owned]
        ends = await app.consumer.highwaters(*tps)
        watermark = int(time.time() * 1000) - self.lateness_ms
        quiet_since = time.monotonic() - self.settings.sessions.quiet_partition_s
        async with self.lock:
            steps = []
            for p in sorted(owned):
                part = self.parts.get(p)
                if part is None:  # revoked meanwhile
                    continue
                end_offsets = {tp.topic: off for tp, off in ends.items() if tp.partition == p and off is not None}
                quiet = self.last_input.get(p, 0.0) <= quiet_since
                if quiet and part.caught_up(end_offsets) and watermark > part.watermark_ms:
                    step = part.advance_to(watermark)
                    if step.writes:
                        steps.append((p, step))
            if steps:
                await self.deliver(self.sends_for(steps), send_all)
                await self.write_changelog(steps, send_all)

    def health(self) -> dict[str, Any]:
        return {str(p): {"active_sessions": part.active_sessions, "buffered_events": part.buffered_events,
                         "watermark_ms": part.watermark_ms} for p, part in sorted(self.parts.items())}
