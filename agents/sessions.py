"""Session state in the worker: pure ``PartitionSessions`` per owned raw partition, made durable
through a compacted changelog topic that the ingest runner writes and reads itself.

The ingest stage (``agents/ingest.py``) calls ``step_batch`` once per batch (validation happened
already), so sessionization costs no extra decode and no extra hop per event. The order inside a
batch, kept by the stage runner (``agents/stage.py``), is what makes a SIGKILL harmless (see
``pipeline/sessions/partition.py``):

1. compute the step (pure): rows, UX signals, and the state records to write;
2. send rows and signals and wait until Kafka confirmed them;
3. only then write the state records to the changelog (one per touched session, then the
   partition's record), then commit the raw offsets.

A crash before 3 replays the batch and re-emits identical rows (collapsed by ClickHouse); a
crash after 3 skips what the records already hold. Nothing is lost, nothing counted twice.

When a raw partition is assigned, its changelog partition is read from the start to its end
(``agents/changelog.py``) and the sessions are rebuilt before any of its input is processed. The
changelog keeps the name and record format of the Faust table it used to be, so a worker upgraded
in place restores what the previous version wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from agents.delivery import Send, row_sends
from pipeline.ingest.process import ProcessedBatch
from pipeline.metrics import (ACTIVE_SESSIONS, LATE_EVENTS, SESSION_BUFFER_OVERFLOW, SESSION_OUTPUTS,
                              SESSION_REPLAY_SKIPPED)
from pipeline.sessions.partition import PartitionSessions, Step, split_key
from pipeline.sessions.rows import rows_by_table, signals
from pipeline.settings import Settings

log = logging.getLogger(__name__)
PROCESS = "worker"
TABLE_NAME = "session_state"
Highwater = Callable[[str, int], "int | None"]  # (topic, partition) -> next offset to be written, if known


def changelog_topic(settings: Settings) -> str:
    """The compacted changelog of session state (named as the Faust table it used to be)."""
    return f"{settings.worker.app_id}-{TABLE_NAME}-changelog"


class SessionStore:
    """Sessions of the raw partitions this worker owns. Not thread-safe: the runner serialises calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rules = settings.sessions.rules()
        self.lateness_ms = settings.sessions.lateness_ms
        self.topics = settings.kafka.session_topics
        self.storage_topic = settings.kafka.topic_storage
        self.signal_topic = settings.kafka.topic_ux_signals
        self.storage_partitions = settings.kafka.partitions
        self.max_record_bytes = settings.worker.max_record_bytes
        self.changelog = changelog_topic(settings)
        self.parts: dict[int, PartitionSessions] = {}
        self.last_input: dict[int, float] = {}  # partition -> monotonic time of its last message
        self.unwritten: set[int] = set()  # partitions ``step_batch`` changed since the runner last wrote state

    # ------------------------------------------------------------ partitions
    def restore(self, partition: int, records: Iterable[tuple[bytes, bytes]]) -> PartitionSessions:
        """Rebuild ``partition`` from its changelog records (latest value per key, deletions applied)."""
        items = [(split_key(k.decode())[1], v) for k, v in records]
        part = PartitionSessions.restore(partition, items, self.rules, self.lateness_ms)
        self.parts[partition] = part
        self.last_input[partition] = time.monotonic()
        ACTIVE_SESSIONS.labels(str(partition)).set(part.active_sessions)
        if items:  # rare and worth seeing in the log: a restart or a partition moving here
            log.warning("partition %d: restored %d open sessions, %d buffered events, watermark %d",
                        partition, part.active_sessions, part.buffered_events, part.watermark_ms)
        return part

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.parts.pop(p, None)
            self.last_input.pop(p, None)
            ACTIVE_SESSIONS.labels(str(p)).set(0)

    def set_aside(self, partitions: Iterable[int]) -> dict[int, PartitionSessions]:
        """Take revoked partitions out of the store (no clock, no steps) without losing them: the
        runner puts them back with ``put_back`` if the same partitions return unchanged."""
        aside = {p: self.parts.pop(p) for p in list(partitions) if p in self.parts}
        for p in aside:
            self.last_input.pop(p, None)
        return aside

    def put_back(self, parts: dict[int, PartitionSessions]) -> None:
        now = time.monotonic()
        for p, part in parts.items():
            self.parts[p] = part
            self.last_input[p] = now
            ACTIVE_SESSIONS.labels(str(p)).set(part.active_sessions)

    # ------------------------------------------------------------ steps
    def step_batch(self, out: ProcessedBatch, highwater: Highwater) -> list[tuple[int, Step]]:
        """One step per raw partition of the batch (every partition must have been restored). A step
        that raises leaves its partition half-changed: the runner's ``reset`` restores it from the
        changelog and the batch is redone in smaller parts (``agents/stage.py``)."""
        steps = []
        now = time.monotonic()
        for p in sorted(set(out.session_events) | set(out.session_upto)):
            part, upto = self.parts[p], out.session_upto.get(p, {})
            self.last_input[p] = now
            self.unwritten.add(p)
            steps.append((p, part.process(out.session_events.get(p, []), upto,
                                          self.lagging_topics(p, part, upto, highwater))))
        return steps

    def lagging_topics(self, partition: int, part: PartitionSessions, upto: dict[str, int],
                       highwater: Highwater) -> list[str]:
        """Session topics of ``partition`` with unread messages, by the high watermark of the last
        fetch (no broker round trip). Unknown counts as lagging: the watermark then waits."""
        lagging = []
        for topic in self.topics:
            hw = highwater(topic, partition)
            if hw is None or max(part.marks.get(topic, -1), upto.get(topic, -1)) < hw - 1:
                lagging.append(topic)
        return lagging

    def sends_for(self, steps: list[tuple[int, Step]]) -> list[Send]:
        sends: list[Send] = []
        for p, step in steps:
            partition = p % self.storage_partitions
            for table, rows in rows_by_table(step.emitted).items():
                sends += row_sends(self.storage_topic, table, [orjson.dumps(r) for r in rows], self.max_record_bytes,
                                   partition)
                SESSION_OUTPUTS.labels(table).inc(len(rows))
            for signal in signals(step.emitted):
                sends.append((self.signal_topic, signal["project"].encode(), orjson.dumps(signal), None, []))
        return sends

    def changelog_sends(self, steps: list[tuple[int, Step]]) -> list[Send]:
        """The steps' state records, in order, each to its partition's changelog partition. They go
        out only after the steps' outputs are on Kafka, and the raw offsets are committed after them."""
        return [(self.changelog, key.encode(), value, p, []) for p, step in steps for key, value in step.writes]

    def account(self, steps: list[tuple[int, Step]]) -> None:
        """Metrics and log lines for steps whose state is written."""
        for p, step in steps:
            part = self.parts.get(p)
            if part is not None:
                ACTIVE_SESSIONS.labels(str(p)).set(part.active_sessions)
            if step.overflowed:
                SESSION_BUFFER_OVERFLOW.inc(step.overflowed)
                log.warning("partition %d: %d events not sessionized (stored raw): their session already held "
                            "PULSE_SESSIONS_MAX_BUFFERED_EVENTS events ahead of the watermark", p, step.overflowed)
            if len(step.late) > step.overflowed:
                behind = len(step.late) - step.overflowed
                LATE_EVENTS.labels(PROCESS, "sessions").inc(behind)
                first = step.late[0]
                log.warning("partition %d: %d events behind the watermark (%d) stored raw, not in sessions; "
                            "first: session %s at %d", p, behind, part.watermark_ms if part else -1,
                            first.session_id, first.ts_ms)
            if step.skipped:
                SESSION_REPLAY_SKIPPED.inc(step.skipped)

    # ------------------------------------------------------------ clock
    def quiet_steps(self, now_ms: int, highwater: Highwater) -> list[tuple[int, Step]]:
        """Quiet, caught-up partitions follow the wall clock: watermark = now - allowed lateness,
        so idle sessions close even when no more events arrive on their partition.

        Both conditions matter: *caught up* (every message in the log processed, by the high
        watermarks of the last fetch) so a backlog is never declared late, and *quiet* (nothing
        arrived for ``quiet_partition_s``) so a slow replay of older data is not cut off between
        messages. The runner calls this between polls, so it never overlaps a batch."""
        watermark = now_ms - self.lateness_ms
        quiet_since = time.monotonic() - self.settings.sessions.quiet_partition_s
        steps = []
        for p, part in sorted(self.parts.items()):
            if self.last_input.get(p, 0.0) > quiet_since or watermark <= part.watermark_ms:
                continue
            ends = {t: highwater(t, p) for t in self.topics}
            if any(end is None for end in ends.values()):
                continue
            if part.caught_up(ends):  # type: ignore[arg-type]
                step = part.advance_to(watermark)
                if step.writes:
                    steps.append((p, step))
        return steps

    def health(self) -> dict[str, Any]:
        return {str(p): {"active_sessions": part.active_sessions, "buffered_events": part.buffered_events,
                         "watermark_ms": part.watermark_ms} for p, part in sorted(self.parts.items())}
