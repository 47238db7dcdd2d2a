"""The shortcuts of the sessions stage's hot path (issue 14, sessions-cpu) decide exactly what the plain
rules decide: replay marks per message and session, the buffering bound in characters, the record's
compression of repeated fields. ``bench/session_identity.py`` compares whole runs with an older revision."""

from __future__ import annotations

import orjson

from pipeline.sessions.clicks import Click
from pipeline.sessions.codec import decode_session, encode_partition, encode_session
from pipeline.sessions.partition import PartitionSessions, Sourced
from pipeline.sessions.sessionizer import SessionEvent, SessionRules

ACTIONS, ERRORS = "raw.actions", "raw.errors"
T0 = 1_800_000_000_000


def ev(sid: str, i: int, page: str = "/p", **kw: object) -> SessionEvent:
    return SessionEvent(sid, T0 + i, f"{sid}-{i}", "pageview", page, "shop", **kw)  # type: ignore[arg-type]


def test_events_of_one_message_share_its_fate_when_sessions_interleave() -> None:
    """After a crash, session A's record (offset 5 inside it) landed but the partition record (offset 3)
    did not. Replayed messages 4 and 5 hold A's events (inside A's state: skipped, yet they count for
    the topic's event time) and B's (new: taken); message 6 is new for both; A, B and A again
    alternate inside one message."""
    wm = T0 - 1
    part = PartitionSessions.restore(0, [("", encode_partition(wm, {ACTIONS: T0}, {ACTIONS: 3})),
                                         ("A", encode_session(None, {ACTIONS: 5}, wm, [])),
                                         ("B", encode_session(None, {ERRORS: 9}, wm, []))],
                                     SessionRules(), lateness_ms=10**9)
    replay_old = [Sourced(ACTIONS, 3, ev("A", 1)), Sourced(ACTIONS, 3, ev("B", 2))]  # below the partition's mark
    msg4 = [Sourced(ACTIONS, 4, ev("A", 10)), Sourced(ACTIONS, 4, ev("A", 11))]
    msg5 = [Sourced(ACTIONS, 5, e) for e in (ev("A", 20), ev("B", 21), ev("A", 50), ev("B", 22))]
    msg6 = [Sourced(ACTIONS, 6, e) for e in (ev("A", 30), ev("A", 31), ev("B", 32))]
    step = part.process(replay_old + msg4 + msg5 + msg6, {ACTIONS: 6})
    assert step.skipped == 2 + 2 + 2
    pending = part.sessionizer._pending
    assert [e.event_id for e in pending["A"]] == ["A-30", "A-31"]
    assert [e.event_id for e in pending["B"]] == ["B-21", "B-22", "B-32"]
    assert part.max_ts[ACTIONS] == T0 + 50  # from an event inside A's state, not from the skipped old ones
    keys = {k: v for k, v in step.writes}
    assert orjson.loads(keys["0|A"])[2] == {ACTIONS: 6}
    assert orjson.loads(keys["0|B"])[2] == {ERRORS: 9, ACTIONS: 6}
    # the same message again: everything in it is inside the state now
    again = part.process(msg6, {ACTIONS: 6})
    assert again.skipped == 3 and not again.writes


def test_a_session_ahead_of_the_partition_is_checked_until_the_partition_passes_it() -> None:
    """Only sessions restored with marks above the partition's can hold an event the partition's marks
    did not skip; the check stays on over several batches until the partition's marks pass them."""
    wm = T0 - 1
    part = PartitionSessions.restore(0, [("", encode_partition(wm, {ACTIONS: T0}, {ACTIONS: 3})),
                                         ("A", encode_session(None, {ACTIONS: 5}, wm, [ev("A", 0)]))],
                                     SessionRules(), lateness_ms=10**9)
    assert part._sessions_ahead
    assert part.process([Sourced(ACTIONS, 4, ev("A", 4))], {ACTIONS: 4}).skipped == 1
    assert part._sessions_ahead  # A holds offset 5, the partition 4
    step = part.process([Sourced(ACTIONS, 5, ev("A", 5)), Sourced(ACTIONS, 6, ev("A", 6))], {ACTIONS: 6})
    assert step.skipped == 1 and [e.event_id for e in part.sessionizer._pending["A"]] == ["A-0", "A-6"]
    assert not part._sessions_ahead
    assert not PartitionSessions.restore(0, [("", encode_partition(wm, {}, {ACTIONS: 5})),
                                             ("A", encode_session(None, {ACTIONS: 5}, wm, []))])._sessions_ahead


def test_the_first_buffered_event_counts_toward_the_text_bound() -> None:
    """The first event's length is counted when a second joins it, within one step or a later one."""
    rules = SessionRules(max_buffered_chars=16 * 1024)
    big = "/" + "x" * 10_000
    for split in (False, True):
        part = PartitionSessions(0, rules, lateness_ms=10**9)
        first, second = Sourced(ACTIONS, 0, ev("s", 1, big)), Sourced(ACTIONS, 1, ev("s", 2, big))
        steps = [part.process([first], {ACTIONS: 0}), part.process([second], {ACTIONS: 1})] if split else [
            part.process([first, second], {ACTIONS: 1})]
        assert sum(s.overflowed for s in steps) == 1, split
        assert [e.event_id for e in part.sessionizer._pending["s"]] == ["s-1"]
    alone = PartitionSessions(0, SessionRules(max_buffered_chars=1_000), lateness_ms=10**9)
    assert alone.process([Sourced(ACTIONS, 0, ev("s", 1, big))], {ACTIONS: 0}).overflowed == 0  # as before


def test_the_text_bound_after_the_watermark_released_part_of_a_session() -> None:
    """A release that leaves more events than it applied keeps the session's count (minus what it
    applied); the bound then decides as a fresh count would: ``fresh`` never had events released."""
    rules = SessionRules(max_buffered_chars=3_000)
    page = "/" + "x" * 600  # an event costs ~700 characters: four fit, a fifth does not
    kept = PartitionSessions(0, rules, lateness_ms=100)
    kept.process([Sourced(ACTIONS, i, ev("s", t, page)) for i, t in enumerate((1, 200, 201, 202))], {ACTIONS: 3})
    assert kept.sessionizer._pending_chars["s"] > 0  # counted while events joined
    kept.process([Sourced(ACTIONS, 4, ev("x", 150))], {ACTIONS: 4})  # watermark 50: releases s-1 only
    assert [e.event_id for e in kept.sessionizer._pending["s"]] == ["s-200", "s-201", "s-202"]
    fresh = PartitionSessions(0, rules, lateness_ms=100)
    fresh.process([Sourced(ACTIONS, i, ev("s", t, page)) for i, t in enumerate((200, 201, 202))], {ACTIONS: 2})
    assert kept.sessionizer._pending_chars["s"] == fresh.sessionizer._pending_chars["s"]
    for part, offset in ((kept, 5), (fresh, 3)):
        more = [Sourced(ACTIONS, offset, ev("s", 203, page)), Sourced(ACTIONS, offset + 1, ev("s", 204, page))]
        assert part.process(more, {ACTIONS: offset + 1}).overflowed == 1
        assert [e.event_id for e in part.sessionizer._pending["s"]][-1] == "s-203"


def test_buffered_events_round_trip_with_repeated_fields_and_objects() -> None:
    """Fields equal to the previous event's are written once; the same event object twice (a redo)
    is written as two events."""
    click = Click(T0 + 3, "#buy", "/p", 1.0, 2.0, True, True, None, False, False, 2500.0)
    e1 = ev("s", 1, "/p", user_id="u", release="1.0", user_agent="ua")
    e2 = SessionEvent("s", T0 + 3, "s-3", "click", "/p", "shop", "u", "1.0", "ua", click)
    e3 = SessionEvent("s", T0 + 4, "s-4", "scroll", "/q", "shop", "", "1.1", "ua", scroll_depth=50.0)
    buffered = [e1, e2, e3, e3]
    raw = encode_session(None, {ACTIONS: 7}, T0, buffered)
    rows = orjson.loads(raw)[4]
    assert rows[1][3:8] == [None] * 5 and rows[1][8][0] is None and rows[1][8][2] is None
    assert rows[3][3:8] == [None] * 5 and rows[2][3] == "/q"
    active, marks, wm, back = decode_session("s", raw, SessionRules())
    assert active is None and marks == {ACTIONS: 7} and wm == T0
    assert back == buffered


def _plain_apply_order(events: list[SessionEvent]) -> list[SessionEvent]:
    """The rule: sorted by (ts_ms, event_id) as they came, an event delivered twice once (the first)."""
    out: list[SessionEvent] = []
    for e in sorted(events, key=lambda e: (e.ts_ms, e.event_id)):
        if not out or (out[-1].ts_ms, out[-1].event_id) != (e.ts_ms, e.event_id):
            out.append(e)
    return out


def test_apply_order_shortcuts_decide_what_the_sort_by_time_and_id_decides() -> None:
    """In order (returned as is), out of order without ties (sorted by time alone), ties of one
    millisecond in either id order, and duplicates (the first copy kept, as it came)."""
    import random

    from pipeline.sessions.sessionizer import in_apply_order

    def e(ts: int, eid: str, page: str = "/p") -> SessionEvent:
        return SessionEvent("s", T0 + ts, eid, "pageview", page)

    ordered = [e(1, "a"), e(2, "b"), e(5, "c")]
    assert in_apply_order(ordered) is ordered
    cases = [
        [e(5, "c"), e(1, "a"), e(2, "b")],
        [e(1, "b"), e(1, "a"), e(0, "z")],
        [e(1, "a"), e(1, "b")],
        [e(3, "x", "/first"), e(1, "a"), e(3, "x", "/second"), e(3, "w")],
        [e(2, "d", "/1"), e(2, "d", "/2"), e(2, "d", "/3")],
    ]
    rng = random.Random(7)
    for _ in range(300):
        cases.append([e(rng.randrange(6), rng.choice("abc"), f"/{i}") for i in range(rng.randrange(1, 9))])
    for case in cases:
        expected = _plain_apply_order(list(case))
        got = in_apply_order(list(case))
        assert [(x.ts_ms, x.event_id, x.page) for x in got] == [(x.ts_ms, x.event_id, x.page) for x in expected]


def test_newest_event_time_per_topic_is_kept_per_run_of_one_topic() -> None:
    """``max_ts`` (written in the partition record, key order included) is what the per-event rule
    gives: the newest time of every event above the partition's mark, a topic's key inserted at its
    first such event; random interleavings of two topics, replays below the marks included."""
    import random

    rng = random.Random(3)
    for _ in range(200):
        restored_marks = {ACTIONS: rng.randrange(-1, 4), ERRORS: rng.randrange(-1, 4)}
        restored_max = {t: T0 + 5 for t in rng.sample([ACTIONS, ERRORS], rng.randrange(3))}
        part = PartitionSessions.restore(0, [("", encode_partition(T0 - 1, restored_max, restored_marks))],
                                         SessionRules(), lateness_ms=10**9)
        offsets = {ACTIONS: 0, ERRORS: 0}
        events = []
        for _ in range(rng.randrange(12)):
            topic = rng.choice([ACTIONS, ERRORS])
            events.append(Sourced(topic, offsets[topic], ev(rng.choice("AB"), rng.randrange(10))))
            offsets[topic] += rng.randrange(2)
        expected = dict(restored_max)
        for src in events:
            if src.offset > restored_marks[src.topic] and src.event.ts_ms > expected.get(src.topic, -(2**62)):
                expected[src.topic] = src.event.ts_ms
        part.process(events, {t: o for t, o in offsets.items()})
        assert list(part.max_ts.items()) == list(expected.items())
