"""Producers -> Kafka -> Faust worker -> Kafka -> sink -> chDB, all real, all separate processes.

Events arrive through the HTTP collector (JSON array, NDJSON, gzip) and through the Python producer
API, with malformed events, undecodable bytes and resent duplicates mixed in. Exactly the valid
events must be in ClickHouse, once each; every bad input must be a dead letter with a reason.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import orjson
import pytest

from pipeline.ingest.producer import EventProducer
from pipeline.settings import Settings
from pipeline.simulate import generate_scenario
from pipeline.storage.query_client import QueryError, run_query
from tests.integration.kafka_read import read_topics
from tests.integration.pipeline_procs import running_pipeline

pytestmark = pytest.mark.integration
TABLES = {"error": "errors", "vital": "vitals", "action": "actions", "api": "api_calls"}


def is_valid(event: dict[str, object]) -> bool:
    """The simulator gives every malformed event a 'sess-bad-' session, or none at all."""
    return not str(event.get("session_id", "sess-bad")).startswith("sess-bad")


def query_rows(settings: Settings, sql: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in run_query(settings, sql, "JSONEachRow").splitlines() if line]


def wait_for(settings: Settings, sql: str, expected: object, timeout_s: float = 90) -> object:
    deadline = time.monotonic() + timeout_s
    got: object = None
    while time.monotonic() < deadline:
        try:
            got = query_rows(settings, sql)
        except QueryError:
            got = None
        if got == expected:
            return got
        time.sleep(0.5)
    return got


async def send(settings: Settings, flushes: list[list[dict[str, object]]]) -> dict[str, int]:
    """Split the flushes over the three HTTP encodings and the producer API."""
    url = f"http://127.0.0.1:{settings.collector.port}/api/v1/events"
    key = next(iter(settings.collector.project_keys))
    totals: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http, EventProducer(settings.kafka) as producer:
        for i, events in enumerate(flushes):
            mode = i % 4
            if mode == 3:
                result = await producer.send(events)
                totals["accepted"] += result.accepted
                totals["rejected"] += len(result.rejected)
                continue
            headers = {"X-Pulse-Key": key}
            if mode == 0:
                body = orjson.dumps(events)
            else:
                body = b"\n".join(orjson.dumps(e) for e in events)
                headers["Content-Type"] = "application/x-ndjson"
                if mode == 2:
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                doc = await resp.json()
                totals["accepted"] += doc["accepted"]
                totals["rejected"] += doc["rejected"]
        # Undecodable bytes straight onto a raw topic: only the worker can reject these.
        await producer.send_raw(settings.kafka.topic_actions, b"\xff\xfe not json", key=b"sess-garbage")
        await producer.flush()
    return dict(totals)


def test_exactly_the_valid_events_land_once_and_bad_ones_are_dead_letters(settings: Settings, tmp_path: Path) -> None:
    project = next(iter(settings.collector.project_keys.values()))
    scenario = generate_scenario(40, seed=21, start=datetime.now(timezone.utc), spread_s=0,
                                 project=project, malformed_ratio=0.05)
    flushes = [f.events for f in scenario.flushes]
    duplicates = flushes[:5]  # an SDK retrying flushes it already sent
    truth = scenario.truth
    assert truth.malformed > 0

    with running_pipeline(settings, tmp_path / "logs") as procs:
        totals = asyncio.run(send(settings, flushes + duplicates))
        # The edge accepts resent duplicates (it keeps no state); the worker drops them by event_id.
        dup_valid = sum(1 for f in duplicates for e in f if is_valid(e))
        dup_bad = sum(len(f) for f in duplicates) - dup_valid
        assert totals == {"accepted": truth.valid + dup_valid, "rejected": truth.malformed + dup_bad}

        expected = [{"t": TABLES[t], "n": n, "u": n} for t, n in sorted(truth.valid_by_type.items(), key=lambda x: TABLES[x[0]])]
        union = " UNION ALL ".join(
            f"SELECT '{t}' AS t, count() AS n, uniqExact(event_id) AS u FROM {t}" for t in sorted(TABLES.values()))
        got = wait_for(settings, f"SELECT t, n, u FROM ({union}) ORDER BY t", expected)
        assert got == expected, procs.log("worker")[-2000:] + procs.log("sink")[-2000:]

        # Every rejected event (collector and producer API, resends included) plus the garbage message.
        dead = wait_for(settings, "SELECT count() AS n FROM dead_letters WHERE reason != ''",
                        [{"n": totals["rejected"] + 1}])
        assert dead == [{"n": totals["rejected"] + 1}]
        steps = query_rows(settings, "SELECT step, count() AS n FROM dead_letters GROUP BY step ORDER BY step")
        assert {r["step"] for r in steps} == {"collector", "worker"}
        [garbage] = query_rows(settings, "SELECT reason, payload_encoding FROM dead_letters WHERE step = 'worker'")
        assert "invalid JSON" in str(garbage["reason"]) and garbage["payload_encoding"] == "base64"

        # The dead-letter topic itself holds them too, with reasons.
        expected_dead = totals["rejected"] + 1
        dlq = [r.doc for r in asyncio.run(read_topics(settings.kafka.bootstrap_servers, [settings.kafka.topic_dead_letter],
                                                      until=lambda out: len(out) >= expected_dead))]
        assert len(dlq) == expected_dead and all(d["reason"] for d in dlq)

        # Analysts query while the sink owns the database, and writes are refused.
        with pytest.raises(QueryError):
            run_query(settings, "DROP TABLE errors")
        assert query_rows(settings, "SELECT count() AS n FROM errors") == [{"n": truth.valid_by_type["error"]}]

    # With the sink stopped, `pulse query` opens the embedded database directly, still read-only.
    assert query_rows(settings, "SELECT count() AS n FROM actions") == [{"n": truth.valid_by_type["action"]}]
    with pytest.raises(QueryError, match="readonly|READONLY"):
        run_query(settings, "INSERT INTO errors (project) VALUES ('x')")
