"""What every API endpoint shares: access control, JSON answers, and queries that never block the loop."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any

import orjson
from aiohttp import web

from pipeline.settings import Settings
from pipeline.storage.query_client import BackendUnavailable, QueryError, run_query

SETTINGS = web.AppKey("api_settings", Settings)
# Numbers as JSON numbers (ClickHouse quotes 64-bit integers by default), NaN as null.
JSON_SETTINGS = {"output_format_json_quote_64bit_integers": 0, "output_format_json_quote_denormals": 0}


class ApiError(Exception):
    """An answer with an error status; the message is what the client reads."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def json_response(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json", headers=headers)


def check_access(request: web.Request, settings: Settings) -> None:
    """``Authorization: Bearer <PULSE_COLLECTOR_API_TOKEN>``; with no token configured, loopback
    clients only (the defaults are for one machine; anything reachable from outside needs a token)."""
    token = settings.collector.api_token
    if token is not None:
        sent = request.headers.get("Authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 token.get_secret_value().encode()):
            raise ApiError(401, "this endpoint needs 'Authorization: Bearer <PULSE_COLLECTOR_API_TOKEN>'",
                           {"WWW-Authenticate": "Bearer"})
        return
    try:
        loopback = ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ApiError(403, "set PULSE_COLLECTOR_API_TOKEN to use this endpoint from another host")


async def query_rows(settings: Settings, sql: str, allow_direct: bool = False) -> list[dict[str, Any]]:
    """Rows of a read-only query, as dicts. From a long-running process the embedded database is
    only reached through the sink; the CLI may open it directly when nothing runs."""
    try:
        text = await asyncio.to_thread(run_query, settings, sql, "JSONEachRow", 30.0, allow_direct, JSON_SETTINGS)
    except BackendUnavailable as exc:
        raise ApiError(503, f"ClickHouse is not reachable: {exc}", {"Retry-After": "5"}) from exc
    except QueryError as exc:
        raise ApiError(502, f"query failed: {exc}") from exc
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.status, {"error": exc.message}, exc.headers)
