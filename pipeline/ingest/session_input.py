"""A validated event's session view (``SessionEvent``), from what the worker already computed for it.

Same result as ``pipeline.sessions.events.session_event`` (a unit test compares the two on simulated
traffic), but the event time (epoch ms) and the page come in from the caller, which computed them
once for the storage row, the rollups and the lateness (issue 14). Pure.
"""

from __future__ import annotations

from sys import intern
from typing import Any

from pipeline.sessions.clicks import Click
from pipeline.sessions.sessionizer import SessionEvent


def session_input(event: Any, ts_ms: int, page: str) -> SessionEvent | None:
    """The session view of a validated contract event; None for types sessions do not read.
    ``ts_ms``: its time in exact epoch milliseconds; ``page``: ``page_of(event.route, event.url)``."""
    type_ = event.type
    if type_ != "action" and type_ != "error":
        return None
    # Interned: thousands of open sessions share a handful of pages, releases and user agents.
    page = intern(page)
    sid, eid = event.session_id, str(event.event_id)
    project, release, ua = intern(event.project), intern(event.release or ""), intern(event.user_agent or "")
    user_id = (event.user_id or "") if event.consent else ""
    if type_ == "error":
        return SessionEvent(sid, ts_ms, eid, "error", page, project, user_id, release, ua)
    a = event.action
    kind = a.kind
    if kind == "click":
        obs = a.observed
        if obs is None:
            click = Click(ts_ms, intern(a.selector or ""), page, a.x, a.y, a.interactive)
        else:
            click = Click(ts_ms, intern(a.selector or ""), page, a.x, a.y, a.interactive, True, obs.dom_mutation_ms,
                          obs.navigated, obs.scrolled, obs.observed_for_ms)
        return SessionEvent(sid, ts_ms, eid, "click", page, project, user_id, release, ua, click)
    if kind == "scroll":
        return SessionEvent(sid, ts_ms, eid, "scroll", page, project, user_id, release, ua, scroll_depth=a.scroll_depth)
    if kind == "form_start" or kind == "form_submit":
        return SessionEvent(sid, ts_ms, eid, kind, page, project, user_id, release, ua, form=a.form or "")
    if kind == "visibility":
        return SessionEvent(sid, ts_ms, eid, "visibility", page, project, user_id, release, ua,
                            visible=a.visibility == "visible")
    return SessionEvent(sid, ts_ms, eid, kind, page, project, user_id, release, ua)
