"""Worker memory per open session and changelog records per touched session, in process.

    .venv/bin/python bench/session_memory_bench.py                      # RSS and changelog figures
    .venv/bin/python bench/session_memory_bench.py --tracemalloc        # + Python heap by source line

The traffic of ``bench/load_bench.py --shape flush --events 200000 --sessions 50000`` (same
generator, same seed) goes through the worker's pure path as the ingest runner drives it: polls of
``PULSE_WORKER_BATCH_SIZE`` messages -> ``process_batch`` (dedup, rows) -> ``SessionStore.step_batch``
-> the changelog records encoded as the runner sends them. No Kafka: what is measured is what the
worker itself keeps. Printed: RSS growth and Python heap (tracemalloc, when asked) per open session
while every session is still open, and per batch the changelog records against the sessions the
batch touched (sessions with input in it, or whose state it changed).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agents.sessions import SessionStore  # noqa: E402
from pipeline.ingest.dedup import RecentIds  # noqa: E402
from pipeline.ingest.process import WORKER_PROCESSORS, RawMessage, process_batch  # noqa: E402
from pipeline.runtime import release_free_memory  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.simulate_load import generate_load  # noqa: E402


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--sessions", type=int, default=50_000)
    ap.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slower)")
    ap.add_argument("--tracemalloc-frames", type=int, default=0, help="show the top N allocation tracebacks")
    ap.add_argument("--trim", action="store_true", help="release_free_memory() after each batch, as the runner does")
    args = ap.parse_args()

    from pipeline.runtime import tune_gc

    settings = Settings()
    k = settings.kafka
    topics = dict(zip(("errors", "vitals", "actions"), k.raw_topics))
    plan = generate_load(events=args.events, sessions=args.sessions, shape="flush", seed=1,
                         end_ms=int(time.time() * 1000) - 60_000)
    offsets: Counter[tuple[str, int]] = Counter()
    batch = settings.worker.batch_size
    spool = tempfile.TemporaryFile()  # polls are read back one at a time, as from Kafka: the plan is not in RSS
    polls = 0
    for i in range(0, len(plan.messages), batch):
        poll = []
        for m in plan.messages[i:i + batch]:
            topic, p = topics[m.topic_kind], zlib.crc32(m.key) % k.partitions
            poll.append((topic, p, offsets[(topic, p)], m.key, m.value, m.send_ms))
            offsets[(topic, p)] += 1
        pickle.dump(poll, spool)
        polls += 1
    del plan, poll
    spool.seek(0)
    store = SessionStore(settings)
    dedup = RecentIds(settings.worker.dedup_capacity)
    for p in range(k.partitions):
        store.restore(p, [])
    ends = {(t, p): n for (t, p), n in offsets.items()}
    tune_gc()
    gc.collect()
    release_free_memory()
    if args.tracemalloc:
        tracemalloc.start(5)
    heap0, rss0 = (tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0), rss()
    now = datetime.now(timezone.utc)
    records = touched_total = batches = 0
    worst = 0.0
    largest = 0
    for _ in range(polls):
        chunk = [RawMessage(*m) for m in pickle.load(spool)]
        out = process_batch(chunk, dedup, k.partitions, now, frozenset(k.session_topics), settings.rollups.rules(),
                            settings.issues.noise_rules(), WORKER_PROCESSORS)
        touched = {(p, e.event.session_id) for p, evs in out.session_events.items() for e in evs}
        before = {p: set(part.sessionizer._active) for p, part in store.parts.items()}
        buffered = {(p, sid): len(evs) for p, part in store.parts.items() for sid, evs in part.sessionizer._pending.items()}
        steps = store.step_batch(out, lambda t, p: ends.get((t, p)))
        for p, _ in steps:  # sessions whose state the step changed without input: closed or applied
            after = store.parts[p].sessionizer._active
            touched |= {(p, s) for s in before[p] ^ set(after)}
            pending = store.parts[p].sessionizer._pending
            touched |= {(q, s) for (q, s), n in buffered.items() if q == p and len(pending.get(s, ())) != n}
        sends = store.changelog_sends(steps)
        own = [s for s in sends if s[1].split(b"|", 1)[1]]  # without the partition records
        records += len(own)
        largest = max([largest, *(len(s[2] or b"") + len(s[1]) for s in sends)])
        touched_total += len(touched)
        if touched:
            worst = max(worst, len(own) / len(touched))
        batches += 1
        del before, touched, buffered
        if args.trim:
            release_free_memory()  # the runner: after a batch, at most every PULSE_WORKER_TRIM_INTERVAL_S
    del chunk, out, steps, sends, own
    gc.collect()
    grown = rss() - rss0
    heap = (tracemalloc.get_traced_memory()[0] - heap0) if args.tracemalloc else 0
    open_ = sum(part.active_sessions for part in store.parts.values())
    buffered = sum(part.buffered_events for part in store.parts.values())
    print(f"{open_} open sessions, {buffered} events buffered, dedup ids {len(dedup)}")
    print(f"RSS growth {grown / 1e6:,.1f} MB = {grown / max(open_, 1):,.0f} bytes per open session")
    if args.tracemalloc:
        print(f"Python heap {heap / 1e6:,.1f} MB = {heap / max(open_, 1):,.0f} bytes per open session")
        snap = tracemalloc.take_snapshot()
        for stat in snap.statistics("lineno")[:15]:
            print(f"  {stat.size / max(open_, 1):8,.0f} B/session  {stat.count:9,} blocks  {stat.traceback[0]}")
        if args.tracemalloc_frames:
            for stat in snap.statistics("traceback")[:args.tracemalloc_frames]:
                print(f"  {stat.size / max(open_, 1):8,.0f} B/session  {stat.count:9,} blocks")
                for line in stat.traceback.format()[-10:]:
                    print("      " + line)
    print(f"changelog: {records} session records in {batches} batches for {touched_total} touched sessions = "
          f"{records / max(touched_total, 1):.2f} per touched session per batch (worst batch {worst:.2f}); "
          f"largest record {largest} B")


if __name__ == "__main__":
    main()
