"""Does the worker's ingest step still make the same bytes? ``process_batch`` of a git revision and of
this checkout, on the same generated traffic, compared output by output.

    .venv/bin/python bench/ingest_identity.py                  # against main
    .venv/bin/python bench/ingest_identity.py --base HEAD~3 --events 40000

The revision is exported with ``git archive`` into a temporary directory and this script runs itself
there (``--dump``), importing that tree's ``pipeline``; then here. Traffic: this checkout's ``pipeline/simulate_load.py``
in its ``flush`` (1-5 events per message) and ``one`` shapes (retries = duplicates, malformed records),
plus hand-made messages for what it does not send: custom metrics, API calls, noise errors, an invalid
event inside an array, the same id twice in one message, no or a negative Kafka timestamp, event times
far in the past or future (rejected, clamped), late events. Each is run with the worker's processors and
the default ones, with and without rollups, session topics and the time window. A refactoring of the
step must print ``IDENTICAL`` (exit 0); anything else names the first scenario and field that differ.
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
import sys
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from tree_compare import run_check  # bench/ is sys.path[0] when run as a script
NOW = datetime(2026, 11, 23, 10, 0, 5, 123000, tzinfo=timezone.utc)
NOW_MS = 1_795_428_005_123
PARTITIONS = 4
POLL = 500


def handmade(topics: dict[str, str]) -> list[tuple[str, int, int, bytes | None, bytes, int | None]]:
    """Messages of every shape simulate_load does not make, as RawMessage arguments (offsets added later)."""
    import orjson

    rnd = __import__("random").Random(7)

    def uid() -> str:
        return str(uuid.UUID(int=rnd.getrandbits(128), version=4))

    def iso(ms: int) -> str:
        return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)).isoformat().replace(
            "+00:00", "Z")

    def env(type_: str, ms: int, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return {"event_id": uid(), "type": type_, "project": kw.pop("project", "shop"), "timestamp": iso(ms),
                "session_id": kw.pop("session_id", "s-h"), "user_id": "u1", "anonymous_id": "a1",
                "url": kw.pop("url", "https://shop.example.com/cart?x=1"), "route": kw.pop("route", None),
                "user_agent": kw.pop("user_agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                     "(KHTML, like Gecko) Chrome/124.0 Safari/537.36"),
                "release": kw.pop("release", "1.2.3"), type_: payload, **kw}

    out: list[tuple[str, int, int, bytes | None, bytes, int | None]] = []
    for i in range(120):
        ts = NOW_MS - 10_000 - i * 7_919
        sent = NOW_MS - i * 5_000
        metric = env("metric", ts, {"name": "checkout.duration", "value": float(i % 17), "unit": "millisecond",
                                    "tags": {"route": f"/r{i % 3}", "tier": "gold" if i % 2 else "free"}})
        metric2 = env("metric", ts + 1, {"name": "cart.size", "value": float(i % 5)}, session_id="metric:cart.size")
        api = env("api", ts, {"kind": "fetch", "url": f"https://shop.example.com/api/p/{i}", "method": "GET",
                              "status": 200 if i % 9 else 503, "duration_ms": 12.5 + i}, route="/product/:id")
        vital = env("vital", ts, {"name": "LCP", "value": 1200.0 + i, "rating": "good"}, consent=bool(i % 4))
        click = env("action", ts, {"kind": "click", "selector": "#buy", "x": 10, "y": 20,
                                   "observed": {"dom_mutation_ms": None, "navigated": False, "scrolled": False,
                                                "observed_for_ms": 1000}})
        error = env("error", ts, {"exception_type": "TypeError", "message": f"x{i % 4} is undefined",
                                  "stacktrace": [{"filename": "https://shop.example.com/app.js", "function": "f",
                                                  "lineno": 10 + i % 3, "in_app": True}]})
        noise = env("error", ts, {"exception_type": "Error", "message": "ResizeObserver loop limit exceeded"})
        script = env("error", ts, {"exception_type": "Error", "message": "Script error."})
        fingerprinted = env("error", ts, {"exception_type": "E", "message": "m", "fingerprint": ["checkout", "x"]})
        late = env("vital", NOW_MS - 3_600_000 - i * 1000, {"name": "CLS", "value": 0.1})
        past = env("vital", NOW_MS - 400 * 86_400_000, {"name": "INP", "value": 80.0})
        future = env("action", NOW_MS + 2 * 86_400_000, {"kind": "click", "selector": "#far"})
        bad = env("vital", ts, {"name": "LCP", "value": "fast"})
        key = f"s-h{i % 9}".encode()
        v, a, e = topics["vitals"], topics["actions"], topics["errors"]
        out += [
            (v, i % 4, 0, b"metric:checkout.duration", orjson.dumps(metric), sent),
            (v, i % 4, 0, key, orjson.dumps([metric, metric2, api, vital]), sent),
            (v, i % 4, 0, key, orjson.dumps([vital, api]), None if i % 3 == 0 else sent),  # repeats: duplicates
            (v, i % 4, 0, key, orjson.dumps([bad, late, dict(late, event_id=uid())]), -1 if i % 5 == 0 else sent),
            (v, i % 4, 0, key, orjson.dumps([past, env("vital", ts, {"name": "TTFB", "value": 3.0})]), sent),
            (a, i % 4, 0, key, orjson.dumps([click, click, future, env("action", ts, {"kind": "scroll"})]), sent),
            (a, i % 4, 0, key, orjson.dumps(future), sent),
            (e, i % 4, 0, key, orjson.dumps(error), sent),
            (e, i % 4, 0, key, orjson.dumps([noise, script, fingerprinted, error]), sent),
            (e, i % 4, 0, key, b'{"event_id": "not json', sent),
            (e, i % 4, 0, key, orjson.dumps([error, {"type": "error"}]), sent),
        ]
    return out


def traffic(events: int, sessions: int, topics: dict[str, str]) -> dict[str, list[Any]]:
    """Named lists of RawMessage argument tuples, offsets numbered per (topic, partition)."""
    from collections import Counter

    from tree_compare import this_generator

    generate_load = this_generator().generate_load

    def murmur_partition(key: bytes) -> int:
        return int(hashlib.md5(key).hexdigest(), 16) % PARTITIONS  # any fixed spread will do

    inputs: dict[str, list[Any]] = {}
    for shape in ("flush", "one"):
        plan = generate_load(events=events, sessions=sessions, shape=shape, seed=3, end_ms=NOW_MS)
        inputs[shape] = [(topics[m.topic_kind], murmur_partition(m.key), 0,
                          m.key, m.value, m.send_ms) for m in plan.messages]
    inputs["handmade"] = handmade(topics)
    for name, msgs in inputs.items():
        offsets: Counter[tuple[str, int]] = Counter()
        numbered = []
        for topic, partition, _, key, value, ts in msgs:
            numbered.append((topic, partition, offsets[(topic, partition)], key, value, ts))
            offsets[(topic, partition)] += 1
        inputs[name] = numbered
    return inputs


def canonical(out: Any) -> dict[str, bytes]:
    """Every field of a ProcessedBatch as bytes, order kept (byte-identity includes dict order)."""
    import orjson

    from pipeline.rollups.minute import merge_rollup_rows

    opt = orjson.OPT_NON_STR_KEYS
    return {
        "storage": repr([(s.table, s.source, s.key, s.partition_hint, s.value, s.rows, s.line_sources)
                         for s in out.storage]).encode(),
        "dead_letters": b"\n".join(d.to_row_json() if hasattr(d, "to_row_json") else repr(d).encode()
                                   for d in out.dead_letters),
        "events_in": repr(list(out.events_in.items())).encode(),
        "rows_out": repr(list(out.rows_out.items())).encode(),
        "duplicates": repr(out.duplicates).encode(),
        "session_events": repr([(p, [(s.topic, s.offset, repr(s.event)) for s in evs])
                                for p, evs in out.session_events.items()]).encode(),
        "session_upto": repr(list(out.session_upto.items())).encode(),
        "issue_records": repr(out.issue_records).encode(),
        # as the runner sends them, merged per series (since outputs-cpu the step merges as it goes)
        "alert_rows": b"\n".join(orjson.dumps(r, option=opt) for r in merge_rollup_rows(out.alert_rows)),
        "late_rollup_events": repr(out.late_rollup_events).encode(),
    }


def dump(path: str, events: int, sessions: int) -> None:
    """Run every scenario with the ``pipeline`` on sys.path[0] and pickle {scenario: canonical outputs}."""
    from pipeline.ingest import process
    from pipeline.ingest.dedup import RecentIds
    from pipeline.ingest.validate import EventTimeWindow
    from pipeline.rollups.minute import RollupRules
    from pipeline.settings import Settings

    k = Settings().kafka
    topics = {"errors": k.topic_errors, "vitals": k.topic_vitals, "actions": k.topic_actions}
    session_topics = frozenset(k.session_topics)
    has_processors = "processors" in inspect.signature(process.process_batch).parameters

    def run(msgs: list[Any], worker: bool, rollups: Any, sessions_on: bool, window: Any) -> list[dict[str, bytes]]:
        if has_processors:
            chosen = {"processors": process.WORKER_PROCESSORS if worker else process.DEFAULT_PROCESSORS}
        else:
            chosen = {"downstream": worker}
        dedup = RecentIds(1_000_000)
        outs = []
        for i in range(0, len(msgs), POLL):
            raw = [process.RawMessage(*m) for m in msgs[i:i + POLL]]
            out = process.process_batch(raw, dedup, PARTITIONS, NOW, session_topics if sessions_on else frozenset(),
                                        rollups, time_window=window, **chosen)
            c = canonical(out)
            ranged, dead = process.range_messages(out.storage, {m.source: m for m in raw}, 64_000, NOW)
            c["ranged"] = repr([(r.table, r.source, r.value, r.rows, r.line_sources) for r in ranged]).encode()
            c["ranged_dead"] = b"\n".join(d.to_row_json() for d in dead)
            outs.append(c)
        return outs

    results: dict[str, list[dict[str, bytes]]] = {}
    inputs = traffic(events, sessions, topics)
    configs = {
        "worker": dict(worker=True, rollups=RollupRules(), sessions_on=True, window=EventTimeWindow()),
        "worker-clamp": dict(worker=True, rollups=RollupRules(lateness_ms=5_000), sessions_on=True,
                             window=EventTimeWindow(out_of_range="clamp")),
        "default": dict(worker=False, rollups=RollupRules(), sessions_on=True, window=None),
        "bare": dict(worker=False, rollups=None, sessions_on=False, window=None),
        "worker-no-rollups": dict(worker=True, rollups=None, sessions_on=False, window=EventTimeWindow()),
    }
    for name, msgs in inputs.items():
        for config, kwargs in configs.items():
            results[f"{name}/{config}"] = run(msgs, **kwargs)
    with open(path, "wb") as f:
        pickle.dump(results, f)


def summary(scenario: str, polls: list[dict[str, bytes]]) -> str:
    counts = {f: sum(len(p[f]) for p in polls) for f in ("storage", "dead_letters", "session_events",
                                                         "issue_records", "alert_rows")}
    return f"{scenario:32s} {len(polls)} polls, bytes per field {counts}"


def main() -> int:
    return run_check(__doc__, __file__, dump, "ingest-identity-", "poll", summary)


if __name__ == "__main__":
    sys.exit(main())
