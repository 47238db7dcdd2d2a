"""GET /api/health on the collector against real Kafka, a real sink and worker: healthy when all run,
degraded when ClickHouse is unreachable, unhealthy (503) when a consumer group falls too far behind
or Kafka is down; the lag per partition is on the collector's /metrics."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings
from tests.integration.pipeline_procs import PipelineProcs
from tests.integration.test_issues import http

pytestmark = pytest.mark.integration


def health(settings: Settings) -> tuple[int, Any]:
    return http(settings, "GET", "/api/health")


def pageviews(n: int) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc).isoformat()
    return [{"event_id": str(uuid.uuid4()), "type": "action", "timestamp": now, "session_id": f"s{i % 5}",
             "url": "https://shop.example/", "action": {"kind": "pageview"}} for i in range(n)]


def wait_status(settings: Settings, want: str, timeout_s: float = 60,
                until: Any = lambda doc: True) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout_s
    status, doc = health(settings)
    while time.monotonic() < deadline and ((doc or {}).get("status") != want or not until(doc)):
        time.sleep(0.5)
        status, doc = health(settings)
    return status, doc


def test_health_follows_the_pipeline(settings: Settings, tmp_path: Path) -> None:
    procs = PipelineProcs(settings, tmp_path / "logs")
    worker, agents, sink = settings.worker.ingest_group(), settings.worker.app_id, settings.sink.group_id
    try:
        for name in ("sink", "worker"):
            procs.start(name)
        procs.start("collector", PULSE_COLLECTOR_HEALTH_LAG_DEGRADED="5", PULSE_COLLECTOR_HEALTH_LAG_UNHEALTHY="20",
                    PULSE_COLLECTOR_HEALTH_INTERVAL_S="0.5")
        procs.wait_http(f"http://127.0.0.1:{settings.collector.port}/health")
        procs.wait_ready(settings.worker.web_port)
        assert http(settings, "POST", "/api/v1/events", pageviews(30))[0] == 200

        status, doc = wait_status(settings, "healthy")
        assert status == 200 and doc["status"] == "healthy", doc
        checks = doc["checks"]
        assert checks["kafka"]["ok"] and checks["clickhouse"]["ok"] and checks["clickhouse"]["latency_ms"] >= 0
        assert set(checks["consumer_lag"]["groups"]) == {worker, agents, sink}
        assert doc["thresholds"] == {"lag_degraded": 5, "lag_unhealthy": 20}

        # the sink stops: ClickHouse is unreachable, events still flow into Kafka -> degraded, 200
        procs.stop("sink")
        status, doc = wait_status(settings, "degraded")
        assert status == 200 and doc["checks"]["clickhouse"]["status"] == "degraded", doc
        assert "not running" in doc["checks"]["clickhouse"]["detail"]

        # the worker stops too and 30 requests pile up on the raw topic: the worker group is 30 messages
        # behind (lag counts Kafka messages; one request's events share a message per partition)
        procs.stop("worker")
        for _ in range(30):
            assert http(settings, "POST", "/api/v1/events", pageviews(1))[0] == 200
        # (a lag measured while the requests were still arriving may be cached for 2 s: wait for all 30)
        status, doc = wait_status(settings, "unhealthy", until=lambda d: d["checks"]["consumer_lag"].get(
            "groups", {}).get(worker, {}).get("total_lag", 0) >= 30)
        assert status == 503, json.dumps(doc, indent=1)[:4000]
        group = doc["checks"]["consumer_lag"]["groups"][worker]
        assert group["status"] == "unhealthy" and group["total_lag"] >= 30
        assert {p["topic"] for p in group["partitions"]} == {settings.kafka.topic_actions}
        exported = urllib.request.urlopen(f"http://127.0.0.1:{settings.collector.port}/metrics").read().decode()
        lags = [line for line in exported.splitlines()
                if line.startswith("pulse_consumer_group_lag{") and f'group="{worker}"' in line
                and f'topic="{settings.kafka.topic_actions}"' in line]
        assert lags and sum(float(line.rsplit(" ", 1)[1]) for line in lags) >= 30, lags

        # everything back: the worker catches up, the lag falls, healthy again
        procs.start("sink")
        procs.start("worker")
        status, doc = wait_status(settings, "healthy", timeout_s=120)
        assert status == 200 and doc["status"] == "healthy", doc
    finally:
        procs.stop_all()


def test_kafka_down_is_unhealthy(settings: Settings, tmp_path: Path) -> None:
    procs = PipelineProcs(settings, tmp_path / "logs")
    try:
        procs.start("collector", PULSE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
        procs.wait_http(f"http://127.0.0.1:{settings.collector.port}/metrics")
        status, doc = health(settings)
        assert status == 503 and doc["status"] == "unhealthy", doc
        assert doc["checks"]["kafka"]["ok"] is False and "503" in doc["checks"]["kafka"]["detail"]
        assert doc["checks"]["consumer_lag"]["detail"] == "not measured: Kafka is unreachable"
    finally:
        procs.stop_all()
