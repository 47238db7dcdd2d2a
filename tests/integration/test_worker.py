"""The worker process on a real broker: raw messages in, storage messages and dead letters out."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.settings import Settings
from tests.events import ev
from tests.integration.kafka_read import Record, read_topics
from tests.integration.pipeline_procs import PipelineProcs

pytestmark = pytest.mark.integration


RAW_TABLES = {b"errors", b"vitals", b"actions", b"api_calls"}


def is_raw(record: Record) -> bool:
    """A storage message of raw event rows (not rollup partials or session outputs)."""
    return record.headers.get("pulse-table") in RAW_TABLES


@pytest.fixture
def procs(settings: Settings, tmp_path: Path) -> Iterator[PipelineProcs]:
    running = PipelineProcs(settings, tmp_path / "logs")
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def worker_proc(procs: PipelineProcs) -> subprocess.Popen[bytes]:
    return procs.start("worker")


async def read_until(settings: Settings, topics: list[str], done: Any, timeout_s: float = 60.0,
                     quiet_s: float = 2.0) -> list[Record]:
    return await read_topics(settings.kafka.bootstrap_servers, topics, until=done, timeout_s=timeout_s,
                             quiet_s=quiet_s)


async def test_worker_routes_rows_dead_letters_and_drops_duplicates(
        settings: Settings, worker_proc: subprocess.Popen[bytes], procs: PipelineProcs) -> None:
    k = settings.kafka
    single = ev("vital")
    batch = [ev("error"), ev("vital"), ev("action"), ev("api"), ev("vital")]
    bad_event = ev("vital", vital={"name": "LCP", "value": -5})
    mixed = [ev("action", action={"kind": "pageview"}), bad_event]
    dup_of_single = [single, ev("vital")]  # same topic-partition, after `single`: its first event is a duplicate

    producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers)
    await producer.start()
    try:
        async def put(topic: str, partition: int, value: bytes, key: bytes = b"s-1") -> str:
            md = await producer.send_and_wait(topic, value, key=key, partition=partition)
            return f"{topic}:{partition}:{md.offset}"

        src_single = await put(k.topic_vitals, 0, orjson.dumps(single))
        src_batch = await put(k.topic_errors, 1, orjson.dumps(batch), key=b"s-2")
        src_garbage = await put(k.topic_actions, 0, b'{"event_id": oops')
        src_mixed = await put(k.topic_actions, 1, orjson.dumps(mixed))
        src_dup = await put(k.topic_vitals, 0, orjson.dumps(dup_of_single))
        src_all_dup = await put(k.topic_vitals, 0, orjson.dumps(single))
    finally:
        await producer.stop()

    def raw_rows(out: list[Record]) -> list[tuple[str, str, int, str]]:
        """(raw source, table, storage partition, event id) of every raw row on the storage topic."""
        return [(src, r.headers["pulse-table"].decode(), r.partition, row["event_id"])
                for r in out if r.topic == k.topic_storage and is_raw(r) for src, row in r.sourced_rows()]

    records = await read_until(settings, [k.topic_storage, k.topic_dead_letter],
                               lambda out: len(raw_rows(out)) >= 8
                               and sum(r.topic == k.topic_dead_letter for r in out) >= 2)
    assert worker_proc.poll() is None, procs.log("worker")
    storage = [r for r in records if r.topic == k.topic_storage and is_raw(r)]
    # Each raw message with valid events also carries its minute rollup partials, same origin.
    rollup_sources = {src for r in records if r.headers.get("pulse-table") == b"rollups_minute"
                      for src, _ in r.sourced_rows()}
    assert rollup_sources == {src for r in storage for src, _ in r.sourced_rows()}
    dead = [r for r in records if r.topic == k.topic_dead_letter]

    got = sorted(raw_rows(records))
    ids = [e["event_id"] for e in batch]
    expected = sorted([
        (src_single, "vitals", 0, single["event_id"]),
        (src_batch, "errors", 1, ids[0]),
        (src_batch, "vitals", 1, ids[1]),
        (src_batch, "vitals", 1, ids[4]),
        (src_batch, "actions", 1, ids[2]),
        (src_batch, "api_calls", 1, ids[3]),
        (src_mixed, "actions", 1, mixed[0]["event_id"]),
        (src_dup, "vitals", 0, dup_of_single[1]["event_id"]),
    ])
    assert got == expected
    assert src_all_dup not in {g[0] for g in got}
    row = next(r for r in storage if r.headers["pulse-table"] == b"api_calls").rows()[0]
    assert row["request_url"] == "/api/cart" and row["ok"] is True and row["received_at"]

    assert all(r.headers["pulse-table"] == b"dead_letters" for r in dead)
    docs = sorted((orjson.loads(r.value) for r in dead), key=lambda d: d["source"])
    assert [d["source"] for d in docs] == sorted([src_garbage, src_mixed])
    by_src = {d["source"]: d for d in docs}
    assert by_src[src_garbage]["reason"].startswith("invalid JSON") and by_src[src_garbage]["step"] == "worker"
    assert by_src[src_garbage]["payload"] == '{"event_id": oops'
    assert by_src[src_mixed]["event_id"] == bad_event["event_id"] and "value" in by_src[src_mixed]["reason"]

    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{settings.worker.web_port}"
        async with http.get(f"{base}/health") as resp:
            health = await resp.json(content_type=None)
        assert resp.status == 200 and health["last_batch_at"] and health["messages"] >= 6
        assert f"{k.topic_vitals}:0" in health["assigned_partitions"]
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'pulse_duplicates_dropped_total{by="event_id",process="worker"} 2.0' in text
        assert 'pulse_dead_letters_total{process="worker",reason="invalid_event",step="worker"} 1.0' in text
        assert 'pulse_dead_letters_total{process="worker",reason="invalid_json",step="worker"} 1.0' in text

    worker_proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker_proc.wait, 30) == 0, procs.log("worker")


async def test_sigkill_mid_stream_loses_nothing_and_replays_identical_messages(settings: Settings,
                                                                               procs: PipelineProcs) -> None:
    """Kill -9 while batches are in flight, restart: every event arrives; a (source, table) seen
    twice carries the same rows (the sink drops the replay by source offset)."""
    k = settings.kafka
    n_messages, per = 400, 10
    sent_ids: set[str] = set()
    producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap_servers, linger_ms=10)
    await producer.start()
    try:
        futs = []
        for m in range(n_messages):
            evs = [ev("vital" if j % 2 else "error", session_id=f"s-{m}") for j in range(per)]
            sent_ids.update(e["event_id"] for e in evs)
            futs.append(await producer.send(k.raw_topics[m % 2], orjson.dumps(evs), key=f"s-{m}".encode()))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()

    small = {"PULSE_WORKER_BATCH_SIZE": "10", "PULSE_WORKER_STEP_INTERVAL_S": "0.05"}
    procs.start("worker", **small)
    partial = await read_until(settings, [k.topic_storage], lambda out: len(out) >= 100, quiet_s=0)
    assert len(partial) >= 100, procs.log("worker")
    procs.stop("worker", sig=signal.SIGKILL)
    procs.start("worker", **small)

    def complete(out: list[Record]) -> bool:
        return {e for r in out if is_raw(r) for e in (row["event_id"] for row in r.rows())} >= sent_ids

    records = await read_until(settings, [k.topic_storage], complete, timeout_s=90)
    # Rows of one raw message for one table, however the replay cut its batches, are the same rows.
    by_key: dict[tuple[str, bytes], list[bytes]] = {}
    copies: dict[tuple[str, bytes], set[bytes]] = {}
    for r in records:
        if "pulse-src" not in r.headers:  # session outputs have no single raw origin
            continue
        table = r.headers["pulse-table"]
        seen: dict[tuple[str, bytes], list[bytes]] = {}
        for src, row in r.sourced_rows():
            seen.setdefault((src, table), []).append(orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
        for key, rows in seen.items():
            copies.setdefault(key, set()).add(b"\n".join(rows))
            by_key[key] = rows
    assert all(len(values) == 1 for values in copies.values())
    assert len(by_key) == n_messages * 3, procs.log("worker")[-6000:]  # two raw tables + rollup partials per message
    assert {row["event_id"] for r in records if is_raw(r) for row in r.rows()} == sent_ids
