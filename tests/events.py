"""Minimal valid contract events for tests, one per type."""

from __future__ import annotations

import uuid
from typing import Any

PAYLOADS: dict[str, dict[str, Any]] = {
    "vital": {"name": "LCP", "value": 1200.0},
    "error": {"exception_type": "TypeError", "message": "x is undefined"},
    "action": {"kind": "click", "selector": "#buy"},
    "api": {"url": "/api/cart", "status": 200, "duration_ms": 12.5},
}


def ev(type_: str, **kw: Any) -> dict[str, Any]:
    """An event dict of ``type_`` with a fresh event_id; keyword arguments override fields."""
    return {"event_id": str(uuid.uuid4()), "type": type_, "project": "shop", "timestamp": "2026-11-23T10:00:00.5Z",
            "session_id": "s-1", "user_id": "u1", "anonymous_id": "a1", type_: dict(PAYLOADS[type_]), **kw}
