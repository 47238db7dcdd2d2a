"""Issues over HTTP (and for ``pulse issues``): list them, see one with its history, resolve,
ignore or reopen it.

    GET  /api/issues?project=&status=&limit=           -> {"issues": [...]}
    GET  /api/issues/{fingerprint}?project=            -> {"issue": {...}, "history": [...]}
    POST /api/issues/{fingerprint}/{resolve|ignore|unresolve}
         body (optional JSON): {"project", "in_release", "until_escalating", "actor"}
         -> 202 {"command_id", "action", "issue"}: the worker's issue agent applies it within seconds

Decisions are not written to ClickHouse here: they go to the issue-events topic, keyed like the
issue's errors, so the agent that owns the issue applies them in order with its errors.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from pipeline.api.common import SETTINGS, ApiError, check_access, json_response, query_rows, quote
from pipeline.collector.body import Problem, read_body
from pipeline.ingest.producer import EventProducer, ProduceError
from pipeline.issues import ACTIONS, STATUSES, Command, record_key
from pipeline.settings import Settings

PRODUCER = web.AppKey("api_producer", EventProducer)
LIST_COLUMNS = ("project, fingerprint, status, title, culprit, events, affected_users, first_seen, last_seen, "
                "first_release, last_release, status_since, resolved_at")
MAX_LIMIT = 1000


def _where(project: str | None, status: str | None = None, fingerprint: str | None = None,
           prefix: bool = False) -> str:
    clauses = []
    if project:
        clauses.append(f"project = {quote(project)}")
    if status:
        if status not in STATUSES:
            raise ApiError(400, f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        clauses.append(f"status = {quote(status)}")
    if fingerprint:
        clauses.append(f"startsWith(fingerprint, {quote(fingerprint)})" if prefix else f"fingerprint = {quote(fingerprint)}")
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


async def list_issues(settings: Settings, project: str | None = None, status: str | None = None, limit: int = 50,
                      allow_direct: bool = False) -> list[dict[str, Any]]:
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_LIMIT}")
    return await query_rows(settings, f"SELECT {LIST_COLUMNS} FROM issues {_where(project, status)} "
                                      f"ORDER BY last_seen DESC LIMIT {int(limit)}", allow_direct)


async def find_issue(settings: Settings, fingerprint: str, project: str | None = None, prefix: bool = False,
                     allow_direct: bool = False) -> dict[str, Any]:
    """The one issue with this fingerprint (or unique prefix, for people typing it); 404 / 409 otherwise."""
    if not fingerprint or len(fingerprint) > 128:
        raise ApiError(400, "fingerprint must be 1 to 128 characters")
    rows = await query_rows(settings, f"SELECT {LIST_COLUMNS} FROM issues {_where(project, None, fingerprint, prefix)} "
                                      "LIMIT 6", allow_direct)
    if not rows:
        where = f" in project {project!r}" if project else ""
        raise ApiError(404, f"no issue with fingerprint {fingerprint!r}{' (prefix)' if prefix else ''}{where}")
    if len(rows) > 1:
        matches = ", ".join(f"{r['project']}/{r['fingerprint']}" for r in rows[:5])
        raise ApiError(409, f"{fingerprint!r} matches several issues ({matches}); give more of it or a project")
    return rows[0]


async def issue_history(settings: Settings, project: str, fingerprint: str,
                        allow_direct: bool = False) -> list[dict[str, Any]]:
    return await query_rows(settings, "SELECT at, kind, from_status, reason, release, actor, caused_by, events "
                                      f"FROM issue_transitions FINAL WHERE project = {quote(project)} AND "
                                      f"group_id = {quote(fingerprint)} ORDER BY at, kind", allow_direct)


def new_command(action: str, issue: dict[str, Any], *, in_release: str | None = None, until_escalating: bool = False,
                actor: str = "", now: datetime | None = None) -> Command:
    if action not in ACTIONS:
        raise ApiError(404, f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if in_release is not None and (not isinstance(in_release, str) or len(in_release) > 512):
        raise ApiError(400, "in_release must be a string of at most 512 characters")
    if action != "resolve" and in_release:
        raise ApiError(400, "in_release only applies to resolve")
    if action != "ignore" and until_escalating:
        raise ApiError(400, "until_escalating only applies to ignore")
    at = now or datetime.now(timezone.utc)
    return Command(str(uuid.uuid4()), action, issue["project"], issue["fingerprint"], int(at.timestamp() * 1000),
                   in_release or None, bool(until_escalating), actor[:256])


async def publish_command(producer: EventProducer, settings: Settings, command: Command, timeout_s: float = 10.0) -> None:
    """On the issue-events topic, keyed like the issue's errors (one partition, in order)."""
    await producer.send_raw(settings.kafka.topic_issue_events, orjson.dumps(command.to_json()),
                            record_key(command.project, command.group_id), timeout_s=timeout_s)


# ------------------------------------------------------------------ HTTP


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, got {raw!r}") from None


async def get_issues(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_access(request, settings)
    q = request.query
    return json_response(200, {"issues": await list_issues(settings, q.get("project"), q.get("status"), _limit(request))})


async def get_issue(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_access(request, settings)
    issue = await find_issue(settings, request.match_info["fingerprint"], request.query.get("project"))
    history = await issue_history(settings, issue["project"], issue["fingerprint"])
    return json_response(200, {"issue": issue, "history": history})


async def post_issue_action(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_access(request, settings)
    body: Any = {}
    raw = await read_body(request)
    if isinstance(raw, Problem):
        raise ApiError(raw.status, raw.message)
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
    unknown = set(body) - {"project", "in_release", "until_escalating", "actor"}
    if unknown:
        raise ApiError(400, f"unknown fields {sorted(unknown)}; expected project, in_release, until_escalating, actor")
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise ApiError(404, f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    project = body.get("project") or request.query.get("project")
    issue = await find_issue(settings, request.match_info["fingerprint"], project)
    command = new_command(action, issue, in_release=body.get("in_release"),
                          until_escalating=bool(body.get("until_escalating")), actor=str(body.get("actor") or "api"))
    try:
        await publish_command(request.app[PRODUCER], settings, command)
    except ProduceError as exc:
        raise ApiError(503, f"not recorded, retry later: {exc}", {"Retry-After": "5"}) from exc
    return json_response(202, {"command_id": command.command_id, "action": action, "issue": issue})


def add_issue_routes(app: web.Application, producer: EventProducer) -> None:
    app[PRODUCER] = producer
    app.router.add_get("/api/issues", get_issues)
    app.router.add_get("/api/issues/{fingerprint}", get_issue)
    app.router.add_post("/api/issues/{fingerprint}/{action}", post_issue_action)
