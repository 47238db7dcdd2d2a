"""Does the worker's sessions stage still make the same bytes? ``SessionStore`` / ``PartitionSessions`` of a
git revision and of this checkout on the same traffic, compared step by step.

    .venv/bin/python bench/session_identity.py                 # against main
    .venv/bin/python bench/session_identity.py --base HEAD~3 --events 40000

The revision is exported with ``git archive`` into a temporary directory and this script runs itself
there (``--dump``), importing that tree's ``agents`` and ``pipeline``; then here. Per step it keeps the
state records (key and value bytes, in order: changelog layout 3), the session rows by table and the
UX signals (as orjson bytes), the storage and signal sends, the late events, the skipped (replayed) and
overflowed counts, and after the last step what stays open. Scenarios:

* ``flush`` / ``one``: ``pipeline/simulate_load.py`` traffic through ``process_batch`` and
  ``SessionStore.step_batch`` (everything read; then with one topic always lagging), then every
  session closed by ``advance_to``;
* ``clicks-*``: ``pipeline/simulate_sessions.py`` sessions (rage bursts, dead clicks, one click
  reported twice, scrolls, forms, visibility, errors, idle splits), in random batches, in order and
  shuffled with a short lateness (late events), with a small buffering bound (overflow by count)
  and 16 KB pages (overflow by characters);
* ``restart-*``: the same, crashed after a step or in the middle of its changelog writes, restored
  from the changelog written so far, the uncommitted batches replayed (skipped events), continued.

A refactoring of the stage must print ``IDENTICAL`` (exit 0); anything else names the first scenario,
step and field that differ. Both trees run with ``PYTHONHASHSEED=0``: the deletions of closed sessions'
keys at the start of a step come out of a set, in string-hash order (any order is correct there).
"""

from __future__ import annotations

import hashlib
import pickle
import random
import sys
from datetime import datetime, timezone
from typing import Any

from tree_compare import run_check  # bench/ is sys.path[0] when run as a script
NOW = datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=timezone.utc)
NOW_MS = 1_795_428_005_123
PARTITIONS = 4
POLL = 500
FOREVER = 2**62
TOPICS = {"action": "pulse.raw.actions", "error": "pulse.raw.errors"}


def canonical_step(step: Any) -> dict[str, bytes]:
    """Every output of one ``Step`` as bytes (order kept)."""
    import orjson

    from pipeline.sessions.rows import rows_by_table, signals

    return {
        "writes": repr(step.writes).encode(),
        "rows": orjson.dumps(list(rows_by_table(step.emitted).items())),
        "signals": orjson.dumps(signals(step.emitted)),
        "late": repr([(e.session_id, e.ts_ms, e.event_id, e.kind) for e in step.late]).encode(),
        "counts": repr((step.skipped, step.overflowed)).encode(),
    }


def state_of(part: Any) -> bytes:
    return repr((part.watermark_ms, part.active_sessions, part.buffered_events, sorted(part.marks.items()),
                 sorted(part.max_ts.items()))).encode()


# ---------------------------------------------------------------- simulate_load traffic through the store
def store_scenario(shape: str, events: int, sessions: int, lagging: bool) -> list[dict[str, bytes]]:
    from collections import Counter

    from agents.ingest import IngestRunner
    from agents.state import WorkerState
    from pipeline.ingest.process import WORKER_PROCESSORS, RawMessage, process_batch
    from pipeline.settings import Settings
    from tree_compare import this_generator

    generator = this_generator()
    TOPIC_KINDS, generate_load = generator.TOPIC_KINDS, generator.generate_load

    settings = Settings()
    k = settings.kafka
    plan = generate_load(events=events, sessions=sessions, shape=shape, seed=5, end_ms=NOW_MS)
    topics = dict(zip(TOPIC_KINDS, (k.topic_errors, k.topic_vitals, k.topic_actions)))
    offsets: Counter[tuple[str, int]] = Counter()
    raws = []
    for m in plan.messages:
        topic, partition = topics[m.topic_kind], int(hashlib.md5(m.key).hexdigest(), 16) % PARTITIONS
        raws.append(RawMessage(topic, partition, offsets[(topic, partition)], m.key, m.value, m.send_ms))
        offsets[(topic, partition)] += 1
    runner = IngestRunner(settings, WorkerState())
    store = runner.sessions
    store.storage_partitions = PARTITIONS
    for p in range(PARTITIONS):
        store.restore(p, [])

    def highwater(topic: str, partition: int) -> int | None:
        if lagging and topic == k.topic_errors:
            return offsets[(topic, partition)] + 1_000  # never caught up: the watermark waits for it
        return offsets[(topic, partition)]

    outs = []
    for i in range(0, len(raws), POLL):
        out = process_batch(raws[i:i + POLL], runner.dedup, PARTITIONS, NOW, runner.session_topics,
                            runner.rollup_rules, runner.noise_rules, WORKER_PROCESSORS, time_window=runner.time_window)
        runner.dedup.keep()
        steps = store.step_batch(out, highwater)
        for p, step in steps:
            c = canonical_step(step)
            c["partition"] = str(p).encode()
            outs.append(c)
        outs.append({"sends": repr(store.sends_for(steps)).encode(),
                     "changelog": repr(store.changelog_sends(steps)).encode()})
    for p, part in sorted(store.parts.items()):
        outs.append({"open": state_of(part)})
        outs.append(canonical_step(part.advance_to(FOREVER)))
    return outs


# ---------------------------------------------------------------- simulate_sessions traffic, one partition
def scenario_messages(seed: int, big_pages: bool) -> list[tuple[str, int, list[Any]]]:
    """Raw messages of one partition: one per flush and topic, as ``(topic, offset, [Sourced])``."""
    from pipeline.contract import EVENT_ADAPTER
    from pipeline.sessions.events import session_event
    from pipeline.sessions.partition import Sourced
    from pipeline.simulate_sessions import generate_session_scenario

    sc = generate_session_scenario(seed=seed, sessions=40, start=datetime(2026, 11, 23, 8, tzinfo=timezone.utc))
    next_offset = {t: 0 for t in TOPICS.values()}
    out = []
    for n, flush in enumerate(sc.flushes):
        by_topic: dict[str, list[Any]] = {}
        for e in flush.events:
            topic = TOPICS[e["type"]]
            sess = session_event(EVENT_ADAPTER.validate_python(e))
            if big_pages and n % 3 == 0:  # pages of 16 KB (from a long URL): the buffer's bound in characters
                sess.page = f"/huge/{'x' * 16_000}/{n % 7}"
                if sess.click is not None:
                    sess.click.page = sess.page
            by_topic.setdefault(topic, []).append(Sourced(topic, next_offset[topic], sess))
        for topic, evs in by_topic.items():
            out.append((topic, next_offset[topic], evs))
            next_offset[topic] += 1
    return out


def partition_scenario(seed: int, *, shuffle: bool, lateness_ms: int, max_events: int, big_pages: bool,
                       crashes: tuple[tuple[int, int | None], ...] = ()) -> list[dict[str, bytes]]:
    """Random batches of the scenario through ``PartitionSessions``. ``crashes``: (after batch, writes of
    the next batch's changelog that landed, None = all): restore from the changelog so far and replay the
    uncommitted batches."""
    from pipeline.sessions.partition import PartitionSessions, Sourced
    from pipeline.sessions.sessionizer import SessionRules

    rng = random.Random(seed)
    msgs = scenario_messages(seed, big_pages)
    if shuffle:  # neighbouring flushes swap places: events arrive out of event-time order, some late
        for i in range(len(msgs) - 1):
            if rng.random() < 0.3:
                msgs[i], msgs[i + 1] = msgs[i + 1], msgs[i]
        next_offset = {t: 0 for t in TOPICS.values()}  # still in offset order per topic, as Kafka delivers
        renumbered = []
        for topic, _, evs in msgs:
            offset = next_offset[topic]
            next_offset[topic] += 1
            renumbered.append((topic, offset, [Sourced(topic, offset, s.event) for s in evs]))
        msgs = renumbered
    batches, i = [], 0
    while i < len(msgs):
        n = rng.randint(1, 15)
        batches.append(msgs[i:i + n])
        i += n
    rules = SessionRules(max_buffered_events=max_events)
    part = PartitionSessions(3, rules, lateness_ms)
    changelog: dict[str, bytes] = {}
    outs: list[dict[str, bytes]] = []
    crash_at = dict(crashes)
    b = 0
    while b < len(batches):
        batch = batches[b]
        events = [s for _, _, evs in batch for s in evs]
        upto: dict[str, int] = {}
        for topic, offset, _ in batch:
            upto[topic] = max(upto.get(topic, -1), offset)
        lagging = [TOPICS["error"]] if b % 4 == 1 else []
        step = part.process(events, upto, lagging)
        outs.append(canonical_step(step))
        landed = crash_at.pop(b, "no crash")
        writes = step.writes if landed in ("no crash", None) else step.writes[:landed]  # type: ignore[misc]
        for key, value in writes:
            if value is None:
                changelog.pop(key, None)
            else:
                changelog[key] = value
        if landed != "no crash":
            # Crashed: offsets committed up to the batch whose partition record landed last.
            records = [(key.partition("|")[2], value) for key, value in changelog.items()]
            part = PartitionSessions.restore(3, records, rules, lateness_ms)
            outs.append({"restored": state_of(part)})
            b = max(0, b - 2)  # the raw topics replay from an older commit: some events are skipped
            continue
        b += 1
    outs.append({"open": state_of(part)})
    outs.append(canonical_step(part.advance_to(FOREVER)))
    return outs


def dump(path: str, events: int, sessions: int) -> None:
    """Run every scenario with the tree on sys.path[0] and pickle {scenario: [outputs per step]}."""
    results: dict[str, list[dict[str, bytes]]] = {}
    for shape in ("flush", "one"):
        results[f"{shape}/caught-up"] = store_scenario(shape, events, sessions, lagging=False)
        results[f"{shape}/lagging"] = store_scenario(shape, events, sessions, lagging=True)
    for seed in (1, 2, 3):
        results[f"clicks-{seed}/in-order"] = partition_scenario(seed, shuffle=False, lateness_ms=600_000,
                                                                max_events=400, big_pages=False)
        results[f"clicks-{seed}/late"] = partition_scenario(seed, shuffle=True, lateness_ms=2_000, max_events=400,
                                                            big_pages=False)
        results[f"clicks-{seed}/overflow"] = partition_scenario(seed, shuffle=True, lateness_ms=3_600_000,
                                                                max_events=10, big_pages=False)
        results[f"clicks-{seed}/overflow-chars"] = partition_scenario(seed, shuffle=False, lateness_ms=3_600_000,
                                                                      max_events=400, big_pages=True)
        results[f"restart-{seed}/after-step"] = partition_scenario(
            seed, shuffle=True, lateness_ms=30_000, max_events=400, big_pages=False, crashes=((5, None), (20, None)))
        results[f"restart-{seed}/mid-writes"] = partition_scenario(
            seed, shuffle=True, lateness_ms=30_000, max_events=20, big_pages=False, crashes=((4, 1), (9, 3), (30, 0)))
    with open(path, "wb") as f:
        pickle.dump(results, f)


def summary(scenario: str, steps: list[dict[str, bytes]]) -> str:
    sizes = {f: sum(len(s.get(f, b"")) for s in steps) for f in ("writes", "rows", "signals", "late")}
    counts = [eval(s["counts"]) for s in steps if "counts" in s]  # noqa: S307 - our own repr of two ints
    skipped, overflowed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    late = sum(s.get("late", b"").count(b"(") for s in steps)
    return (f"{scenario:28s} {len(steps):4d} steps, late {late:5d} (overflowed {overflowed:4d}), skipped "
            f"{skipped:5d}, bytes {sizes}")


def main() -> int:
    return run_check(__doc__, __file__, dump, "session-identity-", "step", summary, env={"PYTHONHASHSEED": "0"})


if __name__ == "__main__":
    sys.exit(main())
