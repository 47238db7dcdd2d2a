"""``pulse demo`` and ``pulse simulate``: the whole chain on this machine, with a visible result.

The demo starts what is missing (the project's Kafka, then collector, worker and sink as child
processes logging to ``.pulse/logs``), sends simulated browser sessions through the collector in
real time, waits until ClickHouse holds every accepted event, prints a summary, and stops
everything it started on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.settings import Settings
from pipeline.simulate import generate_scenario
from pipeline.simulate_sessions import SessionScenario, generate_session_scenario
from pipeline.storage.query_client import sink_url
from pipeline.supervise import ChildProcesses, poll_json

RAW_TABLES = ("errors", "vitals", "actions", "api_calls")


@dataclass
class TrafficReport:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    retried: int = 0
    failed_requests: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    expected_valid: int = 0
    expected_malformed: int = 0
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def summary(self) -> str:
        return (f"sent {self.requests} requests: {self.accepted} events accepted, {self.rejected} rejected "
                f"(expected {self.expected_valid} valid / {self.expected_malformed} malformed), "
                f"{self.retried} retried after 503, {self.failed_requests} failed")


def collector_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.collector.host in ("0.0.0.0", "") else settings.collector.host
    return f"http://{host}:{settings.collector.port}"


async def send_traffic(settings: Settings, *, sessions: int, duration_s: float, seed: int,
                       base_url: str | None = None, key: str | None = None,
                       console: Console | None = None, concurrency: int = 16) -> TrafficReport:
    """POST each simulated SDK flush in event-time order, compressed to ``duration_s`` of wall time;
    retry 503s as an SDK would."""
    start = datetime.now(timezone.utc)
    scenario = generate_scenario(sessions, seed=seed, start=start, spread_s=duration_s)
    report = TrafficReport(expected_valid=scenario.truth.valid, expected_malformed=scenario.truth.malformed,
                           started_at=start)
    url = (base_url or collector_url(settings)) + "/api/v1/events"
    headers = {"X-Pulse-Key": key or next(iter(settings.collector.project_keys)), "Content-Type": "application/json"}
    limit = asyncio.Semaphore(concurrency)
    t0 = time.monotonic()
    # Sessions last minutes of event time; replay the flushes compressed into ``duration_s``.
    span = max((scenario.flushes[-1].send_at - start).total_seconds(), 1e-3) if scenario.flushes else 1.0
    speedup = max(span / max(duration_s, 0.1), 1.0)

    async def post(session: aiohttp.ClientSession, body: bytes, progress: Progress, task: Any) -> None:
        async with limit:
            for attempt in range(6):
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        if resp.status == 503:
                            report.retried += 1
                            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                            continue
                        doc = await resp.json(content_type=None)
                        report.requests += 1
                        if resp.status != 200:
                            report.failed_requests += 1
                            break
                        report.accepted += doc.get("accepted", 0)
                        report.rejected += doc.get("rejected", 0)
                        for err in doc.get("errors", []):
                            reason = str(err.get("reason", "?")).split(";")[0][:80]
                            report.reasons[reason] = report.reasons.get(reason, 0) + 1
                        break
                except aiohttp.ClientError:
                    report.retried += 1
                    await asyncio.sleep(min(2 ** attempt * 0.2, 5))
            else:
                report.failed_requests += 1
            progress.advance(task)

    progress = Progress(TextColumn("sending simulated sessions"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console or Console(stderr=True))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        with progress:
            task = progress.add_task("send", total=len(scenario.flushes))
            pending: set[asyncio.Task[None]] = set()
            for flush in scenario.flushes:
                delay = (flush.send_at - start).total_seconds() / speedup - (time.monotonic() - t0)
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.add(asyncio.create_task(post(session, orjson.dumps(flush.events), progress, task)))
                pending = {p for p in pending if not p.done()}
            if pending:
                await asyncio.gather(*pending)
    return report


async def send_session_replay(settings: Settings, scenario: SessionScenario, console: Console,
                              concurrency: int = 1, base_url: str | None = None, key: str | None = None) -> int:
    """POST the session scenario's flushes in send order, as fast as the collector takes them.

    The replay packs hours of event time into seconds: the worker's 60 s of allowed lateness are
    ~11 ms of sending. So one request at a time by default (the collector answers after Kafka has
    the events, so Kafka's order is the send order): with 8 in flight, a request that took a few
    ms longer landed behind later ones, its events minutes of event time behind the watermark, and
    its session never added up (seen on a loaded machine: 2 of 161 sessions short). For the same
    reason a flush that has to be retried must not fall behind: while one is retried, no new one starts."""
    url = (base_url or collector_url(settings)) + "/api/v1/events"
    headers = {"X-Pulse-Key": key or next(iter(settings.collector.project_keys)), "Content-Type": "application/json"}
    limit = asyncio.Semaphore(concurrency)
    clear_to_send = asyncio.Event()
    clear_to_send.set()
    retrying = 0
    accepted = 0

    async def post(session: aiohttp.ClientSession, body: bytes) -> None:
        nonlocal accepted, retrying
        async with limit:
            held = False
            try:
                for attempt in range(6):
                    try:
                        async with session.post(url, data=body, headers=headers) as resp:
                            if resp.status != 503:
                                accepted += (await resp.json(content_type=None)).get("accepted", 0)
                                return
                            wait_s = float(resp.headers.get("Retry-After", "1"))
                    except aiohttp.ClientError:  # e.g. a kept-alive connection the server closed: retry at once
                        wait_s = 0.0 if attempt == 0 else min(2 ** attempt * 0.2, 5)
                    if not held:
                        held, retrying = True, retrying + 1
                        clear_to_send.clear()
                    await asyncio.sleep(wait_s)
            finally:
                if held:
                    retrying -= 1
                    if retrying == 0:
                        clear_to_send.set()

    with Progress(TextColumn("replaying sessions from 4 h ago"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("send", total=len(scenario.flushes))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            pending: set[asyncio.Task[None]] = set()
            for flush in scenario.flushes:
                await clear_to_send.wait()
                while len(pending) >= concurrency:  # keep the send order close to event order
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    progress.advance(task, len(done))
                pending.add(asyncio.create_task(post(session, orjson.dumps(flush.events))))
            if pending:
                await asyncio.gather(*pending)
            progress.update(task, completed=len(scenario.flushes))
    return accepted


def worker_watermark_ms(settings: Settings, timeout_s: float = 60.0) -> int | None:
    """The highest session watermark of the worker once it is ready (its state restored), or None."""
    health = poll_json(f"http://127.0.0.1:{settings.worker.web_port}/health", lambda h: bool(h.get("ready")),
                       timeout_s) or {}
    marks = [p["watermark_ms"] for p in health.get("sessions", {}).values() if p.get("watermark_ms", -1) > 0]
    return max(marks) if marks else None


def sessions_demo(settings: Settings, seed: int, console: Console, procs: ChildProcesses,
                  timeout_s: float = 90.0) -> bool | None:
    """Replay sessions from 1-4 h ago with known rage/dead clicks and bounces, wait until the worker
    closed them all (the timer moves quiet partitions to the clock), and compare with the truth.
    None = skipped (this data directory already holds newer event time, so the replay would be late)."""
    start = datetime.now(timezone.utc) - timedelta(hours=4)
    start_ms = int(start.timestamp() * 1000)
    with console.status("waiting for the worker to hold its partitions"):
        wm = worker_watermark_ms(settings)
    if wm is not None and wm >= start_ms:
        console.print("[yellow]session replay skipped: this .pulse directory already holds newer event time "
                      "(an earlier demo); its sessions are shown below. `rm -rf .pulse` for a fresh demo.[/yellow]")
        return None
    scenario = generate_session_scenario(seed=seed, start=start, sessions=120)
    asyncio.run(send_session_replay(settings, scenario, console))
    window = (f"start >= toDateTime64('{start.strftime('%Y-%m-%d %H:%M:%S')}', 3, 'UTC') "
              f"AND start < toDateTime64('{(start + timedelta(hours=3, minutes=1)).strftime('%Y-%m-%d %H:%M:%S')}', 3, 'UTC')")
    truth = scenario.truth
    with Progress(TextColumn("sessions closed by the worker"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("sessions", total=truth.session_count)
        deadline, got = time.monotonic() + timeout_s, {}
        while time.monotonic() < deadline:
            procs.check_alive()
            try:
                got = _query_json(settings, f"SELECT count() AS sessions, countIf(bounce) AS bounces, "
                                            f"sum(rage_clicks) AS rage, sum(dead_clicks) AS dead FROM sessions FINAL "
                                            f"WHERE project = 'demo' AND {window}")[0]
            except Exception:  # noqa: BLE001 - tables may not exist for a moment
                got = {}
            progress.update(task, completed=int(got.get("sessions", 0)))
            if int(got.get("sessions", 0)) >= truth.session_count:
                break
            time.sleep(0.5)
    out = Console()
    t = Table(title="Sessions replayed from 1-4 h ago: pipeline vs. the generator's truth")
    for c in ("", "stored", "expected"):
        t.add_column(c, justify="right")
    expected = {"sessions": truth.session_count, "bounces": truth.bounces, "rage": truth.total_rage,
                "dead": truth.total_dead}
    for k, label in (("sessions", "sessions"), ("bounces", "bounces"), ("rage", "rage clicks"),
                     ("dead", "dead clicks")):
        t.add_row(label, str(got.get(k, 0)), str(expected[k]))
    out.print(t)
    return all(int(got.get(k, -1)) == v for k, v in expected.items())


def print_ux_summary(settings: Settings) -> None:
    out = Console()
    t = Table(title="Where users struggle: rage and dead clicks by page and element")
    for c in ("page", "element", "rage clicks", "dead clicks"):
        t.add_column(c)
    rows = _query_json(settings, "SELECT page, selector, sum(rage) AS rage, sum(dead) AS dead FROM ("
                                 "SELECT page, selector, count() AS rage, 0 AS dead FROM rage_clicks FINAL "
                                 "GROUP BY page, selector UNION ALL "
                                 "SELECT page, selector, 0, count() FROM dead_clicks FINAL GROUP BY page, selector) "
                                 "GROUP BY page, selector ORDER BY rage + dead DESC LIMIT 8")
    for r in rows:
        t.add_row(r["page"], r["selector"], str(r["rage"]), str(r["dead"]))
    out.print(t)


# ------------------------------------------------------------------ orchestration


def _query_json(settings: Settings, sql: str) -> list[dict[str, Any]]:
    from pipeline.storage.query_client import run_query

    out = run_query(settings, sql, fmt="JSONEachRow")
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def _since(report: TrafficReport) -> str:
    return f"received_at >= toDateTime64('{report.started_at.strftime('%Y-%m-%d %H:%M:%S')}', 3, 'UTC')"


def wait_for_rows(settings: Settings, report: TrafficReport, console: Console, procs: ChildProcesses | None,
                  timeout_s: float = 120.0) -> int:
    """Poll ClickHouse until every accepted event of this run is stored (or time runs out)."""
    union = " UNION ALL ".join(f"SELECT count() AS c FROM {t} WHERE {_since(report)}" for t in RAW_TABLES)
    sql = f"SELECT sum(c) AS n FROM ({union})"
    stored = 0
    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("waiting for ClickHouse"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("rows", total=report.accepted)
        while time.monotonic() < deadline:
            if procs:
                procs.check_alive()
            try:
                stored = int(_query_json(settings, sql)[0]["n"])
            except Exception:  # noqa: BLE001 - tables may not exist for a moment
                stored = 0
            progress.update(task, completed=stored)
            if stored >= report.accepted:
                break
            time.sleep(0.5)
    return stored


def print_summary(settings: Settings, report: TrafficReport, stored: int, console: Console) -> None:
    out = Console()
    since = _since(report)
    counts = Table(title="Events stored in ClickHouse (this run)")
    counts.add_column("table")
    counts.add_column("rows", justify="right")
    for t in RAW_TABLES:
        n = _query_json(settings, f"SELECT count() AS n FROM {t} WHERE {since}")[0]["n"]
        counts.add_row(t, str(n))
    dl = _query_json(settings, f"SELECT count() AS n FROM dead_letters WHERE {since}")[0]["n"]
    counts.add_row("dead_letters", str(dl))
    out.print(counts)

    top = Table(title="Top issues (errors grouped by fingerprint; known noise left out)")
    for c in ("fingerprint", "status", "title", "culprit", "events", "users"):
        top.add_column(c)
    for r in _query_json(settings, "SELECT fingerprint, status, title, culprit, events, affected_users FROM issues "
                                   "ORDER BY events DESC LIMIT 5"):
        top.add_row(r["fingerprint"][:12], r["status"], r["title"][:50], r["culprit"][:40], str(r["events"]),
                    str(r["affected_users"]))
    out.print(top)

    vit = Table(title="Web vitals p75 by route")
    for c in ("route", "LCP ms", "INP ms", "CLS"):
        vit.add_column(c)
    for r in _query_json(settings, f"SELECT route, round(quantileIf(0.75)(value, name='LCP')) AS lcp, "
                                   f"round(quantileIf(0.75)(value, name='INP')) AS inp, "
                                   f"round(quantileIf(0.75)(value, name='CLS'), 3) AS cls "
                                   f"FROM vitals WHERE {since} GROUP BY route ORDER BY route"):
        vit.add_row(r["route"], str(r["lcp"]), str(r["inp"]), str(r["cls"]))
    out.print(vit)

    dead = Table(title="Dead letters by reason")
    dead.add_column("reason")
    dead.add_column("count", justify="right")
    for r in _query_json(settings, f"SELECT substring(reason, 1, 90) AS reason, count() AS n FROM dead_letters "
                                   f"WHERE {since} GROUP BY reason ORDER BY n DESC LIMIT 6"):
        dead.add_row(r["reason"], str(r["n"]))
    out.print(dead)
    ok = stored == report.accepted == report.expected_valid and dl >= report.expected_malformed
    out.print(f"\n{report.summary()}\nstored {stored} of {report.accepted} accepted events: "
              f"[{'green' if ok else 'red'}]{'all there' if ok else 'MISMATCH'}[/]\n")
    print_health_report(settings, out)
    out.print(f"Dashboard (live): http://127.0.0.1:{settings.collector.port}/dashboard\n"
              f"Pipeline health:  curl http://127.0.0.1:{settings.collector.port}/api/health\n")
    out.print("Query it (works while the sink runs):\n"
              "  .venv/bin/pulse query \"SELECT route, count() FROM actions WHERE kind='click' GROUP BY route\"\n"
              "  .venv/bin/pulse issues            (then: pulse issues resolve <fingerprint>)\n"
              "  .venv/bin/pulse report --period 1h   (--json for the monitoring_health_check document)\n"
              f"  curl 'http://127.0.0.1:{settings.collector.port}/api/metrics?name=web_vitals.lcp&aggregation=p75"
              "&group_by=page'\n"
              f"  curl '{sink_url(settings)}?query=SELECT+count()+FROM+errors'\n")


def print_health_report(settings: Settings, out: Console) -> None:
    """The last hour's health report (``pulse report --period 1h``), through the running sink."""
    from pipeline.api.common import ApiError
    from pipeline.report.build import build_report
    from pipeline.report.render import render_report

    try:
        doc = asyncio.run(build_report(settings, 3600, None, datetime.now(timezone.utc), allow_direct=False))
    except ApiError as exc:
        out.print(f"[red]health report: {exc.message}[/red]")
        return
    out.print(render_report(doc))


def run_demo(settings: Settings, *, sessions: int, duration_s: float, seed: int, keep_running: bool,
             console: Console) -> int:
    from pipeline.kafka_admin import ensure_topics, wait_for_broker
    from pipeline.localbroker import LocalBroker

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    data_dir = settings.data_dir.resolve()
    host, _, port = settings.kafka.bootstrap_servers.split(",")[0].rpartition(":")
    broker: LocalBroker | None = None
    procs = ChildProcesses(data_dir / "logs")
    try:
        try:
            asyncio.run(wait_for_broker(settings.kafka.bootstrap_servers, timeout_s=3))
            console.print(f"using the Kafka broker already running at {settings.kafka.bootstrap_servers}")
        except TimeoutError:
            if host not in ("127.0.0.1", "localhost"):
                console.print(f"[red]Kafka at {settings.kafka.bootstrap_servers} does not answer[/red]")
                return 1
            broker = LocalBroker(port=int(port), data_dir=data_dir / "kafka")
            with console.status(f"starting Kafka on {broker.bootstrap} (the first run fetches its jars with Maven)"):
                broker.start()
                asyncio.run(wait_for_broker(broker.bootstrap, timeout_s=60))
            console.print(f"Kafka ready on {broker.bootstrap}")
        created = asyncio.run(ensure_topics(settings.kafka))
        console.print(f"topics ready ({len(created)} created, {settings.kafka.partitions} partitions each)")
        with console.status("starting sink, worker and collector (logs in .pulse/logs)"):
            for name in ("sink", "worker", "collector"):
                procs.start(name)
            procs.wait_http(sink_url(settings) + "ping")
            procs.wait_http(collector_url(settings) + "/health")
        console.print("pipeline running: collector -> Kafka -> worker -> Kafka -> sink -> ClickHouse (chDB)")
        sessions_ok = sessions_demo(settings, seed, console, procs)
        print_ux_summary(settings)
        report = asyncio.run(send_traffic(settings, sessions=sessions, duration_s=duration_s, seed=seed,
                                          console=console))
        console.print(report.summary())
        stored = wait_for_rows(settings, report, console, procs)
        print_summary(settings, report, stored, console)
        if keep_running:
            console.print("Everything keeps running for your queries; press Ctrl-C to stop.")
            while True:
                procs.check_alive()
                time.sleep(1)
        return 0 if stored == report.accepted and sessions_ok is not False else 1
    except KeyboardInterrupt:
        console.print("\nstopping...")
        return 0
    except (RuntimeError, TimeoutError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    finally:
        procs.stop_all(on_stopped=lambda name, _code: console.print(f"stopped {name}"))
        if broker is not None:
            broker.stop()
            console.print("stopped Kafka")
