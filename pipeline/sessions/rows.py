"""What sessionization emits, as ClickHouse rows and as UX signals for alerting. Pure.

Rows are deterministic functions of the events (a replay re-emits identical rows), and each
table's sort key is the row's natural key, so ReplacingMergeTree collapses replays.

A UX signal (topic ``pulse.ux-signals``) is one JSON object per rage click or dead click::

    {"signal": "rage_click", "signal_id": "rage:s-1:1763892000123:button#pay", "project": "shop",
     "session_id": "s-1", "page": "/checkout", "selector": "button#pay",
     "timestamp": "2026-11-23T10:00:00.123Z", "clicks": 4, "kind": null}

``signal_id`` is stable across replays: consumers deduplicate by it (delivery is at-least-once).
"""

from __future__ import annotations

from typing import Any

from pipeline.common import browser_and_os, from_epoch_ms
from pipeline.sessions.sessionizer import DeadClick, Emitted, PageView, SessionRage, SessionSummary

SESSION_TABLES = ("sessions", "page_views", "rage_clicks", "dead_clicks")


def session_row(s: SessionSummary) -> dict[str, Any]:
    browser, version, os_, device = browser_and_os(s.user_agent)
    return {
        "project": s.project, "session_id": s.session_id, "user_id": s.user_id,
        "start": from_epoch_ms(s.start_ms), "end": from_epoch_ms(s.end_ms), "duration_ms": s.duration_ms,
        "pageviews": s.pageviews, "clicks": s.clicks, "rage_clicks": s.rage_clicks, "dead_clicks": s.dead_clicks,
        "errors": s.errors, "max_scroll": s.max_scroll, "forms_started": s.forms_started,
        "forms_submitted": s.forms_submitted, "forms_abandoned": s.forms_abandoned,
        "entry_page": s.entry_page, "exit_page": s.exit_page, "bounce": s.bounce, "release": s.release,
        "browser": browser, "browser_version": version, "os": os_, "device": device, "user_agent": s.user_agent,
    }


def page_view_row(p: PageView) -> dict[str, Any]:
    return {
        "project": p.project, "session_id": p.session_id, "session_start": from_epoch_ms(p.session_start_ms),
        "page": p.page, "start": from_epoch_ms(p.start_ms), "end": from_epoch_ms(p.end_ms), "visible_ms": p.visible_ms,
        "max_scroll": p.max_scroll, "milestones": list(p.milestones), "clicks": p.clicks,
        "rage_clicks": p.rage_clicks, "dead_clicks": p.dead_clicks, "forms_started": p.forms_started,
        "forms_abandoned": p.forms_abandoned,
    }


def rage_row(r: SessionRage) -> dict[str, Any]:
    return {
        "project": r.project, "session_id": r.session_id, "session_start": from_epoch_ms(r.session_start_ms),
        "page": r.rage.page, "selector": r.rage.selector, "first_click": from_epoch_ms(r.rage.first_ts_ms),
        "detected_at": from_epoch_ms(r.rage.detected_ts_ms), "clicks": r.rage.clicks,
    }


def dead_row(d: DeadClick) -> dict[str, Any]:
    return {
        "project": d.project, "session_id": d.session_id, "session_start": from_epoch_ms(d.session_start_ms),
        "event_id": d.event_id, "timestamp": from_epoch_ms(d.ts_ms), "page": d.page, "selector": d.selector, "kind": d.kind,
    }


def rows_by_table(emitted: Emitted) -> dict[str, list[dict[str, Any]]]:
    out = {
        "sessions": [session_row(s) for s in emitted.sessions],
        "page_views": [page_view_row(p) for p in emitted.page_views],
        "rage_clicks": [rage_row(r) for r in emitted.rage_clicks],
        "dead_clicks": [dead_row(d) for d in emitted.dead_clicks],
    }
    return {table: rows for table, rows in out.items() if rows}


def signals(emitted: Emitted) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in emitted.rage_clicks:
        out.append({"signal": "rage_click",
                    "signal_id": f"rage:{r.session_id}:{r.rage.first_ts_ms}:{r.rage.selector}",
                    "project": r.project, "session_id": r.session_id, "page": r.rage.page,
                    "selector": r.rage.selector, "timestamp": from_epoch_ms(r.rage.detected_ts_ms), "clicks": r.rage.clicks,
                    "kind": None})
    for d in emitted.dead_clicks:
        out.append({"signal": "dead_click", "signal_id": f"dead:{d.event_id}", "project": d.project,
                    "session_id": d.session_id, "page": d.page, "selector": d.selector,
                    "timestamp": from_epoch_ms(d.ts_ms), "clicks": 1, "kind": d.kind})
    return out
