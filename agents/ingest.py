"""The raw-event hot path: one step interval's polls -> one batch -> every stage -> outputs -> state -> commit.

Why not a Faust agent: at real message shapes (1-5 events per message) Faust's per-message
machinery (an Event, two asyncio tasks and an ``asyncio.wait`` per message read, per-message
acks) cost ~80 us per message, and ``take_events`` dropped records at batch boundaries (issue 14;
measured figures in bench/README.md). This runner reads the raw topics with its own aiokafka
consumer (group ``<app id>-ingest``, range assignment so a session's actions and errors meet in
one worker) inside the Faust worker process, which still hosts the issue and alert agents and the
web pages.

One batch, in this order (what makes a SIGKILL at any point harmless):
1. ``process_batch`` (pure) with ``WORKER_PROCESSORS``: each message decoded once, then rows,
   minute and metric rollups with the alert partials, issue occurrences and session input from its
   first-time events; dead letters; a message that fails becomes a dead letter, its neighbours go on;
2. sessionization (pure ``PartitionSessions``): rows, UX signals and state records;
3. send every output (rows as one record per table and raw partition, with each line's raw offset
   so the sink drops exactly what a replay repeats) and wait until Kafka has all of them;
4. write the session state records to the changelog and wait;
5. commit the raw offsets;
6. advance memory: the batch's event ids join the dedup memory (``StagedIds``), metrics.
1-2 are the ingest stage's step (``IngestRunner.step``, no I/O), which returns its outputs and
state records as values; 3-6 and the error boundary are the worker's one stage runner's
(``agents/stage.py``). A step that raises (a message breaks sessionization, say) is reset (staged
ids dropped, touched session partitions read back from their changelog) and redone in halves, so
only the message at fault becomes a dead letter. A batch is what the consumer returned over
``PULSE_WORKER_STEP_INTERVAL_S``, or ``PULSE_WORKER_BATCH_SIZE`` messages if they come sooner
(``pipeline/ingest/gather.py``): a step per poll would cost its outputs, state records and commit
every few milliseconds at ordinary rates. Between steps the runner lets quiet partitions follow the
wall clock (no timer to fall behind), delivered in the same order.

Partitions: on revocation the runner finishes its batch (it holds the lock the listener waits
for) and sets the partitions' sessions aside, noting the offsets it last committed and where their
changelog ends. On assignment (aiokafka's rebalances are eager: every partition is revoked and
assigned again) it keeps what comes back unchanged (``pipeline/ingest/rebalance.py``: nobody
committed input or wrote state of it meanwhile) and rebuilds the rest before their first message
is processed: reads their changelog to the end, and their recent input for the dedup memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError

from agents.changelog import read_back, read_to_end
from agents.delivery import Send, dead_letter_send
from agents.issues import occurrence_sends
from agents.output import BatchSender
from agents.sessions import SessionStore
from agents.stage import StageOutput, StageRunner
from agents.state import WorkerState
from pipeline.contract import reason_kind
from pipeline.ingest.dedup import StagedIds
from pipeline.ingest.gather import Gathering
from pipeline.ingest.rebalance import AssignmentPlan, SetAside, plan_assignment
from pipeline.ingest.process import (WORKER_PROCESSORS, ProcessedBatch, RawMessage, dead_letter_for, process_batch,
                                     storage_records)
from pipeline.metrics import (BATCH_SECONDS, BATCH_SIZE, CONSUMER_LAG, DEAD_LETTERS, DUPLICATES_DROPPED, EVENTS_IN,
                              EVENTS_OUT, LATE_EVENTS)
from pipeline.rollups.minute import alert_partial_messages
from pipeline.runtime import release_free_memory
from pipeline.sessions.partition import Step
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PROCESS = "worker"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: "IngestRunner") -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.runner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runner.on_assigned(set(assigned))


@dataclass
class RebalanceStats:
    """What assignments cost this worker (``/health`` -> ``ingest.rebalance``)."""

    assignments: int = 0
    partitions_kept: int = 0
    partitions_rebuilt: int = 0
    session_partitions_kept: int = 0
    session_partitions_restored: int = 0  # changelog partitions read to rebuild sessions
    last_kept: list[str] = field(default_factory=list)
    last_rebuilt: list[str] = field(default_factory=list)
    last_pause_s: float | None = None  # from the revocation until processing could resume
    gathered_dropped: int = 0  # records gathered before a revocation and dropped (re-read by their next owner)
    last_restore_s: float | None = None


def ingest_consumer_options(settings: Settings) -> dict[str, Any]:
    """The raw-topic consumer's options. ``fetch_min_bytes``/``fetch_max_wait_ms`` let the broker
    gather input for a while: with Kafka's default (answer at the first byte) every collector flush
    cost the worker a fetch round trip: 178 -> 72 us of CPU per event at 1,000 events/s (bench/README.md).
    The wait never exceeds a step interval, so a short interval still steps on time."""
    k, w = settings.kafka, settings.worker
    return dict(
        bootstrap_servers=k.bootstrap_servers, group_id=w.ingest_group(), enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=w.batch_size, fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=2 * 1024 * 1024, fetch_min_bytes=w.fetch_min_bytes,
        fetch_max_wait_ms=min(w.fetch_max_wait_ms, math.ceil(w.step_interval_s * 1000)), session_timeout_ms=15_000, heartbeat_interval_ms=3_000,
        partition_assignment_strategy=(RangePartitionAssignor,), group_instance_id=w.group_instance_id() + "-ingest")


class IngestRunner:
    """Owns the raw consumer, its producer, the dedup memory and the session state."""

    def __init__(self, settings: Settings, state: WorkerState) -> None:
        self.settings = settings
        self.state = state
        k, w = settings.kafka, settings.worker
        self.sessions = SessionStore(settings)
        self.dedup = StagedIds(w.dedup_capacity)
        self.session_topics = frozenset(k.session_topics)
        self.rollup_rules = settings.rollups.rules()
        self.noise_rules = settings.issues.noise_rules()
        self.time_window = settings.collector.event_time_window()
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.sender: BatchSender | None = None
        self.to_restore: set[TopicPartition] = set()
        self.ready = False
        self.last_clock_at = 0.0
        self.last_trim_at = time.monotonic()
        self.processed: dict[TopicPartition, int] = {}  # next offset to process, per raw partition held
        self.runner = StageRunner("ingest", self.send_all, self.step, self.reset, self.dead_letter, state,
                                  commit=self.commit)
        # What a rebalance may keep: the offset this runner last committed per raw partition held
        # (None: unknown, e.g. a failed commit), and what the last revocation set aside.
        self.our_commits: dict[TopicPartition, int | None] = {}
        self.aside = SetAside()
        self.aside_parts: dict[int, Any] = {}
        self.offsets_reader: AIOKafkaConsumer | None = None
        self.revoked_at: float | None = None
        self.revocations = 0  # a gathering drops what it polled before one (see ``_gather``)
        self.rebalance = RebalanceStats()

    # ------------------------------------------------------------ life cycle
    async def run(self) -> None:
        k = self.settings.kafka
        producer = AIOKafkaProducer(
            bootstrap_servers=k.bootstrap_servers, acks="all", compression_type=k.compression_type,
            linger_ms=k.linger_ms, max_request_size=k.max_request_bytes,
            max_batch_size=min(1_000_000, k.max_request_bytes), request_timeout_ms=30_000)
        self.consumer = AIOKafkaConsumer(**ingest_consumer_options(self.settings))
        # Reads changelog end offsets at rebalances (its own client: no I/O on the group's consumer
        # while it is in the middle of a rebalance).
        self.offsets_reader = AIOKafkaConsumer(bootstrap_servers=k.bootstrap_servers, group_id=None,
                                               enable_auto_commit=False, request_timeout_ms=10_000)
        await producer.start()
        await self.offsets_reader.start()
        self.sender = BatchSender(producer)
        try:
            self.consumer.subscribe(list(k.raw_topics), listener=_Listener(self))
            await self.consumer.start()
            try:
                while True:
                    data = await self._gather()
                    async with self.lock:
                        # A rebalance may have run during the last poll: records of partitions no longer
                        # held are not this worker's; those of partitions assigned anew are read again
                        # after their state is rebuilt (the position goes back to the first one).
                        new, moved = await self._restore_assigned()
                        held = self.consumer.assignment()
                        for tp in (new & held) - moved:
                            if data.get(tp):
                                self.consumer.seek(tp, data[tp][0].offset)
                        data = {tp: records for tp, records in data.items()
                                if records and tp in held and tp not in new}
                        if data:
                            await self.handle(data)
                        await self._follow_clock()
            finally:
                self.ready = False
                await self.consumer.stop()
        finally:
            await self.offsets_reader.stop()
            await producer.stop()

    async def _gather(self) -> dict[TopicPartition, list[Any]]:
        """One step's records: polls until ``PULSE_WORKER_STEP_INTERVAL_S`` has passed since the
        gathering began or ``PULSE_WORKER_BATCH_SIZE`` records are in (``Gathering``), each
        partition's in offset order. Records of polls before a revocation are dropped (the fetcher
        only returns records of the current assignment, which starts again at the committed
        offsets), and the gathering ends right after a poll that brought an assignment, so the loop
        restores it before anything else, as with one poll per step."""
        assert self.consumer is not None
        w = self.settings.worker
        gathering: Gathering[TopicPartition, Any] = Gathering(time.monotonic(), w.step_interval_s, w.batch_size)
        revocations = self.revocations
        while True:
            wait_s = gathering.wait_s(time.monotonic(), assignment_waiting=bool(self.to_restore))
            polled = await self.consumer.getmany(timeout_ms=math.ceil(wait_s * 1000), max_records=gathering.room())
            gathering.add(polled, revoked=self.revocations != revocations)
            revocations = self.revocations
            if gathering.wait_s(time.monotonic(), assignment_waiting=bool(self.to_restore)) == 0:
                self.rebalance.gathered_dropped += gathering.dropped
                return gathering.records

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in flight (it commits), then set the partitions' state aside with what
        the next assignment needs to tell whether it is still good (see ``plan_assignment``)."""
        async with self.lock:
            self.revocations += 1
            self.ready = False
            self.revoked_at = time.monotonic()
            # Only the very next assignment may take back what was set aside: a second revocation
            # before the loop restored the first assignment drops the older state.
            self.sessions.forget(self.aside_parts)
            self.aside_parts = self.sessions.set_aside({tp.partition for tp in revoked
                                                        if tp.topic in self.session_topics})
            keep = self.settings.worker.keep_state_on_rebalance
            ends = await self._changelog_ends(set(self.aside_parts)) if keep and self.aside_parts else {}
            self.aside = SetAside(committed={tp: self.our_commits.get(tp) for tp in revoked} if keep else {},
                                  changelog_ends=ends)
            self.to_restore -= revoked
            for tp in revoked:
                self.processed.pop(tp, None)
                self.our_commits.pop(tp, None)

    async def _changelog_ends(self, partitions: set[int]) -> dict[int, int]:
        """End offsets of these changelog partitions; {} when they cannot be read (then nothing is kept)."""
        assert self.offsets_reader is not None
        if not partitions:
            return {}
        tps = [TopicPartition(self.sessions.changelog, p) for p in sorted(partitions)]
        try:
            ends = await asyncio.wait_for(self.offsets_reader.end_offsets(tps), timeout=15)
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("ingest: could not read the changelog end offsets (%r); rebuilding every partition", exc)
            return {}
        return {tp.partition: end for tp, end in ends.items()}

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """No I/O here (aiokafka keeps fetching meanwhile): the loop restores before processing."""
        self.to_restore |= assigned

    async def _restore_assigned(self) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """Rebuild newly assigned partitions' sessions and dedup memory; returns those partitions, and
        the ones among them that were moved to where the previous worker version stopped."""
        if not self.to_restore:
            return set(), set()
        assert self.consumer is not None
        began = time.monotonic()
        new, self.to_restore = self.to_restore, set()
        committed = {tp: await self.consumer.committed(tp) for tp in new}
        plan = await self._plan(new, committed)
        rebuild = set(plan.rebuild)
        moved = await self._start_where_the_old_group_stopped(rebuild, committed)
        await self._rebuild_dedup(rebuild, committed)
        partitions = sorted({tp.partition for tp in rebuild if tp.topic in self.session_topics}
                            - set(self.sessions.parts))
        started = time.monotonic()
        records = await read_to_end(self.settings.kafka.bootstrap_servers, self.sessions.changelog, partitions)
        for p in partitions:
            self.sessions.restore(p, records[p].items())
        if partitions:
            log.warning("ingest: restored session partitions %s in %.2f s", partitions, time.monotonic() - started)
        for tp in new:
            self.our_commits[tp] = committed[tp]  # what the state now stands for
        for tp in plan.keep:
            self.processed[tp] = committed[tp]  # type: ignore[assignment] - kept ones have an offset
        self._account_assignment(plan, partitions, began)
        self.ready = bool(self.consumer.assignment())
        return new, moved

    async def _plan(self, new: set[TopicPartition], committed: dict[TopicPartition, int | None]) -> AssignmentPlan:
        """Decide what of the state set aside is kept; put it back, forget the rest."""
        aside, aside_parts = self.aside, self.aside_parts
        self.aside, self.aside_parts = SetAside(), {}
        back = set(aside.changelog_ends) & {tp.partition for tp in new if tp.topic in self.session_topics}
        ends = await self._changelog_ends(back) if back else {}
        plan = plan_assignment(aside, new, committed, ends, self.session_topics)
        self.sessions.put_back({p: aside_parts[p] for p in plan.keep_sessions})
        self.sessions.forget(set(aside_parts) - plan.keep_sessions)  # not in the store: metrics only
        return plan

    def _account_assignment(self, plan: AssignmentPlan, restored: list[int], began: float) -> None:
        now = time.monotonic()
        r = self.rebalance
        r.assignments += 1
        r.partitions_kept += len(plan.keep)
        r.partitions_rebuilt += len(plan.rebuild)
        r.session_partitions_kept += len(plan.keep_sessions)
        r.session_partitions_restored += len(restored)
        r.last_kept = sorted(f"{tp[0]}:{tp[1]}" for tp in plan.keep)
        r.last_rebuilt = sorted(f"{tp[0]}:{tp[1]}" for tp in plan.rebuild)
        r.last_restore_s = round(now - began, 3)
        if self.revoked_at is not None:
            r.last_pause_s = round(now - self.revoked_at, 3)
        if self.revoked_at is not None or plan.keep:
            log.warning("ingest: assignment of %d partitions: kept %d as they were (sessions %s), rebuilt %d "
                        "(sessions %s) in %.2f s; %s since the revocation", len(plan.keep) + len(plan.rebuild),
                        len(plan.keep), sorted(plan.keep_sessions), len(plan.rebuild), restored, now - began,
                        f"{now - self.revoked_at:.2f} s" if self.revoked_at is not None else "-")

    async def _rebuild_dedup(self, new: set[TopicPartition], committed: dict[TopicPartition, int | None]) -> None:
        """The dedup memory is the process's: a partition that moved here (or a restart) would let an
        SDK retry of an event the previous holder stored through again. Read back the last
        ``PULSE_WORKER_DEDUP_REBUILD_S`` of each new partition before its committed offset and
        remember those ids (SDKs retry within seconds to a minute; the soak test measured ~340
        duplicate rows in 190k events across one restart and two rebalances without this)."""
        assert self.consumer is not None
        w = self.settings.worker
        if w.dedup_rebuild_s <= 0:
            return
        ends = {(tp.topic, tp.partition): committed[tp] for tp in new if committed.get(tp)}
        if not ends:
            return
        started = time.monotonic()
        values = await read_back(self.settings.kafka.bootstrap_servers, ends, w.dedup_rebuild_s, w.dedup_capacity)
        added = self.dedup.remember(values)
        log.warning("ingest: dedup memory rebuilt from %d messages (%d event ids) of the last %.0f s of %d "
                    "partitions in %.2f s", len(values), added, w.dedup_rebuild_s, len(ends), time.monotonic() - started)

    async def _start_where_the_old_group_stopped(self, new: set[TopicPartition],
                                                 committed: dict[TopicPartition, int | None]) -> set[TopicPartition]:
        """Upgrading from the Faust ingest agent: a raw partition this group never committed starts
        at the old group's (the app id's) committed offset instead of the beginning of the log."""
        assert self.consumer is not None
        fresh = [tp for tp in new if committed.get(tp) is None]
        if not fresh:
            return set()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka.bootstrap_servers)
        await admin.start()
        try:
            old = await admin.list_consumer_group_offsets(self.settings.worker.app_id)
        finally:
            await admin.close()
        moved = set()
        for tp in fresh:
            meta = old.get(tp)
            if meta is not None and meta.offset >= 0:
                log.warning("%s:%d: starting at offset %d, where the previous worker version stopped",
                            tp.topic, tp.partition, meta.offset)
                self.consumer.seek(tp, meta.offset)
                moved.add(tp)
        return moved

    # ------------------------------------------------------------ batches
    def highwater(self, topic: str, partition: int) -> int | None:
        assert self.consumer is not None
        try:
            return self.consumer.highwater(TopicPartition(topic, partition))
        except (KafkaError, AssertionError, KeyError, ValueError, TypeError):
            return None

    async def handle(self, data: dict[TopicPartition, Sequence[Any]]) -> None:
        """One gathering's records through the stage runner (``agents/stage.py``): step, outputs, state, commit."""
        started = time.perf_counter()
        now = datetime.now(timezone.utc)
        messages = [RawMessage(tp.topic, tp.partition, r.offset, r.key, r.value if r.value is not None else b"",
                               r.timestamp if r.timestamp is not None and r.timestamp >= 0 else None)
                    for tp, records in data.items() for r in records]
        await self.runner.run_messages(messages, now)
        self.state.batches += 1
        self.state.messages += len(messages)
        self.state.last_batch_at = time.time()
        BATCH_SIZE.labels(PROCESS).observe(len(messages))
        BATCH_SECONDS.labels(PROCESS).observe(time.perf_counter() - started)
        self._trim()

    def step(self, messages: list[RawMessage], now: datetime) -> StageOutput:
        """The ingest stage: ``process_batch`` (pure; a message it cannot take is a dead letter), then
        sessionization (which raises if a message breaks it: the runner then narrows the batch down
        to that message), then the outputs. Returns what to send and the session state records; the
        dedup memory and metrics advance in ``done``, after the commit."""
        out = process_batch(messages, self.dedup, self.settings.kafka.partitions, now, self.session_topics,
                            self.rollup_rules, self.noise_rules, WORKER_PROCESSORS, time_window=self.time_window)
        steps = self.sessions.step_batch(out, self.highwater)
        outputs = self._outputs(out, messages, now)
        outputs += self.sessions.sends_for(steps)
        return StageOutput(outputs=outputs, state=self.sessions.changelog_sends(steps),
                           done=[lambda: self._written(out, steps)])

    def _written(self, out: ProcessedBatch, steps: list[tuple[int, Step]]) -> None:
        """The batch is on Kafka and committed: its event ids join the dedup memory, metrics count it."""
        self.dedup.keep()
        self.sessions.unwritten.clear()
        self.sessions.account(steps)
        self._account(out)

    async def reset(self) -> None:
        """A step failed: forget what it changed in memory. The dedup memory drops the batch's ids;
        the session partitions it touched are read back from their changelog as last written."""
        self.dedup.drop()
        partitions = sorted(self.sessions.unwritten)
        self.sessions.unwritten.clear()
        if not partitions:
            return
        records = await read_to_end(self.settings.kafka.bootstrap_servers, self.sessions.changelog, partitions)
        for p in partitions:
            if p in self.sessions.parts:
                self.sessions.restore(p, records[p].items())

    def dead_letter(self, message: RawMessage, reason: str, now: datetime) -> Send:
        """A message the stage failed on, as the worker's dead letter (its raw value kept for a replay)."""
        self.state.last_error = f"ingest failed on {message.topic}:{message.partition}:{message.offset}: {reason}"
        dl = dead_letter_for(message, f"worker error: {reason}", now)
        DEAD_LETTERS.labels(PROCESS, "worker", reason_kind(dl.reason)).inc()
        return dead_letter_send(self.settings.kafka.topic_dead_letter, dl)

    async def commit(self, messages: list[RawMessage]) -> None:
        """Commit the raw offsets after ``messages`` (they are in input order: the last one per partition counts)."""
        last = {(m.topic, m.partition): m.offset for m in messages}
        offsets = {TopicPartition(topic, partition): offset + 1 for (topic, partition), offset in last.items()}
        await self._commit(offsets)
        self.processed.update(offsets)

    def _trim(self) -> None:
        """The batch's garbage back to the OS, at most every ``trim_interval_s`` (see ``release_free_memory``)."""
        interval = self.settings.worker.trim_interval_s
        if interval > 0 and time.monotonic() - self.last_trim_at >= interval:
            release_free_memory()
            self.last_trim_at = time.monotonic()

    def _outputs(self, out: ProcessedBatch, messages: list[RawMessage], now: datetime) -> list[Send]:
        k, w = self.settings.kafka, self.settings.worker
        storage, too_big = storage_records(out, w.max_record_bytes, now)
        out.dead_letters += too_big
        sends: list[Send] = [(k.topic_storage, s.key, s.value, s.partition_hint, s.headers) for s in storage]
        sends += occurrence_sends(out.issue_records, k.topic_issue_events)
        sends += [(k.topic_rollup_partials, key, value, None, [])
                  for key, value in alert_partial_messages(out.alert_rows, self.settings.alerts.partials_max_bytes,
                                                             merged=True)]
        sends += [dead_letter_send(k.topic_dead_letter, dl) for dl in out.dead_letters]
        return sends

    async def send_all(self, sends: list[Send]) -> list[BaseException | None]:
        assert self.sender is not None
        return await self.sender.send_all(sends)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved on in a rebalance: the new owner replays from the last commit,
            # and every output of the replay is dropped or collapsed downstream. This state is
            # ahead of the group's offset now: never keep it.
            log.warning("commit failed after a rebalance (%s); the new owner replays the batch", exc)
            self.our_commits.update(dict.fromkeys(offsets))
        else:
            self.our_commits.update(offsets)

    async def _follow_clock(self) -> None:
        """Between polls, at most every ``timer_interval_s``: quiet partitions close idle sessions."""
        now = time.monotonic()
        if now - self.last_clock_at < self.settings.sessions.timer_interval_s:
            return
        self.last_clock_at = now
        steps = self.sessions.quiet_steps(int(time.time() * 1000), self.highwater)
        if steps:
            await self.runner.deliver(StageOutput(outputs=self.sessions.sends_for(steps),
                                                  state=self.sessions.changelog_sends(steps),
                                                  done=[lambda: self.sessions.account(steps)]))
        self._report_lag()

    def _report_lag(self) -> None:
        for tp, upto in self.processed.items():
            high = self.highwater(tp.topic, tp.partition)
            if high is not None:
                CONSUMER_LAG.labels(PROCESS, tp.topic, str(tp.partition)).set(max(high - upto, 0))

    def _account(self, out: ProcessedBatch) -> None:
        for type_, n in out.events_in.items():
            EVENTS_IN.labels(PROCESS, type_).inc(n)
        for table, n in out.rows_out.items():
            EVENTS_OUT.labels(PROCESS, table).inc(n)
        for dl in out.dead_letters:
            DEAD_LETTERS.labels(PROCESS, "worker", reason_kind(dl.reason)).inc()
        if out.late_rollup_events:
            LATE_EVENTS.labels(PROCESS, "rollups").inc(out.late_rollup_events)
        if out.duplicates:
            DUPLICATES_DROPPED.labels(PROCESS, "event_id").inc(out.duplicates)

    def health(self) -> dict[str, Any]:
        return {"group": self.settings.worker.ingest_group(), "ready": self.ready,
                "assigned_partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in
                                              (self.consumer.assignment() if self.consumer else ())),
                "largest_record_bytes": self.sender.largest_record if self.sender else 0,
                "sessions": self.sessions.health(), "rebalance": asdict(self.rebalance)}
