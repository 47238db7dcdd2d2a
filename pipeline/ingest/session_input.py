"""A validated event's session view (``SessionEvent``), from what the worker already computed for it.

The same as ``pipeline.sessions.events.session_event`` (one body: ``session_view``), but the event
time (epoch ms) and the page come in from the caller, which computed them once for the storage row,
the rollups and the lateness (issue 14). Pure.
"""

from __future__ import annotations

from typing import Any

from pipeline.sessions.events import session_view
from pipeline.sessions.sessionizer import SessionEvent


def session_input(event: Any, ts_ms: int, page: str) -> SessionEvent | None:
    """The session view of a validated contract event; None for types sessions do not read.
    ``ts_ms``: its time in exact epoch milliseconds; ``page``: ``page_of(event.route, event.url)``."""
    return session_view(event, ts_ms, page, str(event.event_id))
