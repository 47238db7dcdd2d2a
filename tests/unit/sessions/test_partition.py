"""PartitionSessions: a crash at any point of any batch, then restore + replay, gives exactly the
rows of an uninterrupted run (after collapsing identical re-emitted rows, as ClickHouse does)."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.contract import EVENT_ADAPTER
from pipeline.sessions.events import session_event
from pipeline.sessions.partition import CHUNK_SEP, PartitionSessions, Sourced, Step, split_key
from pipeline.sessions.rows import rows_by_table
from pipeline.simulate_sessions import generate_session_scenario

TOPICS = {"action": "raw.actions", "error": "raw.errors"}
FOREVER = 2**61


def messages(seed: int) -> tuple[list[tuple[str, int, list[Sourced]]], Any]:
    """The scenario as raw messages of one partition: one message per flush and topic."""
    sc = generate_session_scenario(seed=seed, sessions=25, start=datetime(2026, 11, 23, 8, tzinfo=timezone.utc))
    next_offset = {t: 0 for t in TOPICS.values()}
    out = []
    for flush in sc.flushes:
        by_topic: dict[str, list[Sourced]] = {}
        for e in flush.events:
            topic = TOPICS[e["type"]]
            offset = next_offset[topic]
            sess = session_event(EVENT_ADAPTER.validate_python(e))
            assert sess is not None
            by_topic.setdefault(topic, []).append(Sourced(topic, offset, sess))
        for topic, evs in by_topic.items():
            out.append((topic, next_offset[topic], evs))
            next_offset[topic] += 1
    return out, sc.truth


def batches(msgs: list[Any], rng: random.Random) -> list[list[Any]]:
    out, i = [], 0
    while i < len(msgs):
        n = rng.randint(1, 12)
        out.append(msgs[i:i + n])
        i += n
    return out


def feed(part: PartitionSessions, batch: list[Any]) -> Step:
    events = [s for _, _, evs in batch for s in evs]
    upto: dict[str, int] = {}
    for topic, offset, _ in batch:
        upto[topic] = max(upto.get(topic, -1), offset)
    return part.process(events, upto)


def rows(step: Step) -> list[tuple[str, tuple[Any, ...]]]:
    return [(table, tuple(sorted((k, str(v)) for k, v in r.items())))
            for table, rs in rows_by_table(step.emitted).items() for r in rs]


NATURAL_KEY = {"sessions": ("session_id", "start"), "page_views": ("session_id", "start", "page"),
               "rage_clicks": ("session_id", "first_click", "selector"), "dead_clicks": ("event_id",)}


def collapse(all_rows: list[tuple[str, tuple[Any, ...]]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """ReplacingMergeTree in miniature; a key emitted twice must carry the identical row."""
    out: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for table, row in all_rows:
        d = dict(row)
        key = (table, *(d[k] for k in NATURAL_KEY[table]))
        assert out.get(key, row) == row, f"conflicting versions of {key}"
        out[key] = row
    return out


def uninterrupted(msgs: list[Any], rng: random.Random) -> list[tuple[str, tuple[Any, ...]]]:
    part = PartitionSessions(0)
    out = []
    for b in batches(msgs, rng):
        out += rows(feed(part, b))
    out += rows(part.advance_to(FOREVER))
    assert part.active_sessions == 0
    return out


def test_uninterrupted_run_matches_the_truth() -> None:
    msgs, truth = messages(seed=3)
    out = collapse(uninterrupted(msgs, random.Random(1)))
    sessions = [dict(r) for k, r in out.items() if k[0] == "sessions"]
    assert len(sessions) == truth.session_count
    assert sum(int(s["rage_clicks"]) for s in sessions) == truth.total_rage
    assert sum(1 for k in out if k[0] == "dead_clicks") == truth.total_dead
    assert sum(1 for s in sessions if s["bounce"] == "True") == truth.bounces


@pytest.mark.parametrize("seed", range(40))
def test_crash_anywhere_then_restore_and_replay_is_exact(seed: int) -> None:
    rng = random.Random(seed)
    msgs, _ = messages(seed=100 + seed)
    reference = collapse(uninterrupted(msgs, random.Random(seed)))

    part = PartitionSessions(0)
    changelog: list[tuple[str, bytes | None]] = []
    emitted: list[tuple[str, tuple[Any, ...]]] = []
    plan = batches(msgs, rng)
    crash_at = rng.randrange(len(plan))
    committed = -1  # index of the last batch whose raw offsets Kafka committed
    for i, b in enumerate(plan):
        step = feed(part, b)
        if i == crash_at:
            if rng.random() < 0.8:  # outputs went out; a prefix of the state writes made it
                emitted += rows(step)
                changelog += step.writes[:rng.randint(0, len(step.writes))]
            break
        emitted += rows(step)
        changelog += step.writes
        if rng.random() < 0.5:
            committed = i

    table: dict[str, bytes] = {}
    for key, value in changelog:  # what Faust restores: the last value per key
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    restored = PartitionSessions.restore(0, [(split_key(k)[1], v) for k, v in table.items()])
    replay = [m for b in plan[committed + 1:] for m in b]
    for b in batches(replay, rng):
        emitted += rows(feed(restored, b))
    emitted += rows(restored.advance_to(FOREVER))
    assert collapse(emitted) == reference
    assert restored.active_sessions == 0


def test_closed_sessions_release_their_state() -> None:
    msgs, _ = messages(seed=4)
    part = PartitionSessions(0)
    live: dict[str, bytes] = {}
    for b in batches(msgs, random.Random(0)):
        for key, value in feed(part, b).writes:
            if value is None:
                live.pop(key, None)
            else:
                live[key] = value
    for _ in range(2):  # closing writes tombstones; the next step deletes them
        for key, value in part.advance_to(FOREVER).writes + part.process([], {}).writes:
            if value is None:
                live.pop(key, None)
            else:
                live[key] = value
        part.advance_to(FOREVER + 1)
    assert part.active_sessions == 0 and part.buffered_events == 0
    assert list(live) == ["0|"]  # only the partition's own record remains


def test_closed_sessions_keys_are_deleted_in_key_order() -> None:
    """The deletions of closed sessions' keys come in one order on every run: they were read from a
    set, so their order followed PYTHONHASHSEED and two runs of the same input wrote different logs."""
    msgs, _ = messages(seed=4)
    part = PartitionSessions(0)
    for b in batches(msgs, random.Random(0)):
        feed(part, b)
    part.advance_to(FOREVER)  # closes every session: each key's record becomes a tombstone
    deleted = [key for key, value in part.process([], {}).writes if value is None]
    assert len(deleted) >= 10
    assert deleted == sorted(deleted)


def test_a_topic_far_ahead_of_another_does_not_make_the_slow_one_late() -> None:
    """In a backlog the errors topic (small) is read to its end while actions are hours behind."""
    msgs, _ = messages(seed=6)
    reference = collapse(uninterrupted(msgs, random.Random(6)))
    errors = [m for m in msgs if m[0] == TOPICS["error"]]
    actions = [m for m in msgs if m[0] == TOPICS["action"]]
    assert errors and actions
    part = PartitionSessions(0)
    out = rows(feed_lagging(part, errors, lagging=[TOPICS["action"]]))
    for b in batches(actions, random.Random(2)):
        step = feed_lagging(part, b, lagging=[TOPICS["action"]] if b[-1] is not actions[-1] else [])
        assert step.late == []
        out += rows(step)
    out += rows(part.advance_to(FOREVER))
    assert collapse(out) == reference

    # Without the lagging hint the same delivery makes actions late: the hint is what prevents it.
    naive = PartitionSessions(0)
    feed(naive, errors)
    assert sum(len(feed(naive, b).late) for b in batches(actions, random.Random(2))) > 0


def feed_lagging(part: PartitionSessions, batch: list[Any], lagging: list[str]) -> Step:
    events = [s for _, _, evs in batch for s in evs]
    upto: dict[str, int] = {}
    for topic, offset, _ in batch:
        upto[topic] = max(upto.get(topic, -1), offset)
    return part.process(events, upto, lagging)


def test_new_events_meet_restored_ones_at_the_same_millisecond() -> None:
    """Issue 14: events restored from the changelog carried str ids and new ones UUIDs; sorting
    both within one millisecond raised TypeError and dead-lettered the whole batch."""
    import uuid

    from pipeline.sessions.sessionizer import SessionRules
    from tests.events import ev

    def sess(offset: int) -> Sourced:
        event = EVENT_ADAPTER.validate_python(ev("action", session_id="s-same", action={"kind": "click",
                                                 "selector": "#b", "x": 1, "y": 1},
                                                 timestamp="2026-11-23T10:00:00.500Z"))
        assert isinstance(event.event_id, uuid.UUID)
        e = session_event(event, event.event_id)  # what process.py handed over before the fix
        assert isinstance(e.event_id, str)
        return Sourced("raw.actions", offset, e)

    part = PartitionSessions(0, SessionRules(), lateness_ms=60_000)
    step = part.process([sess(1)], {"raw.actions": 1})
    store: dict[str, bytes] = {}
    for key, value in step.writes:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
    restored = PartitionSessions.restore(0, [(k.partition("|")[2], v) for k, v in store.items()], SessionRules(),
                                         lateness_ms=60_000)
    restored.process([sess(2)], {"raw.actions": 2})
    assert restored.advance_to(2_000_000_000_000).emitted.sessions  # sorted and closed without a TypeError


LAYOUT_2 = Path(__file__).parent / "fixtures" / "layout2_changelog.json"


@pytest.mark.parametrize("case", range(6))
def test_restores_what_layout_2_wrote_then_replays_exactly(case: int) -> None:
    """Upgrade in place: the changelog tables in the fixture were written by the layout-2 code (chunk
    records per raw message, main at d341ac2) on the plans of ``test_crash_anywhere_...`` (seed =
    case; ``fixtures/make_layout2_changelog.py``), stopped mid-run (odd cases: after the crashed
    batch's outputs and a prefix of its writes). The new code
    restores them, replays from the committed offset and ends with exactly the uninterrupted rows;
    the chunk records are deleted once the session records hold their events."""
    saved = orjson.loads(LAYOUT_2.read_bytes())["cases"][case]
    seed = saved["seed"]
    rng = random.Random(seed)
    msgs, _ = messages(seed=100 + seed)
    reference = collapse(uninterrupted(msgs, random.Random(seed)))
    plan = batches(msgs, rng)
    emitted: list[tuple[str, tuple[Any, ...]]] = []
    part = PartitionSessions(0)
    sent = plan[:saved["crash_at"] + (1 if saved["outputs_sent"] else 0)]
    for b in sent:  # the old run's rows (identical for identical input)
        emitted += rows(feed(part, b))
    table = {k: v.encode() for k, v in saved["table"].items()}
    chunks = {k for k in table if CHUNK_SEP in k}
    assert chunks and all(orjson.loads(v)[0] == 2 for v in table.values())
    restored = PartitionSessions.restore(0, [(split_key(k)[1], v) for k, v in table.items()])
    replay = [m for b in plan[saved["committed"] + 1:] for m in b]
    for b in batches(replay, rng):
        step = feed(restored, b)
        emitted += rows(step)
        for key, value in step.writes:
            assert CHUNK_SEP not in key or value is None
            if value is None:
                table.pop(key, None)
            else:
                assert orjson.loads(value)[0] == 3
                table[key] = value
    assert not chunks & set(table)
    emitted += rows(restored.advance_to(FOREVER))
    assert collapse(emitted) == reference
    assert restored.active_sessions == 0


@pytest.mark.parametrize("seed", range(5))
def test_at_most_one_record_per_touched_session_per_batch(seed: int) -> None:
    """Per batch: one record per session key whose state the batch changed (input, applied or
    closed), one deletion per key closed in an earlier batch, and the partition's record."""
    rng = random.Random(seed)
    msgs, _ = messages(seed=200 + seed)
    part = PartitionSessions(0)
    for b in batches(msgs, rng):
        before = dict(part.sessionizer._active)
        pending_before = {s: len(v) for s, v in part.sessionizer._pending.items()}
        step = feed(part, b)
        after = part.sessionizer._active
        touched = {e.event.session_id for _, _, evs in b for e in evs}
        touched |= {s for s in set(before) | set(after) if before.get(s) is not after.get(s)}
        touched |= {s for s, n in pending_before.items() if len(part.sessionizer._pending.get(s, ())) != n}
        written = [split_key(k)[1] for k, v in step.writes if v is not None and split_key(k)[1]]
        assert len(written) == len(set(written))
        assert set(written) <= touched
        assert split_key(step.writes[-1][0])[1] == ""  # the partition record, last
        # the deadline heap holds exactly one entry per open session (no stale ones piling up)
        assert sorted(sid for _, sid in part.sessionizer._deadlines) == sorted(part.sessionizer._active)
        buffered = part.sessionizer._pending
        for key, value in step.writes:
            assert CHUNK_SEP not in key
            # small: the session (~300 B, the first buffered event in full) and < 160 B per further buffered event
            assert value is None or len(value) <= 600 + 160 * len(buffered.get(split_key(key)[1], ()))


def test_a_session_flooding_events_keeps_its_state_record_bounded() -> None:
    """Buffered events travel in their session's changelog record: a loop sending thousands of events
    within the allowed lateness would pass Kafka's 1 MB. Past max_buffered_events they are refused
    (counted; still stored raw), the session's record stays small, and other sessions are untouched."""
    from pipeline.sessions.sessionizer import SessionEvent, SessionRules

    rules = SessionRules(max_buffered_events=50)
    part = PartitionSessions(0, rules, lateness_ms=60_000)
    t0 = 1_800_000_000_000
    long_page = "/" + "p" * 500

    def event(sid: str, i: int) -> Sourced:
        return Sourced("raw.actions", i, SessionEvent(sid, t0 + i, f"{sid}-{i}", "pageview", f"{long_page}{i}",
                                                      "shop", "", "", "ua"))

    flood = [event("bot", i) for i in range(5_000)]
    person = [event("person", 5_000 + i) for i in range(3)]
    step = part.process(flood + person, {"raw.actions": 5_002})
    assert step.overflowed == 5_000 - 50 and len(step.late) == step.overflowed
    assert {e.session_id for e in step.late} == {"bot"}
    records = dict(step.writes)
    bot = next(v for k, v in records.items() if k.endswith("bot"))
    assert bot is not None and len(bot) < 50 * 600, len(bot)
    assert all(len(v) < 1_000_000 for v in records.values() if v is not None)
    # once applied, the buffered events are sessionized as usual (the person's session has all three)
    done = part.advance_to(t0 + 10_000_000).emitted
    pageviews = {s.session_id: s.pageviews for s in done.sessions}
    assert pageviews == {"bot": 50, "person": 3}, pageviews


def test_events_with_huge_pages_are_bounded_by_their_length_too() -> None:
    """Pages and selectors may be 16 KB each (the contract's bound): a few hundred such events would
    pass 1 MB although under the count. The text bound refuses them first; the record stays below it."""
    from pipeline.sessions.sessionizer import SessionEvent, SessionRules

    part = PartitionSessions(0, SessionRules(max_buffered_chars=256 * 1024), lateness_ms=60_000)
    t0 = 1_800_000_000_000
    huge = [Sourced("raw.actions", i, SessionEvent("s", t0 + i, f"e{i}", "pageview", "/" + str(i) * 16_000, "shop"))
            for i in range(100)]
    step = part.process(huge, {"raw.actions": 99})
    kept = 100 - step.overflowed
    assert 10 <= kept <= 17 and step.overflowed == len(step.late), kept
    assert max(len(v) for _, v in step.writes if v is not None) < 300 * 1024


def test_a_closed_session_restored_ahead_of_the_partition_keeps_its_marks_until_covered() -> None:
    """A crash between a batch's session records and its partition record restores session s as closed
    (a tombstone) with marks above the partition's. The replay splits exactly there: the first replayed
    batch skips s's message 2 and must not delete s's record nor forget its marks, since its partition
    record covers offset 2 only; else the next batch takes s's message 3 again and s reopens half-empty
    (an extra session row, a wrong bounce, and the rage burst of three clicks missing)."""
    from pipeline.sessions.clicks import Click
    from pipeline.sessions.rows import signals
    from pipeline.sessions.sessionizer import SessionEvent, SessionRules

    actions, t0, rules = TOPICS["action"], 1_800_000_000_000, SessionRules()

    def click(offset: int, ms: int) -> tuple[str, int, list[Sourced]]:
        c = Click(t0 + ms, "#buy", "/p", 10.0, 10.0, True, True, None, False, False, 2500.0)
        return actions, offset, [Sourced(actions, offset, SessionEvent("s", t0 + ms, f"s-{ms}", "click", "/p",
                                                                      "shop", click=c))]

    later = SessionEvent("x", t0 + 2 * 3600_000, "x-0", "pageview", "/q", "shop")  # closes s (idle)
    msgs = [(actions, 0, [Sourced(actions, 0, SessionEvent("s", t0, "s-0", "pageview", "/p", "shop"))]),
            click(1, 100), click(2, 400), click(3, 700), (actions, 4, [Sourced(actions, 4, later)])]

    def outputs(step: Step) -> tuple[list[Any], list[bytes]]:
        return rows(step), [orjson.dumps(s, option=orjson.OPT_SORT_KEYS) for s in signals(step.emitted)]

    reference_rows, reference_signals = [], []
    whole = PartitionSessions(0, rules, lateness_ms=1_000)
    for step in (feed(whole, msgs[:2]), feed(whole, msgs[2:]), whole.advance_to(FOREVER)):
        r, s = outputs(step)
        reference_rows += r
        reference_signals += s

    part = PartitionSessions(0, rules, lateness_ms=1_000)
    table: dict[str, bytes] = {}
    emitted_rows, emitted_signals = [], []
    for batch, crash in ((msgs[:2], False), (msgs[2:], True)):
        step = feed(part, batch)
        r, s = outputs(step)  # sent before the changelog writes
        emitted_rows += r
        emitted_signals += s
        writes = step.writes[:-1] if crash else step.writes  # crashed before the partition record
        assert not crash or step.writes[-1][0] == "0|"
        for key, value in writes:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    assert {"0|s", "0|x"} <= set(table)
    restored = PartitionSessions.restore(0, [(split_key(k)[1], v) for k, v in table.items()], rules, 1_000)
    assert restored.active_sessions == 0 and restored.buffered_events == 1  # x buffered, s closed
    assert restored._session_marks["s"] == (actions, 3) and restored.marks == {actions: 1}
    for step in (feed(restored, msgs[2:3]), feed(restored, msgs[3:]), restored.advance_to(FOREVER),
                 restored.process([], {})):  # the last: the partition's marks cover s's, its record goes
        r, s = outputs(step)
        emitted_rows += r
        emitted_signals += s
        for key, value in step.writes:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    sessions = [dict(row) for table_name, row in emitted_rows if table_name == "sessions"]
    assert sorted({(s["session_id"], s["start"]) for s in sessions}) == sorted(
        {(s["session_id"], s["start"]) for s in (dict(row) for t, row in reference_rows if t == "sessions")})
    assert collapse(emitted_rows) == collapse(reference_rows)
    assert set(emitted_signals) == set(reference_signals)
    assert restored.active_sessions == 0 and restored.buffered_events == 0
    assert set(table) == {"0|"} and not restored._session_marks
