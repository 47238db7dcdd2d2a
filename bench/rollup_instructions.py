"""Instructions per event of the minute rollup processor alone (``roll_up_minutes_with_alerts``), for callgrind.

    .venv/bin/python bench/rollup_instructions.py --shape flush|one --run [--repo /tmp/base]

``process_batch`` runs once with ``store_rows`` and a processor that only records each message's
``FirstTime``; ``--reps 1`` then hands the recorded messages to the rollup processor alone (one
``ProcessedBatch`` per 2,000 messages, as the worker's batches), ``--reps 0`` does not. ``--run``
starts both under valgrind (PYTHONHASHSEED=0, cyclic GC off) and prints the difference per event.
``--repo``: another tree's code (e.g. ``git archive main | tar -x -C /tmp/base``), this traffic.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--shape", choices=("flush", "one", "batch50"), default="flush")
parser.add_argument("--events", type=int, default=8_000)
parser.add_argument("--reps", type=int, choices=(0, 1), default=1)
parser.add_argument("--run", action="store_true", help="run --reps 1 and 0 under valgrind, print the figure")
parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
args = parser.parse_args()


def collected(reps: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
           "--shape", args.shape, "--events", str(args.events), "--reps", str(reps), "--repo", args.repo]
    done = subprocess.run(cmd, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))  # type: ignore[union-attr]


if args.run:
    events = int(re.search(r"(\d+) events", subprocess.run(
        [sys.executable, __file__, "--shape", args.shape, "--events", str(args.events), "--reps", "0",
         "--repo", args.repo], capture_output=True, text=True, check=True).stdout).group(1))  # type: ignore[union-attr]
    print(f"{args.shape}: {(collected(1) - collected(0)) / events:,.0f} instructions per event ({args.repo})")
    sys.exit(0)

sys.path.insert(0, args.repo)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from agents.ingest import IngestRunner  # noqa: E402
from agents.state import WorkerState  # noqa: E402
from pipeline.ingest import process  # noqa: E402
from pipeline.ingest.dedup import StagedIds  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from replay_instructions import END_MS, raw_messages  # noqa: E402


def record(runner: IngestRunner, settings: Settings, raws: list[Any]) -> list[list[Any]]:
    """Each batch's ``FirstTime`` messages, as the rollup processor would get them."""
    now = datetime.fromtimestamp(END_MS / 1000 + 1, tz=timezone.utc)
    dedup = StagedIds(1_000_000)
    batches: list[list[Any]] = []
    for i in range(0, len(raws), 2000):
        got: list[Any] = []
        process.process_batch(raws[i:i + 2000], dedup, settings.kafka.partitions, now, runner.session_topics,
                              runner.rollup_rules, runner.noise_rules,
                              (process.store_rows, lambda m, out: got.append(m)), time_window=runner.time_window)
        dedup.keep()
        batches.append(got)
    return batches


def roll_up(batches: list[list[Any]]) -> None:
    for got in batches:
        out = process.ProcessedBatch()
        for m in got:
            process.roll_up_minutes_with_alerts(m, out)


gc.disable()
settings = Settings()
runner = IngestRunner(settings, WorkerState())
warm, _ = raw_messages(settings, args.shape, 2_000, 100, seed=2)
roll_up(record(runner, settings, warm))  # one-time costs (user-agent parser, caches)
raws, events = raw_messages(settings, args.shape, args.events, args.events // 20, seed=1)
recorded = record(runner, settings, raws)
if args.reps:
    roll_up(recorded)
print(f"{args.shape}: {len(raws)} messages, {events} events")
