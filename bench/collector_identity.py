"""Does the collector still put the same records on Kafka and give the same answers? The collector app
of a git revision and of this checkout, on the same HTTP requests, compared request by request: what
each request handed to the producer (topic, key, value, headers, in order) and its answer (status,
body, Content-Type).

    .venv/bin/python bench/collector_identity.py                  # against main
    .venv/bin/python bench/collector_identity.py --base HEAD~2 --events 4000

Requests: ``bench/collector_bench.py``'s pools (the mix of posthog-js flushes, half gzip-js, Sentry
error envelopes and native arrays of 1-10 events; native requests of 1, 5 and 10 events) made
deterministic (seeded ids, one fixed clock), plus hand-made ones: invalid events among valid ones,
clock skew, times out of the window, error events, broken NDJSON lines, another project's events.
Each tree serves them through its own ``make_app`` in process (aiohttp's test server), with a
producer whose ``deliver`` records the messages instead of sending them (the part of the producer
after ``deliver`` hands the same objects to aiokafka). A refactoring must print ``IDENTICAL``.
"""

from __future__ import annotations

import asyncio
import pickle
import random
import sys
import uuid
from datetime import datetime, timezone
from typing import Any

from tree_compare import run_check  # bench/ is sys.path[0] when run as a script

KEY = "bench-key"
NOW = datetime(2026, 11, 23, 10, 0, 40, tzinfo=timezone.utc)


def freeze_clock_and_ids(*modules: Any) -> None:
    """Make the collector's work repeatable: every ``datetime.now`` in ``modules`` answers ``NOW``
    and ``collector_bench``'s event ids come from a seeded generator (the last module given must be
    ``collector_bench``). Used by this check and by ``collector_instructions.py``, so both run the
    same requests the same way."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return NOW if tz is not None else NOW.replace(tzinfo=None)

    seeded = random.Random(5)
    modules[-1].uuid.uuid4 = lambda: uuid.UUID(int=seeded.getrandbits(128), version=4)
    for module in modules:
        module.datetime = Frozen


def hand_made() -> list[Any]:
    import orjson

    from collector_bench import BenchRequest, make_events

    rng = random.Random(11)
    out = []
    headers = {"X-Pulse-Key": KEY, "Content-Type": "application/json"}
    for variant in range(12):
        events = [e for e in make_events(40, rng) if e["type"] != "error"][:5]  # errors: always pydantic
        if variant == 0:
            events[1]["vital"] = {"name": "LCP", "value": -1}
        elif variant == 1:
            events[2]["type"] = "nope"
        elif variant == 2:
            for e in events:
                e["sent_at"], e["timestamp"] = "2027-11-23T10:00:40Z", "2027-11-23T10:00:35Z"
        elif variant == 3:
            events[0]["timestamp"] = "9999-01-01T00:00:00Z"
        elif variant == 4:
            events[3]["project"] = "someone-else"
        elif variant == 5:
            events[0]["timestamp"] = "2026-11-23T10:00:30"  # naive
        elif variant == 6:
            events[0]["timestamp"] = "2026-11-23T12:00:30.1234567+02:00"
        elif variant == 7:
            events[4]["api"] = {"url": "/a", "method": "GET", "status": "200", "duration_ms": 1}
        elif variant == 8:
            body = b"\n".join(orjson.dumps(e) for e in events) + b'\n{"broken\n'
            out.append(BenchRequest("/api/v1/events", {"X-Pulse-Key": KEY, "Content-Type": "application/x-ndjson"},
                                    body, 5, "ndjson"))
            continue
        elif variant == 9:
            events.append("not an object")
        elif variant == 10:
            events += [e for e in make_events(40, rng) if e["type"] == "error"][:1]
        out.append(BenchRequest("/api/v1/events", headers, orjson.dumps(events), len(events), f"hand-{variant}"))
    return out


def dump(path: str, events: int, sessions: int) -> None:
    """Every request through this tree's collector app; pickled per scenario."""
    import os

    os.environ["PULSE_COLLECTOR_PROJECT_KEYS"] = '{"%s": "bench"}' % KEY
    import pipeline.collector.app as app_module  # this tree's pipeline first (collector_bench adds the checkout's)
    import pipeline.collector.sdk as sdk_module
    from aiohttp.test_utils import TestClient, TestServer

    import collector_bench
    from pipeline.ingest.producer import EventProducer
    from pipeline.settings import Settings

    freeze_clock_and_ids(app_module, sdk_module, collector_bench)

    class Recording(EventProducer):
        sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = []

        @property
        def started(self) -> bool:
            return True

        async def deliver(self, messages: Any, timeout_s: float | None = None) -> None:
            self.sent.extend((m.topic, m.key, m.value, m.headers) for m in messages)

    count = max(1, events // 3)
    scenarios = {"mix": collector_bench.build_pool("mix", count), "native-1": collector_bench.build_pool("1", count),
                 "native-5": collector_bench.build_pool("5", count // 3), "native-10": collector_bench.build_pool("10", count // 6),
                 "hand-made": hand_made()}

    async def serve_all() -> dict[str, list[dict[str, bytes]]]:
        settings = Settings()
        producer = Recording(settings.kafka, process="collector")
        client = TestClient(TestServer(app_module.make_app(settings, producer), auto_decompress=False))
        await client.start_server()
        out: dict[str, list[dict[str, bytes]]] = {}
        try:
            for name, pool in scenarios.items():
                steps = out[name] = []
                for req in pool:
                    Recording.sent = []
                    async with client.post(req.path, data=req.body, headers=req.headers) as resp:
                        body = await resp.read()
                        steps.append({"answer": repr((resp.status, resp.headers.get("Content-Type"), body)).encode(),
                                      "sends": repr(Recording.sent).encode()})
        finally:
            await client.close()
        return out

    result = asyncio.run(serve_all())
    with open(path, "wb") as f:
        pickle.dump(result, f)


def summary(scenario: str, steps: list[dict[str, bytes]]) -> str:
    sends = sum(s["sends"].count(b"(b'") + s["sends"].count(b"('") for s in steps)
    ok = sum(s["answer"].startswith(b"(200") for s in steps)
    return f"{scenario}: {len(steps)} requests, {ok} answered 200, ~{sends} messages"


def main() -> int:
    return run_check(__doc__, __file__, dump, "collector-identity-", "request", summary)


if __name__ == "__main__":
    sys.exit(main())
