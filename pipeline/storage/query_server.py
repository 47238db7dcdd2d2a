"""A read-only subset of ClickHouse's HTTP interface, served next to the sink (the chDB owner).

``GET /?query=SELECT...`` or ``POST /`` with the query in the body (or split between the
``query`` parameter and the body, as ClickHouse allows), ``default_format`` or ``X-ClickHouse-Format``
(default TabSeparated; ``Native`` in the layout of ``client_protocol_version``, see native_format.py),
a ``FORMAT X`` clause, ``database``/``X-ClickHouse-Database``,
``query_id``/``X-ClickHouse-Query-Id``; other URL parameters are per-query settings from an allow-list
(``sql_policy.client_settings``). The engine's parser decides what a request is and reads run with
``readonly = 1`` and the operator's limits on a lane of their own (``database.py``). Errors come back
with ClickHouse's exception text, code header and HTTP status. ``PULSE_SINK_SQL_ALLOW_WRITES`` lets an
authenticated admin write (same parser path); ``PULSE_SINK_SQL_ACCESS_KEY`` makes that key the password
every request needs. Also ``/ping``, ``/health``, ``/metrics``, ``/api/forget-user``.

Compression as ClickHouse does it (``http_compression.py``): ``compress=1`` answers in ClickHouse's
LZ4 block framing (the JDBC driver's default), ``decompress=1`` reads a body in it,
the ``Accept-Encoding`` ClickHouse would pick is answered (``enable_http_compression`` is on unless a
client sends 0), and a
``Content-Encoding`` request body is decoded; decompressed bodies are bounded by
``PULSE_SINK_SQL_MAX_REQUEST_BODY_BYTES``. Answers carry ``X-ClickHouse-Summary``/``-Format``/
``-Query-Id``/``-Timezone``/``-Server-Display-Name`` as ClickHouse's do. Errors are plain, except
that a query's own error under ``compress=1`` comes in compressed blocks, as ClickHouse sends it
(clickhouse-go decompresses it; plain text there fails with "data size should be ...").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
from typing import Any, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline import metrics
from pipeline.settings import Settings
from pipeline.storage import http_compression
from pipeline.storage.database import Answer, Database, EngineError
from pipeline.storage.http_compression import CompressionError
from pipeline.storage.native_format import NativeRefused
from pipeline.storage.sql_policy import SqlRefused

ERROR_CODE = re.compile(r"Code: (\d+)")
# ClickHouse's own HTTP status for common exception codes; anything else is 500 as in ClickHouse.
STATUS_FOR_CODE = {62: 400, 60: 404, 81: 404, 47: 400, 46: 400, 43: 400, 164: 403, 497: 403, 36: 400, 27: 400,
                   115: 400, 452: 400, 457: 400, 48: 501}
# Formats whose output is not text (ClickHouse answers them as application/octet-stream).
BINARY_FORMATS = ("RowBinary", "Native", "Parquet", "Arrow", "ArrowStream", "ORC", "Avro", "Protobuf", "MsgPack",
                  "CapnProto", "BSONEachRow", "Npy", "RawBLOB")


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for an output format."""
    if fmt.startswith(BINARY_FORMATS):
        return "application/octet-stream"
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("CSV"):
        return f"text/csv; charset=UTF-8; header={'present' if 'WithNames' in fmt else 'absent'}"
    if fmt in ("JSONEachRow", "JSONLines", "NDJSON", "JSONCompactEachRow", "JSONStringsEachRow") \
            or fmt.startswith(("JSONEachRowWith", "JSONCompactEachRowWith", "JSONCompactStringsEachRow")):
        return "application/x-ndjson; charset=UTF-8"
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if fmt == "XML":
        return "application/xml; charset=UTF-8"
    return "text/plain; charset=UTF-8"


# How the app must be served (web.AppRunner(app, **SERVER_OPTIONS)): aiohttp would otherwise undo a
# request's Content-Encoding itself, with no bound but client_max_size and for gzip/deflate/br only;
# here http_compression does it (every ClickHouse encoding, bounded by the operator's setting).
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}


def make_query_app(db: Database, settings: Settings, status: Callable[[], dict[str, Any]]) -> web.Application:
    """``db``: the engine handle (read lane for queries, write lane for forget-user); ``status``: the
    owner's own numbers for /health (flushes, partitions), so this module never sees the sink."""
    key = settings.sink.sql_access_key
    allow_writes = settings.sink.sql_allow_writes
    own_database = settings.clickhouse.database
    serves = settings.clickhouse.data_identity()  # which data this is: `pulse query` checks it is its own
    timezone_known: list[str] = []  # the engine's time zone, asked once

    async def handle_query(request: web.Request) -> web.Response:
        params = dict(request.rel_url.query)
        if key is not None and not _key_matches(request, key.get_secret_value()):
            return _error(403, f"Code: 516. DB::Exception: {_user_of(request)}: Authentication failed: password is "
                               "incorrect, or there is no user with such name (the sink's SQL endpoint needs "
                               "PULSE_SINK_SQL_ACCESS_KEY as the password). (AUTHENTICATION_FAILED)", "/")
        try:
            body = _request_body(await request.read() if request.can_read_body else b"", request, params,
                                 settings.sink.sql_max_request_body_bytes).decode("utf-8", "replace")
        except CompressionError as exc:
            return _error(exc.status, str(exc), "/")
        except web.HTTPRequestEntityTooLarge:  # the body as sent is past the same bound
            too_large = http_compression.body_too_large(settings.sink.sql_max_request_body_bytes)
            return _error(too_large.status, str(too_large), "/")
        sql = "\n".join(p for p in (params.get("query", ""), body) if p.strip())
        if not sql.strip():
            return _error(400, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", "/")
        headers = request.headers
        fmt = headers.get("X-ClickHouse-Format") or params.get("default_format") or "TabSeparated"
        database = params.get("database") or headers.get("X-ClickHouse-Database") or own_database
        if database == "default":  # drivers send ClickHouse's default: here that is the pipeline's database
            database = own_database
        query_id = params.get("query_id") or headers.get("X-ClickHouse-Query-Id") or None
        try:
            answer = await db.analyst_query(sql, fmt, params, admin=allow_writes, database=database, query_id=query_id)
        except (SqlRefused, EngineError, NativeRefused) as exc:  # ClickHouse's own error text goes back to the client
            text = str(exc)
            m = ERROR_CODE.search(text)
            return _error(STATUS_FOR_CODE.get(int(m.group(1)), 500) if m else 500, text, "/",
                          blocks=params.get("compress") == "1")
        metrics.HTTP_REQUESTS.labels("sink", "/", "200").inc()
        timezone = params.get("session_timezone") or await _server_timezone()
        return _answer(answer, request, params, timezone)

    async def _server_timezone() -> str:
        if timezone_known:
            return timezone_known[0]
        try:
            timezone_known.append(await asyncio.get_running_loop().run_in_executor(None, db.server_timezone))
        except Exception:  # noqa: BLE001 - a header drivers can do without; never fail the answer for it
            return "UTC"
        return timezone_known[0]

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def health(_: web.Request) -> web.Response:
        ch_ok = await db.ping()
        body = {"status": "healthy" if ch_ok else "unhealthy",
                "clickhouse": {"ok": ch_ok, "embedded": settings.clickhouse.embedded,
                               "serves": serves}, **status()}
        return web.json_response(body, status=200 if ch_ok else 503)

    async def forget(request: web.Request) -> web.Response:
        """``POST /api/forget-user {"user_id": ...}``: delete the user's rows in every table (the sink is
        the one writer of the embedded database). Same access rule as the collector's API."""
        from pipeline.api.common import ApiError, check_access
        from pipeline.storage.privacy import forget_user

        try:
            check_access(request, settings)
            try:
                body = orjson.loads(await request.read() or b"{}")
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, f"body is not JSON: {exc}") from None
            user_id = body.get("user_id") if isinstance(body, dict) else None
            if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 512:
                raise ApiError(400, 'expected {"user_id": "<1 to 512 characters>"}')
            deleted = await db.write(forget_user, db.client, user_id)
        except ApiError as exc:
            return web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers)
        return web.json_response({"user_id": user_id, "deleted": deleted, "rows": sum(deleted.values())})

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=settings.sink.sql_max_request_body_bytes)
    app.router.add_get("/ping", ping)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    app.router.add_post("/api/forget-user", forget)
    app.router.add_route("GET", "/", handle_query)
    app.router.add_route("POST", "/", handle_query)
    return app


def _request_body(raw: bytes, request: web.Request, params: dict[str, str], max_size: int) -> bytes:
    """The body as ClickHouse reads it: ``Content-Encoding`` undone first (HTTP's layer, whatever
    ``enable_http_compression`` says), then ``decompress=1``'s blocks; each bounded by ``max_size``."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    body = http_compression.decode(raw, encoding, max_size)
    if encoding not in ("", "identity"):
        metrics.SQL_COMPRESSION.labels("request", encoding).inc()
    if params.get("decompress") == "1" and body:
        body = http_compression.decompress_blocks(body, max_size)
        metrics.SQL_COMPRESSION.labels("request", "blocks").inc()
    return body


def _answer(answer: Answer, request: web.Request, params: dict[str, str], timezone: str) -> web.Response:
    """The 200 response: ``compress=1`` blocks inside, then the HTTP encoding ClickHouse would pick for
    the client's ``Accept-Encoding`` (``enable_http_compression`` is 1 here unless the client sends 0,
    as on a ClickHouse whose profile sets it: see ``database.HANDLE_SETTINGS``), and ClickHouse's headers."""
    body = answer.body
    headers = {"Content-Type": content_type(answer.format), "X-ClickHouse-Format": answer.format,
               "X-ClickHouse-Query-Id": answer.query_id, "X-ClickHouse-Timezone": timezone,
               "X-ClickHouse-Server-Display-Name": "pulse-sink",
               "X-ClickHouse-Summary": orjson.dumps(answer.summary()).decode()}
    if params.get("compress") == "1":
        body = http_compression.compress_blocks(body)
        metrics.SQL_COMPRESSION.labels("response", "blocks").inc()
    encoding = http_compression.response_encoding(request.headers.get("Accept-Encoding", "")) \
        if params.get("enable_http_compression", "1") != "0" else None
    if encoding is not None:
        level = params.get("http_zlib_compression_level", "3")
        body = http_compression.encode(body, encoding, min(9, max(1, int(level) if level.isdigit() else 3)))
        headers["Content-Encoding"] = encoding
        metrics.SQL_COMPRESSION.labels("response", encoding).inc()
    return web.Response(body=body, headers=headers)


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


def _error(status: int, text: str, endpoint: str, blocks: bool = False) -> web.Response:
    """ClickHouse's error answer. ``blocks``: the query's own error under ``compress=1`` comes in
    compressed blocks, as ClickHouse writes it to the query's (compressed) output; clickhouse-go reads
    it so. Errors before the query (authentication, the body) are plain, as in ClickHouse."""
    metrics.HTTP_REQUESTS.labels("sink", endpoint, str(status)).inc()
    headers = {"X-ClickHouse-Exception-Code": (ERROR_CODE.search(text) or ["", "0"])[1]}
    body = (text.strip() + "\n").encode()
    if blocks:
        return web.Response(status=status, body=http_compression.compress_blocks(body),
                            content_type="text/plain", charset="utf-8", headers=headers)
    return web.Response(status=status, body=body, content_type="text/plain", charset="utf-8", headers=headers)
