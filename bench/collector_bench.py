"""Collector throughput on realistic requests: SDK flushes of 1-10 events -> scrub -> validate -> Kafka.

    .venv/bin/python bench/collector_bench.py                       # starts its own broker
    PULSE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python bench/collector_bench.py
    .venv/bin/python bench/collector_bench.py --shapes mix,1,3,5,10,50 --duration 10 --connections 32
    .venv/bin/python bench/collector_bench.py --processes 2          # PULSE_COLLECTOR_PROCESSES

Shapes (LOAD_PROFILE.md): ``mix`` is the headline: posthog-js flushes to ``/e/`` (half of them
gzip-js), Sentry browser envelopes of one error, and ``/api/v1/events`` arrays; 1, 2, 3, 5 or 10
events per request, 2.6 on average. ``1``, ``3``, ``5``, ``10``: ``/api/v1/events`` requests of
exactly that many events. ``50``: 50-event requests, an upper bound only, labelled as such.

The collector runs as child process(es) (``python -m pipeline.collector``); the load comes from
``wrk`` (Debian package ``wrk``, one thread, a Lua script that cycles through prepared requests)
so the generator costs little CPU; without wrk an aiohttp client in this process is used. Every
answer is awaited after Kafka acknowledged (acks=all). Printed per shape: requests/s, SDK events/s,
p50/p99 latency, collector CPU (all its processes) as µs per event and per request, and what the
generator cost. Then scrub+validate events/s without HTTP or Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
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
from pipeline.supervise import child_pids  # noqa: E402

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


# ------------------------------------------------------------------ realistic requests

FIXTURES = REPO / "tests" / "fixtures" / "sdk"
# Events per request of the mix (LOAD_PROFILE.md: 1-5 per flush, 2.6 on average; a few larger).
MIX_SIZES = ((1, 0.35), (2, 0.25), (3, 0.20), (5, 0.15), (10, 0.05))


@dataclass(frozen=True)
class BenchRequest:
    """One prepared HTTP request and how many SDK events it carries."""

    path: str
    headers: dict[str, str]
    body: bytes
    events: int
    kind: str


def native_request(n: int, rng: random.Random) -> BenchRequest:
    return BenchRequest("/api/v1/events", {"X-Pulse-Key": KEY, "Content-Type": "application/json"},
                        orjson.dumps(make_events(n, rng)), n, "native")


def posthog_request(n: int, rng: random.Random, templates: list[dict[str, Any]]) -> BenchRequest:
    """A posthog-js flush to /e/: events from the recorded batch with fresh ids and times; half gzip-js."""
    now = datetime.now(timezone.utc)
    session = f"019ab0f3-{rng.randrange(16**4):04x}-7f3a-8b5c-{uuid.uuid4().hex[:12]}"
    batch = []
    for _ in range(n):
        event = orjson.loads(orjson.dumps(rng.choice(templates)))
        event["uuid"] = str(uuid.uuid4())
        event["timestamp"] = now.isoformat()
        event["properties"]["$session_id"] = session
        batch.append(event)
    body = orjson.dumps({"api_key": KEY, "batch": batch, "sent_at": now.isoformat()})
    if rng.random() < 0.5:
        return BenchRequest("/e/?compression=gzip-js&ver=1.298.0", {"Content-Type": "text/plain"},
                            gzip.compress(body, 6), n, "posthog-gzip")
    return BenchRequest("/e/?ver=1.298.0", {"Content-Type": "application/json"}, body, n, "posthog")


def sentry_request(rng: random.Random, template: dict[str, Any]) -> BenchRequest:
    """A @sentry/browser error envelope: one event, the DSN's key in the envelope and X-Sentry-Auth."""
    now = datetime.now(timezone.utc)
    event = dict(template, event_id=uuid.uuid4().hex, timestamp=now.timestamp())
    head = orjson.dumps({"event_id": event["event_id"], "sent_at": now.isoformat(),
                         "dsn": f"http://{KEY}@collector/1", "sdk": {"name": "sentry.javascript.browser"}})
    body = head + b'\n{"type":"event"}\n' + orjson.dumps(event) + b"\n"
    return BenchRequest("/api/1/envelope/", {"Content-Type": "text/plain;charset=UTF-8",
                                             "X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7"},
                        body, 1, "sentry")


def build_pool(shape: str, count: int, seed: int = 7) -> list[BenchRequest]:
    rng = random.Random(seed)
    if shape != "mix":
        return [native_request(int(shape), rng) for _ in range(count)]
    templates = orjson.loads((FIXTURES / "posthog" / "js_e_batch.body").read_bytes())["batch"]
    sentry_event = orjson.loads((FIXTURES / "sentry" / "browser_event.json").read_bytes())
    sizes, weights = zip(*MIX_SIZES)
    pool = []
    for _ in range(count):
        r = rng.random()
        if r < 0.15:
            pool.append(sentry_request(rng, sentry_event))
            continue
        n = rng.choices(sizes, weights)[0]
        pool.append(posthog_request(n, rng, templates) if r < 0.65 else native_request(n, rng))
    return pool


# ------------------------------------------------------------------ load generators


def lua_string(data: bytes) -> str:
    """A Lua string literal holding exactly these bytes (long brackets would rewrite newlines)."""
    out = []
    for b in data:
        if 32 <= b < 127 and b not in (34, 92):
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def raw_http(req: BenchRequest, host: str) -> bytes:
    lines = [f"POST {req.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(req.body)}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + req.body


def wrk_script(pool: list[BenchRequest], host: str) -> str:
    """Each wrk connection cycles through the pool from its own offset; prepared bytes, no Lua work per request."""
    items = ",\n".join(lua_string(raw_http(r, host)) for r in pool)
    return f"""local reqs = {{
{items}
}}
local n = #reqs
local i = math.random(n)
request = function()
  i = i % n + 1
  return reqs[i]
end
"""


@dataclass
class LoadResult:
    requests: int
    elapsed_s: float
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float
    generator_cpu_s: float
    generator: str


def parse_wrk(out: str) -> tuple[int, float, int, float, float]:
    """requests, seconds, non-2xx+socket errors, p50 ms, p99 ms from ``wrk --latency`` output."""
    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    assert m, out
    seconds = float(m.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(3)]
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad += sum(int(x) for x in errors.groups()) if errors else 0
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE)
    return int(m.group(1)), seconds, bad, ms(p50.group(1)) if p50 else float("nan"), ms(p99.group(1)) if p99 else float("nan")


def run_wrk(wrk: str, pool: list[BenchRequest], port: int, duration_s: float, connections: int,
            workdir: Path) -> LoadResult:
    script = workdir / "collector_bench.lua"
    script.write_text(wrk_script(pool, f"127.0.0.1:{port}"))
    proc = subprocess.Popen([wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script),
                             f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests, seconds, bad, p50, p99 = parse_wrk(out)
    return LoadResult(requests, seconds, requests - bad, bad, p50, p99, children.ru_utime + children.ru_stime, "wrk")


async def run_python(pool: list[BenchRequest], port: int, duration_s: float, connections: int) -> LoadResult:
    """Fallback without wrk: aiohttp in this process (costs far more CPU per request than wrk)."""
    latencies: list[float] = []
    ok = failed = 0
    next_i = 0
    stop_at = time.perf_counter() + duration_s
    base = f"http://127.0.0.1:{port}"

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal next_i, ok, failed
        while time.perf_counter() < stop_at:
            req = pool[next_i % len(pool)]
            next_i += 1
            t = time.perf_counter()
            async with http.post(base + req.path, data=req.body, headers=req.headers) as resp:
                await resp.read()
                latencies.append(time.perf_counter() - t)
                ok, failed = (ok + 1, failed) if resp.status == 200 else (ok, failed + 1)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as http:
        await asyncio.gather(*(worker(http) for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return LoadResult(ok + failed, elapsed, ok, failed, statistics.median(latencies) * 1000,
                      latencies[int(len(latencies) * 0.99) - 1] * 1000, time.process_time() - cpu0, "aiohttp")


# ------------------------------------------------------------------ the collector under test


def process_tree(pid: int) -> list[int]:
    """The collector and its worker processes (PULSE_COLLECTOR_PROCESSES > 1)."""
    return [pid, *child_pids(pid)]


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


async def check_pool(port: int, pool: list[BenchRequest]) -> None:
    """Every kind of request is answered 200 before the clock starts (also warms the producer)."""
    seen: set[str] = set()
    async with aiohttp.ClientSession() as http:
        for req in pool[:64]:
            async with http.post(f"http://127.0.0.1:{port}{req.path}", data=req.body, headers=req.headers) as resp:
                text = await resp.text()
                if resp.status != 200 or '"rejected":0' not in text and req.kind == "native":
                    raise SystemExit(f"warm-up {req.kind} request answered {resp.status}: {text[:300]}")
                seen.add(req.kind)


def shape_label(shape: str) -> str:
    if shape == "mix":
        return "mix (PostHog/Sentry/native, 1-10 ev)"
    if shape == "50":
        return "50 ev/request (UPPER BOUND)"
    return f"native, {shape} ev/request"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="mix,1,3,5,10,50", help="comma-separated: mix and/or events per request")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per shape")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (requests in flight)")
    parser.add_argument("--processes", type=int, default=None, help="PULSE_COLLECTOR_PROCESSES for the collector")
    parser.add_argument("--pool", type=int, default=2000, help="distinct prepared requests per shape")
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--profile", metavar="FILE", help="run the collector under cProfile, stats to FILE")
    args = parser.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]

    broker: LocalBroker | None = None
    bootstrap = os.environ.get("PULSE_KAFKA_BOOTSTRAP_SERVERS")
    tmp = tempfile.TemporaryDirectory(prefix="pulse-bench-")
    if not bootstrap:
        broker = LocalBroker(port=free_port(pair=True), data_dir=Path(tmp.name) / "kafka")
        print(f"starting a broker on {broker.bootstrap} ...", flush=True)
        await asyncio.to_thread(broker.start)
        bootstrap = broker.bootstrap
    collector: subprocess.Popen[bytes] | None = None
    rows = []
    try:
        await wait_for_broker(bootstrap, timeout_s=60)
        tag = uuid.uuid4().hex[:8]
        port = free_port()
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PULSE_KAFKA_PARTITIONS": "4",
               "PULSE_KAFKA_TOPIC_ERRORS": f"bench{tag}.raw.errors", "PULSE_KAFKA_TOPIC_VITALS": f"bench{tag}.raw.vitals",
               "PULSE_KAFKA_TOPIC_ACTIONS": f"bench{tag}.raw.actions",
               "PULSE_KAFKA_TOPIC_DEAD_LETTER": f"bench{tag}.dead-letter", "PULSE_KAFKA_TOPIC_STORAGE": f"bench{tag}.storage",
               "PULSE_COLLECTOR_PORT": str(port), "PULSE_COLLECTOR_PROJECT_KEYS": orjson.dumps({KEY: "bench"}).decode()}
        if args.processes is not None:
            env["PULSE_COLLECTOR_PROCESSES"] = str(args.processes)
        os.environ.update({k: v for k, v in env.items() if k.startswith("PULSE_KAFKA_")})
        await ensure_topics(KafkaSettings())
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        collector = subprocess.Popen([sys.executable, *profile, "-m", "pipeline.collector"], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
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
        await asyncio.sleep(1.0)  # every worker process connected too
        procs = len(process_tree(collector.pid))
        print(f"collector pid {collector.pid}: {procs} process(es), generator {args.generator}, {args.connections} connections, "
              f"{args.duration:g} s per shape; {os.cpu_count()} cores shared with the broker (and other users)",
              flush=True)
        for shape in shapes:
            pool = build_pool(shape, args.pool)
            await check_pool(port, pool)
            per_request = statistics.mean(r.events for r in pool)
            cpu0 = tree_cpu(collector.pid)
            if args.generator == "wrk":
                load = await asyncio.to_thread(run_wrk, shutil.which("wrk") or "wrk", pool, port, args.duration,
                                               args.connections, Path(tmp.name))
                gen_cpu = load.generator_cpu_s - sum(r[-1] for r in rows)  # RUSAGE_CHILDREN accumulates
            else:
                load = await run_python(pool, port, args.duration, args.connections)
                gen_cpu = load.generator_cpu_s
            cpu = tree_cpu(collector.pid) - cpu0
            events = load.ok * per_request
            rows.append((shape, load, per_request, events, cpu, gen_cpu))
            print(f"{shape_label(shape):<40} {load.requests / load.elapsed_s:>7,.0f} req/s {events / load.elapsed_s:>8,.0f} "
                  f"events/s  p50 {load.p50_ms:5.1f} ms p99 {load.p99_ms:6.1f} ms  failed {load.failed}  "
                  f"collector {cpu / load.elapsed_s:4.0%} CPU = {cpu / max(events, 1) * 1e6:5.0f} µs/event "
                  f"{cpu / max(load.ok, 1) * 1e6:5.0f} µs/request ({load.ok / max(cpu, 1e-9):,.0f} req per CPU-second; "
                  f"{load.requests / load.elapsed_s / procs:,.0f} req/s per process)  "
                  f"generator {gen_cpu / load.elapsed_s:.0%} CPU", flush=True)
    finally:
        if collector is not None:
            collector.terminate()
            try:
                collector.wait(20)
            except subprocess.TimeoutExpired:
                collector.kill()
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        tmp.cleanup()
    print(f"scrub+validate+group (no HTTP, no Kafka), 3-event batches: {bench_prepare(3, 4000):,.0f} events/s")


if __name__ == "__main__":
    asyncio.run(main())
