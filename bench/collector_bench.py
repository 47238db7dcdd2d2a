"""Collector throughput: HTTP requests of 50 events -> scrub -> validate -> Kafka (delivery awaited).

    .venv/bin/python bench/collector_bench.py                       # starts its own broker
    PULSE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/collector_bench.py
    .venv/bin/python bench/collector_bench.py --requests 4000 --concurrency 32 --batch 50

The collector runs as a child process (``python -m pipeline.collector``), the load generator here,
over loopback; so the figure includes HTTP parsing, gzip-free JSON bodies and acks=all delivery.
Prints requests/s, events/s, p50/p99 latency, then scrub+validate events/s without HTTP or Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.ingest.producer import prepare_events  # noqa: E402
from pipeline.kafka_admin import ensure_topics, wait_for_broker  # noqa: E402
from pipeline.localbroker import LocalBroker  # noqa: E402
from pipeline.settings import KafkaSettings  # noqa: E402

KEY = "bench-key"


def free_port(pair: bool = False) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))  # the KRaft controller listens on port+1
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process so far (Linux /proc), to report cost per event independent of
    what else competes for the cores."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def make_events(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """A realistic SDK flush mix: mostly actions and vitals, some API calls and errors, few sessions."""
    sessions = [f"s-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    now = datetime.now(timezone.utc).isoformat()
    out: list[dict[str, Any]] = []
    for _ in range(n):
        base = {"event_id": str(uuid.uuid4()), "timestamp": now, "session_id": rng.choice(sessions),
                "url": "https://shop.example.com/product/42?ref=mail&utm_source=x", "release": "web@1.2.3",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0"}
        r = rng.random()
        if r < 0.45:
            out.append(base | {"type": "action", "action": {"kind": "click", "selector": "main > div.card:nth-child(3) button.buy",
                                                            "tag": "button", "text": "Add to cart", "x": 310, "y": 512,
                                                            "interactive": True, "observed": {"dom_mutation_ms": 40}}})
        elif r < 0.75:
            out.append(base | {"type": "vital", "vital": {"name": rng.choice(["LCP", "INP", "CLS"]), "value": rng.random() * 3000}})
        elif r < 0.93:
            out.append(base | {"type": "api", "api": {"url": "/api/cart?id=42", "method": "POST", "status": 200,
                                                      "duration_ms": rng.random() * 400, "initiator": "fetch"}})
        else:
            out.append(base | {"type": "error", "error": {
                "exception_type": "TypeError", "message": "Cannot read properties of undefined (reading 'id')",
                "stacktrace": [{"filename": "https://shop.example.com/static/app.js", "function": "onClick",
                                "lineno": 120, "colno": 14}] * 5,
                "breadcrumbs": [{"category": "ui.click", "message": "button.buy"}] * 3}})
    return out


def bench_prepare(batch: int, rounds: int) -> float:
    rng = random.Random(1)
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9")
    batches = [make_events(batch, rng) for _ in range(50)]
    now = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    for i in range(rounds):
        prepare_events(batches[i % len(batches)], kafka=kafka, now=now, source="bench", project="bench", received_at=now)
    return rounds * batch / (time.perf_counter() - t0)


async def drive(url: str, bodies: list[bytes], requests: int, concurrency: int, batch: int, pid: int) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = 0
    next_i = 0
    headers = {"X-Pulse-Key": KEY, "Content-Type": "application/json"}

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal next_i, accepted
        while next_i < requests:
            i = next_i
            next_i += 1
            t = time.perf_counter()
            async with http.post(url, data=bodies[i % len(bodies)], headers=headers) as resp:
                doc = await resp.read()
                latencies.append(time.perf_counter() - t)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status == 200:
                    accepted += orjson.loads(doc)["accepted"]

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Warm-up: connections, producer metadata, the server's first-request costs.
        for body in bodies[:concurrency]:
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
        t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    latencies.sort()
    print(f"requests: {requests} x {batch} events, concurrency {concurrency}, statuses {statuses}")
    print(f"  {requests / elapsed:,.0f} requests/s   {accepted / elapsed:,.0f} events/s (accepted, delivery awaited)")
    print(f"  collector process CPU: {cpu / elapsed:.0%} of one core = {accepted / cpu:,.0f} events per collector "
          f"CPU-second ({os.cpu_count()} cores shared with the broker and this load generator)")
    print(f"  latency p50 {statistics.median(latencies) * 1000:.1f} ms   p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--profile", metavar="FILE", help="run the collector under cProfile, stats to FILE")
    args = parser.parse_args()

    print(f"scrub+validate+group (no HTTP, no Kafka): {bench_prepare(args.batch, 400):,.0f} events/s")

    broker: LocalBroker | None = None
    bootstrap = os.environ.get("PULSE_KAFKA_BOOTSTRAP_SERVERS")
    tmp = tempfile.TemporaryDirectory(prefix="pulse-bench-")
    if not bootstrap:
        broker = LocalBroker(port=free_port(pair=True), data_dir=Path(tmp.name) / "kafka")
        print(f"starting a broker on {broker.bootstrap} ...", flush=True)
        await asyncio.to_thread(broker.start)
        bootstrap = broker.bootstrap
    collector: subprocess.Popen[bytes] | None = None
    try:
        await wait_for_broker(bootstrap, timeout_s=60)
        tag = uuid.uuid4().hex[:8]
        port = free_port()
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PULSE_KAFKA_PARTITIONS": "4",
               "PULSE_KAFKA_TOPIC_ERRORS": f"bench{tag}.raw.errors", "PULSE_KAFKA_TOPIC_VITALS": f"bench{tag}.raw.vitals",
               "PULSE_KAFKA_TOPIC_ACTIONS": f"bench{tag}.raw.actions",
               "PULSE_KAFKA_TOPIC_DEAD_LETTER": f"bench{tag}.dead-letter", "PULSE_KAFKA_TOPIC_STORAGE": f"bench{tag}.storage",
               "PULSE_COLLECTOR_PORT": str(port), "PULSE_COLLECTOR_PROJECT_KEYS": orjson.dumps({KEY: "bench"}).decode()}
        os.environ.update({k: v for k, v in env.items() if k.startswith("PULSE_KAFKA_")})
        await ensure_topics(KafkaSettings())
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        collector = subprocess.Popen([sys.executable, *profile, "-m", "pipeline.collector"], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or collector.poll() is not None:
                    raise SystemExit("collector did not become healthy")
                await asyncio.sleep(0.2)
        rng = random.Random(7)
        bodies = [orjson.dumps(make_events(args.batch, rng)) for _ in range(min(args.requests, 500))]
        print(f"body size ~{statistics.mean(len(b) for b in bodies) / 1024:.1f} KiB per request")
        await drive(f"http://127.0.0.1:{port}/api/v1/events", bodies, args.requests, args.concurrency, args.batch, collector.pid)
    finally:
        if collector is not None:
            collector.terminate()
            collector.wait(15)
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
