"""``GET /api/health``: is the whole pipeline healthy, as seen from the collector?

    GET /api/health -> 200 {"status": "healthy" | "degraded", "checks": {...}, "thresholds": {...}}
                       503 {"status": "unhealthy", ...}

Three checks, each with its own detail:

* **kafka**: the broker answers a metadata request (the collector cannot accept events without it);
* **clickhouse**: ``SELECT 1`` through the sink (embedded) or on the server;
* **consumer_lag**: for the worker's and the sink's consumer groups, the committed offset of every
  partition they read against its end offset (measured from outside, as kafka-exporter or Burrow
  do, so a stuck consumer cannot hide its own lag), also exported as
  ``pulse_consumer_group_lag{group,topic,partition}`` on the collector's /metrics.

``/health`` stays the collector's own liveness (for load balancers): a 503 there means "do not
send me events"; a 503 here means "the pipeline needs a person".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pipeline import metrics
from pipeline.api.common import SETTINGS, check_access, json_response
from pipeline.ingest.producer import EventProducer
from pipeline.settings import Settings

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
ORDER = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
CHECK_TIMEOUT_S = 3.0


# ---------------------------------------------------------------- pure
def lag_status(total_lag: int | None, degraded_at: int, unhealthy_at: int) -> str:
    if total_lag is None:
        return DEGRADED  # could not be measured
    if total_lag >= unhealthy_at:
        return UNHEALTHY
    return DEGRADED if total_lag >= degraded_at else HEALTHY


def group_lag(committed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int],
              starts: dict[tuple[str, int], int]) -> dict[str, Any]:
    """Lag of one group over the partitions in ``ends``. A partition the group never committed counts
    everything still in the log (what a new consumer starting from the earliest offset would read)."""
    partitions = []
    for (topic, partition), end in sorted(ends.items()):
        offset = committed.get((topic, partition))
        base = offset if offset is not None and offset >= 0 else starts.get((topic, partition), 0)
        partitions.append({"topic": topic, "partition": partition, "end_offset": end,
                           "committed": offset if offset is not None and offset >= 0 else None,
                           "lag": max(end - base, 0)})
    return {"total_lag": sum(p["lag"] for p in partitions),
            "uncommitted_partitions": sum(1 for p in partitions if p["committed"] is None),
            "partitions": partitions}


def overall(checks: dict[str, dict[str, Any]]) -> str:
    """The worst check wins. Kafka down is unhealthy (nothing can be accepted); ClickHouse down is
    degraded on its own (events wait safely in Kafka) and its check says so."""
    return max((c["status"] for c in checks.values()), key=ORDER.__getitem__, default=HEALTHY)


# ---------------------------------------------------------------- I/O
@dataclass
class LagMonitor:
    """Measures the pipeline's consumer groups; one admin client and one offsets consumer, reused."""

    settings: Settings
    _admin: Any = None
    _consumer: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last: dict[str, Any] | None = None
    measured_at: float = 0.0

    def groups(self) -> dict[str, list[str]]:
        k = self.settings.kafka
        return {self.settings.worker.ingest_group(): [*k.raw_topics],
                self.settings.worker.app_id: [k.topic_issue_events, k.topic_rollup_partials, k.topic_ux_signals,
                                               k.topic_issue_transitions],
                self.settings.sink.group_id: [k.topic_storage, k.topic_dead_letter]}

    async def _clients(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka.bootstrap_servers,
                                        request_timeout_ms=int(CHECK_TIMEOUT_S * 1000))
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka.bootstrap_servers, group_id=None,
                                        enable_auto_commit=False, request_timeout_ms=int(CHECK_TIMEOUT_S * 1000))
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def measure(self, max_age_s: float = 2.0) -> dict[str, Any]:
        async with self._lock:
            if self.last is not None and time.monotonic() - self.measured_at < max_age_s:
                return self.last
            try:
                self.last = await asyncio.wait_for(self._measure(), CHECK_TIMEOUT_S * 2)
            except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
                await self.close()
                self.last = {"error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__}
            self.measured_at = time.monotonic()
            return self.last

    async def _measure(self) -> dict[str, Any]:
        from aiokafka import TopicPartition

        admin, consumer = await self._clients()
        out: dict[str, Any] = {}
        for group, topics in self.groups().items():
            tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not tps:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - topics created after start
                tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            ends = {(tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(tps)).items()}
            starts = {(tp.topic, tp.partition): o for tp, o in (await consumer.beginning_offsets(tps)).items()}
            committed = {(tp.topic, tp.partition): meta.offset
                         for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
            lag = group_lag(committed, ends, starts)
            for p in lag["partitions"]:
                metrics.CONSUMER_GROUP_LAG.labels(group, p["topic"], str(p["partition"])).set(p["lag"])
            out[group] = lag
        return out

    async def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    await client.stop() if hasattr(client, "stop") else await client.close()
                except Exception:  # noqa: BLE001 - closing a broken client
                    pass
        self._admin = self._consumer = None


async def check_clickhouse(settings: Settings) -> dict[str, Any]:
    from pipeline.storage.query_client import BackendUnavailable, QueryError, run_query

    started = time.perf_counter()
    where = "embedded chDB via the sink" if settings.clickhouse.embedded else "ClickHouse server"
    try:
        await asyncio.wait_for(asyncio.to_thread(run_query, settings, "SELECT 1", "TabSeparated", CHECK_TIMEOUT_S,
                                                 False), CHECK_TIMEOUT_S + 1)
    except (BackendUnavailable, QueryError, asyncio.TimeoutError, OSError) as exc:
        return {"status": DEGRADED, "ok": False, "backend": where,
                "detail": f"{exc or 'no answer within ' + str(CHECK_TIMEOUT_S) + ' s'}; events wait in Kafka"}
    return {"status": HEALTHY, "ok": True, "backend": where,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


async def check_kafka(producer: EventProducer) -> dict[str, Any]:
    error = await producer.check_broker(CHECK_TIMEOUT_S)
    if error is None:
        return {"status": HEALTHY, "ok": True, "bootstrap_servers": producer.kafka.bootstrap_servers}
    return {"status": UNHEALTHY, "ok": False, "bootstrap_servers": producer.kafka.bootstrap_servers,
            "detail": f"{error}; the collector answers 503 to events until Kafka is back"}


def lag_check(measured: dict[str, Any], settings: Settings) -> dict[str, Any]:
    c = settings.collector
    if "error" in measured:
        return {"status": DEGRADED, "ok": False, "detail": f"could not measure: {measured['error']}"}
    groups = {g: {"total_lag": v["total_lag"], "uncommitted_partitions": v["uncommitted_partitions"],
                  "status": lag_status(v["total_lag"], c.health_lag_degraded, c.health_lag_unhealthy),
                  "partitions": [p for p in v["partitions"] if p["lag"] > 0]}
              for g, v in measured.items()}
    status = max((g["status"] for g in groups.values()), key=ORDER.__getitem__, default=HEALTHY)
    return {"status": status, "ok": status == HEALTHY, "groups": groups}


async def health_report(settings: Settings, producer: EventProducer, monitor: LagMonitor) -> dict[str, Any]:
    kafka, clickhouse = await asyncio.gather(check_kafka(producer), check_clickhouse(settings))
    lag = lag_check(await monitor.measure(), settings) if kafka["ok"] else \
        {"status": DEGRADED, "ok": False, "detail": "not measured: Kafka is unreachable"}
    checks = {"kafka": kafka, "clickhouse": clickhouse, "consumer_lag": lag}
    return {"status": overall(checks), "checked_at": time.time(), "checks": checks,
            "thresholds": {"lag_degraded": settings.collector.health_lag_degraded,
                           "lag_unhealthy": settings.collector.health_lag_unhealthy}}


MONITOR = web.AppKey("lag_monitor", LagMonitor)
HEALTH_PRODUCER = web.AppKey("health_producer", EventProducer)


def add_health_routes(app: web.Application, producer: EventProducer) -> None:
    app[HEALTH_PRODUCER] = producer

    async def start_monitor(app: web.Application) -> Any:
        monitor = app[MONITOR] = LagMonitor(app[SETTINGS])

        async def refresh() -> None:  # keeps pulse_consumer_group_lag current between health calls
            while True:
                if producer.started:
                    await monitor.measure(max_age_s=0)
                await asyncio.sleep(app[SETTINGS].collector.health_interval_s)

        task = asyncio.create_task(refresh())
        yield
        task.cancel()
        await monitor.close()

    async def api_health(request: web.Request) -> web.Response:
        check_access(request, request.app[SETTINGS])
        doc = await health_report(request.app[SETTINGS], request.app[HEALTH_PRODUCER], request.app[MONITOR])
        return json_response(503 if doc["status"] == UNHEALTHY else 200, doc)

    app.cleanup_ctx.append(start_monitor)
    app.router.add_get("/api/health", api_health)
