"""The ingest step's processors: decode once, then what each dataset gets from the first-time events.

``test_worker_outputs_are_pinned`` pins every byte the worker's step makes from messages of every
shape (1 and 5-event flushes, metrics, API calls, noise errors, duplicates, bad events, times out of
the window, no Kafka timestamp): the digest was taken with the step as it was before the processors
(one function with a ``downstream`` switch) and must not move in a refactoring. When a change of the
rows is meant, print the new digest (``canonical_digest``) and say why in the commit. Re-pinned once
(branch outputs-cpu): the step now merges alert partials per series as it goes, so ``canonical``
compares them merged, as the runner sends them; that digest was the same for the step before
(``d9eb214``) and after the change.
``bench/ingest_identity.py`` compares a revision and this checkout the same way on far more traffic.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson

from pipeline.ingest.dedup import RecentIds
from pipeline.ingest.process import (DEFAULT_PROCESSORS, ROLLUP_TABLE, WORKER_PROCESSORS, FirstTime, ProcessedBatch,
                                     RawMessage, collect_session_input, process_batch, store_rows)
from pipeline.ingest.validate import EventTimeWindow
from pipeline.rollups.minute import RollupRules, merge_rollup_rows
from tests.events import ev

NOW = datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=timezone.utc)
TS_MS = 1_795_428_000_250  # 2026-11-23T10:00:00.250Z, the messages' Kafka timestamp
SESSION_TOPICS = frozenset({"raw.actions", "raw.errors"})
# sha256 of ``canonical`` of ``worker_batch`` (see the module docstring before changing it)
PINNED_DIGEST = "ca2b403753953271a37c25b3cf73f4cb568b07160af0f26925e434d35f9c540f"


def messages() -> list[RawMessage]:
    """Two polls' worth of messages of every shape, with ids from a seeded generator."""
    rnd = random.Random(14)

    def e(type_: str, **kw: Any) -> dict[str, Any]:
        return ev(type_, event_id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                  url="https://shop.example.com/cart?id=1", release="1.0",
                  user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Gecko/20100101 Firefox/121.0", **kw)

    metric = e("vital", type="metric", metric={"name": "checkout.ms", "value": 3.5, "tags": {"tier": "gold"}})
    metric.pop("vital")
    click, vital, api = e("action"), e("vital", route="/cart/:id"), e("api")
    error = e("error", error={"exception_type": "TypeError", "message": "x is undefined", "fingerprint": ["a"]})
    noise = e("error", error={"exception_type": "Error", "message": "ResizeObserver loop limit exceeded"})
    out = []
    values: list[tuple[str, Any, int | None]] = [
        ("raw.actions", click, TS_MS),  # 1-event flush
        ("raw.vitals", [vital, api, metric, e("vital", timestamp="2026-11-23T08:00:00Z"), e("api")], TS_MS),  # 5
        ("raw.actions", [click, e("action", consent=False)], TS_MS),  # a duplicate beside a new event
        ("raw.errors", [error, noise, e("error")], None),  # no Kafka timestamp: received now
        ("raw.errors", [error], TS_MS),  # all duplicates
        ("raw.vitals", [e("vital", vital={"name": "LCP", "value": "fast"}), e("vital")], -1),  # a bad event
        ("raw.actions", b'{"event_id": "cut', TS_MS),  # not JSON
        ("raw.actions", [e("action", timestamp="2020-01-01T00:00:00Z"), e("action", timestamp="2027-01-01T00:00:00Z"),
                         e("action", timestamp="2026-11-23T10:00:01Z")], TS_MS),  # out of the window
        ("raw.vitals", e("vital", timestamp="2026-11-22T10:00:00Z"), TS_MS),  # late for its minute
    ]
    for offset, (topic, value, ts) in enumerate(values):
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        out.append(RawMessage(topic, offset % 3, offset, f"s-{offset % 2}".encode(), raw, ts))
    return out


def canonical(out: ProcessedBatch) -> bytes:
    """Every field of a batch's output as bytes, in order (byte-identity includes dict order)."""
    parts = [
        repr([(s.table, s.source, s.key, s.partition_hint, s.value, s.rows, s.line_sources) for s in out.storage]),
        repr([d.to_row_json() for d in out.dead_letters]),
        repr(list(out.events_in.items())), repr(list(out.rows_out.items())), repr(out.duplicates),
        repr([(p, [(s.topic, s.offset, repr(s.event)) for s in evs]) for p, evs in out.session_events.items()]),
        repr(list(out.session_upto.items())), repr(out.issue_records),
        # the alert partials as the runner sends them: merged per series (the step merges as it goes)
        repr([orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in merge_rollup_rows(out.alert_rows)]),
        repr(out.late_rollup_events),
    ]
    return "\n".join(parts).encode()


def worker_batch(**processors: Any) -> list[ProcessedBatch]:
    """The worker's step over ``messages()`` in two polls sharing one dedup memory."""
    dedup, msgs = RecentIds(1000), messages()
    return [process_batch(msgs[i:i + 5], dedup, 2, NOW, SESSION_TOPICS, RollupRules(), time_window=EventTimeWindow(),
                          **processors) for i in (0, 5)]


def canonical_digest(**processors: Any) -> str:
    return hashlib.sha256(b"\n".join(canonical(out) for out in worker_batch(**processors))).hexdigest()


def test_worker_outputs_are_pinned() -> None:
    assert canonical_digest(processors=WORKER_PROCESSORS) == PINNED_DIGEST


def test_the_inputs_reach_every_output() -> None:
    """Guard against a vacuous pin: every kind of output is present in what is pinned."""
    first, second = worker_batch(processors=WORKER_PROCESSORS)
    both = first.rows_out + second.rows_out
    assert {"actions", "vitals", "api_calls", "metrics", "errors", ROLLUP_TABLE, "metrics_minute"} <= set(both)
    assert first.duplicates + second.duplicates == 2 and first.late_rollup_events + second.late_rollup_events >= 1
    assert first.issue_records and first.alert_rows and first.session_events and second.session_events
    reasons = [d.reason for out in (first, second) for d in out.dead_letters]
    assert len(reasons) == 4 and sum("timestamp out of range" in r for r in reasons) == 2


def test_processors_choose_the_outputs() -> None:
    """The default set leaves out what only the worker's other agents read; rows alone are rows alone."""
    default = worker_batch(processors=DEFAULT_PROCESSORS)
    assert not any(out.issue_records or out.alert_rows for out in default)
    worker = worker_batch(processors=WORKER_PROCESSORS)
    for d, w in zip(default, worker):
        assert [canonical(d).split(b"\n")[i] for i in (0, 1, 5, 9)] == [canonical(w).split(b"\n")[i] for i in (0, 1, 5, 9)]
    rows_only = worker_batch(processors=(store_rows,))
    tables = {s.table for out in rows_only for s in out.storage}
    assert tables == {"actions", "vitals", "api_calls", "metrics", "errors"}
    assert not any(out.session_events.get(0) or out.late_rollup_events for out in rows_only)
    # dedup, dead letters and the session offsets do not depend on the processors
    assert [(o.duplicates, len(o.dead_letters), o.session_upto) for o in rows_only] == \
        [(o.duplicates, len(o.dead_letters), o.session_upto) for o in worker]


def test_a_processor_sees_first_time_events_once_with_their_projection() -> None:
    seen: list[FirstTime] = []
    msgs = messages()
    process_batch(msgs, RecentIds(1000), 2, NOW, processors=(lambda m, out: seen.append(m),))
    by_offset = {m.msg.offset: m for m in seen}
    assert sorted(by_offset) == [0, 1, 2, 3, 4, 5, 7, 8]  # offset 6 is not JSON: no events, no processors
    assert [i[0] for i in by_offset[1].items] == ["vitals", "api_calls", "metrics", "vitals", "api_calls"]
    assert [i[3] for i in by_offset[1].items][:2] == ["/cart/:id", "/cart"]  # route, else the URL's path
    assert by_offset[1].items[0][2] == TS_MS + 250  # ev()'s 2026-11-23T10:00:00.5Z in exact epoch ms
    assert len(by_offset[2].events) == 1 and by_offset[4].items == [] and by_offset[4].events == []
    assert by_offset[3].arrived_ms == 1_795_428_005_123  # no Kafka timestamp: the batch's now
    assert all(len(m.items) == len(m.events) for m in seen)


def test_a_failing_processor_dead_letters_its_message_only() -> None:
    def boom(m: FirstTime, out: ProcessedBatch) -> None:
        if m.msg.offset == 1:
            raise RuntimeError("broken processor")

    out = process_batch(messages()[:3], RecentIds(1000), 2, NOW, processors=(store_rows, boom))
    assert [d.source for d in out.dead_letters] == ["raw.vitals:1:1"]
    assert "RuntimeError: broken processor" in out.dead_letters[0].reason
    assert [s.source for s in out.storage] == ["raw.actions:0:0", "raw.actions:2:2"]


def test_session_input_only_for_session_topics_and_first_time_events() -> None:
    msgs = messages()
    out = process_batch([msgs[0], msgs[1], msgs[2]], RecentIds(1000), 2, NOW, frozenset({"raw.actions"}),
                        processors=(collect_session_input,))
    assert [(s.topic, s.offset) for evs in out.session_events.values() for s in evs] == [
        ("raw.actions", 0), ("raw.actions", 2)]  # the click again at offset 2 is a duplicate
    assert out.storage == [] and out.session_upto == {0: {"raw.actions": 0}, 2: {"raw.actions": 2}}
