"""The HTTP collector: browsers and SDKs POST events; valid ones are on Kafka before we answer.

Endpoints:
  * ``POST /api/v1/events`` — project key in ``X-Pulse-Key`` (or ``?key=``). Body: a JSON array, one
    JSON object, or NDJSON (``Content-Type: application/x-ndjson``, or detected), optionally
    ``Content-Encoding: gzip``. 200 ``{"accepted", "rejected", "errors": [{"index", "event_id",
    "reason"}]}`` once Kafka acknowledged every message; 400 unreadable body; 401 unknown key;
    413 too large (body, one event, event count); 415 unknown encoding; 503 + Retry-After when
    Kafka did not confirm delivery in time (nothing is claimed accepted; the client retries and
    the worker drops duplicates by event_id).
  * ``POST /api/metrics``, ``GET /api/metrics`` — custom metrics in, any metric out (``pipeline/api/metrics.py``).
  * ``GET /api/issues``, ``GET /api/issues/{fingerprint}``, ``POST /api/issues/{fingerprint}/{action}``
    — issues and decisions about them (``pipeline/api/issues.py``).
  * ``GET /health`` — 200/503 with per-dependency detail. ``GET /metrics`` — Prometheus text.

Slow and vanishing clients (``pipeline/collector/body.py``): headers must be complete within
header_timeout_s (else the connection closes), bodies within body_timeout_s (408); a body still
arriving after slow_body_after_s needs one of max_slow_bodies slots (else 503 + Retry-After). An
answer sent before the body was read closes the connection. A client gone mid-body counts as 499.

Serve with ``auto_decompress=False`` (``run_collector`` and the tests do): the handler then inflates
gzip itself with a cap on the output, so a gzip bomb costs at most max_body_bytes, and bad gzip is a
400 naming the problem. Under aiohttp's default (auto_decompress=True) the body arrives inflated
(no gzip magic) and is read with the same cap, so the app is safe either way.

Run::

    pulse collector        # or: python -m pipeline.collector
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from pipeline.api.common import SETTINGS as API_SETTINGS
from pipeline.api.common import ApiError, json_response
from pipeline.api.health import add_health_routes
from pipeline.api.issues import add_issue_routes
from pipeline.api.metrics import add_metric_routes
from pipeline.api.report import add_report_routes
from pipeline.collector import shared_metrics
from pipeline.collector.body import (BODY_LIMITS, CLIENT_CLOSED_REQUEST, CONTENT_ENCODINGS, BodyLimits, Problem,
                                     SlowBodies, client_gone, decompress, read_body)
from pipeline.collector.intake import RateLimited, intake, setup_intake
from pipeline.collector.sdk import add_sdk_routes
from pipeline.dashboard.routes import add_dashboard_routes
from pipeline.ingest.producer import EventProducer, ProduceError, Unreadable
from pipeline.kafka_admin import ensure_topics
from pipeline.metrics import HTTP_BODY_BYTES, HTTP_REQUEST_SECONDS, HTTP_REQUESTS
from pipeline.runtime import run_service
from pipeline.settings import Settings

log = logging.getLogger("pulse.collector")

PROCESS = "collector"
EVENTS_PATH = "/api/v1/events"
SOURCE = "http:" + EVENTS_PATH
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Pulse-Key",
    "Access-Control-Expose-Headers": "Retry-After",
    "Access-Control-Max-Age": "86400",
}
# Health answers from a cached broker check at most this old, so probes cannot flood the broker.
HEALTH_CACHE_S = 1.0
HEALTH_CHECK_TIMEOUT_S = 2.0
# After an early answer (413, 408, 503) aiohttp drains the unread body this long, so a client still
# sending can read the answer, then closes; short, so a trickling client is not kept on.
UNREAD_BODY_LINGER_S = 1.0
# How often the first collector process looks for a dead sibling (PULSE_COLLECTOR_PROCESSES > 1).
CHILD_CHECK_S = 0.5

_EVENTS_BODY_BYTES = HTTP_BODY_BYTES.labels(PROCESS, EVENTS_PATH)

SETTINGS_KEY = web.AppKey("settings", Settings)
PRODUCER_KEY = web.AppKey("producer", EventProducer)
SCRAPE_REGISTRY_KEY = web.AppKey("scrape_registry", CollectorRegistry)


def parse_events(body: bytes, content_type: str) -> list[Any] | Problem:
    """A JSON array, one JSON object, or NDJSON (declared, or detected when JSON parsing fails).

    Broken NDJSON lines become ``Unreadable`` items (dead letters with their index) as long as one
    line parses; a body with nothing readable is a 400.
    """
    if not body.strip():
        return Problem(400, "empty body: expected a JSON array, a JSON object or NDJSON")
    ndjson = "ndjson" in content_type or "jsonlines" in content_type or "json-seq" in content_type
    if not ndjson:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if b"\n" not in body.strip():
                return Problem(400, f"body is not JSON: {exc}")
        else:
            if isinstance(doc, list):
                return doc
            if isinstance(doc, dict):
                return [doc]
            return Problem(400, f"expected a JSON array, a JSON object or NDJSON, got {type(doc).__name__}")
    items: list[Any] = []
    readable = 0
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
            readable += 1
        except orjson.JSONDecodeError as exc:
            items.append(Unreadable(line, f"invalid JSON: {exc}"))
    if not readable:
        return Problem(400, "body is neither JSON nor NDJSON: no line is a JSON value")
    return items


def check_limits(items: list[Any], body_len: int, *, max_events: int, max_event_bytes: int) -> Problem | None:
    if len(items) > max_events:
        return Problem(413, f"{len(items)} events in one request; the limit is {max_events}")
    if body_len <= max_event_bytes:
        return None  # no single event can be larger than the whole body
    for index, item in enumerate(items):
        size = len(item.raw) if isinstance(item, Unreadable) else len(orjson.dumps(item))
        if size > max_event_bytes:
            return Problem(413, f"event at index {index} is {size} bytes; the limit is {max_event_bytes}")
    return None


# ------------------------------------------------------------------ HTTP edge


def _json(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json", headers=headers)


def _problem(p: Problem, headers: dict[str, str] | None = None) -> web.Response:
    return _json(p.status, {"error": p.message}, headers)


async def post_events(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY].collector
    producer = request.app[PRODUCER_KEY]
    key = request.headers.get("X-Pulse-Key") or request.query.get("key")
    project = settings.project_keys.get(key) if key else None
    if project is None:
        return _json(401, {"error": "missing or unknown project key (header X-Pulse-Key or query parameter key)"})

    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *CONTENT_ENCODINGS):
        return _problem(Problem(415, f"unsupported Content-Encoding {encoding!r}; use gzip, deflate, br, zstd "
                                     "or none"))
    body = await read_body(request, settings.max_body_bytes)
    if isinstance(body, Problem):
        return _problem(body)
    if encoding not in ("identity", ""):
        body = decompress(body, encoding, settings.max_body_bytes)
        if isinstance(body, Problem):
            return _problem(body)
    _EVENTS_BODY_BYTES.observe(len(body))
    items = parse_events(body, request.headers.get("Content-Type", "").lower())
    if isinstance(items, Problem):
        return _problem(items)
    too_big = check_limits(items, len(body), max_events=settings.max_events_per_request,
                           max_event_bytes=settings.max_event_bytes)
    if too_big is not None:
        return _problem(too_big)

    now = datetime.now(timezone.utc)
    try:
        done = await intake(request.app, request.app[SETTINGS_KEY], producer, items, project=project, now=now,
                            source=SOURCE)
    except RateLimited as exc:
        return _json(429, {"error": f"project {project!r} is over its limit of {exc.limit_per_minute} events per "
                                    f"minute; retry in {exc.retry_after_s} s"},
                     headers={"Retry-After": str(exc.retry_after_s)})
    except ProduceError as exc:
        log.warning("503: %s", exc)
        return _json(503, {"error": f"events not stored, retry later: {exc}"},
                     headers={"Retry-After": str(settings.retry_after_s)})
    result = done.result
    return _json(200, {"accepted": result.accepted, "rejected": len(result.rejected), "filtered": done.filtered,
                       "errors": [r.as_dict() for r in result.rejected]})


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)


@dataclass
class _BrokerCheck:
    checked_at: float = float("-inf")
    error: str | None = "not checked yet"
    lock: asyncio.Lock | None = None


HEALTH_STATE_KEY = web.AppKey("health_state", _BrokerCheck)


async def health(request: web.Request) -> web.Response:
    producer = request.app[PRODUCER_KEY]
    state = request.app[HEALTH_STATE_KEY]
    if state.lock is None:
        state.lock = asyncio.Lock()
    async with state.lock:
        if time.monotonic() - state.checked_at > HEALTH_CACHE_S:
            state.error = await producer.check_broker(HEALTH_CHECK_TIMEOUT_S)
            state.checked_at = time.monotonic()
    kafka_ok = producer.started and state.error is None
    doc = {"status": "ok" if kafka_ok else "unavailable",
           "dependencies": {"kafka": {"ok": kafka_ok, "connected": producer.started,
                                      "bootstrap_servers": producer.kafka.bootstrap_servers,
                                      "detail": state.error or "metadata request answered",
                                      "checked_s_ago": round(time.monotonic() - state.checked_at, 3)}}}
    return _json(200 if kafka_ok else 503, doc)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: with several processes, every process's counts summed (``shared_metrics``)."""
    return web.Response(body=generate_latest(request.app[SCRAPE_REGISTRY_KEY]),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def _edge(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """CORS on every answer, request count and latency per endpoint, unexpected errors as JSON 500."""
    t0 = time.perf_counter()
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    try:
        response = await handler(request)
    except ApiError as exc:
        response = json_response(exc.status, {"error": exc.message}, exc.headers)
    except web.HTTPException as exc:
        response = _json(exc.status, {"error": exc.reason})
    except ConnectionError:  # the client's (it went away: 499, nobody reads the answer) or a backend's (500)
        gone = client_gone(request)
        if not gone:
            log.exception("unexpected error on %s %s", request.method, request.path)
        response = _json(CLIENT_CLOSED_REQUEST if gone else 500, {"error": "client closed the connection" if gone
                                                                   else "internal error"})
    except Exception:  # noqa: BLE001 - the boundary: log it, answer 500, keep serving
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = _json(500, {"error": "internal error"})
    if endpoint == EVENTS_PATH:
        response.headers.update(CORS_HEADERS)
    if not request.content.is_eof():  # answered before the body was read (413, 408, 503): drop the rest
        response.force_close()
        if response.status == 503:
            response.headers.setdefault("Retry-After", str(request.app[SETTINGS_KEY].collector.retry_after_s))
    _requests_counter(endpoint, response.status).inc()
    _latency_histogram(endpoint).observe(time.perf_counter() - t0)
    return response


# Metric children by label values, looked up once: ``labels()`` costs a lock and a tuple per call.
@functools.lru_cache(maxsize=1024)
def _requests_counter(endpoint: str, status: int) -> Any:
    return HTTP_REQUESTS.labels(PROCESS, endpoint, str(status))


@functools.lru_cache(maxsize=256)
def _latency_histogram(endpoint: str) -> Any:
    return HTTP_REQUEST_SECONDS.labels(PROCESS, endpoint)


def make_app(settings: Settings, producer: EventProducer) -> web.Application:
    """The collector's routes around a producer the caller starts and stops.

    Serve it with ``auto_decompress=False`` (e.g. ``web.AppRunner(app, auto_decompress=False)``).
    """
    app = web.Application(middlewares=[_edge])
    app[SETTINGS_KEY] = settings
    app[PRODUCER_KEY] = producer
    app[HEALTH_STATE_KEY] = _BrokerCheck()
    app[SCRAPE_REGISTRY_KEY] = shared_metrics.scrape_registry()
    app[BODY_LIMITS] = BodyLimits(settings.collector.max_body_bytes, settings.collector.body_timeout_s,
                                  settings.collector.slow_body_after_s, SlowBodies(settings.collector.max_slow_bodies))
    app.router.add_post(EVENTS_PATH, post_events)
    app.router.add_route("OPTIONS", EVENTS_PATH, preflight)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app[API_SETTINGS] = settings
    setup_intake(app, settings)
    add_sdk_routes(app, settings, producer)
    add_issue_routes(app, producer)
    add_metric_routes(app, producer)
    add_health_routes(app, producer)
    add_report_routes(app)
    add_dashboard_routes(app)
    return app


async def _connect(producer: EventProducer, stop: asyncio.Event) -> None:
    """Keep trying until Kafka answers: the collector serves (503s, /health) while it waits."""
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            await producer.start()
            log.info("connected to Kafka at %s", producer.kafka.bootstrap_servers)
            try:  # the project's partition counts, not whatever auto-creation would pick
                await ensure_topics(producer.kafka)
            except Exception as exc:  # noqa: BLE001 - producing still works; the worker creates them too
                log.warning("could not create topics: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - KafkaConnectionError, OSError, ...: retry
            log.warning("Kafka at %s not reachable (attempt %d): %s", producer.kafka.bootstrap_servers, attempt, exc)
        try:
            await asyncio.wait_for(stop.wait(), min(0.5 * attempt, 5.0))
        except asyncio.TimeoutError:
            pass


async def serve(settings: Settings, stop: asyncio.Event, *, reuse_port: bool = False) -> None:
    """Run until ``stop`` is set; in-flight requests finish before the producer closes.

    ``reuse_port``: bind with SO_REUSEPORT, so several collector processes share the port."""
    producer = EventProducer(settings.kafka, process=PROCESS, keep_ips=not settings.collector.scrub_ip_addresses)
    # keepalive_timeout: aiohttp closes a connection whose next request's headers are not complete by
    # then (counted from the connection's start or the previous answer), so it is the header timeout.
    runner = web.AppRunner(make_app(settings, producer), auto_decompress=False, access_log=None,
                           shutdown_timeout=settings.collector.produce_timeout_s + 1,
                           keepalive_timeout=settings.collector.header_timeout_s, lingering_time=UNREAD_BODY_LINGER_S)
    await runner.setup()
    site = web.TCPSite(runner, settings.collector.host, settings.collector.port, reuse_port=reuse_port or None)
    await site.start()
    log.info("collector listening on http://%s:%s%s", settings.collector.host, settings.collector.port, EVENTS_PATH)
    connecting = asyncio.create_task(_connect(producer, stop))
    try:
        await stop.wait()
    finally:
        connecting.cancel()
        await runner.cleanup()
        await producer.stop()


def share_of_limits(settings: Settings, processes: int) -> Settings:
    """The settings one of ``processes`` collector processes enforces: each project's rate limit and
    the slow-body slots divided evenly (rounded up), so together they allow what the operator set.

    Example::

        share_of_limits(settings, 2).collector.rate_limits   # {"shop": 60000} -> {"shop": 30000}
    """
    c = settings.collector
    if processes <= 1:
        return settings
    share = {project: max(1, math.ceil(limit / processes)) for project, limit in c.rate_limits.items()}
    slow = math.ceil(c.max_slow_bodies / processes)
    return settings.model_copy(update={"collector": c.model_copy(update={"rate_limits": share,
                                                                          "max_slow_bodies": slow})})


def _die_with_parent(parent: int) -> None:
    """Linux: this (forked) process gets SIGTERM when the process that forked it dies (and exits at
    once if that happened before it could ask)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent still stops its children on SIGTERM
        pass
    if os.getppid() != parent:
        os._exit(0)


async def _watch_children(children: list[int], stop: asyncio.Event, failed: list[str]) -> None:
    """Stop the whole collector when one of its processes dies: the supervisor restarts it whole."""
    while not stop.is_set():
        for pid in children:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.remove(pid)
                shared_metrics.process_exited(pid)
                failed.append(f"collector process {pid} exited ({os.waitstatus_to_exitcode(status)})")
                log.error("%s; stopping the collector", failed[-1])
                stop.set()
                return
        try:
            await asyncio.wait_for(stop.wait(), CHILD_CHECK_S)
        except (asyncio.TimeoutError, TimeoutError):
            pass


async def _serve_with_children(settings: Settings, stop: asyncio.Event, children: list[int],
                               failed: list[str]) -> None:
    watcher = asyncio.create_task(_watch_children(children, stop, failed))
    try:
        await serve(settings, stop, reuse_port=True)
    finally:
        watcher.cancel()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            await asyncio.to_thread(os.waitpid, pid, 0)
            shared_metrics.process_exited(pid)


def run_collector(settings: Settings) -> None:
    """Blocking entry for ``pulse collector``; SIGTERM/SIGINT stop it gracefully.

    With ``PULSE_COLLECTOR_PROCESSES`` = N > 1 this process forks N - 1 more before any event loop
    or thread exists; all N bind the port with SO_REUSEPORT (the kernel spreads connections), each
    with its own Kafka producer and 1/N of the rate limits and slow-body slots. When one dies the
    others stop too (exit status 1), so a supervisor restarts the collector whole. Every process's
    /metrics shows the sum over all of them: the entry point must call ``shared_metrics.enable``
    before importing this module (see there); without it several processes are refused.
    """
    processes = settings.collector.processes
    loop_kind = settings.collector.event_loop
    if processes <= 1:
        run_service(lambda stop: serve(settings, stop), log_level=logging.INFO, event_loop=loop_kind)
        return
    if settings.collector.port == 0:
        raise SystemExit("pulse collector: PULSE_COLLECTOR_PROCESSES > 1 needs a fixed PULSE_COLLECTOR_PORT (not 0)")
    if not shared_metrics.active():
        raise SystemExit("pulse collector: PULSE_COLLECTOR_PROCESSES > 1 needs shared metrics: call "
                         "pipeline.collector.shared_metrics.enable(settings) before importing pipeline.collector.app")
    mine = share_of_limits(settings, processes)
    children: list[int] = []
    parent = os.getpid()
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:  # a child: serve until SIGTERM (from the parent, or when the parent dies)
            code = 0
            try:
                _die_with_parent(parent)
                run_service(lambda stop: serve(mine, stop, reuse_port=True), log_level=logging.INFO,
                            event_loop=loop_kind)
            except BaseException:  # noqa: BLE001 - a child never returns into the parent's code
                log.exception("collector process %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children.append(pid)
    failed: list[str] = []
    try:
        run_service(lambda stop: _serve_with_children(mine, stop, children, failed), log_level=logging.INFO,
                    event_loop=loop_kind)
    finally:
        shared_metrics.remove_run_dir()
    if failed:
        raise SystemExit(1)
