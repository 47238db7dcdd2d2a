"""Contract events -> ``SessionEvent``: what sessionization reads of an action or an error.

Which fields drive a dead-click decision (documented for SDK authors; see ``clicks.py``):
``action.kind == "click"``, ``action.observed`` (present = the SDK watched), and in it
``dom_mutation_ms``, ``navigated``, ``scrolled`` and ``observed_for_ms``; ``action.interactive``
only chooses the kind (``unresponsive`` vs ``non_interactive``). Rage clicks use ``selector``,
``x``, ``y`` and the event timestamp. The page of an event is its ``route`` (e.g.
``/product/:id``), else the path of its ``url``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from pipeline.sessions.clicks import Click
from pipeline.sessions.sessionizer import SessionEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SESSION_EVENT_TYPES = ("action", "error")


def epoch_ms(ts: datetime) -> int:
    """Exact integer milliseconds (no float rounding: 999 ms apart stays 999)."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def page_of(route: str | None, url: str | None) -> str:
    if route:
        return route
    if url:
        try:
            return urlsplit(url).path or "/"
        except ValueError:
            return ""
    return ""


def session_event(event: Any) -> SessionEvent | None:
    """The session view of a validated contract event; None for types sessions do not read."""
    type_ = event.type
    if type_ not in SESSION_EVENT_TYPES:
        return None
    ts = epoch_ms(event.timestamp)
    page = page_of(event.route, event.url)
    common = dict(session_id=event.session_id, ts_ms=ts, event_id=str(event.event_id), page=page,
                  project=event.project, user_id=(event.user_id or "") if event.consent else "",
                  release=event.release or "", user_agent=event.user_agent or "")
    if type_ == "error":
        return SessionEvent(kind="error", **common)  # type: ignore[arg-type]
    a = event.action
    kind = a.kind
    if kind == "click":
        obs = a.observed
        click = Click(ts_ms=ts, selector=a.selector or "", page=page, x=a.x, y=a.y, interactive=a.interactive,
                      observed=obs is not None,
                      dom_mutation_ms=obs.dom_mutation_ms if obs else None,
                      navigated=obs.navigated if obs else False,
                      scrolled=obs.scrolled if obs else False,
                      observed_for_ms=obs.observed_for_ms if obs else None)
        return SessionEvent(kind="click", click=click, **common)  # type: ignore[arg-type]
    if kind == "scroll":
        return SessionEvent(kind="scroll", scroll_depth=a.scroll_depth, **common)  # type: ignore[arg-type]
    if kind in ("form_start", "form_submit"):
        return SessionEvent(kind=kind, form=a.form or "", **common)  # type: ignore[arg-type]
    if kind == "visibility":
        return SessionEvent(kind="visibility", visible=a.visibility == "visible", **common)  # type: ignore[arg-type]
    return SessionEvent(kind=kind, **common)  # type: ignore[arg-type]
