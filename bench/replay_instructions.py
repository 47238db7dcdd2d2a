"""Instructions per event of the worker's hot path, counted by valgrind (noise-free, unlike CPU time).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/replay_instructions.py --shape flush --reps 1
    (then the same with --reps 0; the difference of the two "Collected" totals / events is the figure)
    .venv/bin/python bench/replay_instructions.py --shape flush --run   # prints the difference itself

The same loop as ``bench/ingest_replay.py`` (process_batch, sessions, outputs; no record-batch
encoding), on a fixed clock so two runs do the same work: ``--reps 0`` does everything but the
measured replay (imports, traffic generation, a warm-up replay of other traffic with its own runner,
which also pays one-time costs such as the user-agent parser's set-up), ``--reps 1`` adds it.
``--run`` starts both under valgrind and prints instructions per event.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agents.ingest import IngestRunner  # noqa: E402
from agents.state import WorkerState  # noqa: E402
from pipeline.ingest.process import WORKER_PROCESSORS, RawMessage, process_batch  # noqa: E402
from pipeline.runtime import tune_gc  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.simulate_load import generate_load  # noqa: E402
from planned_reads import all_produced, planned_raw_messages  # noqa: E402 - bench/ is sys.path[1]

END_MS = 1_780_000_000_000  # a fixed clock: the same traffic and the same decisions in every run


def raw_messages(settings: Settings, shape: str, events: int, sessions: int, seed: int) -> tuple[list[RawMessage], int]:
    k = settings.kafka
    plan = generate_load(events=events, sessions=sessions, shape=shape, seed=seed, end_ms=END_MS)
    raws = planned_raw_messages(plan, k)
    return raws, plan.events_sent


def replay(settings: Settings, raws: list[RawMessage]) -> int:
    """What the runner's step does per poll, minus Kafka; returns the sends made (a check)."""
    k = settings.kafka
    runner = IngestRunner(settings, WorkerState())
    for p in range(k.partitions):
        runner.sessions.restore(p, [])
    highwater = all_produced(raws)
    now = datetime.fromtimestamp(END_MS / 1000 + 1, tz=timezone.utc)
    sent = 0
    size = settings.worker.batch_size
    for i in range(0, len(raws), size):
        messages = raws[i:i + size]
        out = process_batch(messages, runner.dedup, k.partitions, now, runner.session_topics, runner.rollup_rules,
                            runner.noise_rules, WORKER_PROCESSORS, time_window=runner.time_window)
        steps = runner.sessions.step_batch(out, highwater)
        sends = runner._outputs(out, messages, now) + runner.sessions.sends_for(steps)
        sends += runner.sessions.changelog_sends(steps)
        sent += len(sends)
        runner.dedup.keep()
    return sent


def collected(args: argparse.Namespace, reps: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
           "--shape", args.shape, "--events", str(args.events), "--sessions", str(args.sessions), "--reps", str(reps)]
    done = subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("flush", "one", "batch50"), default="flush")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--sessions", type=int, default=1_500)
    parser.add_argument("--reps", type=int, choices=(0, 1), default=1)
    parser.add_argument("--run", action="store_true", help="run --reps 0 and 1 under valgrind, print the difference")
    args = parser.parse_args()
    if args.run:
        base, full = collected(args, 0), collected(args, 1)
        settings = Settings()
        _, events = raw_messages(settings, args.shape, args.events, args.sessions, seed=1)
        print(f"{args.shape}: {(full - base) / events:,.0f} instructions/event ({full - base:,} for {events} events)")
        return 0
    tune_gc()  # as the worker does (agents/worker.py)
    settings = Settings()
    warm, _ = raw_messages(settings, args.shape, 3_000, 200, seed=2)
    replay(settings, warm)
    raws, events = raw_messages(settings, args.shape, args.events, args.sessions, seed=1)
    sent = replay(settings, raws) if args.reps else 0
    print(f"{args.shape}: {events} events, {sent} sends")
    return 0


if __name__ == "__main__":
    sys.exit(main())
