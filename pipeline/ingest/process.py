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
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.contract import (EVENT_ADAPTER, EVENT_BATCH_ADAPTER, HEADER_SOURCE, HEADER_SOURCE_LINES, HEADER_TABLE,
                               DeadLetter, encode_line_runs, encode_source_range)
from pipeline.grouping import DEFAULT_NOISE_RULES, NoiseRules
from pipeline.ingest.dedup import RecentIds
from pipeline.common import epoch_us, page_of
from pipeline.ingest.normalize import event_to_row
from pipeline.ingest.validate import Decoded, EventTimeWindow, check_event_time, decode_message
from pipeline.issues import OccurrenceRecord, occurrence_records
from pipeline.rollups.metrics import metric_rollup_rows
from pipeline.rollups.minute import RollupRules, is_late_ms, rollup_rows_timed
from pipeline.ingest.session_input import session_input
from pipeline.sessions.partition import Sourced

STEP = "worker"
ROLLUP_TABLE = "rollups_minute"
METRIC_ROLLUP_TABLE = "metrics_minute"


@dataclass(slots=True)
class RawMessage:
    """One message read from a raw topic, as plain data. Not frozen: a frozen dataclass's
    ``__init__`` costs ~1.2 us more, once per Kafka record (issue 14); nothing changes it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(slots=True)
class StorageMessage:
    """Rows of one table from one raw message (or, with ``line_sources``, from a range of raw
    messages of one partition), ready to produce on the storage topic. Not frozen, for the same
    reason as ``RawMessage``: one or two are made per raw message."""

    table: str
    source: str
    key: bytes | None
    partition_hint: int
    value: bytes  # JSONEachRow
    rows: int = 0
    line_sources: bytes | None = None  # HEADER_SOURCE_LINES of a range message

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        headers = [(HEADER_TABLE, self.table.encode()), (HEADER_SOURCE, self.source.encode())]
        if self.line_sources is not None:
            headers.append((HEADER_SOURCE_LINES, self.line_sources))
        return headers


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
    # Minute partial rows of first-time events, for alert evaluation (agents/alerts.py): the runner
    # merges them per series and sends one message per project per batch (``alert_partial_messages``).
    alert_rows: list[dict[str, Any]] = field(default_factory=list)
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


@dataclass(frozen=True, slots=True)
class _Rules:
    """A batch's constants, worked out once instead of per message or per event."""

    storage_partitions: int
    session_topics: frozenset[str]
    rollups: RollupRules | None
    noise_rules: NoiseRules
    downstream: bool
    time_window: EventTimeWindow | None
    past_us: int = 0  # the time window in exact microseconds (datetime arithmetic is exact too)
    future_us: int = 0
    now_ms: int = 0

    @classmethod
    def of(cls, storage_partitions: int, now: datetime, session_topics: frozenset[str], rollups: RollupRules | None,
           noise_rules: NoiseRules, downstream: bool, time_window: EventTimeWindow | None) -> "_Rules":
        past_us = future_us = 0
        if time_window is not None:
            past_us = timedelta(days=time_window.max_past_days) // _MICROSECOND
            future_us = timedelta(seconds=time_window.max_future_s) // _MICROSECOND
        return cls(storage_partitions, session_topics, rollups, noise_rules, downstream, time_window, past_us,
                   future_us, epoch_us(now) // 1000)


_MICROSECOND = timedelta(microseconds=1)


def process_message(msg: RawMessage, dedup: RecentIds, storage_partitions: int, now: datetime,
                    out: ProcessedBatch, session_topics: frozenset[str] = frozenset(),
                    rollups: RollupRules | None = None, noise_rules: NoiseRules = DEFAULT_NOISE_RULES,
                    downstream: bool = False, time_window: EventTimeWindow | None = None) -> None:
    """Append what one raw message becomes to ``out``. Rows are built before any id is marked as
    seen, so a failure while building leaves the dedup state untouched. With ``time_window``, an
    event time outside it (around the message's Kafka timestamp) is rejected or clamped as the
    collector does: producers that write straight to Kafka are held to the same window."""
    rules = _Rules.of(storage_partitions, now, session_topics, rollups, noise_rules, downstream, time_window)
    _process(msg, dedup, now, out, rules)


def _process(msg: RawMessage, dedup: RecentIds, now: datetime, out: ProcessedBatch, rules: _Rules) -> None:
    """``process_message`` with the batch's constants worked out. Each event is decoded once and
    its time (exact epoch microseconds) computed once; the storage row, the rollup partials, the
    lateness, the issue records and the session input are all made from those."""
    for_sessions = msg.topic in rules.session_topics
    if for_sessions:
        upto = out.session_upto.setdefault(msg.partition, {})
        if msg.offset > upto.get(msg.topic, -1):
            upto[msg.topic] = msg.offset
    decoded = _decode(msg, now)
    events = decoded.events
    if not events:
        out.dead_letters.extend(decoded.dead_letters)
        return
    arrived_ms = msg.timestamp_ms
    if arrived_ms is None or arrived_ms < 0:
        received_at, arrived_ms = now, rules.now_ms
        received_us = epoch_us(now)
    else:
        received_at = datetime.fromtimestamp(arrived_ms / 1000, tz=timezone.utc)
        received_us = arrived_ms * 1000
    times = [epoch_us(e.timestamp) for e in events]
    window = rules.time_window
    if window is not None:
        lo, hi = received_us - rules.past_us, received_us + rules.future_us
        for t in times:
            if not lo <= t <= hi:
                events = _in_time_window(events, received_at, window, msg, now, out)
                times = [epoch_us(e.timestamp) for e in events]
                break
    noise_rules = rules.noise_rules
    built: list[tuple[Any, str, dict[str, Any], Any, int, str]] = []
    types: list[str] = []
    pages: dict[tuple[str, str], str] = {}  # page_of per (route, url): a flush stays on a page or two
    for event, ts_us in zip(events, times):
        table, row = event_to_row(event, received_at, noise_rules)
        route_url = (row["route"], row["url"])
        page = pages.get(route_url)
        if page is None:
            page = pages[route_url] = page_of(*route_url)
        ts_ms = ts_us // 1000
        sess = session_input(event, ts_ms, page) if for_sessions else None
        built.append((row["event_id"], table, row, sess, ts_ms, page))  # the validated UUID: dedup key
        types.append(event.type)
    by_table: dict[str, list[bytes]] = {}
    first_time = dedup.first_time
    dumps = orjson.dumps
    sourced: list[Sourced] | None = out.session_events.setdefault(msg.partition, []) if for_sessions else None
    fresh: list[tuple[str, dict[str, Any], int, str]] = []
    for event_id, table, row, sess, ts_ms, page in built:
        if not first_time(event_id):
            out.duplicates += 1
            continue
        fresh.append((table, row, ts_ms, page))
        if sess is not None and sourced is not None:
            sourced.append(Sourced(msg.topic, msg.offset, sess))
        lines = by_table.get(table)
        if lines is None:
            lines = by_table[table] = []
        lines.append(dumps(row))
    out.dead_letters.extend(decoded.dead_letters)
    events_in = out.events_in
    for type_ in types:
        events_in[type_] += 1
    rollups = rules.rollups
    if rollups is not None and fresh:
        # Minute partials of this message's first-time events: same origin, so a replay is dropped
        # by the sink like the raw rows (see pipeline/rollups/minute.py).
        late = 0
        for _, _, ts_ms, _ in fresh:
            if is_late_ms(ts_ms, arrived_ms, rollups):
                late += 1
        out.late_rollup_events += late
        timed = fresh if "metrics" not in by_table else [f for f in fresh if f[0] != "metrics"]  # own rollup
        if timed:
            partials = rollup_rows_timed(timed, rollups)
            by_table[ROLLUP_TABLE] = [dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in partials]
            if rules.downstream:
                out.alert_rows += partials
        if "metrics" in by_table:
            metric_partials = metric_rollup_rows((row for table, row, _, _ in fresh if table == "metrics"), rollups.window_s)
            by_table[METRIC_ROLLUP_TABLE] = [dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in metric_partials]
    if rules.downstream and "errors" in by_table:
        out.issue_records += occurrence_records((row for table, row, _, _ in fresh if table == "errors"),
                                                msg.topic, msg.partition, msg.offset)
    source = msg.source
    partition = msg.partition % rules.storage_partitions
    rows_out = out.rows_out
    for table, lines in by_table.items():
        out.storage.append(StorageMessage(table, source, msg.key, partition, b"\n".join(lines), len(lines)))
        rows_out[table] += len(lines)


def _in_time_window(events: list[Any], received_at: datetime, window: EventTimeWindow, msg: RawMessage,
                    now: datetime, out: ProcessedBatch) -> list[Any]:
    """The events whose time is inside ``window`` around ``received_at`` (clamped ones included);
    the others become dead letters with the reason. Only called when one is outside."""
    lo = received_at - timedelta(days=window.max_past_days)
    hi = received_at + timedelta(seconds=window.max_future_s)
    kept = []
    for e in events:
        if lo <= e.timestamp <= hi:
            kept.append(e)
            continue
        checked = check_event_time(e.timestamp, None, received_at, window)
        if checked.timestamp is not None:
            kept.append(e.model_copy(update={"timestamp": checked.timestamp}))
        else:
            out.dead_letters.append(DeadLetter.of(EVENT_ADAPTER.dump_json(e), step=STEP, source=msg.source,
                                                  reason=checked.reason or "timestamp out of range",
                                                  project=e.project, event_id=str(e.event_id), now=now))
    return kept


def process_batch(messages: Iterable[RawMessage], dedup: RecentIds, storage_partitions: int,
                  now: datetime, session_topics: frozenset[str] = frozenset(),
                  rollups: RollupRules | None = None, noise_rules: NoiseRules = DEFAULT_NOISE_RULES,
                  downstream: bool = False, time_window: EventTimeWindow | None = None) -> ProcessedBatch:
    """Process raw messages in order. An unexpected exception on one message turns that message
    into a dead letter carrying the exception text; the others continue. Valid first-time events
    of ``session_topics`` are also handed out for sessionization (``out.session_events``). With
    ``downstream``, the worker's other agents get theirs: first-time errors per fingerprint for issue
    status (``out.issue_records``) and minute partials per project for alerting (``out.alert_rows``)."""
    out = ProcessedBatch()
    rules = _Rules.of(storage_partitions, now, session_topics, rollups, noise_rules, downstream, time_window)
    for msg in messages:
        try:
            _process(msg, dedup, now, out, rules)
        except Exception as exc:  # noqa: BLE001 - the boundary: never lose the batch for one message
            out.dead_letters.append(dead_letter_for(msg, f"worker error: {type(exc).__name__}: {exc}", now))
    return out


def range_messages(per_message: list[StorageMessage], by_source: dict[str, RawMessage], max_bytes: int,
                   now: datetime) -> tuple[list[StorageMessage], list[DeadLetter]]:
    """A batch's per-message storage output as few records as possible: one per (table, raw topic,
    raw partition), each naming its offset range and every line's offset (the sink drops exactly the
    lines a replay repeats), cut where a record would pass ``max_bytes``. One raw message's lines
    always stay in one record (the sink's mark would otherwise drop the second half); a raw message
    whose rows for one table alone pass ``max_bytes`` becomes a dead letter, and so do its other
    tables' rows, so that message is either stored whole or not at all."""
    too_big = {m.source for m in per_message if len(m.value) > max_bytes}
    dead = [dead_letter_for(by_source[src], f"worker output too large: the rows of this message exceed "
                            f"PULSE_WORKER_MAX_RECORD_BYTES ({max_bytes} bytes)", now) for src in sorted(too_big)]
    groups: dict[tuple[str, str, int], list[tuple[int, StorageMessage]]] = {}
    for m in per_message:
        if too_big and m.source in too_big:
            continue
        raw = by_source[m.source]
        key = (m.table, raw.topic, raw.partition)
        items = groups.get(key)
        if items is None:
            items = groups[key] = []
        items.append((raw.offset, m))
    out: list[StorageMessage] = []
    for (table, topic, partition), items in groups.items():
        items.sort(key=itemgetter(0))  # a poll's records are in offset order already: one pass
        chunk: list[tuple[int, StorageMessage]] = []
        size = 0
        for item in items:
            if chunk and size + len(item[1].value) + 1 > max_bytes:
                out.append(_range_message(table, topic, partition, chunk))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item[1].value) + 1
        if chunk:
            out.append(_range_message(table, topic, partition, chunk))
    return out, dead


def _range_message(table: str, topic: str, partition: int, chunk: list[tuple[int, StorageMessage]]) -> StorageMessage:
    """One record of ``chunk``'s lines; its line sources are one run per raw message, so they are
    encoded from (offset, rows) pairs, not from a list with one offset per line."""
    runs: list[tuple[int, int]] = []
    lines = 0
    for offset, m in chunk:
        if m.rows < 1:
            raise ValueError(f"a storage message without lines from offset {offset}")
        lines += m.rows
        if runs and runs[-1][0] == offset:  # the same raw message twice: encode_line_sources merged these too
            runs[-1] = (offset, runs[-1][1] + m.rows)
        else:
            runs.append((offset, m.rows))
    first = chunk[0]
    return StorageMessage(table, encode_source_range(topic, partition, chunk[0][0], chunk[-1][0]).decode(), None,
                          first[1].partition_hint, b"\n".join([m.value for _, m in chunk]), lines,
                          encode_line_runs(runs))


def dead_letter_for(msg: RawMessage, reason: str, now: datetime) -> DeadLetter:
    """The whole raw message as a dead letter (used for unexpected failures)."""
    return DeadLetter.of(msg.value, step=STEP, source=msg.source, reason=reason[:2000], now=now)
