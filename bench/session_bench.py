"""Sessionization: action events/s per core and bytes per active session.

    .venv/bin/python bench/session_bench.py
    .venv/bin/python bench/session_bench.py --actions 500000 --sessions 20000

(a) sessions only: ``PartitionSessions.process`` over already-validated action events, in
    50-event batches per session (what the worker hands it), including the per-batch state records.
(b) worker step: ``process_batch`` (decode, validate, dedup, rows) with sessionization on vs off,
    50-event messages of actions: the cost sessionization adds to the worker's pure path.
(c) memory: ``--sessions`` open sessions, each with a page view, clicks, a scroll and events still
    buffered behind the watermark; bytes per session measured with tracemalloc (Python heap held
    by the state), then every session is closed and the retained memory measured again.
Target (issue 4): >= 100,000 action events/s per worker with 50-event messages; <= 2 KB per
active session; closed sessions release their state.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.contract import EVENT_ADAPTER  # noqa: E402
from pipeline.ingest.dedup import RecentIds  # noqa: E402
from pipeline.ingest.process import RawMessage, process_batch  # noqa: E402
from pipeline.sessions.events import session_event  # noqa: E402
from pipeline.sessions.partition import PartitionSessions, Sourced  # noqa: E402

T0 = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def action_events(session: str, n: int, t: datetime, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        t += timedelta(milliseconds=rng.randint(200, 3000))
        k = i % 10
        if k == 0:
            action = {"kind": "pageview"}
        elif k == 9:
            action = {"kind": "scroll", "scroll_depth": rng.choice([25, 50, 75, 90, 100])}
        else:
            action = {"kind": "click", "selector": rng.choice(["button#add", "a.nav", "div.price"]),
                      "x": rng.randrange(1200), "y": rng.randrange(800), "interactive": True,
                      "observed": {"dom_mutation_ms": 40.0, "navigated": False, "scrolled": False,
                                   "observed_for_ms": 2500}}
        out.append({"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "type": "action",
                    "project": "shop", "timestamp": t.isoformat(timespec="milliseconds"), "session_id": session,
                    "url": "https://shop.example.com/product/1", "route": "/product/:id", "user_id": "u1",
                    "release": "shop@2.14.0", "user_agent": UA, "action": action})
    return out


def workload(actions: int, per_message: int, sessions: int) -> list[tuple[str, list[dict]]]:
    """Messages of ``per_message`` events, round-robin over ``sessions`` sessions, time moving on."""
    rng = random.Random(1)
    clocks = {f"s-{i}": T0 + timedelta(seconds=i % 600) for i in range(sessions)}
    out = []
    for m in range(actions // per_message):
        sid = f"s-{m % sessions}"
        evs = action_events(sid, per_message, clocks[sid], rng)
        clocks[sid] = datetime.fromisoformat(evs[-1]["timestamp"])
        out.append((sid, evs))
    return out


def bench_sessions_only(messages: list[tuple[str, list[dict]]], batch_messages: int) -> float:
    sourced = [[Sourced("raw.actions", off, session_event(EVENT_ADAPTER.validate_python(e))) for e in evs]
               for off, (_, evs) in enumerate(messages)]
    part = PartitionSessions(0)
    n = sum(len(s) for s in sourced)
    t = time.perf_counter()
    for i in range(0, len(sourced), batch_messages):
        chunk = sourced[i:i + batch_messages]
        part.process([s for m in chunk for s in m], {"raw.actions": i + len(chunk) - 1})
    return n / (time.perf_counter() - t)


def bench_worker_step(messages: list[tuple[str, list[dict]]], batch_messages: int, sessions_on: bool) -> float:
    raw = [RawMessage("raw.actions", 0, off, sid.encode(), orjson.dumps(evs)) for off, (sid, evs) in enumerate(messages)]
    dedup = RecentIds(2_000_000)
    part = PartitionSessions(0)
    topics = frozenset({"raw.actions"}) if sessions_on else frozenset()
    now = datetime.now(timezone.utc)
    n = sum(len(evs) for _, evs in messages)
    t = time.perf_counter()
    for i in range(0, len(raw), batch_messages):
        out = process_batch(raw[i:i + batch_messages], dedup, 4, now, topics)
        if sessions_on:
            part.process(out.session_events.get(0, []), out.session_upto.get(0, {}))
    return n / (time.perf_counter() - t)


def bench_memory(sessions: int) -> tuple[float, float, int, int]:
    rng = random.Random(2)
    # 12 events (about 20 s) per session, sessions starting over 30 min: all stay open (not idle for
    # 30 min yet), and those of the last minute still have events buffered behind the watermark.
    batches = []
    for i in range(sessions):
        start = T0 + timedelta(milliseconds=30 * 60_000 * i // sessions)
        evs = action_events(f"sess-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}", 12, start, rng)
        batches.append([Sourced("raw.actions", i, session_event(EVENT_ADAPTER.validate_python(e))) for e in evs])
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    part = PartitionSessions(0)
    for i, b in enumerate(batches):
        part.process(b, {"raw.actions": i})
    del batches
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    active, buffered = part.active_sessions, part.buffered_events
    part.advance_to(2**61)
    part.process([], {})  # the next step deletes the closed sessions' tombstones
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / max(active, 1), after, active, buffered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actions", type=int, default=200_000)
    ap.add_argument("--per-message", type=int, default=50)
    ap.add_argument("--batch-messages", type=int, default=500, help="messages per worker batch (PULSE_WORKER_BATCH_SIZE)")
    ap.add_argument("--sessions", type=int, default=20_000, help="open sessions for the memory figure")
    args = ap.parse_args()

    from pipeline.runtime import tune_gc

    tune_gc()
    messages = workload(args.actions, args.per_message, sessions=2000)
    print(f"workload: {args.actions} action events in {len(messages)} messages of {args.per_message}, 2000 sessions")
    print(f"(a) sessions only (PartitionSessions.process):      {bench_sessions_only(messages, args.batch_messages):>10,.0f} actions/s")
    off = bench_worker_step(messages, args.batch_messages, sessions_on=False)
    on = bench_worker_step(messages, args.batch_messages, sessions_on=True)
    print(f"(b) worker pure step, sessionization off:            {off:>10,.0f} actions/s")
    print(f"    worker pure step, sessionization on:             {on:>10,.0f} actions/s  ({(off - on) / off:.0%} slower)")
    per_session, after, active, buffered = bench_memory(args.sessions)
    print(f"(c) {active} active sessions, {buffered} events buffered behind the watermark: "
          f"{per_session:,.0f} bytes per active session (Python heap)")
    print(f"    after closing them all: {after:,} bytes still held")


if __name__ == "__main__":
    main()
