"""The sink on a real broker and real chDB: exact counts, idempotence, SIGKILL safety, SQL endpoint."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.contract import EVENT_ADAPTER, DeadLetter, encode_line_sources, encode_source_range
from pipeline.ingest.normalize import event_to_row
from pipeline.settings import Settings
from tests.conftest import settings_env
from tests.integration.pipeline_procs import PipelineProcs

pytestmark = pytest.mark.integration
NOW = datetime.now(timezone.utc)


def action_rows(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        e = EVENT_ADAPTER.validate_python({"event_id": str(uuid.uuid4()), "type": "action", "project": "p",
                                           "timestamp": NOW.isoformat(), "session_id": f"s{i % 9}",
                                           "action": {"kind": "click", "selector": "#b", "x": i, "y": 1}})
        out.append(orjson.dumps(event_to_row(e, NOW)[1]))
    return out


async def produce(settings: Settings, messages: list[tuple[str, bytes, list[tuple[str, bytes]], int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=10)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, headers=headers, partition=part) for topic, value, headers, part in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def storage_messages(settings: Settings, rows: list[bytes], per_message: int, src_topic: str = "raw.actions",
                     first_src_offset: int = 0) -> list[tuple[str, bytes, list[tuple[str, bytes]], int]]:
    out = []
    for n, i in enumerate(range(0, len(rows), per_message)):
        src = f"{src_topic}:{n % 2}:{first_src_offset + n}".encode()
        out.append((settings.kafka.topic_storage, b"\n".join(rows[i:i + per_message]),
                    [("pulse-table", b"actions"), ("pulse-src", src)], n % 2))
    return out


def sql(settings: Settings, query: str, fmt: str = "TabSeparated") -> str:
    url = f"http://127.0.0.1:{settings.sink.port}/?" + urllib.parse.urlencode({"default_format": fmt})
    with urllib.request.urlopen(urllib.request.Request(url, data=query.encode()), timeout=30) as resp:
        return resp.read().decode()


def wait_count(settings: Settings, table: str, expected: int, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    got = ""
    while time.monotonic() < deadline:
        got = sql(settings, f"SELECT count(), uniqExact(event_id) FROM {table}").strip()
        if got == f"{expected}\t{expected}":
            return got
        time.sleep(0.3)
    return got


def test_rows_land_once_and_source_replays_are_dropped(settings: Settings, tmp_path: Path) -> None:
    rows = action_rows(1000)
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        msgs = storage_messages(settings, rows, 10)
        dead = DeadLetter.of(b"{broken", step="collector", source="/api/v1/events", reason="invalid JSON")
        asyncio.run(produce(settings, msgs + [(settings.kafka.topic_dead_letter, dead.to_row_json(),
                                               [("pulse-table", b"dead_letters")], 0)]))
        assert wait_count(settings, "actions", 1000) == "1000\t1000"
        # A worker replay re-produces the same source offsets: dropped by the marks.
        asyncio.run(produce(settings, msgs[:30]))
        time.sleep(2)
        assert wait_count(settings, "actions", 1000, timeout_s=3) == "1000\t1000"
        assert sql(settings, "SELECT reason, step FROM dead_letters").strip() == "invalid JSON\tcollector"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.sink.port}/metrics").read().decode()
        assert 'pulse_duplicates_dropped_total{by="source_mark",process="sink"} 30.0' in metrics
    finally:
        procs.stop_all()


def range_messages(settings: Settings, lines: list[tuple[int, bytes]], partition: int, cuts: list[int]
                   ) -> list[tuple[str, bytes, list[tuple[str, bytes]], int]]:
    """What a batching worker emits for raw partition ``partition``: one storage message per batch
    of raw offsets [cuts[i], cuts[i+1]), with the range header and each line's raw offset."""
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        batch = [(o, row) for o, row in lines if lo <= o < hi]
        offsets = [o for o, _ in batch]
        out.append((settings.kafka.topic_storage, b"\n".join(row for _, row in batch),
                    [("pulse-table", b"actions"), ("pulse-src", encode_source_range("raw.actions", partition, lo, hi - 1)),
                     ("pulse-src-lines", encode_line_sources(offsets))], partition))
    return out


def metric(settings: Settings, prefix: str, expected: str, timeout_s: float = 30) -> str:
    """The first /metrics line starting with ``prefix``, once it equals ``expected`` (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    line = ""
    while time.monotonic() < deadline:
        body = urllib.request.urlopen(f"http://127.0.0.1:{settings.sink.port}/metrics").read().decode()
        line = next((x for x in body.splitlines() if x.startswith(prefix)), "")
        if line == expected:
            break
        time.sleep(0.3)
    return line


def test_range_messages_replayed_with_other_boundaries_land_each_row_once(settings: Settings, tmp_path: Path) -> None:
    """A batching worker produces range messages, is killed before committing its raw offsets, and
    replays from its last commit with other batch boundaries: the replay partly overlaps what the
    sink stored (marks read back from ClickHouse after a sink restart) and every row lands once."""
    rows = iter(action_rows(2400))
    lines: dict[int, list[tuple[int, bytes]]] = {0: [], 1: []}  # raw partition -> (raw offset, row), 1-3 rows each
    for p in (0, 1):
        offset = 0
        while len(lines[p]) < 1200:
            lines[p] += [(offset, next(rows)) for _ in range(1 + offset % 3)]
            offset += 1
    end = {p: lines[p][-1][0] + 1 for p in (0, 1)}
    stored_before = {p: sum(1 for o, _ in lines[p] if o < 450) for p in (0, 1)}
    replayed_twice = {p: sum(1 for o, _ in lines[p] if 200 <= o < 450) for p in (0, 1)}
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        # Before the crash: raw offsets 0-449 of each partition, in batches of 150 offsets.
        asyncio.run(produce(settings, [m for p in (0, 1) for m in range_messages(settings, lines[p], p, [0, 150, 300, 450])]))
        expected = sum(stored_before.values())
        assert wait_count(settings, "actions", expected) == f"{expected}\t{expected}", procs.log("sink")
        procs.stop("sink")
        procs.start("sink")  # marks come back from ClickHouse, not from memory
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        # The replay from raw offset 200: 200-259 and 260-399 were stored, 400-519 partly, 520-599 not at all.
        replay = [m for p in (0, 1) for m in range_messages(settings, lines[p], p, [200, 260, 400, 520, end[p]])]
        topic, value, headers, _ = replay[0]
        broken = (topic, value + b"\n" + value.split(b"\n")[0],  # one line more than pulse-src-lines says
                  headers, 0)
        asyncio.run(produce(settings, replay[:2] + [broken] + replay[2:]))
        assert wait_count(settings, "actions", 2400) == "2400\t2400", procs.log("sink")
        assert sql(settings, "SELECT count() FROM actions").strip() == "2400"
        [dead] = map(orjson.loads, sql(settings, "SELECT step, reason FROM dead_letters", "JSONEachRow").splitlines())
        assert dead == {"step": "sink", "reason": "pulse-src range b'raw.actions:0:200-259': pulse-src-lines counts "
                                                  f"{len(replay[0][1].splitlines())} lines, the message has "
                                                  f"{len(broken[1].splitlines())}"}
        # Exactly the replayed lines at or below the marks were dropped (the broken message is not among them).
        dropped = f'pulse_duplicates_dropped_total{{by="source_mark",process="sink"}} {sum(replayed_twice.values())}.0'
        assert metric(settings, 'pulse_duplicates_dropped_total{by="source_mark"', dropped) == dropped
        time.sleep(2)  # nothing else arrives late
        assert sql(settings, "SELECT count(), uniqExact(event_id) FROM actions").strip() == "2400\t2400"
    finally:
        procs.stop_all()


def test_sigkill_between_insert_and_commit_leaves_each_row_once(settings: Settings, tmp_path: Path) -> None:
    rows = action_rows(3000)
    msgs = storage_messages(settings, rows, 5)
    asyncio.run(produce(settings, msgs))
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        # Small batches so that the 2nd flush happens mid-stream; then the process kills itself with SIGKILL.
        crashed = procs.start("sink", PULSE_SINK_CRASH_AFTER_INSERT="2", PULSE_SINK_BATCH_ROWS="700")
        assert crashed.wait(timeout=90) == -signal.SIGKILL, procs.log("sink")
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        assert wait_count(settings, "actions", 3000) == "3000\t3000", procs.log("sink")
        assert "re-forming the unconfirmed batch" in procs.log("sink")
    finally:
        procs.stop_all()


def test_query_endpoint_speaks_clickhouse_http(settings: Settings, tmp_path: Path) -> None:
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        base = f"http://127.0.0.1:{settings.sink.port}/"
        assert urllib.request.urlopen(base + "?query=" + urllib.parse.quote("SELECT 1+1")).read() == b"2\n"
        doc = orjson.loads(sql(settings, "SELECT count() AS n FROM errors FORMAT JSON"))
        assert doc["data"] == [{"n": "0"}] or doc["data"] == [{"n": 0}]
        for bad, status, text in [("DROP TABLE errors", 403, "READONLY"), ("SELEC 1", 400, "SYNTAX_ERROR"),
                                  ("SELECT * FROM nope", 404, "UNKNOWN_TABLE")]:
            with pytest.raises(urllib.error.HTTPError) as info:
                sql(settings, bad)
            assert info.value.code == status and text in info.value.read().decode()
        assert sql(settings, "SELECT count() FROM errors").strip() == "0"  # DROP was refused
        # the database parameter: the sink's own ("default" means it too) or any other, per query
        assert urllib.request.urlopen(base + "?" + urllib.parse.urlencode(
            {"database": "pulse", "query": "SELECT count() FROM errors"})).read() == b"0\n"
        assert urllib.request.urlopen(base + "?" + urllib.parse.urlencode(
            {"database": "system", "query": "SELECT currentDatabase()"})).read() == b"system\n"

        import clickhouse_connect

        client = clickhouse_connect.get_client(host="127.0.0.1", port=settings.sink.port, database="pulse")
        assert client.query("SELECT number FROM numbers(3)").result_rows == [(0,), (1,), (2,)]
        health = orjson.loads(urllib.request.urlopen(base + "health").read())
        assert health["status"] == "healthy" and health["clickhouse"]["ok"]
    finally:
        procs.stop_all()


def test_query_endpoint_access_key_and_admin_writes(settings: Settings, tmp_path: Path) -> None:
    """With PULSE_SINK_SQL_ACCESS_KEY every request needs the key as the ClickHouse password; with
    PULSE_SINK_SQL_ALLOW_WRITES an authenticated admin may write; `pulse query` passes the key itself."""
    import base64
    import os
    import subprocess
    import sys

    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError

    procs = PipelineProcs(settings, tmp_path / "logs")
    env = {"PULSE_SINK_SQL_ACCESS_KEY": "s3cret-key", "PULSE_SINK_SQL_ALLOW_WRITES": "true"}
    base = f"http://127.0.0.1:{settings.sink.port}/"
    try:
        procs.start("sink", **env)
        procs.wait_http(base + "ping")
        with pytest.raises(urllib.error.HTTPError) as info:  # no key
            urllib.request.urlopen(base + "?query=" + urllib.parse.quote("SELECT 1"))
        assert info.value.code == 403 and "AUTHENTICATION_FAILED" in info.value.read().decode()
        with pytest.raises(urllib.error.HTTPError) as info:  # wrong key
            urllib.request.urlopen(base + "?" + urllib.parse.urlencode({"query": "SELECT 1", "password": "nope"}))
        assert info.value.code == 403
        # curl-style parameters, X-ClickHouse-Key, and basic auth all work
        assert urllib.request.urlopen(base + "?" + urllib.parse.urlencode(
            {"query": "SELECT 2", "user": "analyst", "password": "s3cret-key"})).read() == b"2\n"
        req = urllib.request.Request(base + "?query=SELECT+3", headers={"X-ClickHouse-Key": "s3cret-key"})
        assert urllib.request.urlopen(req).read() == b"3\n"
        basic = base64.b64encode(b"default:s3cret-key").decode()
        req = urllib.request.Request(base + "?query=SELECT+4", headers={"Authorization": f"Basic {basic}"})
        assert urllib.request.urlopen(req).read() == b"4\n"

        with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED"):
            clickhouse_connect.get_client(host="127.0.0.1", port=settings.sink.port, database="pulse",
                                          password="wrong").query("SELECT 1")
        admin = clickhouse_connect.get_client(host="127.0.0.1", port=settings.sink.port, database="pulse",
                                              password="s3cret-key")
        admin.command("CREATE TABLE pulse.analyst_notes (id UInt32, note String) ENGINE = MergeTree ORDER BY id")
        admin.command("INSERT INTO pulse.analyst_notes VALUES (1, 'checkout dip was a deploy')")
        assert admin.query("SELECT note FROM pulse.analyst_notes").result_rows == [("checkout dip was a deploy",)]
        with pytest.raises(DatabaseError, match="Multi-statements are not allowed"):
            admin.command("DROP TABLE pulse.analyst_notes; SELECT 1")

        # the CLI (and the collector's API) send the key from the same setting
        cli_env = {**os.environ, **settings_env(settings), **env}
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", "query", "-f", "TabSeparated", "SELECT count() FROM analyst_notes"],
                             env=cli_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout == "1\n", out.stdout + out.stderr
        admin.command("DROP TABLE pulse.analyst_notes")
    finally:
        procs.stop_all()

    # Writes off (the default) refuse even the key holder, with ClickHouse's READONLY error.
    try:
        procs.start("sink", PULSE_SINK_SQL_ACCESS_KEY="s3cret-key")
        procs.wait_http(base + "ping")
        req = urllib.request.Request(base, data=b"CREATE TABLE t (x UInt8) ENGINE = Memory",
                                     headers={"X-ClickHouse-Key": "s3cret-key"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req)
        assert info.value.code == 403 and "READONLY" in info.value.read().decode()
    finally:
        procs.stop_all()


def test_rows_clickhouse_rejects_become_dead_letters_and_the_rest_lands(settings: Settings, tmp_path: Path) -> None:
    good = action_rows(5)
    bad_uuid = orjson.dumps({**orjson.loads(good[0]), "event_id": "not-a-uuid"})
    block = b"\n".join([good[0], bad_uuid, good[1], b"{this is not json", good[2]])
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("sink")
        procs.wait_http(f"http://127.0.0.1:{settings.sink.port}/ping")
        asyncio.run(produce(settings, [
            (settings.kafka.topic_storage, block, [("pulse-table", b"actions"), ("pulse-src", b"raw:0:1")], 0),
            (settings.kafka.topic_storage, good[3], [("pulse-table", b"nope")], 1),  # unknown table
            # raw partition 1 -> storage partition 1 (the contract: one raw partition, one storage partition)
            (settings.kafka.topic_storage, good[4], [("pulse-table", b"actions"), ("pulse-src", b"raw:1:2")], 1),
        ]))
        got = wait_count(settings, "actions", 4)
        assert got == "4\t4", (got, procs.log("sink"), urllib.request.urlopen(f"http://127.0.0.1:{settings.sink.port}/health").read())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sql(settings, "SELECT count() FROM dead_letters").strip() != "3":
            time.sleep(0.3)
        rows = [orjson.loads(line) for line in sql(
            settings, "SELECT step, reason, payload FROM dead_letters ORDER BY payload", "JSONEachRow").splitlines()]
        assert len(rows) == 3 and {r["step"] for r in rows} == {"sink"}
        by_payload = {r["payload"]: r["reason"] for r in rows}
        assert "ClickHouse rejected the row for actions" in by_payload[bad_uuid.decode()]
        assert "Code:" in by_payload["{this is not json"]  # ClickHouse's own error text
        assert "nope" in by_payload[good[3].decode()]
        assert procs.procs["sink"].poll() is None  # bad data never stops the sink
    finally:
        procs.stop_all()
