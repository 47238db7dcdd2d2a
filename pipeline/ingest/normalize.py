"""Events -> storage rows (plain dicts whose keys are ClickHouse columns).

The worker serializes these with orjson as JSONEachRow; the sink hands the bytes to ClickHouse
unparsed. Datetimes and UUIDs stay Python objects: orjson writes them (RFC 3339, canonical UUID)
several times faster than ``isoformat``/``str`` would, and ClickHouse parses them with
``date_time_input_format=best_effort``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from pipeline.grouping import DEFAULT_NOISE_RULES, NoiseRules, group_error, noise_reason

TABLE_FOR_TYPE = {"error": "errors", "vital": "vitals", "action": "actions", "api": "api_calls", "metric": "metrics"}


def _envelope(event: Any, received_at: datetime) -> dict[str, Any]:
    consent, sdk = event.consent, event.sdk
    return {
        "event_id": event.event_id,
        "project": event.project,
        "timestamp": event.timestamp,
        "received_at": event.received_at or received_at,
        "session_id": event.session_id,
        # Without consent no user identifiers are kept.
        "user_id": (event.user_id or "") if consent else "",
        "anonymous_id": (event.anonymous_id or "") if consent else "",
        "release": event.release or "",
        "environment": event.environment,
        "url": event.url or "",
        "route": event.route or "",
        "user_agent": event.user_agent or "",
        "sdk_name": sdk.name if sdk else "",
        "sdk_version": sdk.version if sdk else "",
        "consent": consent,
    }


def _json_text(value: Any) -> str:
    """``orjson.dumps(value).decode()``, without the call for an empty dict (most actions' properties)."""
    if type(value) is dict and not value:
        return "{}"
    return orjson.dumps(value).decode()


def event_to_row(event: Any, received_at: datetime,
                 noise_rules: NoiseRules = DEFAULT_NOISE_RULES) -> tuple[str, dict[str, Any]]:
    """Returns (table, row). ``received_at`` is used when the event has none (direct producers).
    Errors are grouped here (``group_id`` = the issue's fingerprint) and marked when they are
    known noise (``noise`` = the reason; such rows are stored but stay out of issues and rates)."""
    row = _envelope(event, received_at)
    # The hot types' columns are set one by one: ``row.update(k=v, ...)`` builds a keyword dict first
    # and costs ~0.5 us more per event (issue 14); the column order is the same.
    type_ = event.type  # the contract's models or their fast Structs (pipeline/contract/fast.py) alike
    if type_ == "error":
        e = event.error
        grouping = group_error(e.exception_type, e.message, e.stacktrace, e.fingerprint, project=event.project)
        row.update(
            exception_type=e.exception_type,
            message=e.message,
            level=e.level,
            handled=e.handled,
            mechanism=e.mechanism.type if e.mechanism else "",
            stacktrace=orjson.dumps([f.model_dump(exclude_none=True) for f in e.stacktrace]).decode(),
            breadcrumbs=orjson.dumps([b.model_dump(mode="json", exclude_none=True) for b in e.breadcrumbs]).decode(),
            tags=e.tags,
            fingerprint=e.fingerprint or [],
            group_id=grouping.fingerprint,
            title=grouping.title,
            culprit=grouping.culprit,
            grouping=grouping.method,
            noise=noise_reason(e.exception_type, e.message, e.stacktrace, noise_rules) or "",
        )
    elif type_ == "vital":
        v = event.vital
        row["name"] = v.name
        row["value"] = v.value
        row["rating"] = v.rating or ""
        row["navigation_type"] = v.navigation_type or ""
        row["element"] = v.element or ""
    elif type_ == "action":
        a = event.action
        obs = a.observed
        row["kind"] = a.kind
        row["selector"] = a.selector or ""
        row["tag"] = a.tag or ""
        row["text"] = a.text or ""
        row["x"] = a.x
        row["y"] = a.y
        row["interactive"] = a.interactive
        row["dom_mutation_ms"] = obs.dom_mutation_ms if obs else None
        row["navigated"] = obs.navigated if obs else None
        row["scrolled"] = obs.scrolled if obs else None
        row["scroll_depth"] = a.scroll_depth
        row["form"] = a.form or ""
        row["visibility"] = a.visibility or ""
        row["name"] = a.name or ""
        row["properties"] = _json_text(a.properties)
    elif type_ == "api":
        p = event.api
        row["kind"] = p.kind
        row["request_url"] = p.url
        row["method"] = p.method
        row["status"] = p.status
        row["duration_ms"] = p.duration_ms
        row["ok"] = bool(p.ok)
        row["initiator"] = p.initiator or ""
        row["size_bytes"] = p.size_bytes
    elif type_ == "metric":
        m = event.metric
        row.update(name=m.name, value=m.value, unit=m.unit or "", tags=m.tags)
    else:  # pragma: no cover - the contract's union is closed
        raise TypeError(f"not an event: {type(event).__name__}")
    return TABLE_FOR_TYPE[type_], row
