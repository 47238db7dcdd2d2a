"""The health report over HTTP (and ``pulse report`` on the command line).

    GET /api/report?period=24h&project=shop
        -> 200 {"monitoring_health_check": {...}}   (docs/report.md defines every figure)
        -> 400 on a bad period, 401/403 like the other read endpoints, 503 when ClickHouse is not reachable

``period``: a whole number of hours, days or weeks (1h, 24h, 7d, 30d; 1h to 90d), default 24h; the
report compares it with the previous period of the same length. ``project``: one project, default all.
"""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from pipeline.api.common import SETTINGS, ApiError, check_access, json_response
from pipeline.report.build import build_report
from pipeline.report.health import parse_period

MAX_PROJECT_CHARS = 256


def report_params(period: str | None, project: str | None) -> tuple[int, str | None]:
    """(period seconds, project or None); ApiError(400) naming what is wrong."""
    try:
        period_s = parse_period(period or "24h")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if project is not None and len(project) > MAX_PROJECT_CHARS:
        raise ApiError(400, f"project must be at most {MAX_PROJECT_CHARS} characters")
    return period_s, project or None


async def get_report(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_access(request, settings)
    period_s, project = report_params(request.query.get("period"), request.query.get("project"))
    # a long-running process: the embedded database is only reached through the sink
    report = await build_report(settings, period_s, project, datetime.now(timezone.utc), allow_direct=False)
    return json_response(200, report)


def add_report_routes(app: web.Application) -> None:
    app.router.add_get("/api/report", get_report)
