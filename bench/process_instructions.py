"""Instructions per event of ``process_batch`` alone (no sessions, no outputs), for callgrind.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/process_instructions.py --shape one --reps 1
    (then the same with --reps 0; the difference of the two "Collected" totals / events is the figure)

``bench/replay_instructions.py`` counts the whole hot path; this one only the ingest step with
``WORKER_PROCESSORS``, rollups, session input and the time window on, on a fixed clock, cyclic GC
off (a collection falling into one run and not the other would move the figure). ``--repo`` runs
another tree's code (e.g. ``git archive main | tar -x -C /tmp/base``) with this script.
"""

from __future__ import annotations

import argparse
import gc
import sys
from datetime import datetime, timezone
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--shape", choices=("flush", "one", "batch50"), default="one")
parser.add_argument("--events", type=int, default=8_000)
parser.add_argument("--reps", type=int, choices=(0, 1), default=1)
parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
args = parser.parse_args()
sys.path.insert(0, args.repo)
sys.path.insert(0, str(Path(args.repo) / "bench"))

from agents.ingest import IngestRunner  # noqa: E402
from agents.state import WorkerState  # noqa: E402
from pipeline.ingest.dedup import StagedIds  # noqa: E402
from pipeline.ingest.process import WORKER_PROCESSORS, RawMessage, process_batch  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from replay_instructions import END_MS, raw_messages  # noqa: E402


def run(runner: IngestRunner, settings: Settings, raws: list[RawMessage]) -> None:
    now = datetime.fromtimestamp(END_MS / 1000 + 1, tz=timezone.utc)
    dedup = StagedIds(1_000_000)
    for i in range(0, len(raws), 2000):
        process_batch(raws[i:i + 2000], dedup, settings.kafka.partitions, now, runner.session_topics,
                      runner.rollup_rules, runner.noise_rules, WORKER_PROCESSORS, time_window=runner.time_window)
        dedup.keep()


def main() -> int:
    gc.disable()
    settings = Settings()
    runner = IngestRunner(settings, WorkerState())
    warm, _ = raw_messages(settings, args.shape, 2_000, 100, seed=2)
    run(runner, settings, warm)
    raws, events = raw_messages(settings, args.shape, args.events, args.events // 20, seed=1)
    if args.reps:
        run(runner, settings, raws)
    print(f"{args.shape}: {len(raws)} messages, {events} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
