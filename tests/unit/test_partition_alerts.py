"""The worker's per-partition alert state (agents/alerts.PartitionAlerts): windows close by the given
clock, late partials are refused, SLO minutes are fed in order, and the state survives its bytes."""

from __future__ import annotations

import orjson

from agents.alerts import PartitionAlerts
from pipeline.alerts.evaluate import WindowAggregate
from pipeline.alerts.rules import load_rules

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 3_600_000  # an hour boundary


def write_rules(tmp_path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_rules(path)


RULES = """
rules:
  - name: error-rate
    kind: ratio
    numerator: errors
    denominator: pageviews
    window: 1m
    thresholds: {critical: 0.10}
    min_volume: 5
slos:
  - name: api-availability
    kind: availability
    objective: 0.999
"""


def minute(i: int, errors: int, pageviews: int, api_calls: int = 0, api_failures: int = 0) -> WindowAggregate:
    return WindowAggregate("shop", T0 + i * 60_000, 60_000, {"environment": "production"},
                           {"errors": errors, "pageviews": pageviews, "api_calls": api_calls,
                            "api_failures": api_failures})


def test_windows_close_by_the_clock_and_late_partials_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    part = PartitionAlerts(write_rules(tmp_path, RULES))
    assert part.add([minute(0, 5, 20)]) == 0
    assert part.advance(T0 + 30_000) == []  # minute 0 still open
    events = part.advance(T0 + 60_000)
    assert [(e.rule, e.status) for e in events] == [("error-rate", "firing")]
    assert part.add([minute(0, 1, 1)]) == 1  # minute 0 closed: too late for alerting
    again = PartitionAlerts(write_rules(tmp_path, RULES), orjson.loads(part.to_bytes()))
    events = again.advance(T0 + 120_000)  # minute 1 closed without data: resolves
    assert [(e.rule, e.status) for e in events] == [("error-rate", "resolved")]


def test_slo_burn_pages_and_minutes_are_fed_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    part = PartitionAlerts(write_rules(tmp_path, RULES))
    part.add([minute(i, 0, 0, api_calls=100, api_failures=50) for i in range(61)])
    events = part.advance(T0 + 61 * 60_000)
    pages = [e for e in events if e.rule == "api-availability" and e.status == "firing"]
    assert pages and pages[0].severity == "page"
    assert part.slo_next_ms == T0 + 61 * 60_000
    assert part.advance(T0 + 61 * 60_000) == []  # nothing new closed: nothing fed twice
    assert all(a.window_start_ms >= T0 for a in part.buffer)
