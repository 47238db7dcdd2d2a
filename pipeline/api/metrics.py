"""Custom metrics in, and any metric out, over HTTP.

    POST /api/metrics   (project key as for events: X-Pulse-Key or ?key=)
         body: one point or a JSON array of up to 1000:
         {"name": "checkout.duration", "value": 1834.5, "tags": {"route": "/checkout"},
          "timestamp": "2026-11-23T10:00:05Z", "unit": "millisecond", "environment": "production", "release": "2.4.1",
          "event_id": "<uuid, optional: a retried request with the same ids counts once>"}
         -> 200 {"accepted": n} once Kafka has them; 400 {"error", "errors": [{"index", "reason"}]} and
            nothing accepted when any point is invalid (the client still holds them); 503 + Retry-After.
    GET  /api/metrics?name=&period=1h|1d|1w|1m&aggregation=&group_by=a,b&project=&environment=&release=&tag.<k>=<v>
         -> {"name", "period", "aggregation", "interval", "from", "to", "group_by",
             "series": [{"group": {...}, "value": <over the whole period>, "points": [{"t", "value"}]}]}

Points flow like every event: collector -> raw topic -> worker (per-minute partials with the raw
message's origin) -> sink -> ``metrics_minute`` -> hourly and daily merges. Reads pick the table by
period (minutes for 1h, hours for 1d and 1w, days for 1m) and merge its states, so a p95 over a month
is a quantile of the merged sketch, never an average of percentiles.

Built-in metrics come from the browser rollups under reserved names (see ``BUILTIN``): counters
(``errors``, ``pageviews``, ``api.calls``...) answer count/sum, distributions (``web_vitals.lcp``,
``api.latency``...) answer count and percentiles; they group by environment, release, page, browser.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.api.common import SETTINGS, ApiError, check_access, json_response, query_rows, quote
from pipeline.collector.body import Problem, read_body
from pipeline.contract.events import MetricPayload
from pipeline.ingest.producer import EventProducer, ProduceError

PRODUCER = web.AppKey("metrics_producer", EventProducer)
MAX_POINTS = 1000
MAX_FUTURE = timedelta(hours=1)

# period -> (table suffix, bucket seconds, period seconds)
PERIODS: dict[str, tuple[str, int, int]] = {
    "1h": ("minute", 60, 3600), "1d": ("hour", 3600, 86_400), "1w": ("hour", 3600, 7 * 86_400),
    "1m": ("day", 86_400, 30 * 86_400),
}
QUANTILES = {"median": 0.5, "p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}
AGGREGATIONS = ("count", "sum", "min", "max", "avg", *QUANTILES)
BUILTIN_DIMENSIONS = ("environment", "release", "page", "browser")
CUSTOM_DIMENSIONS = ("environment", "release")
# name -> ("counter" | "distribution", column of rollups_*)
BUILTIN: dict[str, tuple[str, str]] = {
    **{n: ("counter", c) for n, c in [
        ("events", "events"), ("errors", "errors"), ("pageviews", "pageviews"), ("clicks", "clicks"),
        ("api.calls", "api_calls"), ("api.failures", "api_failures"), ("resources", "resources"),
        ("resources.failed", "resource_failures"), ("resources.slow", "slow_resources"),
        ("long_tasks", "long_tasks"), ("long_tasks.blocking_ms", "long_task_blocking_ms"),
        ("checkout.calls", "checkout_calls"), ("checkout.failures", "checkout_failures")]},
    "api.latency": ("distribution", "api_latency"),
    **{f"web_vitals.{v}": ("distribution", v) for v in ("lcp", "inp", "cls", "fcp", "ttfb", "fid")},
}


class MetricPoint(BaseModel):
    """What a service posts; becomes a ``metric`` event of the contract."""

    model_config = ConfigDict(extra="forbid")

    name: str
    value: float
    event_id: uuid.UUID | None = Field(None, description="Send one to make a retried request count once")
    tags: dict[str, str] = Field(default_factory=dict)
    timestamp: datetime | None = None
    unit: str | None = None
    environment: str = Field("production", min_length=1, max_length=512)
    release: str | None = Field(None, max_length=512)


def point_to_event(point: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A posted point as a contract event; ``ValueError`` with the reason when it is not valid."""
    try:
        p = MetricPoint.model_validate(point)
        payload = MetricPayload(name=p.name, value=p.value, unit=p.unit, tags=p.tags)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'point'}: {e['msg']}"
                                   for e in exc.errors(include_url=False))) from None
    ts = p.timestamp or now
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    if ts > now + MAX_FUTURE:
        raise ValueError(f"timestamp: {ts.isoformat()} is more than an hour in the future")
    return {"event_id": str(p.event_id or uuid.uuid4()), "type": "metric", "timestamp": ts.isoformat(),
            "session_id": f"metric:{payload.name}", "environment": p.environment, "release": p.release,
            "metric": payload.model_dump(exclude_none=True)}


async def post_metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    key = request.headers.get("X-Pulse-Key") or request.query.get("key")
    project = settings.collector.project_keys.get(key) if key else None
    if project is None:
        raise ApiError(401, "missing or unknown project key (header X-Pulse-Key or query parameter key)")
    raw = await read_body(request)
    if isinstance(raw, Problem):
        raise ApiError(raw.status, raw.message)
    try:
        doc = orjson.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from None
    points = doc if isinstance(doc, list) else [doc]
    if not points:
        raise ApiError(400, "no metric points in the body")
    if len(points) > MAX_POINTS:
        raise ApiError(413, f"{len(points)} points in one request; the limit is {MAX_POINTS}")
    now = datetime.now(timezone.utc)
    events, errors = [], []
    for index, point in enumerate(points):
        if not isinstance(point, dict):
            errors.append({"index": index, "reason": f"expected a JSON object, got {type(point).__name__}"})
            continue
        try:
            events.append(point_to_event(point, now))
        except ValueError as exc:
            errors.append({"index": index, "reason": str(exc)})
    if errors:
        return json_response(400, {"error": f"{len(errors)} of {len(points)} points are invalid; none were accepted",
                                   "errors": errors})
    try:
        result = await request.app[PRODUCER].send(events, project=project, received_at=now, source="http:/api/metrics",
                                                  now=now, timeout_s=settings.collector.produce_timeout_s,
                                                  time_window=settings.collector.event_time_window())
    except ProduceError as exc:
        raise ApiError(503, f"metrics not stored, retry later: {exc}",
                       {"Retry-After": str(settings.collector.retry_after_s)}) from exc
    return json_response(200, {"accepted": result.accepted, "rejected": len(result.rejected)})


# ------------------------------------------------------------------ queries


def _dimension_sql(name: str, builtin: bool) -> str:
    if builtin:
        if name not in BUILTIN_DIMENSIONS:
            raise ApiError(400, f"group_by {name!r}: built-in metrics group by {', '.join(BUILTIN_DIMENSIONS)}")
        return name
    if name in CUSTOM_DIMENSIONS:
        return name
    if not name.replace("_", "a").replace(".", "a").replace("-", "a").isalnum() or len(name) > 64:
        raise ApiError(400, f"group_by {name!r} is not a tag name")
    return f"tags[{quote(name)}]"


def _value_sql(kind: str, column: str, aggregation: str, name: str) -> str:
    if kind == "custom":
        if aggregation in QUANTILES:
            return f"pulseQuantile({QUANTILES[aggregation]}, sumMap(sketch))"
        return {"count": "sum(count)", "sum": "sum(sum)", "min": "min(min)", "max": "max(max)",
                "avg": "sum(sum) / nullIf(sum(count), 0)"}[aggregation]
    if kind == "counter":
        if aggregation not in ("count", "sum"):
            raise ApiError(400, f"{name} is a counter: use aggregation=count or sum")
        return f"sum({column})"
    if aggregation == "count":
        return f"arraySum(mapValues(sumMap({column})))"
    if aggregation not in QUANTILES:
        raise ApiError(400, f"{name} is a distribution: use aggregation=count or a percentile "
                            f"({', '.join(QUANTILES)})")
    return f"pulseQuantile({QUANTILES[aggregation]}, sumMap({column}))"


def metric_query(params: dict[str, str], now_s: int) -> tuple[dict[str, Any], str, str]:
    """(description, series SQL, totals SQL) for a GET /api/metrics; ApiError(400) on bad parameters."""
    name = params.get("name", "")
    if not name:
        raise ApiError(400, "name is required, e.g. name=checkout.duration or name=web_vitals.lcp")
    period = params.get("period", "1h")
    if period not in PERIODS:
        raise ApiError(400, f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    aggregation = params.get("aggregation", "avg" if name not in BUILTIN else
                             "sum" if BUILTIN[name][0] == "counter" else "p75")
    if aggregation not in AGGREGATIONS:
        raise ApiError(400, f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    builtin = name in BUILTIN
    kind, column = BUILTIN[name] if builtin else ("custom", "")
    unit, bucket_s, period_s = PERIODS[period]
    start = (now_s - period_s) // bucket_s * bucket_s + bucket_s  # whole buckets, the current one included
    group_by = [g.strip() for g in params.get("group_by", "").split(",") if g.strip()]
    if len(group_by) > 5:
        raise ApiError(400, "group_by takes at most 5 dimensions")
    dims = [_dimension_sql(g, builtin) for g in group_by]
    value = _value_sql(kind, column, aggregation, name)
    table = f"rollups_{unit}" if builtin else f"metrics_{unit}"
    where = [f"{unit} >= toDateTime({start}, 'UTC')"]
    if not builtin:
        where.append(f"name = {quote(name)}")
    for field in ("project", "environment", "release"):
        if params.get(field):
            where.append(f"{field} = {quote(params[field])}")
    for key, val in params.items():
        if key.startswith("tag."):
            if builtin:
                raise ApiError(400, "tag filters apply to custom metrics; built-in ones filter by project, "
                                    "environment, release")
            where.append(f"{_dimension_sql(key[4:], False)} = {quote(val)}")
    dim_select = "".join(f"{d} AS g{i}, " for i, d in enumerate(dims))
    dim_names = ", ".join(f"g{i}" for i in range(len(dims)))
    negatives = "sum(negatives)" if not builtin else "0"
    base = f"FROM {table} WHERE {' AND '.join(where)}"
    series = (f"SELECT {dim_select}toUnixTimestamp({unit}) AS t, {value} AS value, {negatives} AS negatives "
              f"{base} GROUP BY {dim_names + ', ' if dims else ''}t ORDER BY {dim_names + ', ' if dims else ''}t")
    totals = (f"SELECT {dim_select}{value} AS value, {negatives} AS negatives, count() AS rows {base}"
              f"{' GROUP BY ' + dim_names if dims else ''}")
    interval = {60: "1m", 3600: "1h", 86_400: "1d"}[bucket_s]
    description = {"name": name, "period": period, "aggregation": aggregation, "interval": interval,
                   "from": datetime.fromtimestamp(start, timezone.utc).isoformat(),
                   "to": datetime.fromtimestamp(now_s, timezone.utc).isoformat(), "group_by": group_by}
    return description, series, totals


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


async def get_metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_access(request, settings)
    params = dict(request.query)
    description, series_sql, totals_sql = metric_query(params, int(time.time()))
    totals = await query_rows(settings, totals_sql)
    n = len(description["group_by"])
    percentile = description["aggregation"] in QUANTILES
    if percentile and any(int(r.get("negatives") or 0) for r in totals):
        raise ApiError(400, f"{description['name']} has negative values in this period; percentiles need values "
                            ">= 0 (use count, sum, min, max or avg)")
    series: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in totals:
        group = tuple(r[f"g{i}"] for i in range(n))
        if not r["rows"]:
            continue  # no data at all: an empty answer, not a series of nothing
        series[group] = {"group": dict(zip(description["group_by"], group)), "value": _clean(r["value"]), "points": []}
    for r in await query_rows(settings, series_sql):
        group = tuple(r[f"g{i}"] for i in range(n))
        if group in series:
            series[group]["points"].append(
                {"t": datetime.fromtimestamp(int(r["t"]), timezone.utc).isoformat(), "value": _clean(r["value"])})
    ordered = sorted(series.values(), key=lambda s: -(s["value"] or 0))
    return json_response(200, {**description, "series": ordered})


def add_metric_routes(app: web.Application, producer: EventProducer) -> None:
    app[PRODUCER] = producer
    app.router.add_post("/api/metrics", post_metrics)
    app.router.add_get("/api/metrics", get_metrics)
