"""Alert events as the alerting stage sends them (``pipeline.alerts.AlertEvent.to_json()``): one-shot
issue alerts, ``ends_at`` expiry, remediation URLs and annotations carried by the event."""

from __future__ import annotations

from typing import Any

from pipeline.notify import Notifier, NotifierState, load_config_file, render
from pipeline.notify.payloads import alertmanager_webhook

from .factory import BASIC, T0, Alerts, H, M, S, config, fps, kinds, ticks

ENV = {"PULSE_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/pulse"}


def issue_event(n: int, at: int, issue: str = "g1") -> dict[str, Any]:
    """The shape of AlertEvent.to_json() for an issue rule: firing only, ends_at None, extra keys."""
    return {
        "event_id": f"issue-ev-{n}", "fingerprint": f"fp-{issue}", "rule": "new-issue", "status": "firing",
        "severity": "warning", "labels": {"project": "shop", "issue": issue, "severity": "warning"},
        "starts_at": at, "ends_at": None, "at": at, "value": 1.0, "threshold": None,
        "summary": "New issue in shop: TypeError: x (app.js in f)", "runbook_url": None,
        "remediation_webhook": None,
        "annotations": {"level": "warning", "kind": "issue", "transition": "new", "title": "TypeError: x",
                        "events": 1, "nested": {"ignored": True}},
    }


def window_event(n: int, status: str, at: int, starts_at: int, severity: str = "critical") -> dict[str, Any]:
    fp = f"fp-error-rate-{severity}"
    return {
        "event_id": f"win-ev-{n}", "fingerprint": fp, "rule": "error-rate", "status": status, "severity": severity,
        "labels": {"project": "shop", "environment": "prod", "severity": severity},
        "starts_at": starts_at, "ends_at": at if status == "resolved" else None, "at": at, "value": 0.12,
        "threshold": 0.10, "summary": "shop (prod): 12.0% errors per page view over 1m (> 10%)",
        "runbook_url": "https://runbooks.example/error-rate",
        "remediation_webhook": "https://ops.example/hooks/rollback" if status == "firing" else None,
        "annotations": {"level": severity, "kind": "ratio", "window": "1m", "window_start": at - M},
    }


def test_default_config_ends_issue_alerts_quietly_after_an_hour() -> None:
    notifier, state = Notifier(load_config_file(env=ENV)), NotifierState()
    notifier.on_alert(state, issue_event(1, T0), T0)
    notifier.on_alert(state, issue_event(2, T0 + 10 * S, issue="g2") | {"fingerprint": "fp-g2"}, T0 + 10 * S)
    out = ticks(notifier, state, T0, T0 + 6 * H, 30 * S)
    # one notification for both new issues (grouped by rule and project), no repeats, no resolved
    assert [(i.kind, i.receiver) for i in out] == [("firing", "default-webhook")]
    assert fps(out[0]) == [("fp-g1", "firing"), ("fp-g2", "firing")]
    assert state.groups == {}
    [incident] = state.incidents.values()
    assert incident.status == "resolved" and incident.timeline[-1]["what"] == "all alerts resolved"
    body = alertmanager_webhook(out[0])
    assert body["alerts"][0]["annotations"]["kind"] == "issue"  # the event's annotations, flattened
    assert "nested" not in body["alerts"][0]["annotations"]
    assert body["alerts"][0]["labels"]["issue"] == "g1"


def test_auto_resolve_with_send_resolved() -> None:
    cfg = config(BASIC + """
auto_resolve:
  - matchers: ['issue!=""']
    after: 30m
    send_resolved: true
""")
    notifier, state = Notifier(cfg), NotifierState()
    notifier.on_alert(state, issue_event(1, T0), T0)
    out = ticks(notifier, state, T0, T0 + 2 * H)
    assert [(i.kind, i.created_at - T0) for i in out] == [("firing", 30 * S), ("resolved", 30 * M + 30 * S)]


def test_ends_at_of_a_firing_event_ends_the_alert_like_alertmanager() -> None:
    notifier, state, alerts = Notifier(config()), NotifierState(), Alerts()
    notifier.on_alert(state, alerts.fire("a", T0, ends_at=T0 + 10 * M), T0)
    out = ticks(notifier, state, T0, T0 + H)
    assert [(i.kind, i.created_at - T0) for i in out] == [("firing", 30 * S), ("resolved", 10 * M + 30 * S)]
    # a refresh pushing ends_at forward keeps it firing
    notifier.on_alert(state, alerts.fire("b", T0 + H, ends_at=T0 + H + 10 * M), T0 + H)
    out = ticks(notifier, state, T0 + H, T0 + H + 5 * M)
    notifier.on_alert(state, alerts.fire("b", T0 + H + 5 * M, ends_at=T0 + H + 20 * M), T0 + H + 5 * M)
    out += ticks(notifier, state, T0 + H + 5 * M, T0 + 2 * H)
    assert [(i.kind, i.created_at - T0 - H) for i in out] == [("firing", 30 * S), ("resolved", 20 * M + 30 * S)]


def test_windowed_alert_lifecycle_with_the_events_remediation_url() -> None:
    cfg = load_config_file(env=ENV)
    notifier, state = Notifier(cfg), NotifierState()
    notifier.on_alert(state, window_event(1, "firing", T0, T0 - 3 * M), T0)
    out = ticks(notifier, state, T0, T0 + 3 * H, 30 * S)
    assert [i.kind for i in out] == ["firing", "remediation"]  # firing windows do not expire
    call = render(out[1], cfg)
    assert call.url == "https://ops.example/hooks/rollback"
    assert call.json["alerts"][0]["annotations"]["window"] == "1m"
    notifier.on_alert(state, window_event(2, "resolved", T0 + 3 * H, T0 - 3 * M), T0 + 3 * H)
    out = ticks(notifier, state, T0 + 3 * H, T0 + 4 * H)
    assert kinds(out) == [("resolved", "default-webhook")]


def test_severity_change_is_one_update_in_the_group() -> None:
    # the alerting stage sends firing for the new severity first, then resolved for the old one
    notifier, state = Notifier(load_config_file(env=ENV)), NotifierState()
    notifier.on_alert(state, window_event(1, "firing", T0, T0, severity="warning"), T0)
    first, remediation = ticks(notifier, state, T0, T0 + M)
    assert (first.kind, remediation.kind) == ("firing", "remediation")
    notifier.on_alert(state, window_event(2, "firing", T0 + 2 * M, T0 + 2 * M), T0 + 2 * M)
    notifier.on_alert(state, window_event(3, "resolved", T0 + 2 * M, T0, severity="warning"), T0 + 2 * M)
    out = ticks(notifier, state, T0 + 2 * M, T0 + 10 * M)
    assert [(i.kind, fps(i)) for i in out if i.kind != "remediation"] == [
        ("firing", [("fp-error-rate-warning", "resolved"), ("fp-error-rate-critical", "firing")])]
    assert out[0].incident_id == first.incident_id and out[0].severity == "critical"
