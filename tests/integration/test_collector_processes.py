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
REQUESTS = 41  # odd: the two processes cannot answer the same number, so their counts tell them apart




def start(settings: Settings, processes: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings), "PULSE_COLLECTOR_PROCESSES": str(processes)}
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


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


async def test_two_processes_share_the_port_and_stop_together(settings: Settings) -> None:
    base = f"http://127.0.0.1:{settings.collector.port}"
    key = next(iter(settings.collector.project_keys))
    proc = start(settings, 2)
    try:
        await wait_healthy(base, proc, 2)
        [child] = child_pids(proc.pid)
        ids: list[str] = []
        for i in range(REQUESTS):  # a new connection each: the kernel spreads them over both processes
            batch = [{"event_id": str(uuid.uuid4()), "type": "vital", "timestamp": "2026-11-23T10:00:00Z",
                      "session_id": f"s{i}", "vital": {"name": "LCP", "value": 1.0 + n}} for n in range(3)]
            ids += [e["event_id"] for e in batch]
            async with aiohttp.ClientSession() as http, http.post(
                    f"{base}/api/v1/events", data=orjson.dumps(batch), headers={"X-Pulse-Key": key}) as resp:
                assert resp.status == 200 and (await resp.json())["accepted"] == 3
        # Each process counts the requests it answered; scrapes on fresh connections reach both. (With an
        # even number, a 20/20 split, one run in eight, showed one value and failed.)
        seen: set[float] = set()
        for _ in range(40):
            async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
                m = re.search(r'pulse_http_requests_total\{endpoint="/api/v1/events",process="collector",'
                              r'status="200"\} ([\d.]+)', await resp.text())
                seen.add(float(m.group(1)) if m else 0.0)
            if len(seen) == 2:
                break
        assert len(seen) == 2 and sum(seen) == REQUESTS, seen
        records = await read_topics(settings.kafka.bootstrap_servers, [settings.kafka.topic_vitals],
                                    until=lambda rs: len(events_of(rs)) >= len(ids))
        assert sorted(e["event_id"] for e in events_of(records)) == sorted(ids)

        proc.send_signal(signal.SIGTERM)  # graceful: the parent stops its sibling too
        assert proc.wait(30) == 0
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    finally:
        stop(proc)

    proc = start(settings, 2)
    try:
        await wait_healthy(base, proc, 2)
        [child] = child_pids(proc.pid)
        os.kill(child, signal.SIGKILL)  # one process dies: the collector exits whole, for its supervisor
        assert proc.wait(30) == 1
    finally:
        stop(proc)
