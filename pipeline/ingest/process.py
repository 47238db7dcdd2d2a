"""Raw messages -> storage messages and dead letters: the worker's whole ingest step. Pure: no I/O, no clock.

One raw message (one event or a JSON array of one session's events) becomes at most one storage
message per table its valid, not-yet-seen events map to, plus a dead letter per invalid event (or
one for the whole message when it cannot be decoded). A storage message carries its rows as
JSONEachRow bytes and names its origin (``topic:partition:offset``); it goes to storage partition
``raw partition % storage partitions``, so for one (raw topic, raw partition, table) the sink sees
source offsets in increasing order in one partition and can drop replays by offset.

Example::

    dedup = RecentIds(capacity=500_000)
    msg = RawMessage("pulse.raw.vitals", 0, 42, b"s-1", b'{"event_id": ...}', timestamp_ms=1_700_000_000_000)
    out = process_batch([msg], dedup, storage_partitions=4, now=datetime.now(timezone.utc))
    out.storage[0].table, out.storage[0].source  # ('vitals', 'pulse.raw.vitals:0:42')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.contract import EVENT_ADAPTER, EVENT_BATCH_ADAPTER, HEADER_SOURCE, HEADER_TABLE, DeadLetter
from pipeline.grouping import DEFAULT_NOISE_RULES, NoiseRules
from pipeline.ingest.dedup import RecentIds
from pipeline.ingest.normalize import event_to_row
from pipeline.ingest.validate import Decoded, decode_message
from pipeline.issues import OccurrenceRecord, occurrence_records
from pipeline.rollups.metrics import metric_rollup_rows
from pipeline.rollups.minute import RollupRules, is_late, rollup_rows
from pipeline.sessions.events import session_event
from pipeline.sessions.partition import Sourced

STEP = "worker"
ROLLUP_TABLE = "rollups_minute"
METRIC_ROLLUP_TABLE = "metrics_minute"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message read from a raw topic, as plain data."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class StorageMessage:
    """Rows of one table from one raw message, ready to produce on the storage topic."""

    table: str
    source: str
    key: bytes | None
    partition_hint: int
    value: bytes  # JSONEachRow
    rows: int = 0

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(HEADER_TABLE, self.table.encode()), (HEADER_SOURCE, self.source.encode())]


@dataclass
class ProcessedBatch:
    """What a batch of raw messages became, with the counts metrics need."""

    storage: list[StorageMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events_in: Counter[str] = field(default_factory=Counter)  # valid events by type, duplicates included
    rows_out: Counter[str] = field(default_factory=Counter)  # rows by table
    duplicates: int = 0
    # Sessionization input, per raw partition: first-time action/error events with their origin,
    # and the highest offset per session topic seen in the batch (invalid messages included).
    session_events: dict[int, list[Sourced]] = field(default_factory=dict)
    session_upto: dict[int, dict[str, int]] = field(default_factory=dict)
    # First-time, non-noise errors per fingerprint and raw message, for issue status (agents/issues.py).
    issue_records: list[OccurrenceRecord] = field(default_factory=list)
    # Minute partials per project (key, JSON array) for alert evaluation (agents/alerts.py).
    alert_partials: list[tuple[bytes, bytes]] = field(default_factory=list)
    late_rollup_events: int = 0  # arrived after their window + allowed lateness (still counted)


def _decode(msg: RawMessage, now: datetime) -> Decoded:
    """The fast path validates an object or array straight from bytes (pydantic's JSON parser, no
    intermediate dicts); anything that fails goes through ``decode_message``, which gives the
    same reasons as the collector and isolates each bad event of an array."""
    raw = msg.value
    first = raw[:1]
    try:
        if first == b"[":
            return Decoded(events=EVENT_BATCH_ADAPTER.validate_json(raw))
        if first == b"{":
            return Decoded(events=[EVENT_ADAPTER.validate_json(raw)])
    except ValidationError:
        pass
    return decode_message(raw, step=STEP, source=msg.source, now=now)


def _received_at(msg: RawMessage, now: datetime) -> datetime:
    if msg.timestamp_ms is None or msg.timestamp_ms < 0:
        return now
    return datetime.fromtimestamp(msg.timestamp_ms / 1000, tz=timezone.utc)


def process_message(msg: RawMessage, dedup: RecentIds, storage_partitions: int, now: datetime,
                    out: ProcessedBatch, session_topics: frozenset[str] = frozenset(),
                    rollups: RollupRules | None = None, noise_rules: NoiseRules = DEFAULT_NOISE_RULES,
                    downstream: bool = False) -> None:
    """Append what one raw message becomes to ``out``. Rows are built before any id is marked as
    seen, so a failure while building leaves the dedup state untouched."""
    for_sessions = msg.topic in session_topics
    if for_sessions:
        upto = out.session_upto.setdefault(msg.partition, {})
        if msg.offset > upto.get(msg.topic, -1):
            upto[msg.topic] = msg.offset
    decoded = _decode(msg, now)
    if not decoded.events:
        out.dead_letters.extend(decoded.dead_letters)
        return
    received_at = _received_at(msg, now)
    built: list[tuple[Any, str, dict[str, Any], Any]] = []
    types: list[str] = []
    for event in decoded.events:
        table, row = event_to_row(event, received_at, noise_rules)
        event_id = row["event_id"]  # canonical str: hashes faster than UUID
        sess = session_event(event, event_id) if for_sessions else None
        built.append((event_id, table, row, sess))
        types.append(event.type)
    by_table: dict[str, list[bytes]] = {}
    first_time = dedup.first_time
    dumps = orjson.dumps
    sourced: list[Sourced] | None = out.session_events.setdefault(msg.partition, []) if for_sessions else None
    fresh: list[tuple[str, dict[str, Any]]] = []
    for event_id, table, row, sess in built:
        if not first_time(event_id):
            out.duplicates += 1
            continue
        fresh.append((table, row))
        if sess is not None and sourced is not None:
            sourced.append(Sourced(msg.topic, msg.offset, sess))
        lines = by_table.get(table)
        if lines is None:
            lines = by_table[table] = []
        lines.append(dumps(row))
    source = msg.source
    partition = msg.partition % storage_partitions
    out.dead_letters.extend(decoded.dead_letters)
    out.events_in.update(types)
    if rollups is not None and fresh:
        # Minute partials of this message's first-time events: same origin, so a replay is dropped
        # by the sink like the raw rows (see pipeline/rollups/minute.py).
        partials = rollup_rows(fresh, rollups)
        if partials:
            lines = by_table[ROLLUP_TABLE] = [dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in partials]
            if downstream:
                projects: dict[str, list[bytes]] = {}
                for r, line in zip(partials, lines):
                    projects.setdefault(r["project"], []).append(line)
                out.alert_partials += [(p.encode(), b"[" + b",".join(ls) + b"]") for p, ls in projects.items()]
        if "metrics" in by_table:
            metric_partials = metric_rollup_rows((row for table, row in fresh if table == "metrics"), rollups.window_s)
            by_table[METRIC_ROLLUP_TABLE] = [dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in metric_partials]
        arrived_ms = msg.timestamp_ms if msg.timestamp_ms is not None and msg.timestamp_ms >= 0 \
            else int(now.timestamp() * 1000)
        out.late_rollup_events += sum(1 for _, row in fresh if is_late(row["timestamp"], arrived_ms, rollups))
    if downstream and "errors" in by_table:
        out.issue_records += occurrence_records((row for table, row in fresh if table == "errors"),
                                                msg.topic, msg.partition, msg.offset)
    for table, lines in by_table.items():
        out.storage.append(StorageMessage(table, source, msg.key, partition, b"\n".join(lines), len(lines)))
        out.rows_out[table] += len(lines)


def process_batch(messages: Iterable[RawMessage], dedup: RecentIds, storage_partitions: int,
                  now: datetime, session_topics: frozenset[str] = frozenset(),
                  rollups: RollupRules | None = None, noise_rules: NoiseRules = DEFAULT_NOISE_RULES,
                  downstream: bool = False) -> ProcessedBatch:
    """Process raw messages in order. An unexpected exception on one message turns that message
    into a dead letter carrying the exception text; the others continue. Valid first-time events
    of ``session_topics`` are also handed out for sessionization (``out.session_events``). With
    ``downstream``, the worker's other agents get theirs: first-time errors per fingerprint for issue
    status (``out.issue_records``) and minute partials per project for alerting (``out.alert_partials``)."""
    out = ProcessedBatch()
    for msg in messages:
        try:
            process_message(msg, dedup, storage_partitions, now, out, session_topics, rollups, noise_rules, downstream)
        except Exception as exc:  # noqa: BLE001 - the boundary: never lose the batch for one message
            out.dead_letters.append(dead_letter_for(msg, f"worker error: {type(exc).__name__}: {exc}", now))
    return out


def dead_letter_for(msg: RawMessage, reason: str, now: datetime) -> DeadLetter:
    """The whole raw message as a dead letter (used for unexpected failures)."""
    return DeadLetter.of(msg.value, step=STEP, source=msg.source, reason=reason[:2000], now=now)
