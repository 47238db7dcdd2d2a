"""Raw messages -> storage messages and dead letters: the worker's whole ingest step. Pure: no I/O, no clock.

Each raw message is decoded once (one event or a JSON array of one session's events); each valid
event's time (exact epoch microseconds), storage row and page are computed once, before any id is
marked as seen; then the events not seen before (``FirstTime``: one ``(table, row, time, page)``
tuple per event, the projection every processor shares) go through the caller's processors in turn,
as snuba's per-dataset message processors do: ``store_rows`` (raw rows), ``roll_up_minutes`` or
``roll_up_minutes_with_alerts`` (minute partials, and the same for alerting), ``roll_up_metrics``,
``record_issue_occurrences`` and ``collect_session_input``. ``DEFAULT_PROCESSORS`` and
``WORKER_PROCESSORS`` (agents/ingest.py) name the two sets in use. An invalid event becomes a dead
letter (or the whole message, when it cannot be decoded).

A message becomes at most one storage message per table its processors wrote lines for; it
carries its rows as JSONEachRow bytes and names its origin (``topic:partition:offset``); it goes to
storage partition ``raw partition % storage partitions``, so for one (raw topic, raw partition,
table) the sink sees source offsets in increasing order in one partition and can drop replays by offset.
The lines are kept grouped per (table, raw topic, raw partition) as they are made (``out.stored``;
``out.storage`` lists them per message): the worker cuts its storage records from the groups
(``storage_records``), the same records ``range_messages`` makes of the per-message list.

Example::

    dedup = RecentIds(capacity=500_000)
    msg = RawMessage("pulse.raw.vitals", 0, 42, b"s-1", b'{"event_id": ...}', timestamp_ms=1_700_000_000_000)
    out = process_batch([msg], dedup, storage_partitions=4, now=datetime.now(timezone.utc),
                        processors=WORKER_PROCESSORS)
    out.storage[0].table, out.storage[0].source  # ('vitals', 'pulse.raw.vitals:0:42')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from bisect import bisect_right
from itertools import accumulate, count, islice
from operator import add, le, lt
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.common import EPOCH, epoch_us, page_of
from pipeline.contract import (EVENT_ADAPTER, EVENT_BATCH_ADAPTER, HEADER_SOURCE, HEADER_SOURCE_LINES, HEADER_TABLE,
                               DeadLetter, encode_line_runs, encode_source_range)
from pipeline.contract.fast import as_contract, decode_events
from pipeline.grouping import DEFAULT_NOISE_RULES, NoiseRules
from pipeline.ingest.dedup import RecentIds
from pipeline.ingest.normalize import event_to_row
from pipeline.ingest.validate import EventTimeWindow, check_event_time, decode_message
from pipeline.issues import OccurrenceRecord, occurrence_records
from pipeline.rollups.metrics import metric_rollup_rows
from pipeline.rollups.minute import (SKETCH_TABLES, RollupRules, add_series_row, fold_rollup_series, rollup_one_at,
                                     rollup_series)
from pipeline.sessions.events import session_view
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
    # the raw message these rows came from (None for a range message): ``range_messages`` needs its
    # topic, partition and offset, which ``source`` only holds as text
    origin: RawMessage | None = field(default=None, repr=False, compare=False)

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        headers = [(HEADER_TABLE, self.table.encode()), (HEADER_SOURCE, self.source.encode())]
        if self.line_sources is not None:
            headers.append((HEADER_SOURCE_LINES, self.line_sources))
        return headers


StoreKey = tuple[str, str, int]  # (table, raw topic, raw partition)


@dataclass(slots=True)
class StoredLines:
    """A batch's storage lines of one (table, raw topic, raw partition), one entry per raw message
    in processing order (parallel lists): ``storage_records`` cuts them into records as they are,
    instead of a ``StorageMessage`` per raw message and table regrouped afterwards (issue 14)."""

    partition_hint: int  # raw partition % storage partitions: the same for the whole group
    origins: list[RawMessage] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)  # one raw message's lines, newline-joined
    rows: list[int] = field(default_factory=list)


@dataclass
class ProcessedBatch:
    """What a batch of raw messages became, with the counts metrics need."""

    # Storage lines per (table, raw topic, raw partition), groups in order of first appearance, and
    # each entry's group in processing order (which ``storage`` replays).
    stored: dict[StoreKey, StoredLines] = field(default_factory=dict)
    stored_order: list[StoreKey] = field(default_factory=list)
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
    # Minute partial rows of first-time events, for alert evaluation (agents/alerts.py), merged per
    # series as they come (``fold_rollup_series``); the runner sends one message per project per batch
    # (``alert_partial_messages``).
    alert_series: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    late_rollup_events: int = 0  # arrived after their window + allowed lateness (still counted)

    @property
    def storage(self) -> list[StorageMessage]:
        """One storage message per raw message and table, in processing order (what a message
        became, for tests, benches and ``range_messages``; the worker cuts ``stored`` directly)."""
        cursors = {key: iter(zip(g.origins, g.values, g.rows)) for key, g in self.stored.items()}
        out = []
        for key in self.stored_order:
            origin, value, rows = next(cursors[key])
            out.append(StorageMessage(key[0], origin.source, origin.key, self.stored[key].partition_hint, value, rows,
                                      None, origin))
        return out

    @property
    def alert_rows(self) -> list[dict[str, Any]]:
        """The batch's alert partials, one row per series (= ``merge_rollup_rows`` of every message's)."""
        return list(self.alert_series.values())


def _decode(msg: RawMessage, now: datetime) -> tuple[list[Any], Sequence[DeadLetter]]:
    """(valid events, dead letters). First msgspec Structs generated from the contract
    (``pipeline/contract/fast.py``: a subset of what the contract accepts, the same events
    downstream, ~10x cheaper); what they decline is validated straight from bytes by pydantic (no
    intermediate dicts, no ``Decoded``: three lists, once per message); anything that fails that
    goes through ``decode_message``, which gives the same reasons as the collector and isolates
    each bad event of an array."""
    events = decode_events(msg.value)
    if events is not None:
        return events, ()
    return _decode_declined(msg, now)


def _decode_declined(msg: RawMessage, now: datetime) -> tuple[list[Any], Sequence[DeadLetter]]:
    """``_decode`` of a message the msgspec fast path declined."""
    raw = msg.value
    first = raw[:1]
    try:
        if first == b"[":
            return EVENT_BATCH_ADAPTER.validate_json(raw), ()
        if first == b"{":
            return [EVENT_ADAPTER.validate_json(raw)], ()
    except ValidationError:
        pass
    decoded = decode_message(raw, step=STEP, source=msg.source, now=now)
    return decoded.events, decoded.dead_letters


@dataclass(frozen=True, slots=True)
class BatchRules:
    """A batch's constants, worked out once instead of per message or per event; processors read
    their configuration (rollup rules, session topics) here."""

    storage_partitions: int
    session_topics: frozenset[str]
    rollups: RollupRules | None
    noise_rules: NoiseRules
    time_window: EventTimeWindow | None
    past_us: int = 0  # the time window in exact microseconds (datetime arithmetic is exact too)
    future_us: int = 0
    now_ms: int = 0

    @classmethod
    def of(cls, storage_partitions: int, now: datetime, session_topics: frozenset[str], rollups: RollupRules | None,
           noise_rules: NoiseRules, time_window: EventTimeWindow | None) -> "BatchRules":
        past_us = future_us = 0
        if time_window is not None:
            past_us = timedelta(days=time_window.max_past_days) // _MICROSECOND
            future_us = timedelta(seconds=time_window.max_future_s) // _MICROSECOND
        return cls(storage_partitions, session_topics, rollups, noise_rules, time_window, past_us, future_us,
                   epoch_us(now) // 1000)


_MICROSECOND = timedelta(microseconds=1)


Item = tuple[str, dict[str, Any], int, str]  # (table, row, event time in exact epoch ms, page)


@dataclass(slots=True)
class FirstTime:
    """One raw message's valid events not seen before, decoded once: what every processor reads.

    ``items`` holds one ``(table, row, event time in exact epoch ms, page)`` tuple per event, in
    message order (the shape ``rollup_rows_timed`` reads; the one projection of an event all
    processors share), ``by_table`` the same tuples per table (in message order, tables in order of
    first appearance); ``events`` the validated events themselves, for what the row lacks
    (sessions). Processors append storage lines to ``tables`` (one storage message per table) and
    everything else to the batch's ``ProcessedBatch``. Empty when all of a message's events were
    duplicates: processors still run, and add nothing. A processor that raises makes its message a
    dead letter (its ids stay marked as seen, as they did when rollups failed before processors).
    Processors read these lists and never change them (a message of one event shares one list
    between ``items`` and ``by_table``)."""

    msg: RawMessage
    arrived_ms: int  # the message's Kafka timestamp, else the batch's ``now``
    rules: BatchRules
    items: list[Item]
    by_table: dict[str, list[Item]]
    events: list[Any]
    tables: dict[str, list[bytes]]


Processor = Callable[[FirstTime, ProcessedBatch], None]


def store_rows(m: FirstTime, out: ProcessedBatch) -> None:
    """The raw rows (``errors``, ``vitals``, ...) as JSONEachRow lines, one storage message per table."""
    tables = m.tables
    dumps = orjson.dumps
    for table, items in m.by_table.items():
        tables[table] = [dumps(items[0][1])] if len(items) == 1 else [dumps(item[1]) for item in items]


_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS  # for sketches; a partial without one dumps faster without it


def _minute_rollups(alert_partials: bool) -> Processor:
    """The minute rollup processor, handing its partials to alert evaluation too or not (one
    function either way: it runs once per message)."""

    def roll_up(m: FirstTime, out: ProcessedBatch) -> None:
        rollups = m.rules.rollups
        items = m.items
        if rollups is None or not items:
            return
        # ``is_late_ms`` inlined (a call per event): late = arrived after its window's end + lateness
        window_ms, not_after = rollups.window_s * 1000, m.arrived_ms - rollups.lateness_ms
        if len(items) == 1:  # most messages: one row, no series dict (``rollup_one_at``)
            table, row, ts_ms, page = items[0]
            start_ms = ts_ms - ts_ms % window_ms
            if not_after > start_ms + window_ms:
                out.late_rollup_events += 1
            if table == "metrics":
                return
            key, partial = rollup_one_at(table, row, start_ms // 1000, page, rollups.checkout_patterns)
            m.tables[ROLLUP_TABLE] = [orjson.dumps(partial, option=_NON_STR_KEYS if table in SKETCH_TABLES else 0)]
            if alert_partials:  # the line is written: the row can be handed over
                merged = out.alert_series
                into = merged.get(key)
                if into is None:
                    merged[key] = partial
                else:
                    add_series_row(into, partial)
            return
        late = 0
        for _, _, ts_ms, _ in items:
            if not_after > ts_ms - ts_ms % window_ms + window_ms:
                late += 1
        out.late_rollup_events += late
        timed = [item for item in items if item[0] != "metrics"] if "metrics" in m.by_table else items
        if timed:
            series = rollup_series(timed, rollups)
            m.tables[ROLLUP_TABLE] = [orjson.dumps(r, option=_NON_STR_KEYS) for r in series.values()]
            if alert_partials:  # the lines are written: the rows can be handed over
                fold_rollup_series(out.alert_series, series)

    return roll_up


roll_up_minutes = _minute_rollups(alert_partials=False)
roll_up_minutes.__name__ = roll_up_minutes.__qualname__ = "roll_up_minutes"
roll_up_minutes.__doc__ = """Minute partials of the message's first-time events (metrics have their own) as
``rollups_minute`` lines, with the same origin as the rows, so the sink drops a replay of both
alike (see pipeline/rollups/minute.py); counts the late events."""
roll_up_minutes_with_alerts = _minute_rollups(alert_partials=True)
roll_up_minutes_with_alerts.__name__ = roll_up_minutes_with_alerts.__qualname__ = "roll_up_minutes_with_alerts"
roll_up_minutes_with_alerts.__doc__ = """``roll_up_minutes``, and the same partials for alert evaluation
(``out.alert_series``, merged per series as they come; agents/alerts.py reads them)."""


def roll_up_metrics(m: FirstTime, out: ProcessedBatch) -> None:
    """Minute partials of the message's custom metrics (``metrics_minute``, pipeline/rollups/metrics.py)."""
    metrics = m.by_table.get("metrics")
    rollups = m.rules.rollups
    if metrics and rollups is not None:
        partials = metric_rollup_rows([item[1] for item in metrics], rollups.window_s)
        m.tables[METRIC_ROLLUP_TABLE] = [orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in partials]


def record_issue_occurrences(m: FirstTime, out: ProcessedBatch) -> None:
    """First-time, non-noise errors per fingerprint, for issue status (``out.issue_records``, agents/issues.py)."""
    errors = m.by_table.get("errors")
    if errors:
        msg = m.msg
        out.issue_records += occurrence_records([item[1] for item in errors], msg.topic, msg.partition, msg.offset)


def collect_session_input(m: FirstTime, out: ProcessedBatch) -> None:
    """The session view of first-time events of the session topics, with their origin
    (``out.session_events``, per raw partition; ``pipeline/sessions``). The highest offset per
    session topic is noted for every message, decodable or not, before any processor runs."""
    msg = m.msg
    if msg.topic not in m.rules.session_topics:
        return
    sourced = out.session_events.setdefault(msg.partition, [])
    topic, offset = msg.topic, msg.offset
    dumps = orjson.dumps
    events = m.events
    if len(events) == 1:  # most messages: no zip, no loop
        event = events[0]
        _, _, ts_ms, page = m.items[0]
        sess = session_view(event, ts_ms, page, dumps(event.event_id)[1:-1].decode())
        if sess is not None:
            sourced.append(Sourced(topic, offset, sess))
        return
    for event, (_, _, ts_ms, page) in zip(events, m.items):
        # the id's canonical text, as ``str(uuid)`` writes it, formatted in C (str() is Python code)
        sess = session_view(event, ts_ms, page, dumps(event.event_id)[1:-1].decode())  # None for vitals, API calls
        if sess is not None:
            sourced.append(Sourced(topic, offset, sess))


# Processors run in the order given; it decides only the order of a message's storage messages.
# What the step makes when nobody else reads its output (benches, the report test): rows, rollups
# and (for ``session_topics``) session input.
DEFAULT_PROCESSORS: tuple[Processor, ...] = (store_rows, roll_up_minutes, roll_up_metrics, collect_session_input)
# The worker's (agents/ingest.py): also the alert partials and the issue occurrences its other agents read.
WORKER_PROCESSORS: tuple[Processor, ...] = (store_rows, roll_up_minutes_with_alerts, roll_up_metrics,
                                            record_issue_occurrences, collect_session_input)


def process_message(msg: RawMessage, dedup: RecentIds, storage_partitions: int, now: datetime,
                    out: ProcessedBatch, session_topics: frozenset[str] = frozenset(),
                    rollups: RollupRules | None = None, noise_rules: NoiseRules = DEFAULT_NOISE_RULES,
                    processors: Sequence[Processor] = DEFAULT_PROCESSORS,
                    time_window: EventTimeWindow | None = None) -> None:
    """Append what one raw message becomes to ``out``. Rows are built before any id is marked as
    seen, so a failure while building leaves the dedup state untouched. With ``time_window``, an
    event time outside it (around the message's Kafka timestamp) is rejected or clamped as the
    collector does: producers that write straight to Kafka are held to the same window."""
    rules = BatchRules.of(storage_partitions, now, session_topics, rollups, noise_rules, time_window)
    _process(msg, dedup, now, out, rules, tuple(processors), {})


def _process(msg: RawMessage, dedup: RecentIds, now: datetime, out: ProcessedBatch, rules: BatchRules,
             processors: tuple[Processor, ...], pages: dict[str, str]) -> None:
    """``process_message`` with the batch's constants worked out: decode the message once, compute
    each event's time (exact epoch microseconds), row and page once, drop duplicates, then hand the
    first-time events to each processor in turn and turn their lines into storage messages."""
    if msg.topic in rules.session_topics:
        upto = out.session_upto.setdefault(msg.partition, {})
        if msg.offset > upto.get(msg.topic, -1):
            upto[msg.topic] = msg.offset
    events: list[Any] | None = decode_events(msg.value)  # ``_decode``'s fast path, without its call
    dead_letters: Sequence[DeadLetter] = ()
    if events is None:
        events, dead_letters = _decode_declined(msg, now)
    if not events:
        out.dead_letters.extend(dead_letters)
        return
    arrived_ms = msg.timestamp_ms
    if arrived_ms is None or arrived_ms < 0:
        received_at, arrived_ms = now, rules.now_ms
        received_us = epoch_us(now)
    else:
        received_at = datetime.fromtimestamp(arrived_ms / 1000, timezone.utc)  # tz positional: ~0.3 us less
        received_us = arrived_ms * 1000
    if len(events) == 1 and not dead_letters:
        fresh = _one_event(msg, events, dedup, out, rules, pages, arrived_ms, received_at, received_us)
        if fresh is None:
            fresh = _events(msg, events, dedup, now, out, rules, pages, arrived_ms, received_at, received_us)
    else:
        fresh = _events(msg, events, dedup, now, out, rules, pages, arrived_ms, received_at, received_us)
        out.dead_letters.extend(dead_letters)
    for processor in processors:
        processor(fresh, out)
    tables = fresh.tables
    if not tables:
        return
    rows_out = out.rows_out
    stored = out.stored
    order = out.stored_order
    topic, partition = msg.topic, msg.partition
    for table, lines in tables.items():
        rows = len(lines)
        key = (table, topic, partition)
        group = stored.get(key)
        if group is None:
            group = stored[key] = StoredLines(partition % rules.storage_partitions)
        group.origins.append(msg)
        group.values.append(lines[0] if rows == 1 else b"\n".join(lines))
        group.rows.append(rows)
        order.append(key)
        rows_out[table] += rows


def _page_of_url(url: str, pages: dict[str, str]) -> str:
    """``page_of`` of a row without a route: the URL's path, cached per batch in ``pages`` (a row with
    a route is its own page, so callers write ``row["route"] or _page_of_url(...)``)."""
    page = pages.get(url)
    if page is None:
        page = pages[url] = page_of(None, url)
    return page


def _one_event(msg: RawMessage, events: list[Any], dedup: RecentIds, out: ProcessedBatch, rules: BatchRules,
               pages: dict[str, str], arrived_ms: int, received_at: datetime, received_us: int) -> FirstTime | None:
    """``_events`` of a message of one event (most of them, issue 14): the same work without the
    per-event lists and loops; None when the event is outside the time window (``_events`` decides)."""
    event = events[0]
    ts_us = epoch_us(event.timestamp)
    if rules.time_window is not None and not received_us - rules.past_us <= ts_us <= received_us + rules.future_us:
        return None
    table, row = event_to_row(event, received_at, rules.noise_rules)
    page = row["route"] or _page_of_url(row["url"], pages)
    # The row is built: only now is the id marked as seen (by the validated UUID, the row's event_id).
    new = dedup.first_time(event.event_id)
    out.events_in[event.type] += 1  # duplicates included
    if not new:
        out.duplicates += 1
        return FirstTime(msg, arrived_ms, rules, [], {}, [], {})
    items = [(table, row, ts_us // 1000, page)]
    return FirstTime(msg, arrived_ms, rules, items, {table: items}, events, {})


def _events(msg: RawMessage, events: list[Any], dedup: RecentIds, now: datetime, out: ProcessedBatch,
            rules: BatchRules, pages: dict[str, str], arrived_ms: int, received_at: datetime,
            received_us: int) -> FirstTime:
    """The message's first-time events with their projection, after the time window check (out of
    it: a dead letter, or clamped); duplicates counted."""
    window = rules.time_window
    built = _projections(events, received_at, rules, pages, received_us if window is not None else None)
    if built is None:  # an event outside the window: rare; the others are built again
        events = _in_time_window(events, received_at, window, msg, now, out)  # type: ignore[arg-type]
        built = _projections(events, received_at, rules, pages, None)
    items, by_table = built  # type: ignore[misc]
    # Every row is built: only now are ids marked as seen (by the validated UUID, the row's event_id).
    first_time = dedup.first_time
    events_in = out.events_in
    is_new = []
    for event in events:
        is_new.append(first_time(event.event_id))
        events_in[event.type] += 1  # duplicates included
    if False not in is_new:
        return FirstTime(msg, arrived_ms, rules, items, by_table, events, {})
    out.duplicates += is_new.count(False)
    items = [item for item, new in zip(items, is_new) if new]
    by_table = {}
    for item in items:
        by_table.setdefault(item[0], []).append(item)
    return FirstTime(msg, arrived_ms, rules, items, by_table, [e for e, new in zip(events, is_new) if new], {})


def _projections(events: list[Any], received_at: datetime, rules: BatchRules, pages: dict[str, str],
                 received_us: int | None) -> tuple[list[Item], dict[str, list[Item]]] | None:
    """Each event's ``(table, row, time, page)``, in message order and per table, in one pass (the
    time computed in line: a call per event less); None as soon as an event's time is outside the
    window around ``received_us`` (None: no window)."""
    lo = hi = 0
    if received_us is not None:
        lo, hi = received_us - rules.past_us, received_us + rules.future_us
    noise_rules = rules.noise_rules
    items: list[Item] = []
    by_table: dict[str, list[Item]] = {}
    for event in events:
        delta = event.timestamp - EPOCH  # ``epoch_us`` in line
        ts_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        if received_us is not None and not lo <= ts_us <= hi:
            return None
        table, row = event_to_row(event, received_at, noise_rules)
        item = (table, row, ts_us // 1000, row["route"] or _page_of_url(row["url"], pages))
        items.append(item)
        same_table = by_table.get(table)
        if same_table is None:
            by_table[table] = [item]
        else:
            same_table.append(item)
    return items, by_table


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
            out.dead_letters.append(DeadLetter.of(EVENT_ADAPTER.dump_json(as_contract(e)), step=STEP, source=msg.source,
                                                  reason=checked.reason or "timestamp out of range",
                                                  project=e.project, event_id=str(e.event_id), now=now))
    return kept


def process_batch(messages: Iterable[RawMessage], dedup: RecentIds, storage_partitions: int,
                  now: datetime, session_topics: frozenset[str] = frozenset(),
                  rollups: RollupRules | None = None, noise_rules: NoiseRules = DEFAULT_NOISE_RULES,
                  processors: Sequence[Processor] = DEFAULT_PROCESSORS,
                  time_window: EventTimeWindow | None = None) -> ProcessedBatch:
    """Process raw messages in order. An unexpected exception on one message turns that message
    into a dead letter carrying the exception text; the others continue. ``processors`` choose what
    first-time events become besides dead letters and counts: the default makes rows, rollups (with
    ``rollups``) and session input (for ``session_topics``); the worker's ``WORKER_PROCESSORS`` also
    the issue occurrences (``out.issue_records``) and alert partials (``out.alert_rows``) its other
    agents read."""
    out = ProcessedBatch()
    rules = BatchRules.of(storage_partitions, now, session_topics, rollups, noise_rules, time_window)
    chosen = tuple(processors)
    pages: dict[str, str] = {}  # page_of per URL without a route, for this batch only (bounded by it)
    for msg in messages:
        try:
            _process(msg, dedup, now, out, rules, chosen, pages)
        except Exception as exc:  # noqa: BLE001 - the boundary: never lose the batch for one message
            out.dead_letters.append(dead_letter_for(msg, f"worker error: {type(exc).__name__}: {exc}", now))
    return out


def storage_records(out: ProcessedBatch, max_bytes: int, now: datetime
                    ) -> tuple[list[StorageMessage], list[DeadLetter]]:
    """``range_messages(out.storage, None, max_bytes, now)``, cut straight from the lines
    ``process_batch`` grouped as it went: the same records, without a storage message per raw
    message and table and a second pass to group them (the worker's path)."""
    for group in out.stored.values():
        if max(map(len, group.values)) > max_bytes:  # rare: a message's rows are dropped whole
            return range_messages(out.storage, None, max_bytes, now)
    records: list[StorageMessage] = []
    for (table, topic, partition), group in out.stored.items():
        offsets = [m.offset for m in group.origins]
        _cut(records, table, topic, partition, offsets, group.values, group.rows, [group.partition_hint],
             max_bytes)
    return records, []


def range_messages(per_message: list[StorageMessage], by_source: Mapping[str, RawMessage] | None, max_bytes: int,
                   now: datetime) -> tuple[list[StorageMessage], list[DeadLetter]]:
    """A batch's per-message storage output as few records as possible: one per (table, raw topic,
    raw partition), each naming its offset range and every line's offset (the sink drops exactly the
    lines a replay repeats), cut where a record would pass ``max_bytes``. One raw message's lines
    always stay in one record (the sink's mark would otherwise drop the second half); a raw message
    whose rows for one table alone pass ``max_bytes`` becomes a dead letter, and so do its other
    tables' rows, so that message is either stored whole or not at all. ``by_source`` (raw messages
    by source) is read only for storage messages that do not carry their ``origin``.

    Written for speed (it runs once per batch over every storage message): one pass to group, the
    cuts found by bisecting the running sizes, the line sources formatted in C where each raw
    message gave one line."""
    groups = _group(per_message, by_source, max_bytes)
    too_big = {m.source: m for m in per_message if len(m.value) > max_bytes} if groups is None else {}
    if too_big:  # rare: group again without them (a group's place is that of its first message kept)
        groups = _group([m for m in per_message if m.source not in too_big], by_source, max_bytes)
    reason = (f"worker output too large: the rows of this message exceed PULSE_WORKER_MAX_RECORD_BYTES "
              f"({max_bytes} bytes)")
    dead = [dead_letter_for(_origin(too_big[src], by_source), reason, now) for src in sorted(too_big)]
    out: list[StorageMessage] = []
    for (table, topic, partition), (items, offsets, values) in groups.items():  # type: ignore[union-attr]
        _cut(out, table, topic, partition, offsets, values, [m.rows for m in items],
             [m.partition_hint for m in items], max_bytes)
    return out, dead


def _cut(out: list[StorageMessage], table: str, topic: str, partition: int, offsets: list[int], values: list[bytes],
         rows: list[int], hints: list[int], max_bytes: int) -> None:
    """Append one group's records to ``out``: its raw messages in offset order, as many per record
    as fit in ``max_bytes`` (at least one). ``hints``: each message's storage partition, or one for all."""
    if not all(map(le, offsets, islice(offsets, 1, None))):  # a poll's records are in offset order already
        order = sorted(range(len(offsets)), key=offsets.__getitem__)
        offsets, values, rows = [offsets[i] for i in order], [values[i] for i in order], [rows[i] for i in order]
        if len(hints) > 1:
            hints = [hints[i] for i in order]
    # ends[j] - ends[i]: bytes of messages i..j-1, a newline after each
    ends = list(map(add, accumulate(map(len, values), initial=0), count()))
    n, i = len(values), 0
    while i < n:
        j = max(bisect_right(ends, ends[i] + max_bytes) - 1, i + 1)  # as many as fit, at least one
        out.append(_range_message(table, topic, partition, hints[i] if len(hints) > 1 else hints[0],
                                  offsets[i:j], values[i:j], rows[i:j]))
        i = j


# storage messages, their raw offsets and their values
Group = tuple[list[StorageMessage], list[int], list[bytes]]


def _group(per_message: list[StorageMessage], by_source: Mapping[str, RawMessage] | None,
           max_bytes: int) -> dict[tuple[str, str, int], Group] | None:
    """Storage messages per (table, raw topic, raw partition), in order of first appearance; None
    if one of them alone passes ``max_bytes``. One pass: each message is touched once."""
    groups: dict[tuple[str, str, int], Group] = {}
    for m in per_message:
        value = m.value
        if len(value) > max_bytes:
            return None
        raw = m.origin
        if raw is None:
            raw = by_source[m.source]  # type: ignore[index]
        key = (m.table, raw.topic, raw.partition)
        group = groups.get(key)
        if group is None:
            groups[key] = ([m], [raw.offset], [value])
        else:
            group[0].append(m)
            group[1].append(raw.offset)
            group[2].append(value)
    return groups


def _origin(m: StorageMessage, by_source: Mapping[str, RawMessage] | None) -> RawMessage:
    return m.origin if m.origin is not None else by_source[m.source]  # type: ignore[index]


def _range_message(table: str, topic: str, partition: int, partition_hint: int, offsets: list[int],
                   values: list[bytes], rows: list[int]) -> StorageMessage:
    """One record of raw messages' lines (``offsets`` in order, ``rows`` lines each); its line
    sources are one run per raw message, so they are encoded from (offset, rows) pairs, not from a
    list with one offset per line."""
    if min(rows) < 1:
        bad = next(i for i, n in enumerate(rows) if n < 1)
        raise ValueError(f"a storage message without lines from offset {offsets[bad]}")
    first, last = offsets[0], offsets[-1]
    source = encode_source_range(topic, partition, first, last).decode()  # raises on a negative offset
    if all(map(lt, offsets, islice(offsets, 1, None))):
        # strictly increasing (each raw message once), non-negative, rows >= 1: what encode_line_runs
        # checks; then the same text, formatted in C
        if rows.count(1) == len(rows):
            line_sources = ("x1,".join(map(str, offsets)) + "x1").encode()
        else:
            line_sources = ",".join(map("{}x{}".format, offsets, rows)).encode()
    else:
        runs: list[tuple[int, int]] = []
        for offset, lines in zip(offsets, rows):
            if runs and runs[-1][0] == offset:  # the same raw message twice: encode_line_sources merged these too
                runs[-1] = (offset, runs[-1][1] + lines)
            else:
                runs.append((offset, lines))
        line_sources = encode_line_runs(runs)
    return StorageMessage(table, source, None, partition_hint, b"\n".join(values), sum(rows), line_sources)


def dead_letter_for(msg: RawMessage, reason: str, now: datetime) -> DeadLetter:
    """The whole raw message as a dead letter (used for unexpected failures)."""
    return DeadLetter.of(msg.value, step=STEP, source=msg.source, reason=reason[:2000], now=now)
