"""PULSE_COLLECTOR_PROCESSES: several collector processes on one port, against a real broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from pipeline.settings import Settings
from pipeline.supervise import child_pids
from tests.conftest import settings_env
from tests.integration.kafka_read import events_of, read_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 41
EVENTS_200 = r'pulse_http_requests_total\{endpoint="/api/v1/events",process="collector",status="200"\} ([\d.]+)'
EVENTS_LATENCY_COUNT = r'pulse_http_request_seconds_count\{endpoint="/api/v1/events",process="collector"\} ([\d.]+)'
VITALS_IN = r'pulse_events_in_total\{process="collector",type="vital"\} ([\d.]+)'


def start(settings: Settings, processes: int, metrics_dir: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings), "PULSE_COLLECTOR_PROCESSES": str(processes)}
    if metrics_dir is not None:
        env["PULSE_COLLECTOR_METRICS_DIR"] = str(metrics_dir)
    return subprocess.Popen([sys.executable, "-m", "pipeline.collector"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_healthy(base: str, proc: subprocess.Popen[bytes], processes: int) -> None:
    """Healthy on fresh connections (either process may answer) and all processes forked."""
    deadline = time.monotonic() + 90
    healthy = 0
    while healthy < 10 or len(child_pids(proc.pid)) < processes - 1:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "collector processes did not become healthy"
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{base}/health") as resp:
                healthy = healthy + 1 if resp.status == 200 else 0
        except aiohttp.ClientError:
            healthy = 0
        await asyncio.sleep(0.1 if healthy else 0.5)


def value(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else 0.0


def file_count(path: Path, name: str, labels: dict[str, str]) -> float:
    """One process's value of a sample, read from its own file in the shared metrics directory."""
    from prometheus_client.multiprocess import MultiProcessCollector

    return sum(s.value for m in MultiProcessCollector.merge([str(path)]) for s in m.samples
               if s.name == name and s.labels == labels)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


async def test_two_processes_share_the_port_and_stop_together(settings: Settings, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{settings.collector.port}"
    key = next(iter(settings.collector.project_keys))
    metrics_base = tmp_path / "metrics"
    stale = metrics_base / "pulse-collector-metrics-999999999"  # a killed run's directory (no such pid)
    stale.mkdir(parents=True)
    (stale / "counter_999999999.db").write_bytes(b"old counts")
    proc = start(settings, 2, metrics_base)
    try:
        await wait_healthy(base, proc, 2)
        [child] = child_pids(proc.pid)
        run_dir = metrics_base / f"pulse-collector-metrics-{proc.pid}"
        assert run_dir.is_dir() and not stale.exists()
        ids: list[str] = []
        for i in range(REQUESTS):  # a new connection each: the kernel spreads them over both processes
            batch = [{"event_id": str(uuid.uuid4()), "type": "vital", "timestamp": "2026-11-23T10:00:00Z",
                      "session_id": f"s{i}", "vital": {"name": "LCP", "value": 1.0 + n}} for n in range(3)]
            ids += [e["event_id"] for e in batch]
            async with aiohttp.ClientSession() as http, http.post(
                    f"{base}/api/v1/events", data=orjson.dumps(batch), headers={"X-Pulse-Key": key}) as resp:
                assert resp.status == 200 and (await resp.json())["accepted"] == 3
        # Every scrape, whichever process answers it (fresh connections reach both), shows the sum over
        # both processes: counters, histogram counts, and the producer's counters.
        scrapes = 30
        for _ in range(scrapes):
            async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            seen = (value(EVENTS_200, text), value(EVENTS_LATENCY_COUNT, text), value(VITALS_IN, text))
            assert seen == (REQUESTS, REQUESTS, 3 * REQUESTS), seen
            for pid in (proc.pid, child):  # process_* series of both processes, whichever one answered
                assert f'process_cpu_seconds_total{{pid="{pid}"}}' in text, text[-2000:]
                assert f'process_resident_memory_bytes{{pid="{pid}"}}' in text
        # ... and both processes did serve events and scrapes (each one's own file says so).
        labels = {"endpoint": "/api/v1/events", "process": "collector", "status": "200"}
        mine = {pid: file_count(run_dir / f"counter_{pid}.db", "pulse_http_requests_total", labels)
                for pid in (proc.pid, child)}
        assert all(mine.values()) and sum(mine.values()) == REQUESTS, mine
        scraped = {pid: file_count(run_dir / f"counter_{pid}.db", "pulse_http_requests_total",
                                   {**labels, "endpoint": "/metrics"}) for pid in (proc.pid, child)}
        assert all(scraped.values()) and sum(scraped.values()) == scrapes, scraped
        records = await read_topics(settings.kafka.bootstrap_servers, [settings.kafka.topic_vitals],
                                    until=lambda rs: len(events_of(rs)) >= len(ids))
        assert sorted(e["event_id"] for e in events_of(records)) == sorted(ids)

        proc.send_signal(signal.SIGTERM)  # graceful: the parent stops its sibling too
        assert proc.wait(30) == 0
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
        assert not run_dir.exists()  # a clean exit removes the run's metric files
    finally:
        stop(proc)

    proc = start(settings, 2, metrics_base)
    try:
        await wait_healthy(base, proc, 2)
        [child] = child_pids(proc.pid)
        os.kill(child, signal.SIGKILL)  # one process dies: the collector exits whole, for its supervisor
        assert proc.wait(30) == 1
        assert not (metrics_base / f"pulse-collector-metrics-{proc.pid}").exists()  # its files went too
    finally:
        stop(proc)
