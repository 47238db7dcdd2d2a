"""What every ingestion endpoint does between "these are the project's events" and Kafka:
inbound filters, the project's rate limit, then the producer (scrub, validate, dead-letter, send)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from pipeline.ingest.filters import InboundFilters, filter_reason
from pipeline.ingest.producer import EventProducer, SendResult
from pipeline.ingest.ratelimit import RateLimiter
from pipeline.ingest.validate import EventTimeWindow
from pipeline.metrics import FILTERED_EVENTS
from pipeline.settings import Settings

PROCESS = "collector"
LIMITER = web.AppKey("rate_limiter", RateLimiter)


@dataclass
class RateLimited(Exception):
    """The project is over its limit; retry after this many seconds."""

    retry_after_s: int
    limit_per_minute: int


@dataclass
class Intake:
    result: SendResult
    filtered: int


@dataclass(frozen=True)
class IntakeRules:
    """The per-request parts of the settings, built once per app (not once per request)."""

    filters: InboundFilters
    time_window: EventTimeWindow


RULES = web.AppKey("intake_rules", IntakeRules)


def setup_intake(app: web.Application, settings: Settings) -> None:
    app[LIMITER] = RateLimiter(dict(settings.collector.rate_limits))
    app[RULES] = IntakeRules(settings.collector.inbound_filters(), settings.collector.event_time_window())


async def intake(app: web.Application, settings: Settings, producer: EventProducer, items: list[Any], *,
                 project: str, now: datetime, source: str) -> Intake:
    """Filter, rate-limit (``RateLimited``), send. ``ProduceError`` when Kafka did not confirm."""
    rules = app[RULES]
    filters = rules.filters
    kept: list[Any] = items
    filtered = 0
    if filters.any:
        kept = []
        for item in items:
            reason = filter_reason(item, filters)
            if reason is None:
                kept.append(item)
            else:
                filtered += 1
                FILTERED_EVENTS.labels(reason).inc()
    wait = app[LIMITER].admit(project, len(kept), time.monotonic())
    if wait > 0:
        raise RateLimited(int(wait), settings.collector.rate_limits.get(project, 0))
    result = await producer.send(kept, project=project, received_at=now, source=source, now=now,
                                 timeout_s=settings.collector.produce_timeout_s,
                                 time_window=rules.time_window, json_items=True)
    return Intake(result, filtered)
