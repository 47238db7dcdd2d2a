"""The dashboard over HTTP, served by the collector.

    GET /dashboard                         -> the page (HTML; no data in it, so no access check)
    GET /dashboard/static/{file}           -> its JS and CSS, and the vendored Chart.js (vendor/...)
    GET /api/dashboard?period=1h&project=  -> every panel's data (``data.py``); period one of 15m, 1h,
                                              6h, 24h, 7d (default 1h); project empty = all projects

``/api/dashboard`` is guarded like the rest of the query API (``check_access``: ``Authorization:
Bearer <PULSE_COLLECTOR_API_TOKEN>``, or loopback clients when no token is set): 401/403, 400 on a bad
period or project, 503 + Retry-After when the sink (the only way to the embedded database) is down,
502 when a query fails. The page asks for the token when it gets a 401 and keeps it in the browser's
localStorage.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from pipeline.api.common import SETTINGS, ApiError, check_access, json_response
from pipeline.dashboard.data import dashboard_data
from pipeline.dashboard.queries import DEFAULT_PERIOD, parse_period

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".md": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8"}
MAX_PROJECT_CHARS = 256
# Everything the page loads comes from here; data is rendered as text, never as markup.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def get_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={**PAGE_HEADERS,
                                                                 "Content-Type": "text/html; charset=utf-8"})


async def get_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    try:
        path = (STATIC_DIR / name).resolve()
        found = path.is_relative_to(STATIC_DIR) and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long...
        found = False
    content_type = CONTENT_TYPES.get(path.suffix) if found else None
    if content_type is None:
        raise ApiError(404, f"no dashboard file {name!r}")
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "no-cache",
                                           "X-Content-Type-Options": "nosniff"})


async def get_dashboard_data(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_access(request, settings)
    try:
        period_s = parse_period(request.query.get("period") or DEFAULT_PERIOD)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    project = request.query.get("project", "").strip()
    if len(project) > MAX_PROJECT_CHARS:
        raise ApiError(400, f"project must be at most {MAX_PROJECT_CHARS} characters")
    doc = await dashboard_data(settings, period_s, project or None)
    return json_response(200, doc, {"Cache-Control": "no-store"})


def add_dashboard_routes(app: web.Application) -> None:
    """Needs ``app[pipeline.api.common.SETTINGS]`` (``make_app`` sets it)."""
    app.router.add_get("/dashboard", get_page)
    app.router.add_get("/dashboard/", get_page)
    app.router.add_get("/dashboard/static/{file:.+}", get_static)
    app.router.add_get("/api/dashboard", get_dashboard_data)
