"""Why events end up behind the sessions watermark in the Kafka-mode load bench: measured on the
generator's messages, without Kafka.

    .venv/bin/python bench/late_events.py --shape flush --events 200000 --sessions 10000
    .venv/bin/python bench/late_events.py --shape one --sessions 50000 --batch 500

Prints, for ``pipeline/simulate_load.py`` traffic:

* how old a message's oldest event is when it is sent (send time - oldest event time), first sends
  and retries apart: a real SDK flushes every few seconds, so only retries should reach 5-30 s;
* the event-time disorder of each raw partition of the session topics in produced order (Kafka's
  order, partitioned by key with murmur2 as the bench's producer does): how far an event lies behind
  the newest event time its partition carried before it, and how many lie more than the allowed
  lateness (``PULSE_SESSIONS_ALLOWED_LATENESS_S``) behind;
* the late events of the worker's own sessions step (``process_batch`` + ``SessionStore.step_batch``,
  as ``bench/ingest_replay.py`` runs them) reading the messages in polls of ``--batch`` messages
  (default ``PULSE_WORKER_BATCH_SIZE``): in produced order, or (``--order partition``) a poll per
  topic-partition in turn, as aiokafka drains a backlog.

If the third count matches the load bench's "events stored raw but not sessionized", the produced
order alone explains them; if the bench shows more, the worker's read order (topics fetched
independently) adds the rest.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
from aiokafka.partitioner import murmur2  # noqa: E402

from pipeline.simulate_load import LoadPlan, generate_load  # noqa: E402
from planned_reads import all_produced, planned_raw_messages  # noqa: E402 - bench/ is sys.path[1]


def pct(values: list[int], q: float) -> int:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] if values else 0


def ts_ms(event: dict) -> int:  # type: ignore[type-arg]
    return int(datetime.fromisoformat(event["timestamp"]).timestamp() * 1000)


def flush_age(plan: LoadPlan) -> None:
    """send time - oldest event of each message, first sends and retries (a second send of a body) apart."""
    seen: set[bytes] = set()
    first: list[int] = []
    again: list[int] = []
    for m in plan.messages:
        if m.malformed:
            continue
        doc = orjson.loads(m.value)
        events = doc if isinstance(doc, list) else [doc]
        age = m.send_ms - min(ts_ms(e) for e in events)
        (again if m.value in seen else first).append(age)
        seen.add(m.value)
    for name, ages in (("first sends", first), ("retries", again)):
        if not ages:
            continue
        print(f"  {name}: {len(ages):,} messages; send - oldest event (s): p50 {pct(ages, .5) / 1000:.1f}, "
              f"p90 {pct(ages, .9) / 1000:.1f}, p99 {pct(ages, .99) / 1000:.1f}, max {max(ages) / 1000:.1f}; "
              f"> 10 s: {sum(a > 10_000 for a in ages) / len(ages):.1%}, "
              f"> 60 s: {sum(a > 60_000 for a in ages) / len(ages):.1%}")


def disorder(plan: LoadPlan, partitions: int, lateness_ms: int) -> None:
    """Per partition of the session topics (errors + actions), in produced order: how far each event
    lies behind the newest event time seen on its partition before it."""
    newest: dict[int, int] = {}
    behind: list[int] = []
    over = 0
    for m in plan.messages:
        if m.malformed or m.topic_kind == "vitals":
            continue
        p = (murmur2(m.key) & 0x7FFFFFFF) % partitions
        doc = orjson.loads(m.value)
        for e in doc if isinstance(doc, list) else [doc]:
            if e["type"] not in ("action", "error"):
                continue
            t = ts_ms(e)
            top = newest.get(p, t)
            behind.append(max(0, top - t))
            over += top - t >= lateness_ms
            newest[p] = max(top, t)
    print(f"  event-time disorder, per partition in produced order (s behind its newest): p50 "
          f"{pct(behind, .5) / 1000:.1f}, p99 {pct(behind, .99) / 1000:.1f}, p99.9 {pct(behind, .999) / 1000:.1f}, "
          f"max {max(behind, default=0) / 1000:.1f}; >= allowed lateness ({lateness_ms / 1000:.0f} s): {over:,} "
          f"of {len(behind):,} session events")


def polls(raws: list, batch: int, order: str) -> list[list]:  # type: ignore[type-arg]
    """``produced``: the produced order cut into polls of ``batch``. ``partition``: as aiokafka's
    ``getmany`` drains a backlog: one fetch buffers every topic-partition, a poll takes up to ``batch``
    records of one of them before the next (round robin here), so one partition's session topics
    advance a poll at a time each."""
    if order == "produced":
        return [raws[i:i + batch] for i in range(0, len(raws), batch)]
    by_tp: dict[tuple[str, int], list] = {}  # type: ignore[type-arg]
    for r in raws:
        by_tp.setdefault((r.topic, r.partition), []).append(r)
    out = []
    queues = [iter(v) for _, v in sorted(by_tp.items())]
    while queues:
        left = []
        for q in queues:
            chunk = [r for _, r in zip(range(batch), q)]
            if chunk:
                out.append(chunk)
                left.append(q)
        queues = left
    return out


def worker_late(plan: LoadPlan, batch: int, order: str) -> None:
    """The worker's sessions step over the messages read in ``order`` (see ``polls``)."""
    from agents.ingest import IngestRunner
    from agents.state import WorkerState
    from pipeline.ingest.process import WORKER_PROCESSORS, process_batch
    from pipeline.settings import Settings

    settings = Settings()
    k = settings.kafka
    raws = planned_raw_messages(plan, k)
    runner = IngestRunner(settings, WorkerState())
    for p in range(k.partitions):
        runner.sessions.restore(p, [])
    highwater = all_produced(raws)
    late = overflowed = 0
    for messages in polls(raws, batch, order):
        now = datetime.now(timezone.utc)
        out = process_batch(messages, runner.dedup, k.partitions, now, runner.session_topics, runner.rollup_rules,
                            runner.noise_rules, WORKER_PROCESSORS, time_window=runner.time_window)
        for _, step in runner.sessions.step_batch(out, highwater):
            late += len(step.late) - step.overflowed
            overflowed += step.overflowed
        runner.dedup.keep()
    print(f"  worker sessions step, {order} order, polls of {batch}: {late:,} events behind the watermark, "
          f"{overflowed:,} over a session's buffer bound (not sessionized: {late + overflowed:,})")


def main() -> int:
    from pipeline.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("flush", "one", "batch50"), default="flush")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None, help="messages per poll (default PULSE_WORKER_BATCH_SIZE)")
    parser.add_argument("--order", choices=("produced", "partition"), default="produced",
                        help="read order of the worker replay (see polls())")
    parser.add_argument("--no-worker", action="store_true", help="skip the worker replay (the slow part)")
    args = parser.parse_args()
    settings = Settings()
    plan = generate_load(events=args.events, sessions=args.sessions, shape=args.shape, seed=args.seed,
                         end_ms=int(time.time() * 1000) - 60_000)
    print(f"shape {args.shape}: {len(plan.messages):,} messages, {plan.events_sent:,} events "
          f"({plan.events_per_message:.2f}/message), {args.sessions:,} sessions, seed {args.seed}")
    flush_age(plan)
    disorder(plan, settings.kafka.partitions, settings.sessions.lateness_ms)
    if not args.no_worker:
        worker_late(plan, args.batch or settings.worker.batch_size, args.order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
