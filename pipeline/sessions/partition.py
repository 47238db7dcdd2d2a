"""One raw partition's sessions, with the bookkeeping that makes at-least-once replays exact.

The worker keeps this state in a compacted changelog: after each batch it writes one record per
touched session key (its open session, marks and the events still buffered behind the watermark)
and then one record for the partition, all into the same changelog partition (Kafka keeps their
order). Records of layout 2 (buffered events in one chunk record per raw message) are read on an
upgrade and deleted once the session's own record holds their events. After a crash the table is restored to some prefix of those writes and the
raw topics replay from the last committed offset. Two marks make the replay exact:

* the partition record's ``marks``: the highest raw offset per topic already processed. Written
  last in a batch, so if it is present every record before it is too. Replayed events at or below
  it are skipped.
* each session record's own ``marks``: events at or below them are already inside that session's
  state, even when the batch's partition record did not make it.

A closed session's key is not deleted at once: its record stays (a *tombstone* with marks) until a
later batch, when the partition record written after it covers its offsets; only then is the key
deleted. Without that, a replay of a closed session's last events would reopen it half-empty.

Outputs (session summaries, page views, rage and dead clicks) are deterministic functions of the
events, so a replay re-emits identical rows; the ClickHouse tables collapse them (ReplacingMergeTree
on the natural key). The caller sends outputs *before* it writes the changelog records: a crash in
between replays and re-emits, never loses.

Example::

    part = PartitionSessions(0, SessionRules(), lateness_ms=60_000)
    step = part.process([Sourced("pulse.raw.actions", 17, session_event)], {"pulse.raw.actions": 17})
    step.emitted.sessions, step.late, step.writes  # writes: [(key, bytes | None), ...] in order
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from pipeline.sessions.codec import (decode_chunk, decode_partition, decode_session, encode_partition,
                                     encode_session)
from pipeline.sessions.sessionizer import Emitted, SessionEvent, Sessionizer, SessionRules

NEVER = -(2**62)
# An event's fate in ``process``: below the partition's marks, already inside its session's state, taken.
_SKIPPED, _IN_STATE, _TAKEN = 0, 1, 2


@dataclass(slots=True)  # not frozen: built per event on the hot path (frozen __init__ costs ~0.3 us more); never mutated
class Sourced:
    """A session event with the raw topic and offset it came from."""

    topic: str
    offset: int
    event: SessionEvent


@dataclass
class Step:
    emitted: Emitted = field(default_factory=Emitted)
    late: list[SessionEvent] = field(default_factory=list)
    skipped: int = 0  # replayed events already inside the state
    overflowed: int = 0  # of ``late``: refused because their session held max_buffered_events already
    writes: list[tuple[str, bytes | None]] = field(default_factory=list)  # apply in this order


CHUNK_SEP = "\x1f"  # layout 2: session key + CHUNK_SEP + "<topic>\x1f<offset>" = events buffered from one message


Marks = tuple  # (topic, offset, topic, offset, ...): a session's marks; a dict per session cost ~200 B


def mark_of(marks: Marks, topic: str) -> int:
    """The offset ``marks`` hold for ``topic``, -1 if none."""
    for i in range(0, len(marks), 2):
        if marks[i] == topic:
            return marks[i + 1]  # type: ignore[no-any-return]
    return -1


def with_mark(marks: Marks, topic: str, offset: int) -> Marks:
    for i in range(0, len(marks), 2):
        if marks[i] == topic:
            return (*marks[:i + 1], offset, *marks[i + 2:])
    return (*marks, topic, offset)


def marks_dict(marks: Marks) -> dict[str, int]:
    return dict(zip(marks[::2], marks[1::2]))


def state_key(partition: int, session_id: str = "", chunk: str = "") -> str:
    """Table key: ``"<partition>|<session_id>"``; the partition's own record has an empty session
    id; buffered events of one raw message are ``"<partition>|<session_id>\x1f<topic>\x1f<offset>"``."""
    return f"{partition}|{session_id}{CHUNK_SEP + chunk if chunk else ''}"


def split_key(key: str) -> tuple[int, str]:
    p, _, sid = key.partition("|")
    return int(p), sid


class PartitionSessions:
    """Sessions of one raw partition (the actions and errors topics are co-partitioned by session_id)."""

    def __init__(self, partition: int, rules: SessionRules = SessionRules(), lateness_ms: int = 60_000) -> None:
        self.partition = partition
        self.rules = rules
        self.lateness_ms = lateness_ms
        self.sessionizer = Sessionizer(rules)
        self.marks: dict[str, int] = {}  # topic -> highest raw offset processed
        self.max_ts: dict[str, int] = {}  # topic -> highest event time seen on it
        self._session_marks: dict[str, Marks] = {}  # session key -> offset inside its state per topic
        self._tombstones: set[str] = set()  # closed keys whose record still exists
        # The marks of the partition record written last (or restored): a tombstone is deleted only once
        # they cover its marks, since a replay starts from them.
        self._written_marks: dict[str, int] = {}
        self._upgraded: list[str] = []  # restored layout-2 chunk records, deleted after the next session records
        self._dirty_partition = False
        # True while some session's marks are above the partition's (a restore after a crash between a
        # batch's session records and its partition record): only then can an event above the
        # partition's marks already be inside its session's state, so only then ``process`` checks.
        self._sessions_ahead = False

    # ------------------------------------------------------------ restore
    @classmethod
    def restore(cls, partition: int, records: Iterable[tuple[str, bytes]], rules: SessionRules = SessionRules(),
                lateness_ms: int = 60_000) -> "PartitionSessions":
        """Rebuild from table records ``(session_id or "", bytes)`` of this partition."""
        part = cls(partition, rules, lateness_ms)
        sz = part.sessionizer
        chunks: dict[str, list[tuple[str, bytes]]] = {}
        applied: dict[str, int] = {}
        for sid, raw in records:
            if sid == "":
                wm, part.max_ts, part.marks = decode_partition(raw)
                sz.watermark_ms = max(sz.watermark_ms, wm)
                continue
            if CHUNK_SEP in sid:  # layout 2
                owner, _, chunk = sid.partition(CHUNK_SEP)
                chunks.setdefault(owner, []).append((chunk, raw))
                continue
            active, marks, applied[sid], buffered = decode_session(sid, raw, rules)
            part._session_marks[sid] = tuple(x for kv in marks.items() for x in kv)
            if active is not None:
                sz._active[sid] = active
                heapq.heappush(sz._deadlines, (sz._close_at(active), sid))
            if buffered:
                sz._pending[sid] = buffered
        for sid, items in chunks.items():
            for chunk, raw in items:
                # Deleted either way: applied already, orphaned (its batch's session record never
                # landed), or its events go into the session's own record, written before the deletion.
                part._upgraded.append(state_key(partition, sid, chunk))
                wm = applied.get(sid)
                events = [e for e in decode_chunk(sid, raw) if wm is not None and e.ts_ms > wm]
                if events:
                    sz._pending.setdefault(sid, []).extend(events)
                    sz.dirty.add(sid)
        for sid in applied:
            if sid not in sz._active and sid not in sz._pending:
                part._tombstones.add(sid)
        part._written_marks = dict(part.marks)
        part._sessions_ahead = part._any_session_ahead()
        return part

    def _any_session_ahead(self) -> bool:
        marks = self.marks
        return any(m[i + 1] > marks.get(m[i], -1) for m in self._session_marks.values() for i in range(0, len(m), 2))

    # ------------------------------------------------------------ input
    def process(self, events: Iterable[Sourced], processed_upto: Mapping[str, int],
                lagging: Collection[str] = ()) -> Step:
        """Take a batch of this partition's session events (in offset order per topic).

        ``processed_upto``: highest raw offset per topic in the batch for this partition (at least every
        event's), including messages that held no session event (they count for "caught up"). ``lagging``: topics with
        unread messages. The topics are read independently, so one can run hours ahead of another
        in a backlog; the watermark follows the slowest lagging topic (a caught-up topic does not
        hold it back), else every event of the slow topic would be late.
        """
        step = Step()
        accepted: list[SessionEvent] = []
        take = accepted.append
        marks, session_marks, max_ts = self.marks, self._session_marks, self.max_ts
        before: dict[str, Marks] = {}  # session marks as the step found them
        sessions_ahead = self._sessions_ahead
        skipped = 0
        # The previous event's message and session, and what became of it: the next event of the same
        # message and session (an SDK flush holds several) meets the same marks, so the same fate.
        last_topic, last_offset, last_sid, last_fate = None, -1, None, _SKIPPED
        # The topic of the run of events at hand, its partition mark and its newest event time so far
        # (written back when the run ends): most events come in long runs of one topic.
        current: str | None = None
        floor, newest = -1, NEVER
        for src in events:
            topic, offset, e = src.topic, src.offset, src.event
            sid = e.session_id
            if offset == last_offset and sid == last_sid and topic == last_topic:
                if last_fate == _SKIPPED:
                    skipped += 1
                    continue
                if e.ts_ms > newest:
                    newest = e.ts_ms
                if last_fate == _TAKEN:
                    take(e)
                else:
                    skipped += 1
                continue
            last_topic, last_offset, last_sid = topic, offset, sid
            if topic != current:
                if current is not None and newest > max_ts.get(current, NEVER):
                    max_ts[current] = newest
                current, floor, newest = topic, marks.get(topic, -1), max_ts.get(topic, NEVER)
            if offset <= floor:
                skipped += 1
                last_fate = _SKIPPED
                continue
            if e.ts_ms > newest:
                newest = e.ts_ms
            own = session_marks.get(sid, ())
            if sessions_ahead:  # else no session's marks reach above the partition's, which ``offset`` passed
                base = before.get(sid)
                if base is None:
                    base = before[sid] = own  # a tuple: never changed in place
                # One message holds many events at one offset: compare with the marks before this step.
                if (base[1] if base and base[0] == topic else mark_of(base, topic)) >= offset:
                    skipped += 1
                    last_fate = _IN_STATE
                    continue
            if not own:
                if offset > -1:
                    session_marks[sid] = (topic, offset)
            elif own[0] == topic:
                if offset > own[1]:
                    session_marks[sid] = (topic, offset, *own[2:]) if len(own) > 2 else (topic, offset)
            elif offset > mark_of(own, topic):
                session_marks[sid] = with_mark(own, topic, offset)
            last_fate = _TAKEN
            take(e)
        if current is not None and newest > max_ts.get(current, NEVER):
            max_ts[current] = newest
        step.skipped = skipped
        for topic, offset in processed_upto.items():
            if offset > marks.get(topic, -1):
                marks[topic] = offset
                self._dirty_partition = True
        if sessions_ahead:  # sessions take offsets up to ``processed_upto`` only: once behind, they stay so
            self._sessions_ahead = self._any_session_ahead()
        overflowed = self.sessionizer.overflowed
        step.late = self.sessionizer.add(accepted)
        step.overflowed = self.sessionizer.overflowed - overflowed
        for e in step.late:  # late events are not in any state, but their offsets are processed
            self.sessionizer.dirty.add(e.session_id)
        step.emitted = self.sessionizer.advance(self.event_time_ms(lagging) - self.lateness_ms)
        self._collect_writes(step)
        return step

    def advance_to(self, watermark_ms: int) -> Step:
        """The timer's way in: a quiet, caught-up partition follows the wall clock."""
        step = Step()
        if watermark_ms > self.sessionizer.watermark_ms:
            # Only a step that closed something writes state: a restored, older watermark is
            # simply advanced again by the next tick.
            step.emitted = self.sessionizer.advance(watermark_ms)
            self._collect_writes(step)
        return step

    def caught_up(self, end_offsets: Mapping[str, int]) -> bool:
        """True when every message in the log (``end_offsets``: next offset per topic) is processed."""
        return all(end - 1 <= self.marks.get(topic, -1) for topic, end in end_offsets.items())

    def event_time_ms(self, lagging: Collection[str] = ()) -> int:
        """How far event time has progressed on this partition (before subtracting lateness)."""
        slow = [self.max_ts.get(t, NEVER) for t in lagging]
        if slow:
            return min(slow)
        return max(self.max_ts.values(), default=NEVER)

    @property
    def watermark_ms(self) -> int:
        return self.sessionizer.watermark_ms

    @property
    def active_sessions(self) -> int:
        return self.sessionizer.active_sessions

    @property
    def buffered_events(self) -> int:
        return sum(len(v) for v in self.sessionizer._pending.values())

    # ------------------------------------------------------------ output
    def _collect_writes(self, step: Step) -> None:
        """The step's state records, in the order that keeps every prefix consistent: deletions of
        earlier tombstones, one record per session key the step touched (its events still buffered
        inside it), deletions of layout-2 chunk records restored before, and last the partition record."""
        sz = self.sessionizer
        writes = step.writes
        dirty = sz.dirty
        p = self.partition
        # Tombstones from earlier batches whose marks the partition record written since covers: delete.
        # One restored above that record's marks (a crash before it) stays, marks and all, until a
        # partition record covers it: a replay of its last events must still find them inside its state.
        kept: set[str] = set()
        written = self._written_marks
        for sid in sorted(self._tombstones):  # sorted: the same records in the same order on every run
            if sid not in dirty:
                m = self._session_marks.get(sid, ())
                if any(m[i + 1] > written.get(m[i], -1) for i in range(0, len(m), 2)):
                    kept.add(sid)
                    continue
                writes.append((state_key(p, sid), None))
                self._session_marks.pop(sid, None)
        self._tombstones = kept  # a fresh set: a cleared one keeps its peak capacity
        wm = sz.watermark_ms
        pending, active_sessions, session_marks = sz._pending, sz._active, self._session_marks
        prefix = f"{p}|"  # state_key(p, sid), inlined below
        append = writes.append
        tombstone = self._tombstones.add
        for sid in sorted(dirty):
            active = active_sessions.get(sid)
            buffered = pending.get(sid)
            marks = session_marks.get(sid, ())
            append((prefix + sid, encode_session(active, {marks[0]: marks[1]} if len(marks) == 2 else marks_dict(marks),
                                                 wm, buffered)))
            if active is None and buffered is None:
                tombstone(sid)
        writes.extend((key, None) for key in self._upgraded)
        self._upgraded = []
        if writes or self._dirty_partition:
            writes.append((state_key(p), encode_partition(wm, self.max_ts, self.marks)))
            self._written_marks = dict(self.marks)
        dirty.clear()
        self._dirty_partition = False
        if not self._session_marks:  # everything closed: give the peak-sized tables back
            self._session_marks, sz._active, sz._pending, sz._deadlines = {}, {}, {}, []
            sz._pending_chars = {}

