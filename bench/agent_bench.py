"""Worker (Faust agent) pass-through throughput: raw messages -> storage messages, events/s.

    .venv/bin/python bench/agent_bench.py                        # starts its own broker (LocalBroker)
    PULSE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/agent_bench.py
    .venv/bin/python bench/agent_bench.py --events 200000 --skip-e2e

(a) pure: ``process_batch`` alone (decode + validate + dedup + normalize + JSONEachRow), one core.
(b) end to end: N raw messages are preloaded on the raw topics, then one worker process
    (``python -m agents``) is started; we measure until every event's row is on the storage topic.
    "steady" = first storage message to last (excludes Faust startup and the group join),
    "total" = worker start to last. The worker, the broker and this reader share the machine.
Events are a mix of vitals, api calls, actions and errors; target >= 100,000 events/s for
50-event messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.ingest.dedup import RecentIds  # noqa: E402
from pipeline.ingest.process import RawMessage, process_batch  # noqa: E402


def event(i: int, session: str) -> dict[str, Any]:
    e: dict[str, Any] = {"event_id": str(uuid.uuid4()), "project": "shop", "timestamp": "2026-11-23T10:00:01.000Z",
                         "session_id": session, "url": "https://shop.example.com/product/1", "route": "/product/:id",
                         "user_id": "u1", "release": "1.2.3"}
    k = i % 4
    if k == 0:
        e.update(type="vital", vital={"name": "LCP", "value": 2315.0, "rating": "good"})
    elif k == 1:
        e.update(type="api", api={"url": "https://shop.example.com/api/cart", "method": "POST", "status": 200,
                                  "duration_ms": 81.5})
    elif k == 2:
        e.update(type="action", action={"kind": "click", "selector": "button#pay", "text": "Pay", "x": 1, "y": 2})
    else:
        e.update(type="error", error={"exception_type": "TypeError", "message": "x is undefined",
                                      "stacktrace": [{"filename": "app.js", "function": "f", "lineno": 10, "colno": 5}]})
    return e


def make_payloads(events: int, per_message: int) -> list[tuple[bytes, bytes]]:
    out = []
    for m in range(events // per_message):
        session = f"s-{m % 997}"
        evs = [event(m * per_message + j, session) for j in range(per_message)]
        out.append((session.encode(), orjson.dumps(evs if per_message > 1 else evs[0])))
    return out


def bench_pure(events: int, per_message: int, batch: int = 500) -> float:
    payloads = make_payloads(events, per_message)
    msgs = [RawMessage("raw", i % 4, i, k, v, 1_700_000_000_000) for i, (k, v) in enumerate(payloads)]
    dedup = RecentIds(1_000_000)
    start = time.perf_counter()
    for i in range(0, len(msgs), batch):
        process_batch(msgs[i:i + batch], dedup, 4, datetime.now(timezone.utc))
    return len(msgs) * per_message / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench_e2e(bootstrap: str, events: int, per_message: int, workdir: Path) -> tuple[float, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from pipeline.kafka_admin import ensure_topics
    from pipeline.settings import Settings

    tag = uuid.uuid4().hex[:8]
    env = {
        "PULSE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PULSE_KAFKA_PARTITIONS": "4",
        "PULSE_KAFKA_TOPIC_ERRORS": f"b{tag}.raw.errors", "PULSE_KAFKA_TOPIC_VITALS": f"b{tag}.raw.vitals",
        "PULSE_KAFKA_TOPIC_ACTIONS": f"b{tag}.raw.actions", "PULSE_KAFKA_TOPIC_DEAD_LETTER": f"b{tag}.dead-letter",
        "PULSE_KAFKA_TOPIC_STORAGE": f"b{tag}.storage", "PULSE_WORKER_APP_ID": f"bench-{tag}",
        "PULSE_WORKER_DATA_DIR": str(workdir / tag), "PULSE_WORKER_WEB_PORT": str(free_port()),
        "PULSE_DATA_DIR": str(workdir),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    await ensure_topics(settings.kafka)

    payloads = make_payloads(events, per_message)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, compression_type="lz4",
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        futs = [await producer.send(settings.kafka.raw_topics[i % 3], v, key=k) for i, (k, v) in enumerate(payloads)]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    expected_rows = len(payloads) * per_message

    consumer = AIOKafkaConsumer(settings.kafka.topic_storage, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", group_id=None, enable_auto_commit=False)
    await consumer.start()
    log = open(workdir / f"worker-{tag}.log", "wb")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "agents"], cwd=REPO, env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT)
    rows = 0
    first: float | None = None
    try:
        deadline = started + 600
        while rows < expected_rows and time.perf_counter() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                if first is None:
                    first = time.perf_counter()
                rows += sum(r.value.count(b"\n") + 1 for r in records)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: {(workdir / f'worker-{tag}.log').read_text()[-2000:]}")
        last = time.perf_counter()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        await consumer.stop()
        log.close()
    if rows < expected_rows:
        raise RuntimeError(f"only {rows}/{expected_rows} rows arrived")
    assert first is not None
    return expected_rows / (last - first), expected_rows / (last - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events per run (50-event messages)")
    parser.add_argument("--single-events", type=int, default=50_000, help="events per run (1-event messages)")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()

    print("(a) pure process_batch, one core")
    for per, n in ((1, args.single_events), (50, args.events)):
        print(f"    {per:>2}-event messages: {bench_pure(n, per):>10,.0f} events/s")
    if args.skip_e2e:
        return

    from pipeline.kafka_admin import wait_for_broker
    from pipeline.localbroker import LocalBroker

    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        workdir = Path(tmp)
        broker = None
        bootstrap = os.environ.get("PULSE_KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            port = free_port()
            broker = LocalBroker(port=port, data_dir=workdir / "kafka")
            print(f"starting a local broker on {broker.bootstrap} ...")
            broker.start()
            bootstrap = broker.bootstrap
        try:
            asyncio.run(wait_for_broker(bootstrap, timeout_s=90))
            print("(b) end to end through one Faust worker process (raw topics -> storage topic)")
            for per, n in ((1, args.single_events), (50, args.events)):
                steady, total = asyncio.run(bench_e2e(bootstrap, n, per, workdir))
                print(f"    {per:>2}-event messages, {n:,} events: steady {steady:>10,.0f} events/s"
                      f"   (incl. startup {total:,.0f} events/s)")
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
