"""Does the worker's whole ingest step still produce the same records? ``IngestRunner.step`` of a git
revision and of this checkout, on the same traffic, compared send by send (topic, key, value,
partition, headers), state records (session changelog) included.

    .venv/bin/python bench/ingest_sends_identity.py                  # against main
    .venv/bin/python bench/ingest_sends_identity.py --base HEAD~3 --events 40000

``bench/ingest_identity.py`` compares ``process_batch``; this one compares what reaches Kafka: the
storage range messages, issue occurrences, alert partials, dead letters, session rows, UX signals
and changelog records of each poll, as ``agents/stage.py`` would hand them to the producer. The
revision is exported with ``git archive`` and this script runs itself there (``--dump``), importing
that tree's ``agents`` and ``pipeline``; then here. Traffic (``ingest_identity.traffic``): simulated
SDK flushes and one event per message (retries, malformed records: dead letters; errors: issue
occurrences; every event: alert partials), and hand-made metrics, API calls, noise and fingerprinted
errors, bad events, times out of the window. Configurations: the default settings; small limits
(``PULSE_WORKER_MAX_RECORD_BYTES`` 16 KB, ``PULSE_ALERTS_PARTIALS_MAX_BYTES`` 4 KB) so storage records
and partials are cut and a message whose rows pass the limit becomes a dead letter (oversized
messages are added); one storage partition. Polls are replayed in order with the dedup memory and
sessions carried over, as the worker does after each commit. A refactoring must print ``IDENTICAL``
(exit 0); anything else names the first scenario, poll and send that differ.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any

from tree_compare import REPO, run_check  # bench/ is sys.path[0] when run as a script
POLL = 2000
CONFIGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "small-limits": {"PULSE_WORKER_MAX_RECORD_BYTES": str(16 * 1024), "PULSE_ALERTS_PARTIALS_MAX_BYTES": "4096"},
    "one-storage-partition": {"PULSE_KAFKA_PARTITIONS": "1", "PULSE_WORKER_MAX_RECORD_BYTES": str(64 * 1024)},
}


def oversized(topics: dict[str, str], now_ms: int) -> list[tuple[str, int, int, bytes | None, bytes, int | None]]:
    """Messages whose rows alone pass 16 KB (long error messages), between ordinary ones."""
    import orjson

    out = []
    for i in range(6):
        events = [{"event_id": f"00000000-0000-4000-8000-{i:06d}{j:06d}", "type": "error", "project": "shop",
                   "timestamp": "2026-11-23T09:59:0%dZ" % (j % 10), "session_id": f"s-big{i}", "url": "https://x.io/a",
                   "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "release": "9",
                   "error": {"exception_type": "RangeError", "message": f"m{j} " + "x" * 3000}}
                  for j in range(8 if i % 2 else 2)]
        out.append((topics["errors"], i % 4, 0, f"s-big{i}".encode(), orjson.dumps(events), now_ms - 1000))
    return out


def canonical_sends(sends: list[Any]) -> bytes:
    return repr([(t, k, v, p, [(h, bytes(b)) for h, b in hs]) for t, k, v, p, hs in sends]).encode()


def dump(path: str, events: int, sessions: int) -> None:
    """Every (traffic, config) scenario through this tree's ``IngestRunner.step``; pickled per poll."""
    sys.path.insert(0, str(REPO / "bench"))
    import ingest_identity as ii  # this checkout's traffic, the tree under test's pipeline

    from collections import Counter

    results: dict[str, list[dict[str, bytes]]] = {}
    for config, env in CONFIGS.items():
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            from agents.ingest import IngestRunner
            from agents.state import WorkerState
            from pipeline.ingest.process import RawMessage
            from pipeline.settings import Settings

            settings = Settings()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        k = settings.kafka
        topics = {"errors": k.topic_errors, "vitals": k.topic_vitals, "actions": k.topic_actions}
        inputs = ii.traffic(events, sessions, topics)
        big = oversized(topics, ii.NOW_MS)
        inputs["handmade"] = [m for pair in zip(inputs["handmade"], big + [None] * len(inputs["handmade"]))
                              for m in pair if m is not None]
        for name, msgs in inputs.items():
            offsets: Counter[tuple[str, int]] = Counter()
            numbered = []
            for topic, partition, _, key, value, ts in msgs:
                partition %= k.partitions
                numbered.append(RawMessage(topic, partition, offsets[(topic, partition)], key, value, ts))
                offsets[(topic, partition)] += 1
            runner = IngestRunner(settings, WorkerState())
            runner.highwater = lambda topic, partition: offsets[(topic, partition)]  # type: ignore[method-assign]
            for p in range(k.partitions):
                runner.sessions.restore(p, [])
            polls = []
            for i in range(0, len(numbered), POLL):
                out = runner.step(numbered[i:i + POLL], ii.NOW)
                polls.append({"outputs": canonical_sends(out.outputs), "state": canonical_sends(out.state),
                              "sends": repr([len(out.outputs), len(out.state)]).encode()})
                for done in out.done:
                    done()
            results[f"{name}/{config}"] = polls
    with open(path, "wb") as f:
        pickle.dump(results, f)


def summary(scenario: str, polls: list[dict[str, bytes]]) -> str:
    sends = sum(int(p["sends"][1:-1].split(b",")[0]) for p in polls)
    state = sum(int(p["sends"][1:-1].split(b",")[1]) for p in polls)
    size = sum(len(p["outputs"]) for p in polls)
    return f"{scenario:36s} {len(polls):3d} polls, {sends:6d} sends ({size / 1e6:.1f} MB), {state:6d} state records"


def main() -> int:
    return run_check(__doc__, __file__, dump, "ingest-sends-identity-", "poll", summary)


if __name__ == "__main__":
    sys.exit(main())
