"""A read-only subset of ClickHouse's HTTP interface, served by the sink (the chDB owner).

``GET /?query=SELECT...`` or ``POST /`` with the query in the body (or split between the
``query`` parameter and the body, as ClickHouse allows), ``default_format`` (default
TabSeparated), a trailing ``FORMAT X`` clause, and other URL parameters passed as ClickHouse
settings. Errors come back with ClickHouse's exception text and the HTTP status ClickHouse would
use. Writes are refused by ClickHouse itself (``readonly=1``) unless ``PULSE_SINK_SQL_ALLOW_WRITES`` is on
(admin); ``PULSE_SINK_SQL_ACCESS_KEY`` makes that key the password every request needs. Also ``/ping``,
``/health``, ``/metrics``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline import metrics
from pipeline.storage.readonly import split_format

if TYPE_CHECKING:
    from pipeline.storage.sink import ClickHouseSink

ERROR_CODE = re.compile(r"Code: (\d+)")
# ClickHouse's own HTTP status for common exception codes; anything else is 500 as in ClickHouse.
STATUS_FOR_CODE = {62: 400, 60: 404, 81: 404, 47: 400, 46: 400, 43: 400, 164: 403, 497: 403, 36: 400, 27: 400}
RESERVED_PARAMS = {"query", "default_format", "database", "user", "password", "query_id", "session_id",
                   "compress", "decompress", "enable_http_compression", "wait_end_of_query", "buffer_size"}
CONTENT_TYPES = {"JSON": "application/json", "JSONEachRow": "application/x-ndjson", "JSONCompact": "application/json",
                 "CSV": "text/csv", "CSVWithNames": "text/csv"}


def make_query_app(sink: "ClickHouseSink") -> web.Application:
    key = sink.settings.sink.sql_access_key
    own_database = sink.settings.clickhouse.database
    allow_writes = sink.settings.sink.sql_allow_writes

    async def handle_query(request: web.Request) -> web.Response:
        params = request.rel_url.query
        if key is not None and not _key_matches(request, key.get_secret_value()):
            return _error(403, f"Code: 516. DB::Exception: {_user_of(request)}: Authentication failed: password is "
                               "incorrect, or there is no user with such name (the sink's SQL endpoint needs "
                               "PULSE_SINK_SQL_ACCESS_KEY as the password). (AUTHENTICATION_FAILED)", "/")
        body = (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
        sql = " ".join(p for p in (params.get("query", ""), body) if p.strip())
        if not sql.strip():
            return _error(400, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", "/")
        database = params.get("database") or request.headers.get("X-ClickHouse-Database")
        if database and database not in (own_database, "default"):
            # the sink's one connection also writes: it cannot switch databases per request
            return _error(400, f"Code: 36. DB::Exception: This endpoint serves database {own_database!r} only, not "
                               f"{database[:64]!r}; name other databases' tables in full (e.g. system.tables). "
                               "(BAD_ARGUMENTS)", "/")
        sql, fmt = split_format(sql, params.get("default_format", "TabSeparated"))
        settings: dict[str, Any] = {k: v for k, v in params.items() if k not in RESERVED_PARAMS}
        try:
            out = await sink.query(sql, fmt, settings, admin=allow_writes)
        except Exception as exc:  # ClickHouse's own error text goes back to the client
            text = str(exc)
            m = ERROR_CODE.search(text)
            status = STATUS_FOR_CODE.get(int(m.group(1)), 500) if m else 500
            return _error(status, text, "/")
        metrics.HTTP_REQUESTS.labels("sink", "/", "200").inc()
        return web.Response(body=out, content_type=CONTENT_TYPES.get(fmt, "text/plain"), charset="utf-8",
                            headers={"X-ClickHouse-Format": fmt})

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def health(_: web.Request) -> web.Response:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in sink.consumer.assignment()) if sink.consumer else []
        try:
            await sink.query("SELECT 1", "TabSeparated")
            ch_ok = True
        except Exception:  # noqa: BLE001
            ch_ok = False
        body = {"status": "healthy" if ch_ok else "unhealthy",
                "clickhouse": {"ok": ch_ok, "embedded": sink.settings.clickhouse.embedded},
                "kafka": {"assigned_partitions": assigned},
                "flushes": sink.flushes, "rows_inserted": sink.rows_inserted,
                "seconds_since_last_flush": None if sink.last_flush_at is None else round(time.time() - sink.last_flush_at, 1)}
        return web.json_response(body, status=200 if ch_ok else 503)

    async def forget(request: web.Request) -> web.Response:
        """``POST /api/forget-user {"user_id": ...}``: delete the user's rows in every table (the sink is
        the one writer of the embedded database). Same access rule as the collector's API."""
        from pipeline.api.common import ApiError, check_access
        from pipeline.storage.privacy import forget_user

        try:
            check_access(request, sink.settings)
            try:
                body = orjson.loads(await request.read() or b"{}")
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, f"body is not JSON: {exc}") from None
            user_id = body.get("user_id") if isinstance(body, dict) else None
            if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 512:
                raise ApiError(400, 'expected {"user_id": "<1 to 512 characters>"}')
            deleted = await sink.ch(forget_user, sink.client, user_id)
        except ApiError as exc:
            return web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers)
        return web.json_response({"user_id": user_id, "deleted": deleted, "rows": sum(deleted.values())})

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/ping", ping)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    app.router.add_post("/api/forget-user", forget)
    app.router.add_route("GET", "/", handle_query)
    app.router.add_route("POST", "/", handle_query)
    return app


def _credentials(request: web.Request) -> tuple[str, str]:
    """(user, password) the ways ClickHouse's HTTP interface takes them: basic auth (clickhouse-connect),
    X-ClickHouse-User/-Key headers, or user=/password= parameters."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8", "replace").partition(":")
            return user, password
        except (binascii.Error, ValueError):
            return "", ""
    params = request.rel_url.query
    return (request.headers.get("X-ClickHouse-User") or params.get("user", "default"),
            request.headers.get("X-ClickHouse-Key") or params.get("password", ""))


def _key_matches(request: web.Request, key: str) -> bool:
    return hmac.compare_digest(_credentials(request)[1].encode(), key.encode())


def _user_of(request: web.Request) -> str:
    return (_credentials(request)[0] or "default")[:64]


def _error(status: int, text: str, endpoint: str) -> web.Response:
    metrics.HTTP_REQUESTS.labels("sink", endpoint, str(status)).inc()
    return web.Response(status=status, text=text.strip() + "\n",
                        headers={"X-ClickHouse-Exception-Code": (ERROR_CODE.search(text) or ["", "0"])[1]})
