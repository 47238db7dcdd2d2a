"""Realistic load through the real processes: events/s end to end, worker CPU per event, worker memory
per open session, the largest record the pipeline produced, and exactness.

    .venv/bin/python bench/load_bench.py                          # SDK flushes (1-5 events/message)
    .venv/bin/python bench/load_bench.py --shape one              # one event per message (direct producers)
    .venv/bin/python bench/load_bench.py --shape batch50          # <= 50 events/message: an UPPER BOUND only
    .venv/bin/python bench/load_bench.py --via-collector --rate 2000   # HTTP requests of 1-10 events
    .venv/bin/python bench/load_bench.py --events 100000 --sessions 5000 --json

Traffic comes from ``pipeline/simulate_load.py`` (docs: /work/shared/design/LOAD_PROFILE.md): browser
sessions, the profile's event mix, ~1.5 % retried messages (duplicates), ~0.1 % malformed records.

Kafka mode. Phase 1 pre-produces every message to the raw topics of a fresh broker (or the one in
PULSE_KAFKA_BOOTSTRAP_SERVERS, with fresh topic names), batched, so the producer cannot limit the
measurement. Phase 2 starts ``pulse sink`` and ``pulse worker`` (whatever they are in this checkout)
and times, from the worker's /health "ready": the drain (committed offsets of the worker's consumer
group reach the end of the raw topics) and the end to end (the raw tables hold every expected row,
counted through the sink's SQL endpoint). Worker CPU is utime+stime from /proc; memory per open
session = (RSS at the end - RSS at readiness) / open sessions (the sum of /health's active_sessions),
taken while the sessions are still open. Afterwards every topic of the run is scanned for its
largest record (key + value).

Collector mode (``--via-collector``). Starts sink, worker and ``pulse collector``; posts realistic
requests (1-10 events of one session) at a steady target rate with ``--concurrency`` requests in
flight; reports accepted events/s and latency, then waits until every accepted event is stored.

Settings of the processes come from the environment (``PULSE_WORKER_BATCH_SIZE`` etc. apply), with
fresh topic names, group ids, ports and data directories per run. ``--timeout`` bounds phase 2; the
processes and the broker are stopped on any exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.settings import Settings  # noqa: E402
from pipeline.simulate_load import LoadPlan, collector_requests, generate_load  # noqa: E402
from pipeline.supervise import child_pids  # noqa: E402

RAW_TABLES = ("errors", "vitals", "actions", "api_calls")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc and /health readings


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live children (the worker may run helpers)."""
    total = 0.0
    for p in [pid, *child_pids(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def open_sessions(health: dict[str, Any]) -> int:
    """Sum of every ``active_sessions`` under /health's "sessions", whatever its nesting."""
    def walk(node: Any) -> int:
        if isinstance(node, dict):
            return sum(v if k == "active_sessions" and isinstance(v, int) else walk(v) for k, v in node.items())
        if isinstance(node, list):
            return sum(walk(v) for v in node)
        return 0
    return walk(health.get("sessions", {}))


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# ---------------------------------------------------------------- settings and processes


def bench_settings(bootstrap: str, workdir: Path, extra: dict[str, str]) -> Settings:
    """Isolated settings (fresh topics, groups, ports, directories), as the integration tests make them,
    with the project's defaults otherwise (4 partitions, 1 s sink batches) unless the environment
    overrides them."""
    from tests.conftest import make_settings

    env = {"PULSE_KAFKA_PARTITIONS": os.environ.get("PULSE_KAFKA_PARTITIONS", "4"),
           "PULSE_SINK_BATCH_SECONDS": os.environ.get("PULSE_SINK_BATCH_SECONDS", "1.0"), **extra}
    return make_settings(bootstrap, workdir, **env)


class Procs:
    """The pipeline's real processes (``pulse <name>``) with ``settings``; stopped by ``stop``."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        from pipeline.supervise import ChildProcesses
        from tests.conftest import settings_env

        self.settings = settings
        self.children = ChildProcesses(log_dir, env={**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"})

    def start(self, name: str) -> int:
        return self.children.start(name).pid

    def stop(self) -> None:
        self.children.stop_all(timeout_s=30)


async def get_json(session: Any, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url, timeout=5) as resp:
            return await resp.json(content_type=None)
    except Exception:  # noqa: BLE001 - not up yet / busy: the caller polls again
        return None


async def table_counts(settings: Settings, tables: tuple[str, ...]) -> dict[str, int]:
    from pipeline.storage.query_client import run_query

    sql = " UNION ALL ".join(f"SELECT '{t}', count() FROM {t}" for t in tables)
    text = await asyncio.to_thread(run_query, settings, sql, "TabSeparated", 30.0, False)
    return {name: int(n) for name, n in (line.split("\t") for line in text.strip().splitlines())}


# ---------------------------------------------------------------- Kafka helpers


async def produce_all(settings: Settings, plan: LoadPlan) -> float:
    """Phase 1: every message onto the raw topics, batched; returns the seconds it took."""
    from aiokafka import AIOKafkaProducer

    topics = dict(zip(("errors", "vitals", "actions"), settings.kafka.raw_topics))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=50,
                                max_batch_size=1024 * 1024, compression_type="lz4", acks=1,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(topics[m.topic_kind], m.value, key=m.key) for m in plan.messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


class LagReader:
    """Consumer lag of the raw topics for the worker's group(s): any group named like the app id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin: Any = None
        self.consumer: Any = None
        self.ends: dict[Any, int] = {}

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        bootstrap = self.settings.kafka.bootstrap_servers
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await self.consumer.start()
        tps = [TopicPartition(t, p) for t in self.settings.kafka.raw_topics
               for p in sorted(self.consumer.partitions_for_topic(t) or range(self.settings.kafka.partitions))]
        self.ends = await self.consumer.end_offsets(tps)

    async def lag(self) -> int | None:
        """Messages of the raw topics not yet committed by the worker; None before its first commit."""
        app_id = self.settings.worker.app_id
        groups = [g[0] for g in await self.admin.list_consumer_groups() if str(g[0]).startswith(app_id)]
        committed: dict[Any, int] = {}
        for group in groups:
            for tp, meta in (await self.admin.list_consumer_group_offsets(group)).items():
                if tp in self.ends and meta.offset >= 0:
                    committed[tp] = max(committed.get(tp, 0), meta.offset)
        if not committed:
            return None
        return sum(end - committed.get(tp, 0) for tp, end in self.ends.items())

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()


async def largest_records(settings: Settings, tag: str) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Per topic of this run (names containing ``tag``), read to the end: the largest record
    (len(key) + len(value)), and (records, bytes of keys and values): what each stage wrote, before
    compression, to show how many bytes of output and state an event costs."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        described = [t for t in await admin.describe_topics() if tag in t["topic"]]
    finally:
        await admin.close()
    topics = sorted(t["topic"] for t in described)
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=64 * 1024 * 1024,
                                fetch_max_bytes=128 * 1024 * 1024)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp, end in ends.items() if end > 0}
        largest = {t: 0 for t in topics}
        written = {t: (0, 0) for t in topics}
        if not todo:
            return largest, written
        consumer.assign(sorted(todo, key=str))
        await consumer.seek_to_beginning(*todo)
        while todo:
            batch = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            for tp, records in batch.items():
                top = largest[tp.topic]
                count, total = written[tp.topic]
                for r in records:
                    size = len(r.key or b"") + len(r.value or b"")
                    total += size
                    if size > top:
                        top = size
                largest[tp.topic] = top
                written[tp.topic] = (count + len(records), total)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
                    consumer.pause(tp)
        return largest, written
    finally:
        await consumer.stop()


async def scan_topics(settings: Settings, tag: str, f: dict[str, Any]) -> None:
    """The largest record per topic of the run, and what each topic was written (records, bytes)."""
    log("scanning every topic of the run for its largest record ...")
    largest, written = await largest_records(settings, tag)
    raw = set(settings.kafka.raw_topics)
    produced = {t: n for t, n in largest.items() if t not in raw}
    f["written_by_topic"] = {t: {"records": c, "bytes": b} for t, (c, b) in written.items() if c}
    top = max(produced.items(), key=lambda kv: kv[1]) if produced else ("", 0)
    f["largest_record_by_topic"] = produced
    f["largest_produced_record"] = {"topic": top[0], "bytes": top[1]}
    # storage and dead letters may carry a large malformed input on; state and signals are the pipeline's own
    own = {t: n for t, n in produced.items()
           if t not in (settings.kafka.topic_storage, settings.kafka.topic_dead_letter)}
    top_own = max(own.items(), key=lambda kv: kv[1]) if own else ("", 0)
    f["largest_state_or_signal_record"] = {"topic": top_own[0], "bytes": top_own[1]}


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    """Figures of one run; ``as_dict`` is the --json output."""

    mode: str
    shape: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "shape": self.shape, **self.figures}


async def wait_ready(session: Any, procs: Procs, deadline: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{procs.settings.worker.web_port}/health"
    while time.monotonic() < deadline:
        procs.children.check_alive()
        health = await get_json(session, url)
        if health and health.get("ready"):
            return health
        await asyncio.sleep(0.2)
    raise TimeoutError("the worker was not ready before the timeout")


async def wait_sink(session: Any, procs: Procs, deadline: float) -> None:
    url = f"http://127.0.0.1:{procs.settings.sink.port}/ping"
    while time.monotonic() < deadline:
        procs.children.check_alive()
        try:
            async with session.get(url, timeout=2) as resp:
                if resp.status < 300:
                    return
        except Exception:  # noqa: BLE001
            pass
        await asyncio.sleep(0.3)
    raise TimeoutError("the sink did not answer before the timeout")


async def not_sessionized(session: Any, port: int) -> int | None:
    """Events the worker stored raw but left out of sessions (late behind the watermark, or their
    session's buffer full), from its /metrics; a bench whose traffic is realistic shows 0."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    except Exception:  # noqa: BLE001 - a reading, not the measurement
        return None
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pulse_late_events_total" and sample.labels.get("stage") == "sessions":
                total += sample.value
            elif sample.name == "pulse_session_buffer_overflow_total":
                total += sample.value
    return int(total)


async def watch_until_stored(run: Run, procs: Procs, session: Any, worker_pid: int, expected: dict[str, int],
                             t0: float, deadline: float, lag: LagReader | None) -> None:
    """Poll row counts (and lag) until every expected row is stored; record timings and readings."""
    f = run.figures
    health_url = f"http://127.0.0.1:{procs.settings.worker.web_port}/health"
    peak_sessions = 0
    counts: dict[str, int] = {}
    while True:
        procs.children.check_alive()
        now = time.perf_counter()
        if lag is not None and "drain_s" not in f:
            behind = await lag.lag()
            if behind == 0:
                f["drain_s"] = round(time.perf_counter() - t0, 3)
                f["worker_cpu_s_at_drain"] = round(cpu_seconds(worker_pid), 3)
        counts = await table_counts(procs.settings, tuple(expected))
        if "first_row_s" not in f and any(counts.values()):
            f["first_row_s"] = round(now - t0, 3)
        health = await get_json(session, health_url)
        if health is not None:
            peak_sessions = max(peak_sessions, open_sessions(health))
        if all(counts.get(t, 0) >= n for t, n in expected.items()):
            f["stored_s"] = round(time.perf_counter() - t0, 3)
            f["worker_cpu_s_at_stored"] = round(cpu_seconds(worker_pid), 3)
            mem = memory(worker_pid)
            f["worker_rss_end_bytes"] = mem["VmRSS"]
            f["worker_peak_rss_bytes"] = mem["VmHWM"]
            health = await get_json(session, health_url)
            f["open_sessions_end"] = open_sessions(health) if health else None
            f["open_sessions_peak"] = peak_sessions
            f["events_not_sessionized"] = await not_sessionized(session, procs.settings.worker.web_port)
            break
        if time.monotonic() > deadline:
            f["timed_out"] = True
            f["rows_when_timed_out"] = counts
            raise TimeoutError(f"not every row was stored before the timeout: {counts} of {expected}")
        await asyncio.sleep(0.5)
    if lag is not None and "drain_s" not in f:  # stored before the first commit was seen
        for _ in range(20):
            if await lag.lag() == 0:
                break
            await asyncio.sleep(0.5)
        f["drain_s"] = round(time.perf_counter() - t0, 3)
        f["worker_cpu_s_at_drain"] = round(cpu_seconds(worker_pid), 3)
    await asyncio.sleep(3.0)  # anything beyond the expected rows (lost dedup, double inserts) shows now
    f["rows_stored"] = await table_counts(procs.settings, (*expected, "dead_letters"))


async def run_kafka(args: argparse.Namespace, bootstrap: str, workdir: Path, run: Run) -> None:
    import aiohttp

    from pipeline.kafka_admin import ensure_topics

    f = run.figures
    settings = bench_settings(bootstrap, workdir, {})
    tag = settings.worker.app_id.rsplit("-", 1)[1]
    await ensure_topics(settings.kafka)
    log(f"generating {args.events:,} events of {args.sessions:,} sessions as '{args.shape}' messages ...")
    plan = generate_load(events=args.events, sessions=args.sessions, shape=args.shape, seed=args.seed,
                         end_ms=int(time.time() * 1000) - 60_000, span_s=args.span if args.span is not None else 900.0)
    truth = plan.truth
    f.update(messages=len(plan.messages), events_sent=plan.events_sent,
             events_per_message=round(plan.events_per_message, 3), valid_unique_events=truth.valid,
             duplicate_events=truth.duplicate_events, malformed_records=truth.malformed, sessions=truth.sessions,
             largest_input_record_bytes=plan.largest_message)
    log(f"phase 1: producing {len(plan.messages):,} messages ({plan.events_per_message:.2f} events/message) ...")
    f["produce_s"] = round(await produce_all(settings, plan), 3)
    expected = {t: truth.rows_by_table.get(t, 0) for t in RAW_TABLES}
    expected["dead_letters"] = truth.malformed
    del plan

    procs = Procs(settings, workdir / "logs")
    lag = LagReader(settings)
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + args.timeout
            log("phase 2: starting the sink and the worker ...")
            procs.start("sink")
            await wait_sink(session, procs, deadline)
            started = time.perf_counter()
            worker_pid = procs.start("worker")
            await wait_ready(session, procs, deadline)
            t0 = time.perf_counter()
            f["worker_start_to_ready_s"] = round(t0 - started, 3)
            f["worker_cpu_s_at_ready"] = round(cpu_seconds(worker_pid), 3)
            f["worker_rss_ready_bytes"] = memory(worker_pid)["VmRSS"]
            await lag.start()
            log("worker ready; timing until every row is stored ...")
            await watch_until_stored(run, procs, session, worker_pid, expected, t0, deadline, lag)
    finally:
        await lag.stop()
        procs.stop()
    await scan_topics(settings, tag, f)
    summarize(run, expected)


def summarize(run: Run, expected: dict[str, int]) -> None:
    f = run.figures
    valid = f["valid_unique_events"]
    stored = f["rows_stored"]
    f["expected_rows"] = expected
    f["exact"] = all(stored.get(t) == n for t, n in expected.items())
    if "stored_s" in f:
        f["events_per_s_end_to_end"] = round(valid / f["stored_s"], 1)
    if f.get("drain_s"):
        f["events_per_s_worker_drain"] = round(valid / f["drain_s"], 1)
    if "worker_cpu_s_at_ready" in f:
        cpu = f["worker_cpu_s_at_stored"] - f["worker_cpu_s_at_ready"]
        f["worker_cpu_s_after_ready"] = round(cpu, 3)
        f["worker_cpu_us_per_event"] = round(cpu / valid * 1e6, 2)
        # what one fully used core would do: the figure a loaded, shared machine distorts least
        f["events_per_worker_cpu_s"] = round(valid / cpu, 1) if cpu > 0 else None
        f["worker_cpu_us_per_message"] = round(cpu / f["messages"] * 1e6, 2) if f.get("messages") else None
        sessions = f.get("open_sessions_end") or 0
        grown = f["worker_rss_end_bytes"] - f["worker_rss_ready_bytes"]
        f["worker_rss_bytes_per_open_session"] = round(grown / sessions) if sessions else None


def restamped(bodies: list[bytes], shift_ms: int) -> list[bytes]:
    """The request bodies with every event's timestamp moved ``shift_ms`` later."""
    shift = timedelta(milliseconds=shift_ms)
    out = []
    for body in bodies:
        events = orjson.loads(body)
        for event in events:
            moved = datetime.fromisoformat(event["timestamp"]) + shift
            event["timestamp"] = moved.isoformat(timespec="milliseconds")
        out.append(orjson.dumps(events))
    return out


async def run_collector(args: argparse.Namespace, bootstrap: str, workdir: Path, run: Run) -> None:
    import aiohttp

    from pipeline.kafka_admin import ensure_topics

    f = run.figures
    key = "bench-key"
    settings = bench_settings(bootstrap, workdir, {"PULSE_COLLECTOR_PROJECT_KEYS": orjson.dumps({key: "shop"}).decode()})
    await ensure_topics(settings.kafka)
    # Event time runs with the wall clock, as it does for real SDKs: the sessions span the posting
    # time (--events / --rate) unless --span says otherwise, and every timestamp is shifted to start
    # when posting starts (events far behind the wall clock would be late for sessions and skip them).
    span_s = args.span if args.span is not None else args.events / args.rate
    plan_end_ms = int(time.time() * 1000)
    plan = generate_load(events=args.events, sessions=args.sessions, shape="one", seed=args.seed,
                         end_ms=plan_end_ms, span_s=span_s)
    requests = collector_requests(plan, random.Random(args.seed))
    bodies = [b"[" + b",".join(r) + b"]" for r in requests]
    sizes = [len(r) for r in requests]
    tables: dict[bytes, str] = {}
    for r in requests:
        for value in r:
            event = orjson.loads(value)
            tables[event["event_id"].encode()] = {"error": "errors", "vital": "vitals", "action": "actions",
                                                  "api": "api_calls"}[event["type"]]
    f.update(requests=len(bodies), events_sent=sum(sizes), events_per_request=round(sum(sizes) / len(sizes), 3),
             valid_unique_events=len(tables), sessions=plan.truth.sessions, target_events_per_s=args.rate,
             concurrency=args.concurrency)
    del plan
    procs = Procs(settings, workdir / "logs")
    url = f"http://127.0.0.1:{settings.collector.port}/api/v1/events"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as session:
            deadline = time.monotonic() + args.timeout
            procs.start("sink")
            await wait_sink(session, procs, deadline)
            worker_pid = procs.start("worker")
            collector_pid = procs.start("collector")
            await wait_ready(session, procs, deadline)
            while await get_json(session, f"http://127.0.0.1:{settings.collector.port}/health") is None:
                procs.children.check_alive()
                await asyncio.sleep(0.3)
            f["worker_rss_ready_bytes"] = memory(worker_pid)["VmRSS"]
            f["worker_cpu_s_at_ready"] = round(cpu_seconds(worker_pid), 3)
            collector_cpu0 = cpu_seconds(collector_pid)
            bodies = restamped(bodies, int(time.time() * 1000) - (plan_end_ms - int(span_s * 1000)))
            log(f"posting {len(bodies):,} requests ({sum(sizes):,} events) at {args.rate:,} events/s ...")
            accepted = 0
            failed = 0
            latencies: list[float] = []
            slots = asyncio.Semaphore(args.concurrency)

            async def post(body: bytes) -> None:
                nonlocal accepted, failed
                try:
                    for attempt in range(6):
                        sent = time.perf_counter()
                        try:
                            async with session.post(url, data=body, headers={
                                    "X-Pulse-Key": key, "Content-Type": "application/json"}, timeout=30) as resp:
                                doc = await resp.json(content_type=None)
                                if resp.status == 200:
                                    latencies.append(time.perf_counter() - sent)
                                    accepted += int(doc.get("accepted", 0))
                                    return
                        except (aiohttp.ClientError, asyncio.TimeoutError):
                            pass
                        await asyncio.sleep(0.5 * (attempt + 1))
                    failed += 1
                finally:
                    slots.release()

            t0 = time.perf_counter()
            sent_events = 0
            tasks = []
            for body, n in zip(bodies, sizes):
                due = t0 + sent_events / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                tasks.append(asyncio.create_task(post(body)))
                sent_events += n
                if time.monotonic() > deadline:
                    raise TimeoutError("posting did not finish before the timeout")
            await asyncio.gather(*tasks)
            posted_s = time.perf_counter() - t0
            f.update(post_s=round(posted_s, 3), accepted_events=accepted, failed_requests=failed,
                     accepted_events_per_s=round(accepted / posted_s, 1),
                     latency_p50_ms=round(statistics.median(latencies) * 1000, 1) if latencies else None,
                     latency_p99_ms=round(sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000, 1)
                     if latencies else None,
                     collector_cpu_us_per_event=round((cpu_seconds(collector_pid) - collector_cpu0) / max(1, accepted)
                                                      * 1e6, 2))
            expected: dict[str, int] = {t: 0 for t in RAW_TABLES}
            for table in tables.values():
                expected[table] += 1
            expected["dead_letters"] = 0
            await watch_until_stored(run, procs, session, worker_pid, expected, t0, deadline, None)
            f["stored_after_last_accept_s"] = round(f["stored_s"] - posted_s, 3)
            f.pop("first_row_s", None)  # rows were not watched while posting
    finally:
        procs.stop()
    await scan_topics(settings, settings.worker.app_id.rsplit("-", 1)[1], f)
    summarize(run, expected)


def print_human(run: Run, load_before: str, load_after: str) -> None:
    f = run.figures
    upper = "   ** UPPER BOUND: 50-event messages are not what real producers send **" if run.shape == "batch50" else ""
    mb = 1024 * 1024
    print(f"load bench, {run.mode}, shape '{run.shape}'{upper}")
    print(f"  machine load (uptime load average 1/5/15 min): before {load_before}, after {load_after}; "
          f"{os.cpu_count()} CPUs")
    if run.mode == "kafka":
        print(f"  input: {f['messages']:,} messages, {f['events_sent']:,} events ({f['events_per_message']} "
              f"per message), {f['valid_unique_events']:,} valid unique, {f['duplicate_events']:,} duplicates, "
              f"{f['malformed_records']} malformed, {f['sessions']:,} sessions; produced in {f['produce_s']} s")
        print(f"  worker start -> ready {f['worker_start_to_ready_s']} s; from ready: first row "
              f"{f.get('first_row_s')} s, worker drained {f.get('drain_s')} s, last row stored {f.get('stored_s')} s")
        print(f"  EVENTS/S END TO END (ready -> last row stored): {f.get('events_per_s_end_to_end', 0):,.0f}")
        print(f"  events/s worker drain (ready -> lag 0):          {f.get('events_per_s_worker_drain', 0):,.0f}")
    else:
        print(f"  input: {f['requests']:,} requests, {f['events_sent']:,} events ({f['events_per_request']} per "
              f"request), {f['valid_unique_events']:,} unique; target {f['target_events_per_s']:,} events/s, "
              f"{f['concurrency']} concurrent")
        print(f"  ACCEPTED EVENTS/S: {f['accepted_events_per_s']:,.0f} ({f['accepted_events']:,} accepted, "
              f"{f['failed_requests']} requests failed after retries); latency p50 {f['latency_p50_ms']} ms, "
              f"p99 {f['latency_p99_ms']} ms; collector {f['collector_cpu_us_per_event']} us CPU/event")
        print(f"  every accepted event stored {f.get('stored_after_last_accept_s')} s after the last accept")
    per_message = f", {f['worker_cpu_us_per_message']} us/message" if f.get("worker_cpu_us_per_message") else ""
    print(f"  worker CPU: {f.get('worker_cpu_us_per_event')} us/event{per_message} "
          f"({f.get('worker_cpu_s_after_ready')} s after ready) = {f.get('events_per_worker_cpu_s') or 0:,.0f} events "
          f"per worker CPU-second")
    print(f"  worker RSS: ready {f.get('worker_rss_ready_bytes', 0) / mb:,.1f} MB, end "
          f"{f.get('worker_rss_end_bytes', 0) / mb:,.1f} MB, peak {f.get('worker_peak_rss_bytes', 0) / mb:,.1f} MB; "
          f"{f.get('open_sessions_end')} open sessions -> {f.get('worker_rss_bytes_per_open_session')} bytes/session")
    if "largest_produced_record" in f:
        top = f["largest_produced_record"]
        own = f["largest_state_or_signal_record"]
        print(f"  largest record the pipeline produced: {top['bytes']:,} bytes on {top['topic']} "
              f"(largest input record: {f.get('largest_input_record_bytes', 0):,}); largest state/signal record "
              f"(changelogs, partials, alerts, issues): {own['bytes']:,} bytes on {own['topic']}")
    if f.get("written_by_topic") and f.get("valid_unique_events"):
        valid = f["valid_unique_events"]
        parts = [f"{t}: {w['records']:,} records, {w['bytes'] / valid:,.0f} B/event"
                 for t, w in sorted(f["written_by_topic"].items(), key=lambda kv: -kv[1]["bytes"])]
        print("  written per valid event (keys + values, before compression), by topic:\n    " + "\n    ".join(parts))
    if f.get("events_not_sessionized") is not None:
        print(f"  events stored raw but not sessionized (late or buffer full): {f['events_not_sessionized']:,}")
    exact = "EXACT" if f["exact"] else "NOT EXACT"
    print(f"  {exact}: stored {f['rows_stored']} vs expected {f['expected_rows']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("flush", "one", "batch50"), default="flush",
                        help="flush: SDK flushes, 1-5 events/message (default); one: one event/message; "
                             "batch50: 50 events/message, an upper bound only")
    parser.add_argument("--events", type=int, default=300_000, help="events to generate (before retries)")
    parser.add_argument("--sessions", type=int, default=None,
                        help="browser sessions they come from (default 10,000; batch50: --events / 250, so that "
                             "messages can fill up to 50 events of one session and topic)")
    parser.add_argument("--span", type=float, default=None,
                        help="seconds of event time the sessions cover (default 900; --via-collector: the "
                             "posting time, --events / --rate, with event time following the wall clock)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds phase 2 may take at most")
    parser.add_argument("--via-collector", action="store_true", help="HTTP requests through `pulse collector`")
    parser.add_argument("--rate", type=int, default=2000, help="--via-collector: target events/s")
    parser.add_argument("--concurrency", type=int, default=16, help="--via-collector: requests in flight")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    if args.via_collector and args.shape != "flush":
        parser.error("--via-collector posts requests of 1-10 events; --shape does not apply")
    if args.sessions is None:
        args.sessions = max(1, args.events // 250) if args.shape == "batch50" else 10_000

    from pipeline.kafka_admin import wait_for_broker
    from pipeline.localbroker import LocalBroker
    from tests.conftest import _free_port_pair

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    load_before = machine_load()
    run = Run("collector" if args.via_collector else "kafka", "requests" if args.via_collector else args.shape)
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        workdir = Path(tmp)
        broker = None
        bootstrap = os.environ.get("PULSE_KAFKA_BOOTSTRAP_SERVERS")
        try:
            if not bootstrap:
                broker = LocalBroker(port=_free_port_pair(), data_dir=workdir / "kafka")
                log(f"starting a local broker on {broker.bootstrap} ...")
                broker.start()
                bootstrap = broker.bootstrap
            asyncio.run(wait_for_broker(bootstrap, timeout_s=90))
            runner = run_collector if args.via_collector else run_kafka
            asyncio.run(runner(args, bootstrap, workdir, run))
        except (TimeoutError, RuntimeError) as exc:
            run.figures["error"] = str(exc)[-3000:]
            log(f"FAILED: {exc}")
        finally:
            if broker is not None:
                broker.stop()
    run.figures["load_average_before"] = load_before
    run.figures["load_average_after"] = machine_load()
    run.figures["cpus"] = os.cpu_count()
    if args.json:
        print(orjson.dumps(run.as_dict(), option=orjson.OPT_INDENT_2).decode())
    elif "error" not in run.figures:
        print_human(run, load_before, run.figures["load_average_after"])
    else:
        print(orjson.dumps(run.as_dict(), option=orjson.OPT_INDENT_2).decode())
    return 1 if "error" in run.figures or not run.figures.get("exact") else 0


if __name__ == "__main__":
    sys.exit(main())
