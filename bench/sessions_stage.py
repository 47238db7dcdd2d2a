"""The worker's sessions stage alone: CPU and instructions per event of ``SessionStore.step_batch``
(and, with ``--outputs``, of ``sends_for`` + ``changelog_sends``), on the replay's traffic.

    .venv/bin/python bench/sessions_stage.py --shape one --events 100000 --sessions 5000 --reps 5
    .venv/bin/python bench/sessions_stage.py --shape one --events 20000 --sessions 1000 --run  # callgrind
    .venv/bin/python bench/sessions_stage.py --shape one --profile /tmp/stage.prof

The batches ``process_batch`` makes of the traffic are computed first (untimed, on a fixed clock, as
``bench/replay_instructions.py`` does), then fed to a fresh ``SessionStore`` in order: the figure is
the stage's own cost, without the noise of the rest of the step. ``--run`` counts instructions under
valgrind (``--count 0`` does everything but the stage, ``--count 1`` adds it; the difference per
event is printed); the worker's GC threshold is set as in ``agents/worker.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agents.ingest import IngestRunner  # noqa: E402
from agents.state import WorkerState  # noqa: E402
from pipeline.ingest.process import WORKER_PROCESSORS, process_batch  # noqa: E402
from pipeline.runtime import tune_gc  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from planned_reads import all_produced  # noqa: E402 - bench/ is sys.path[1]
from replay_instructions import END_MS, raw_messages  # noqa: E402


def batches(settings: Settings, shape: str, events: int, sessions: int) -> tuple[list[Any], Any, int]:
    """``process_batch``'s outputs for every poll of the traffic (their session events are fresh
    objects: the stage mutates clicks, so a run needs its own)."""
    k = settings.kafka
    raws, sent = raw_messages(settings, shape, events, sessions, seed=1)
    runner = IngestRunner(settings, WorkerState())
    now = datetime.fromtimestamp(END_MS / 1000 + 1, tz=timezone.utc)
    size = settings.worker.batch_size
    outs = []
    for i in range(0, len(raws), size):
        outs.append(process_batch(raws[i:i + size], runner.dedup, k.partitions, now, runner.session_topics,
                                  runner.rollup_rules, runner.noise_rules, WORKER_PROCESSORS,
                                  time_window=runner.time_window))
        runner.dedup.keep()
    return outs, all_produced(raws), sent


def run_stage(settings: Settings, outs: list[Any], highwater: Any, outputs: bool) -> int:
    runner = IngestRunner(settings, WorkerState())
    store = runner.sessions
    for p in range(settings.kafka.partitions):
        store.restore(p, [])
    records = 0
    for out in outs:
        steps = store.step_batch(out, highwater)
        if outputs:
            store.sends_for(steps)
            records += len(store.changelog_sends(steps))
        else:
            records += sum(len(step.writes) for _, step in steps)
    return records


def collected(args: argparse.Namespace, count: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
           "--shape", args.shape, "--events", str(args.events), "--sessions", str(args.sessions),
           "--count", str(count)] + (["--outputs"] if args.outputs else [])
    done = subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("flush", "one", "batch50"), default="flush")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--reps", type=int, default=3, help="timed runs (each on freshly processed batches)")
    parser.add_argument("--outputs", action="store_true", help="include sends_for and changelog_sends")
    parser.add_argument("--profile", help="write a cProfile of one run to this file")
    parser.add_argument("--count", type=int, choices=(0, 1), help="for --run: 0 prepares only, 1 adds the stage")
    parser.add_argument("--run", action="store_true", help="count instructions under valgrind, per event")
    args = parser.parse_args()
    if args.run:
        base, full = collected(args, 0), collected(args, 1)
        _, _, events = batches(Settings(), args.shape, args.events, args.sessions)
        print(f"{args.shape}: {(full - base) / events:,.0f} instructions/event ({full - base:,} for {events} events)")
        return 0
    tune_gc()  # as the worker does
    settings = Settings()
    warm, warm_hw, _ = batches(settings, args.shape, 3_000, 200)
    run_stage(settings, warm, warm_hw, args.outputs)
    if args.count is not None:
        outs, highwater, events = batches(settings, args.shape, args.events, args.sessions)
        records = run_stage(settings, outs, highwater, args.outputs) if args.count else 0
        print(f"{args.shape}: {events} events, {records} state records")
        return 0
    figures = []
    for _ in range(args.reps):
        outs, highwater, events = batches(settings, args.shape, args.events, args.sessions)
        profiler = cProfile.Profile() if args.profile else None
        t0 = time.process_time()
        if profiler:
            profiler.enable()
        records = run_stage(settings, outs, highwater, args.outputs)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        figures.append((time.process_time() - t0) / events * 1e6)
        del outs
    print(f"{args.shape}: {events} events, {records} state records; stage CPU us/event: median "
          f"{statistics.median(figures):.2f} (min {min(figures):.2f}, max {max(figures):.2f}) of {len(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
