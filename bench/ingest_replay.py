"""The worker's raw-event hot path replayed in one process, without Kafka: CPU per event of each stage.

    .venv/bin/python bench/ingest_replay.py --shape flush --events 200000 --sessions 10000
    .venv/bin/python bench/ingest_replay.py --shape one --compression none
    .venv/bin/python bench/ingest_replay.py --profile /tmp/replay.prof     # cProfile of the whole replay

Does per poll what ``IngestRunner.step`` (agents/ingest.py, run by ``agents/stage.py``) does, minus the
network: ``process_batch`` (decode, validate, dedup, rows, rollups, issue records, session input),
``SessionStore.step_batch``,
the runner's outputs (storage range messages, issue occurrences, alert partials, dead letters), the
session sends and changelog records, and the producer's record-batch encoding with the configured
compression (aiokafka's ``BatchBuilder``, as ``agents/output.py`` fills it). Messages come from
``pipeline/simulate_load.py`` (the load benchmark's traffic), partitioned by key like Kafka does, read
in polls of ``PULSE_WORKER_BATCH_SIZE``. Reports process CPU time (``time.process_time``) per event
and per stage; use it to compare changes of the pure path, and ``bench/load_bench.py`` for the
real processes.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aiokafka.producer.message_accumulator import BatchBuilder  # noqa: E402
from aiokafka.record.default_records import DefaultRecordBatch  # noqa: E402

from agents.ingest import IngestRunner  # noqa: E402
from agents.state import WorkerState  # noqa: E402
from pipeline.ingest.process import WORKER_PROCESSORS, process_batch  # noqa: E402
from pipeline.common import browser_and_os  # noqa: E402
from pipeline.runtime import tune_gc  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.simulate_load import generate_load  # noqa: E402
from planned_reads import all_produced, planned_raw_messages  # noqa: E402 - bench/ is sys.path[1]


CODECS = {None: 0, "gzip": DefaultRecordBatch.CODEC_GZIP, "lz4": DefaultRecordBatch.CODEC_LZ4,
          "zstd": DefaultRecordBatch.CODEC_ZSTD}


def encode(sends: list, compression: str | None) -> int:
    """Fill and close record batches per (topic, partition) as BatchSender does; returns bytes built."""
    codec = CODECS[compression]
    by_tp: dict[tuple[str, int | None], list] = {}
    for s in sends:
        by_tp.setdefault((s[0], s[3]), []).append(s)
    total = 0
    for members in by_tp.values():
        batch = BatchBuilder(1_000_000, codec)
        for _, key, value, _, headers in members:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                total += len(batch._build())  # what send_batch does: the (compressed) record batch
                batch = BatchBuilder(1_000_000, codec)
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        total += len(batch._build())
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("flush", "one", "batch50"), default="flush")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compression", choices=("none", "gzip", "lz4", "zstd", "setting"), default="setting",
                        help="record-batch compression to encode with (default: PULSE_KAFKA_COMPRESSION)")
    parser.add_argument("--profile", help="write a cProfile of the replay to this file")
    parser.add_argument("--worker-gc", action="store_true",
                        help="tune the cyclic GC as the worker does (pipeline/runtime.py tune_gc) before replaying")
    args = parser.parse_args()

    settings = Settings()
    k = settings.kafka
    compression = k.compression_type if args.compression == "setting" else (
        None if args.compression == "none" else args.compression)
    end_ms = int(time.time() * 1000)
    plan = generate_load(events=args.events, sessions=args.sessions, shape=args.shape, seed=args.seed, end_ms=end_ms)
    raws = planned_raw_messages(plan, k)

    runner = IngestRunner(settings, WorkerState())
    for p in range(k.partitions):
        runner.sessions.restore(p, [])
    batch_size = settings.worker.batch_size
    stages: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    dead = built = 0
    highwater = all_produced(raws)
    if args.worker_gc:
        tune_gc()
    # The user-agent parser loads its regexes at the first parse (0.1-0.3 s, once per process):
    # paid here, so that the figures are per-event work (the worker pays it before it is ready).
    browser_and_os("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    clock = time.process_time
    started = clock()
    for i in range(0, len(raws), batch_size):
        messages = raws[i:i + batch_size]
        now = datetime.now(timezone.utc)
        t0 = clock()
        out = process_batch(messages, runner.dedup, k.partitions, now, runner.session_topics, runner.rollup_rules,
                            runner.noise_rules, WORKER_PROCESSORS, time_window=runner.time_window)
        t1 = clock()
        steps = runner.sessions.step_batch(out, highwater)
        t2 = clock()
        sends = runner._outputs(out, messages, now) + runner.sessions.sends_for(steps)
        sends += runner.sessions.changelog_sends(steps)
        t3 = clock()
        built += encode(sends, compression)
        t4 = clock()
        stages["process_batch"] += t1 - t0
        stages["sessions"] += t2 - t1
        stages["outputs"] += t3 - t2
        stages["encode"] += t4 - t3
        rows.update(out.rows_out)
        dead += len(out.dead_letters)
        runner.dedup.keep()  # the batch's ids join the dedup memory (the runner does it after the commit)
    total = clock() - started
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)

    events = plan.events_sent
    expected = plan.truth.rows_by_table
    exact = all(rows[t] == n for t, n in expected.items()) and dead == plan.truth.malformed
    print(f"shape {args.shape}: {len(raws)} messages, {events} events ({plan.events_per_message:.2f}/message), "
          f"compression {compression or 'none'}, batch {batch_size}")
    print(f"CPU {total:.2f} s = {total / events * 1e6:.1f} us/event ({events / total:,.0f} events/s on one core)")
    for name, seconds in stages.items():
        print(f"  {name:14s} {seconds / events * 1e6:6.1f} us/event")
    print(f"rows {dict(rows)} dead letters {dead}; {built / 1e6:.1f} MB of record batches; "
          f"{'EXACT' if exact else f'NOT EXACT: expected {dict(expected)} and {plan.truth.malformed} dead letters'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
