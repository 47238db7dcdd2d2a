"""``session_view`` with the time and page the worker already computed (its ``collect_session_input``
processor, issue 14) builds the same SessionEvent as ``session_event`` computes them itself:
checked on every kind of simulated event."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.common import epoch_us, page_of
from pipeline.contract import EVENT_BATCH_ADAPTER
from pipeline.sessions.events import session_event, session_view
from pipeline.simulate_load import generate_load


def session_input(event: Any, ts_ms: int, page: str) -> Any:
    """What the worker's processor calls: ``session_view`` with the id's string."""
    return session_view(event, ts_ms, page, str(event.event_id))


def test_session_input_equals_session_event_on_simulated_traffic() -> None:
    plan = generate_load(events=3000, sessions=60, shape="flush", seed=5, end_ms=1_795_425_600_000)
    events = [e for m in plan.messages if not m.malformed for e in EVENT_BATCH_ADAPTER.validate_json(m.value)]
    kinds = set()
    for e in events:
        got = session_input(e, epoch_us(e.timestamp) // 1000, page_of(e.route, e.url))
        assert got == session_event(e)
        if got is not None:
            kinds.add(got.kind)
    # every branch was compared, not only the common ones
    assert {"click", "scroll", "pageview", "visibility", "error"} <= kinds
    assert any(session_input(e, 0, "") is None for e in events)  # vitals and API calls have no session view


def test_session_input_keeps_consent_and_observations() -> None:
    e = EVENT_BATCH_ADAPTER.validate_json(orjson.dumps([{
        "event_id": "0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a11", "type": "action", "project": "shop", "session_id": "s-1",
        "timestamp": "2026-11-23T10:00:00.123456Z", "user_id": "u-1", "consent": False, "url": "https://x.com/a?b=1",
        "action": {"kind": "click", "selector": "#buy", "observed": {"dom_mutation_ms": None, "observed_for_ms": 900}},
    }]))[0]
    got = session_input(e, epoch_us(e.timestamp) // 1000, page_of(e.route, e.url))
    assert got == session_event(e)
    assert got is not None and got.user_id == "" and got.page == "/a" and got.ts_ms == 1_795_428_000_123
    assert got.click is not None and got.click.observed and got.click.observed_for_ms == 900
