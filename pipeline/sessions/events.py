"""Contract events -> ``SessionEvent``: what sessionization reads of an action or an error.

Which fields drive a dead-click decision (documented for SDK authors; see ``clicks.py``):
``action.kind == "click"``, ``action.observed`` (present = the SDK watched), and in it
``dom_mutation_ms``, ``navigated``, ``scrolled`` and ``observed_for_ms``; ``action.interactive``
only chooses the kind (``unresponsive`` vs ``non_interactive``). Rage clicks use ``selector``,
``x``, ``y`` and the event timestamp. The page of an event is its ``route`` (e.g.
``/product/:id``), else the path of its ``url``.
"""

from __future__ import annotations

from sys import intern
from typing import Any

from pipeline.common import epoch_ms, page_of
from pipeline.sessions.clicks import Click
from pipeline.sessions.sessionizer import SessionEvent

SESSION_EVENT_TYPES = ("action", "error")


def session_event(event: Any, event_id: str | None = None) -> SessionEvent | None:
    """The session view of a validated contract event; None for types sessions do not read.
    ``event_id``: its canonical string when the caller already has it (saves a UUID format). Always a
    ``str`` in the result: session state restored from the changelog holds strings, and the
    sessionizer orders events of one millisecond by ``(ts_ms, event_id)`` -- a UUID beside a str
    there raised TypeError after every restart (issue 14)."""
    if event.type not in SESSION_EVENT_TYPES:
        return None
    return session_view(event, epoch_ms(event.timestamp), page_of(event.route, event.url),
                        str(event_id if event_id is not None else event.event_id))


def session_view(event: Any, ts_ms: int, page: str, event_id: str) -> SessionEvent | None:
    """``session_event`` with the event time (exact epoch ms), the page (``page_of(route, url)``)
    and the id's string given: the worker computed them once for the row, rollups and lateness."""
    type_ = event.type
    if type_ != "action" and type_ != "error":
        return None
    # Interned: thousands of open sessions share a handful of pages, releases and user agents.
    page = intern(page)
    # The session id too: a session's events would each bring their own copy into its keys and state.
    sid = intern(event.session_id)
    project, release, ua = intern(event.project), intern(event.release or ""), intern(event.user_agent or "")
    user_id = (event.user_id or "") if event.consent else ""
    if type_ == "error":
        return SessionEvent(sid, ts_ms, event_id, "error", page, project, user_id, release, ua)
    a = event.action
    kind = a.kind
    if kind == "click":
        obs = a.observed
        if obs is None:
            click = Click(ts_ms, intern(a.selector or ""), page, a.x, a.y, a.interactive)
        else:
            click = Click(ts_ms, intern(a.selector or ""), page, a.x, a.y, a.interactive, True, obs.dom_mutation_ms,
                          obs.navigated, obs.scrolled, obs.observed_for_ms)
        return SessionEvent(sid, ts_ms, event_id, "click", page, project, user_id, release, ua, click)
    if kind == "scroll":
        return SessionEvent(sid, ts_ms, event_id, "scroll", page, project, user_id, release, ua,
                            scroll_depth=a.scroll_depth)
    if kind == "form_start" or kind == "form_submit":
        return SessionEvent(sid, ts_ms, event_id, kind, page, project, user_id, release, ua, form=a.form or "")
    if kind == "visibility":
        return SessionEvent(sid, ts_ms, event_id, "visibility", page, project, user_id, release, ua,
                            visible=a.visibility == "visible")
    return SessionEvent(sid, ts_ms, event_id, kind, page, project, user_id, release, ua)
